/**
 * SPEC §4 step 4, network half: a client that sets `networks` is only served to callers inside
 * them. The caller is `ctx.ip` (resolved when the context is built, see runtime.ts), never the socket: behind a trusted ingress the
 * socket is the ingress.
 */
import type { ClientConfig } from "../config/types.ts";
import type { RequestContext } from "./context.ts";
import { compileCidrs, type CidrSet } from "./ip.ts";
import type { Rule } from "./rule.ts";
import { CONTINUE, deny, type Verdict } from "./verdict.ts";

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
 * is). Refusal: 403 `network_not_allowed`. No client identified, or a client from another config:
 * refused too (fail closed).
 */
export function createNetworkCheck(clients: readonly ClientConfig[]): Rule {
  const networks = compileClientNetworks(clients);
  return {
    name: "network",
    check(ctx: RequestContext): Verdict {
      const client = ctx.client;
      if (client === undefined) return deny("network_not_allowed", "no client identified before the network check");
      if (client.networks === undefined) return CONTINUE;
      const set = networks.get(client);
      if (set === undefined) return deny("network_not_allowed", "client is not part of this policy");
      return set.contains(ctx.ip) ? CONTINUE : deny("network_not_allowed", "caller IP not in the client's networks");
    },
  };
}
