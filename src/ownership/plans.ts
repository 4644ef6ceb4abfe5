/**
 * The response plans of ownership (README "Ownership"; src/proxy/response-plan.ts runs them):
 *
 * - **create**: a 2xx JSON response is held (up to 1 MiB), the ids at the configured path are
 *   recorded for the caller, and the response is sent on unchanged. Whatever cannot be recorded
 *   (not JSON, larger than 1 MiB, cut off by the upstream, no id, the store down with
 *   `on_store_error: deny`) is still sent to its creator as it came, and counted. Recording
 *   finishes before the response goes out, so an id the client has seen is already its own on
 *   every replica.
 * - **list**: a 2xx JSON response is held and rewritten to the items whose id the caller owns, the
 *   count set to how many were kept, as JSON of the same shape (`cache-control: private, no-store`).
 *   A response that cannot be filtered is never sent: 502 `upstream_unfilterable` (not JSON of the
 *   configured shape, over 1 MiB), 502 `upstream_reset` (cut off) or 503 `overloaded` (the store
 *   down with `on_store_error: deny`).
 */
import { deny } from "../pipeline/types.ts";
import type { CallerContext, OwnershipNote } from "../pipeline/types.ts";
import type { OwnershipMetrics, UnrecordedReason } from "../observe/ownership-metrics.ts";
import type { ResponsePlan } from "../proxy/response-plan.ts";
import { UNAVAILABLE } from "../limits/fallback.ts";
import type { GuardedRecords } from "./guarded-records.ts";
import { collect, replaceAt, valueAt, type PathStep } from "./json-path.ts";
import { canonicalId, MAX_IDS_PER_RESPONSE } from "./records.ts";
import { declaredTooLarge, HOLD_BYTES, isJsonType, readResponseJson } from "./response-json.ts";

/** One kind, compiled: what the plans and the use check need. */
export interface KindPlan {
  readonly name: string;
  readonly owner: "session" | "client";
  readonly ttlMs: number;
  readonly maxItems: number;
  readonly records: GuardedRecords;
  readonly metrics: OwnershipMetrics;
}

export interface CreateRoute {
  readonly id: readonly PathStep[];
}

export interface ListRoute {
  readonly items: readonly PathStep[];
  readonly id: readonly PathStep[];
  readonly count: readonly PathStep[] | undefined;
}

const PASS = Object.freeze({ kind: "pass" } as const);

function note(ctx: CallerContext, value: OwnershipNote): void {
  ctx.ownership = value;
}

/** The plan of one create request; `key` is the caller's records key (records.ts). */
export function createPlan(kind: KindPlan, route: CreateRoute, ctx: CallerContext, key: string): ResponsePlan {
  const unrecorded = (why: UnrecordedReason): typeof PASS => {
    kind.metrics.unrecorded(kind.name, why);
    note(ctx, { kind: kind.name, decision: "unrecorded", why });
    return PASS;
  };
  return {
    holdBytes: HOLD_BYTES,
    head(_status, headers) {
      // Streams (Server-Sent Events) and other bodies pass at once, unheld.
      if (!isJsonType(headers["content-type"])) return unrecorded("not_json");
      if (declaredTooLarge(headers)) return unrecorded("too_large");
      return "hold";
    },
    async decide(held) {
      if (held.end === "over_limit") return unrecorded("too_large");
      if (held.end === "broken") return unrecorded("truncated");
      const doc = readResponseJson(held.headers, held.body, true);
      if (doc === undefined) return unrecorded("not_json");
      const ids = new Set<string>();
      for (const value of collect(doc, route.id)) {
        const id = canonicalId(value);
        if (id !== undefined) ids.add(id);
        if (ids.size >= MAX_IDS_PER_RESPONSE) break;
      }
      if (ids.size === 0) return unrecorded("no_id");
      let recorded: void | typeof UNAVAILABLE;
      try {
        recorded = await kind.records.record(key, [...ids], kind.ttlMs, kind.maxItems);
      } catch {
        recorded = UNAVAILABLE;
      }
      if (recorded === UNAVAILABLE) return unrecorded("store_unavailable");
      kind.metrics.recorded(kind.name, ids.size);
      note(ctx, { kind: kind.name, decision: "recorded", items: ids.size });
      return PASS;
    },
  };
}

/** The plan of one list request; `key` is the caller's records key (records.ts). */
export function listPlan(kind: KindPlan, route: ListRoute, ctx: CallerContext, key: string): ResponsePlan {
  const withhold = (why: string, reason: "upstream_unfilterable" | "overloaded") => {
    kind.metrics.withheld(kind.name, reason);
    note(ctx, { kind: kind.name, decision: "withheld", why });
    return { kind: "refuse", reason } as const;
  };
  const unfilterable = (why: string) => withhold(why, "upstream_unfilterable");
  return {
    holdBytes: HOLD_BYTES,
    head(_status, headers) {
      if (!isJsonType(headers["content-type"])) return unfilterable("not_json");
      if (declaredTooLarge(headers)) return unfilterable("too_large");
      return "hold";
    },
    async decide(held) {
      if (held.end === "over_limit") return unfilterable("too_large");
      if (held.end === "broken") {
        note(ctx, { kind: kind.name, decision: "withheld", why: "truncated" });
        return { kind: "refuse", reason: "upstream_reset" };
      }
      const doc = readResponseJson(held.headers, held.body, false);
      if (doc === undefined) return unfilterable("not_json");
      const items = valueAt(doc, route.items);
      if (!Array.isArray(items)) return unfilterable("no_items");
      const count = route.count === undefined ? undefined : valueAt(doc, route.count);
      if (count !== undefined && typeof count !== "number") return unfilterable("count_not_a_number");

      const ids = items.map((item) => canonicalId(valueAt(item, route.id)));
      const unique = [...new Set(ids.filter((id): id is string => id !== undefined))];
      let owned: boolean[] | typeof UNAVAILABLE;
      try {
        owned = unique.length === 0 ? [] : await kind.records.owned(key, unique);
      } catch {
        owned = UNAVAILABLE;
      }
      // 503 `overloaded`, as the limits answer while the store is down with on_store_error: deny.
      if (owned === UNAVAILABLE) return withhold("store_unavailable", "overloaded");
      const mine = new Set(unique.filter((_, i) => owned[i] === true));
      const kept = items.filter((_, i) => {
        const id = ids[i];
        return id !== undefined && mine.has(id);
      });
      replaceAt(doc, route.items, kept);
      if (count !== undefined && route.count !== undefined) replaceAt(doc, route.count, kept.length);
      let json: string;
      try {
        json = JSON.stringify(doc);
      } catch {
        // Nesting deep enough to exhaust the stack (JSON.parse has none to exhaust): not a page of media.
        return unfilterable("too_deep");
      }
      const withheld = items.length - kept.length;
      if (withheld > 0) kind.metrics.filtered(kind.name, ctx.client.id, withheld);
      note(ctx, { kind: kind.name, decision: "filtered", items: kept.length, withheld });
      return { kind: "replace", json: Buffer.from(json, "utf8") };
    },
  };
}

/** The use check's refusal: 404, never 403, so that ids cannot be probed. */
export const NOT_OWNED = deny("not_found", "the caller does not own this id");
