/**
 * The limits' own series, added to the proxy's registry (SPEC §7 has none for the store; these are
 * additions, documented in docs/limits.md and docs/observability.md):
 *
 * - `mythiq_proxy_limits_store_up` gauge: 1 while the configured limits store answers, 0 while it
 *   does not (then `on_store_error` applies: per-replica limits, or 503 `overloaded`). Always 1 with
 *   `store: memory`.
 * - `mythiq_proxy_limits_store_errors_total` counter: calls to the limits store that failed or
 *   timed out.
 * - `mythiq_proxy_limits_store_failovers_total` counter: times the store came back on other
 *   primary server(s) than before (a Sentinel or Cluster failover, or a restarted Redis).
 * - `mythiq_proxy_limits_local_decisions_total{limit, result}` counter: decisions taken by the
 *   per-replica fallback (`on_store_error: local`) while the store was down; `limit` is
 *   `rate_limit`, `concurrency` or `budget`, `result` `allowed` or `refused`.
 * - `mythiq_proxy_limits_written_back_usd_total{client}` counter: budget spend that Redis did not
 *   hold and this replica wrote back when it answered again (reserved while it was down, or lost by
 *   a failover).
 *
 * A reload builds the limits again against the same registry, so each series is created once and
 * found by name afterwards.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import { METRIC_PREFIX } from "./metrics.ts";
import type { LocalLimit } from "../limits/fallback.ts";

export const STORE_UP_METRIC = `${METRIC_PREFIX}limits_store_up`;
export const STORE_ERRORS_METRIC = `${METRIC_PREFIX}limits_store_errors_total`;
export const STORE_FAILOVERS_METRIC = `${METRIC_PREFIX}limits_store_failovers_total`;
export const LOCAL_DECISIONS_METRIC = `${METRIC_PREFIX}limits_local_decisions_total`;
export const WRITTEN_BACK_METRIC = `${METRIC_PREFIX}limits_written_back_usd_total`;

const LOCAL_LIMITS: readonly LocalLimit[] = ["rate_limit", "concurrency", "budget"];

export interface LimitsMetrics {
  storeUp(up: boolean): void;
  storeError(): void;
  failover(): void;
  localDecision(limit: LocalLimit, allowed: boolean): void;
  writtenBack(client: string, usd: number): void;
}

function counter(registry: Registry, name: string, help: string, labelNames: string[] = []): Counter {
  return (
    (registry.getSingleMetric(name) as Counter | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] })
  );
}

export function createLimitsMetrics(registry: Registry): LimitsMetrics {
  const up =
    (registry.getSingleMetric(STORE_UP_METRIC) as Gauge | undefined) ??
    new Gauge({
      name: STORE_UP_METRIC,
      help: "1 while the limits store (limits.store) answers, 0 while it does not and on_store_error applies.",
      registers: [registry],
    });
  const errors = counter(registry, STORE_ERRORS_METRIC, "Calls to the limits store that failed or timed out.");
  const failovers = counter(
    registry,
    STORE_FAILOVERS_METRIC,
    "Times the limits store came back on other primary server(s) than before: a Sentinel or Cluster failover, or a restarted Redis.",
  );
  const local = counter(
    registry,
    LOCAL_DECISIONS_METRIC,
    "Limit decisions taken by this replica alone while the limits store was down (on_store_error: local).",
    ["limit", "result"],
  );
  const writtenBack = counter(
    registry,
    WRITTEN_BACK_METRIC,
    "Budget spend (estimated USD) that the limits store did not hold and this replica wrote back when it answered again.",
    ["client"],
  );
  errors.inc(0);
  failovers.inc(0);
  for (const limit of LOCAL_LIMITS) for (const result of ["allowed", "refused"]) local.inc({ limit, result }, 0);
  return {
    storeUp: (isUp) => up.set(isUp ? 1 : 0),
    storeError: () => errors.inc(),
    failover: () => failovers.inc(),
    localDecision: (limit, allowed) => local.inc({ limit, result: allowed ? "allowed" : "refused" }),
    writtenBack: (client, usd) => writtenBack.inc({ client }, usd),
  };
}
