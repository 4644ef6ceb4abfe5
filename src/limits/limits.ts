/**
 * The limits of one config version (SPEC §3 `rate_limit`, `concurrency`, `budget`, `pricing`,
 * `limits`; §4 step 6): the rules, and the stores they count in.
 *
 * The stores outlive a reload: a runtime built from a new config adopts the previous runtime's
 * stores when `limits.store` and the redis settings did not change, so a reload neither reconnects
 * to Redis nor forgets what a memory store counted (a SIGHUP must not hand out a fresh daily
 * budget). Stores that are replaced are closed once the requests still holding slots or
 * reservations in them have ended.
 */
import type { LimitsConfig, ProxyConfig } from "../config/types.ts";
import type { Environment } from "../keys/env-source.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { Rule } from "../pipeline/types.ts";
import { budgetClient, createChargeRule } from "./budget.ts";
import { createConcurrencyRule } from "./concurrency.ts";
import { createGuardedStore, type OnStoreError } from "./fallback.ts";
import { createMemoryStore } from "./memory-store.ts";
import { createLimitsMetrics } from "../observe/limits-metrics.ts";
import { createRateLimitRule } from "./rate-limit.ts";
import { MICROS_PER_USD } from "./pricing.ts";
import { createRedisStore, type RedisStoreOptions } from "./redis-store.ts";
import { modeOf, resolveRedisTarget } from "./redis-target.ts";
import type { LimitStore } from "./store.ts";

/** The stores of a limits configuration; shared by every runtime that adopts them. */
export interface LimitStores {
  /** Identifies the settings the stores were built from (compared on reload; never logged). */
  readonly settings: string;
  /** `limits.store`: memory, or redis. */
  readonly shared: LimitStore;
  /** Per-replica fallback for `on_store_error: local` (the shared store itself when it is memory). */
  readonly local: LimitStore;
  /** `on_store_error` of the newest config, for the log lines of store events. */
  onStoreError: OnStoreError;
}

export interface Limits {
  /** SPEC §4 step 6: the rate limit; undefined when no client sets `rate_limit`. */
  readonly rate: Rule | undefined;
  /** SPEC §4 step 6: concurrency; undefined when no client sets `concurrency`. */
  readonly concurrency: Rule | undefined;
  /**
   * The estimated cost and the daily budget, checked once the body is known (it prices the model
   * and `n`); undefined when `pricing` is empty.
   */
  readonly budget: Rule | undefined;
  readonly stores: LimitStores;
  /** Stores replaced by reloads that still wait for their last requests before closing. */
  readonly retiring: readonly Retiring[];
  /** Closes the stores (and replaced ones still waiting for their requests). Call once, at stop. */
  close(): Promise<void>;
}

export interface Retiring {
  closeNow(): Promise<void>;
}

export interface LimitsDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** For a redis URL given as `{env: NAME}`. */
  readonly env: Environment;
  /** The limits of the runtime being replaced by a reload. */
  readonly previous?: Limits;
  /** Wall clock in epoch ms (UTC days for budgets); default `Date.now`. */
  readonly now?: () => number;
  /** Redis store tuning (tests). */
  readonly redis?: Omit<RedisStoreOptions, "target" | "prefix" | "events">;
  /**
   * Count in a fresh memory store whatever `limits.store` says: for callers that must not touch the
   * network (`test-policy`). Default false.
   */
  readonly memoryOnly?: boolean;
}

/** How long a replaced store is kept at least, for requests that read the old runtime just before the swap. */
const RETIRE_GRACE_MS = 5_000;

function settingsOf(limits: LimitsConfig, memoryOnly: boolean): string {
  return JSON.stringify(limits.store === "redis" && !memoryOnly ? { store: "redis", redis: limits.redis } : { store: "memory" });
}

function createStores(config: LimitsConfig, deps: LimitsDeps): LimitStores {
  const metrics = createLimitsMetrics(deps.metrics.registry);
  const memoryOnly = deps.memoryOnly === true;
  const settings = settingsOf(config, memoryOnly);
  const redis = config.redis;
  if (config.store === "memory" || redis === undefined || memoryOnly) {
    const memory = createMemoryStore();
    metrics.storeUp(true);
    return { settings, shared: memory, local: memory, onStoreError: config.on_store_error };
  }
  const { logger } = deps;
  const mode = modeOf(redis);
  let everUp = false;
  const stores: LimitStores = {
    settings,
    shared: createRedisStore({
      timeoutMs: redis.timeout,
      ...deps.redis,
      target: () => resolveRedisTarget(redis, deps.env),
      prefix: redis.prefix,
      events: {
        up() {
          metrics.storeUp(true);
          if (everUp) logger.info("limits store answers again: limits are shared by all replicas again", { store: "redis", mode });
          else logger.info("limits store connected", { store: "redis", mode, prefix: redis.prefix });
          everUp = true;
        },
        failover() {
          metrics.failover();
          logger.info("limits store failed over: another primary answers now", { store: "redis", mode });
        },
        wroteBack(key, micros) {
          const client = budgetClient(key) ?? "unknown";
          const usd = micros / MICROS_PER_USD;
          metrics.writtenBack(client, usd);
          logger.info("limits store: budget spend it did not hold was written back", { store: "redis", client, usd });
        },
        down(why) {
          metrics.storeUp(false);
          const effect =
            stores.onStoreError === "local"
              ? "enforcing per-replica limits until it answers (on_store_error: local)"
              : "refusing limited requests with 503 overloaded until it answers (on_store_error: deny)";
          logger.warn(`limits store unavailable: ${effect}`, { store: "redis", mode, error: why, on_store_error: stores.onStoreError });
        },
        error: () => metrics.storeError(),
      },
    }),
    local: createMemoryStore(),
    onStoreError: config.on_store_error,
  };
  metrics.storeUp(false);
  return stores;
}

/** Closes `stores` once no request holds anything in them (after a short grace), or at `close()`. */
function retire(stores: LimitStores): Retiring {
  let closing: Promise<void> | undefined;
  const closeNow = (): Promise<void> => {
    clearInterval(timer);
    closing ??= Promise.all([stores.shared.close(), stores.local === stores.shared ? undefined : stores.local.close()]).then(() => {});
    return closing;
  };
  const since = Date.now();
  const timer = setInterval(() => {
    const busy = stores.shared.outstanding() + (stores.local === stores.shared ? 0 : stores.local.outstanding());
    if (Date.now() - since >= RETIRE_GRACE_MS && busy === 0) void closeNow();
  }, 1_000);
  timer.unref();
  return { closeNow };
}

/**
 * Builds the limit rules of `config`, adopting `deps.previous`'s stores when the store settings are
 * unchanged. Call it last when building a runtime: a store it replaces starts retiring at once.
 */
export function buildLimits(config: ProxyConfig, deps: LimitsDeps): Limits {
  const previous = deps.previous;
  const adopt = previous !== undefined && previous.stores.settings === settingsOf(config.limits, deps.memoryOnly === true);
  const stores = adopt ? previous.stores : createStores(config.limits, deps);
  stores.onStoreError = config.limits.on_store_error;
  const retiring = previous === undefined ? [] : adopt ? previous.retiring : [...previous.retiring, retire(previous.stores)];

  const metrics = createLimitsMetrics(deps.metrics.registry);
  const store = createGuardedStore({
    shared: stores.shared,
    local: stores.local,
    onStoreError: config.limits.on_store_error,
    ...(config.limits.redis === undefined ? {} : { timeoutMs: deps.redis?.timeoutMs ?? config.limits.redis.timeout }),
    onLocal: (limit, allowed) => metrics.localDecision(limit, allowed),
  });
  const rate = createRateLimitRule(config.clients, store);
  const concurrency = createConcurrencyRule(config.clients, store);
  const charge = createChargeRule(config, { store, metrics: deps.metrics, ...(deps.now === undefined ? {} : { now: deps.now }) });

  let closed: Promise<void> | undefined;
  return {
    rate,
    concurrency,
    budget: charge,
    stores,
    retiring,
    close() {
      closed ??= Promise.all([
        ...retiring.map((r) => r.closeNow()),
        stores.shared.close(),
        stores.local === stores.shared ? undefined : stores.local.close(),
      ]).then(() => {});
      return closed;
    },
  };
}
