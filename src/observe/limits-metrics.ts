/**
 * The limits' own series, added to the proxy's registry (SPEC §7 has none for the store; these are
 * additions, see docs/limits.md):
 *
 * - `mythiq_proxy_limits_store_up` gauge: 1 while the configured limits store answers, 0 while it
 *   does not (then `on_store_error` applies: per-replica limits, or 503 `overloaded`). Always 1 with
 *   `store: memory`.
 * - `mythiq_proxy_limits_store_errors_total` counter: calls to the limits store that failed or
 *   timed out.
 *
 * A reload builds the limits again against the same registry, so each series is created once and
 * found by name afterwards.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import { METRIC_PREFIX } from "./metrics.ts";

export const STORE_UP_METRIC = `${METRIC_PREFIX}limits_store_up`;
export const STORE_ERRORS_METRIC = `${METRIC_PREFIX}limits_store_errors_total`;

export interface LimitsMetrics {
  storeUp(up: boolean): void;
  storeError(): void;
}

export function createLimitsMetrics(registry: Registry): LimitsMetrics {
  const up =
    (registry.getSingleMetric(STORE_UP_METRIC) as Gauge | undefined) ??
    new Gauge({
      name: STORE_UP_METRIC,
      help: "1 while the limits store (limits.store) answers, 0 while it does not and on_store_error applies.",
      registers: [registry],
    });
  const errors =
    (registry.getSingleMetric(STORE_ERRORS_METRIC) as Counter | undefined) ??
    new Counter({
      name: STORE_ERRORS_METRIC,
      help: "Calls to the limits store that failed or timed out.",
      registers: [registry],
    });
  errors.inc(0);
  return {
    storeUp: (isUp) => up.set(isUp ? 1 : 0),
    storeError: () => errors.inc(),
  };
}
