/**
 * Ownership's own series (SPEC §11: counters for ownership decisions), added to the proxy's
 * registry; README "Ownership" documents them:
 *
 * - `mythiq_proxy_ownership_recorded_total{kind}`: ids recorded for their owner from create routes.
 * - `mythiq_proxy_ownership_unrecorded_total{kind, reason}`: create responses passed on without
 *   recording anything; `reason` is one of `UNRECORDED_REASONS`.
 * - `mythiq_proxy_ownership_refused_total{kind, client}`: use requests refused 404 `not_found`
 *   because the caller does not own the id.
 * - `mythiq_proxy_ownership_filtered_total{kind, client}`: list items withheld from a caller who
 *   does not own them.
 * - `mythiq_proxy_ownership_withheld_total{kind, reason}`: list responses not sent at all
 *   (`upstream_unfilterable`, `overloaded` while the store is down with `on_store_error: deny`).
 *
 * Label values are kind names and client ids from the config, and fixed reasons: bounded whatever
 * callers send. A reload builds these against the same registry: each series is created once and
 * found by name afterwards.
 */
import { Counter, type Registry } from "prom-client";
import { METRIC_PREFIX } from "./metrics.ts";

/** Why a create response was passed on unrecorded. */
export const UNRECORDED_REASONS = ["not_json", "too_large", "truncated", "no_id", "store_unavailable"] as const;
export type UnrecordedReason = (typeof UNRECORDED_REASONS)[number];

export interface OwnershipMetrics {
  recorded(kind: string, ids: number): void;
  unrecorded(kind: string, reason: UnrecordedReason): void;
  refused(kind: string, client: string): void;
  filtered(kind: string, client: string, items: number): void;
  withheld(kind: string, reason: "upstream_unfilterable" | "overloaded"): void;
}

function counter(registry: Registry, name: string, help: string, labelNames: readonly string[]): Counter {
  const full = `${METRIC_PREFIX}${name}`;
  return (registry.getSingleMetric(full) as Counter | undefined) ?? new Counter({ name: full, help, labelNames: [...labelNames], registers: [registry] });
}

/** The ownership counters on `registry`; `kinds` get their series at 0 so alerts see them from the start. */
export function createOwnershipMetrics(registry: Registry, kinds: readonly string[]): OwnershipMetrics {
  const recorded = counter(registry, "ownership_recorded_total", "Ids recorded for their owner from create routes (ownership).", ["kind"]);
  const unrecorded = counter(
    registry,
    "ownership_unrecorded_total",
    "Create responses passed on without recording an owner: not_json, too_large, truncated, no_id, store_unavailable.",
    ["kind", "reason"],
  );
  const refused = counter(registry, "ownership_refused_total", "Use requests refused 404 not_found: the caller does not own the id.", ["kind", "client"]);
  const filtered = counter(registry, "ownership_filtered_total", "List items withheld from a caller who does not own them.", ["kind", "client"]);
  const withheld = counter(registry, "ownership_withheld_total", "List responses not sent because they could not be filtered.", ["kind", "reason"]);
  for (const kind of kinds) {
    recorded.inc({ kind }, 0);
    for (const reason of UNRECORDED_REASONS) unrecorded.inc({ kind, reason }, 0);
  }
  return {
    recorded: (kind, ids) => recorded.inc({ kind }, ids),
    unrecorded: (kind, reason) => unrecorded.inc({ kind, reason }),
    refused: (kind, client) => refused.inc({ kind, client }),
    filtered: (kind, client, items) => filtered.inc({ kind, client }, items),
    withheld: (kind, reason) => withheld.inc({ kind, reason }),
  };
}
