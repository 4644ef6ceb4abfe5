/**
 * Sets `ctx.ip`, the caller every later check and the audit log talk about (SPEC §4 step 4). It
 * runs before the identity check, which needs the caller for anonymous clients' networks and for
 * counting failed attempts per IP.
 */
import type { RequestContext } from "./context.ts";
import { compileCidrs, resolveCallerIp } from "./ip.ts";
import type { Rule } from "./rule.ts";
import { CONTINUE, type Verdict } from "./verdict.ts";

/**
 * `trustedProxies`: the `trusted_proxies` CIDRs. Never refuses: an unreadable `X-Forwarded-For`
 * from a trusted proxy makes the caller `UNKNOWN_IP`, which no `networks` entry contains.
 */
export function createCallerIpRule(trustedProxies: readonly string[]): Rule {
  const trusted = compileCidrs(trustedProxies);
  return {
    name: "caller-ip",
    check(ctx: RequestContext): Verdict {
      ctx.ip = resolveCallerIp(ctx.socketIp, ctx.headers["x-forwarded-for"], trusted);
      return CONTINUE;
    },
  };
}
