/**
 * `tracing.trust_incoming` (SPEC §11), compiled once per config: whose `traceparent` the proxy
 * continues. A caller's trace context is a claim anyone can make; continued blindly, it would let
 * any caller file its requests under someone else's trace (or flood one trace). So by default
 * (`false`) every request starts a new trace, and the caller's context is replaced, never sent on.
 *
 * - `trusted_proxies`: continued when the TCP peer is in `trusted_proxies` (the ingress or mesh
 *   that started the trace), the same trust `X-Forwarded-For` gets;
 * - a list of client ids: continued for requests identified as one of those clients (a frontend
 *   server with its own token, whose traces should run through to MythIQ).
 */
import type { ProxyConfig } from "../config/types.ts";
import type { TrustIncoming } from "../observe/tracing/types.ts";
import { compileCidrs } from "../rules/ip.ts";

const NOBODY: TrustIncoming = () => false;

export function compileTraceTrust(config: Pick<ProxyConfig, "tracing" | "trusted_proxies">): TrustIncoming {
  const trust = config.tracing?.trust_incoming ?? false;
  if (trust === false) return NOBODY;
  if (trust === "trusted_proxies") {
    const proxies = compileCidrs(config.trusted_proxies);
    return (ctx) => proxies.contains(ctx.socketIp);
  }
  const clients = new Set(trust);
  return (ctx) => ctx.client !== undefined && clients.has(ctx.client.id);
}
