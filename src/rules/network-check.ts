/**
 * SPEC §4 step 4, network half: a client that sets `networks` is only served to callers inside
 * them. The caller is `ctx.ip` (resolved when the context is built, see src/pipeline/compile.ts), never the socket: behind a trusted ingress the
 * socket is the ingress.
 */
import type { ClientConfig } from "../config/types.ts";
import { CONTINUE, deny, InvariantError, type CallerContext, type Rule, type Verdict } from "../pipeline/types.ts";
import { compileCidrs, type CidrSet } from "./ip.ts";

/** The CIDR set of every client that sets `networks`, keyed by the client object. */
export function compileClientNetworks(clients: readonly ClientConfig[]): ReadonlyMap<ClientConfig, CidrSet> {
  const map = new Map<ClientConfig, CidrSet>();
  for (const client of clients) {
    if (client.networks !== undefined) map.set(client, compileCidrs(client.networks));
  }
  return map;
}

/**
 * The network check for these clients (compiled once). `networks` omitted: any caller;
 * `networks: []`: no caller; else `ctx.ip` must be inside one CIDR (an `UNKNOWN_IP` caller never
 * is). Refusal: 403 `network_not_allowed`. A client it was not compiled for is a broken invariant
 * (`InvariantError`).
 */
export function createNetworkCheck(clients: readonly ClientConfig[]): Rule {
  const networks = compileClientNetworks(clients);
  return {
    name: "network",
    check(ctx: CallerContext): Verdict {
      const client = ctx.client;
      if (client.networks === undefined) return CONTINUE;
      const set = networks.get(client);
      if (set === undefined) throw new InvariantError(`network check: client ${client.id} is not part of this policy`);
      return set.contains(ctx.ip) ? CONTINUE : deny("network_not_allowed", "caller IP not in the client's networks");
    },
  };
}
