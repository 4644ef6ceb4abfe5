/**
 * Ownership (SPEC §11; README "Ownership"): behind one shared MythIQ key, each caller sees only the
 * resources it created. Compiled once per config into a table by client and route, so a request on
 * a route without ownership costs one lookup, and a config without `ownership` costs nothing.
 *
 * The owner is the session subject when there is one (`owner: session`, the default), else the
 * client; with `owner: client` always the client. A subject owns across the clients that accept its
 * sessions: it is the same user of the same issuer.
 *
 * - create routes: response plan (plans.ts), recording the ids;
 * - use routes: `check`, before SPEC §4 step 7 (see src/pipeline/pipeline.ts for why there): the
 *   id in the path must be the caller's, else 404 `not_found`; nothing is forwarded;
 * - list routes: response plan, filtering the items.
 */
import type { ClientConfig, ProxyConfig } from "../config/types.ts";
import type { LimitStores } from "../limits/limits.ts";
import { storeUnavailable } from "../limits/deny.ts";
import { UNAVAILABLE } from "../limits/fallback.ts";
import { createOwnershipMetrics } from "../observe/ownership-metrics.ts";
import { CONTINUE, type CallerContext, type Verdict } from "../pipeline/types.ts";
import type { ResponsePlan } from "../proxy/response-plan.ts";
import { parseRouteTemplate } from "../rules/routes.ts";
import type { Registry } from "prom-client";
import { createGuardedRecords } from "./guarded-records.ts";
import { compileJsonPath } from "./json-path.ts";
import { createPlan, listPlan, NOT_OWNED, type KindPlan } from "./plans.ts";
import { MAX_ID_LENGTH, recordsKey } from "./records.ts";
import { idPlaceholder } from "./route-ids.ts";

/** What ownership does on one route of one client. */
export interface RouteOwnership {
  /** A use route: is the id in the path the caller's? 404 `not_found` if not. */
  readonly check?: (ctx: CallerContext) => Promise<Verdict>;
  /** A create or list route: the plan for its response. */
  readonly respond?: (ctx: CallerContext) => ResponsePlan;
}

export interface Ownership {
  /** What ownership does on the caller's matched route; undefined for most routes. */
  forRoute(ctx: CallerContext): RouteOwnership | undefined;
}

export interface OwnershipDeps {
  /** The limits' stores: the records live beside them (memory) or in the same Redis. */
  readonly stores: LimitStores;
  readonly registry: Registry;
}

function labelOf(route: string): string {
  const parsed = parseRouteTemplate(route);
  if (!parsed.ok) throw new Error(`ownership route: ${parsed.message}`);
  return parsed.value.label;
}

/** The caller's records key for `kind`. */
function keyOf(kind: KindPlan, ctx: CallerContext): string {
  const owner = kind.owner === "session" && ctx.subject !== undefined ? `s:${ctx.subject}` : `c:${ctx.client.id}`;
  return recordsKey(kind.name, owner);
}

/** The id in a use request's path: the segment at `index` (the route matched, so it is there and not empty). */
function idAt(path: string, index: number): string | undefined {
  return path.slice(1).split("/")[index];
}

function useCheck(kind: KindPlan, index: number): (ctx: CallerContext) => Promise<Verdict> {
  return async (ctx) => {
    const id = idAt(ctx.path, index);
    const owned = id === undefined || id.length > MAX_ID_LENGTH ? [false] : await kind.records.owned(keyOf(kind, ctx), [id]);
    if (owned === UNAVAILABLE) {
      ctx.ownership = { kind: kind.name, decision: "unavailable" };
      return storeUnavailable();
    }
    if (owned[0] !== true) {
      kind.metrics.refused(kind.name, ctx.client.id);
      ctx.ownership = { kind: kind.name, decision: "refused" };
      return NOT_OWNED;
    }
    ctx.ownership = { kind: kind.name, decision: "owned" };
    return CONTINUE;
  };
}

/** Compiles `config.ownership`; undefined when it names no kind. */
export function compileOwnership(config: ProxyConfig, deps: OwnershipDeps): Ownership | undefined {
  const kinds = Object.entries(config.ownership);
  if (kinds.length === 0) return undefined;
  const records = createGuardedRecords(deps.stores, config.limits.on_store_error);
  const metrics = createOwnershipMetrics(deps.registry, kinds.map(([name]) => name));
  const table = new Map<ClientConfig, Map<string, RouteOwnership>>();

  for (const [name, cfg] of kinds) {
    const kind: KindPlan = { name, owner: cfg.owner, ttlMs: cfg.ttl, maxItems: cfg.max_items, records, metrics };
    const byLabel = new Map<string, RouteOwnership>();
    for (const entry of cfg.create) {
      const route = { id: compileJsonPath(entry.id, true) };
      byLabel.set(labelOf(entry.route), { respond: (ctx) => createPlan(kind, route, ctx, keyOf(kind, ctx)) });
    }
    for (const entry of cfg.use) {
      const placeholder = idPlaceholder(entry.route, entry.param);
      if (placeholder === undefined) throw new Error(`ownership use route ${entry.route}: no placeholder holds the id`);
      byLabel.set(labelOf(entry.route), { check: useCheck(kind, placeholder.index) });
    }
    for (const entry of cfg.list) {
      const route = {
        items: compileJsonPath(entry.items, false),
        id: compileJsonPath(entry.id, false),
        count: entry.count === undefined ? undefined : compileJsonPath(entry.count, false),
      };
      byLabel.set(labelOf(entry.route), { respond: (ctx) => listPlan(kind, route, ctx, keyOf(kind, ctx)) });
    }
    for (const client of config.clients) {
      if (cfg.clients !== undefined && !cfg.clients.includes(client.id)) continue;
      for (const route of client.routes) {
        const label = labelOf(route);
        const found = byLabel.get(label);
        if (found === undefined) continue;
        let routes = table.get(client);
        if (routes === undefined) {
          routes = new Map();
          table.set(client, routes);
        }
        routes.set(label, found);
      }
    }
  }

  return {
    forRoute(ctx) {
      const route = ctx.route;
      return route === undefined ? undefined : table.get(ctx.client)?.get(route);
    },
  };
}
