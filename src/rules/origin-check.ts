/**
 * SPEC §4 step 4, Origin half: a client that lists `origins` only accepts browser requests from
 * them. A request without `Origin` is not a cross-origin browser request, so it passes here (what
 * lets it in is its credential, or for anonymous clients its network, see identity-check.ts) —
 * except a cookie session: a browser attaches cookies to cross-site requests by itself, so only an
 * allowed `Origin` shows that the page asking is one of ours (CSRF).
 */
import type { ClientConfig } from "../config/types.ts";
import { CONTINUE, deny, InvariantError, type CallerContext, type Rule, type Verdict } from "../pipeline/types.ts";
import { compileClientOrigins } from "./origins.ts";

/**
 * The origin check for these clients (compiled once). A client it was not compiled for is a broken
 * invariant (`InvariantError`), never a refusal.
 *
 * - Client without `origins`: any Origin, or none, passes — except a cookie session, refused
 *   (403 `origin_not_allowed`): with nothing to compare against, no Origin is "allowed".
 * - Client with `origins`: an `Origin` that is present must match (`null`, malformed: 403); an
 *   absent one passes, unless the credential is a cookie (403).
 */
export function createOriginCheck(clients: readonly ClientConfig[]): Rule {
  const matchers = compileClientOrigins(clients);
  return {
    name: "origin",
    check(ctx: CallerContext): Verdict {
      const client = ctx.client;
      const cookie = ctx.credential === "cookie";
      if (client.origins === undefined) {
        return cookie ? deny("origin_not_allowed", "cookie session for a client without origins") : CONTINUE;
      }
      const matcher = matchers.get(client);
      if (matcher === undefined) throw new InvariantError(`origin check: client ${client.id} is not part of this policy`);
      if (ctx.origin === undefined) {
        return cookie ? deny("origin_not_allowed", "cookie session without Origin") : CONTINUE;
      }
      return matcher.matches(ctx.origin) ? CONTINUE : deny("origin_not_allowed", "Origin not in the client's origins");
    },
  };
}
