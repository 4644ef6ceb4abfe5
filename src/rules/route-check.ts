/**
 * SPEC §4 step 5: the method and path must match one of the client's routes exactly, and every
 * query parameter name must be listed for that route. Sets `ctx.route` to the matched template
 * (`GET /v1/models/{id}`, without its query list) — the bounded `route` metric label.
 */
import type { ClientConfig } from "../config/types.ts";
import { CONTINUE, deny, InvariantError, type CallerContext, type Rule, type Verdict } from "../pipeline/types.ts";
import { compileRoutes, type RouteTable } from "./routes.ts";

/** Every client's compiled routes, keyed by the client object. */
export function compileClientRoutes(clients: readonly ClientConfig[]): ReadonlyMap<ClientConfig, RouteTable> {
  return new Map(clients.map((client) => [client, compileRoutes(client.routes)]));
}

/**
 * The route check for these clients (compiled once).
 *
 * - No route of the client matches `ctx.method` + `ctx.path`: 403 `route_not_allowed`.
 * - A query name (from `ctx.queryNames`, duplicates included, compared case-sensitively) that the
 *   matched route does not list: 400 `query_not_allowed`. `ctx.route` is set before that check,
 *   so the refusal is counted under the route.
 * - A client it was not compiled for: a broken invariant (`InvariantError`).
 */
export function createRouteCheck(clients: readonly ClientConfig[]): Rule {
  const tables = compileClientRoutes(clients);
  return {
    name: "route",
    check(ctx: CallerContext): Verdict {
      const client = ctx.client;
      const table = tables.get(client);
      if (table === undefined) throw new InvariantError(`route check: client ${client.id} is not part of this policy`);
      const route = table.match(ctx.method, ctx.path);
      if (route === undefined) return deny("route_not_allowed", "no route of the client matches");
      ctx.route = route.label;
      for (const name of ctx.queryNames) {
        if (!route.query.has(name)) return deny("query_not_allowed", "query parameter not listed for the route");
      }
      return CONTINUE;
    },
  };
}
