/**
 * Every metric of SPEC §7, in one place, on a registry of its own (never prom-client's global one,
 * so a test or a reload can build as many as it likes). Beyond SPEC, four gauges give alert rules
 * what Prometheus cannot read from the config: `key_refresh_interval_seconds`,
 * `key_max_stale_seconds`, `budget_daily_usd` and today's spend `budget_spent_usd`; and
 * `internal_errors_total` counts requests that met a bug. SPEC §11 adds `key_requests_total`,
 * `key_last_used_timestamp_seconds` and `trace_spans_dropped_total`.
 *
 * The proxy reports facts (a request ended, a key was fetched); this module turns them into series.
 * Label values pass through `labels.ts`, so only names from the config, fixed fallbacks and fixed
 * enumerations (status 100–599, catalogue reasons, key sources, results) ever become a series,
 * whatever callers send. Nothing here throws on bad numbers: a metric must never fail a request.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { KeySourceKind } from "../config/types.ts";
import { REASONS, type Reason } from "../errors.ts";
import type { HeldKey } from "../keys/types.ts";
import {
  EMPTY_LABEL_SETS,
  boundedValue,
  compileLabelSets,
  fingerprintLabel,
  OTHER,
  reasonLabel,
  statusLabel,
  type LabelBounds,
  type LabelSets,
} from "./labels.ts";

export const METRIC_PREFIX = "mythiq_proxy_";

/**
 * Buckets of both duration histograms, in seconds. Below 0.1 s they resolve the proxy's own overhead
 * and fast JSON calls (`GET /v1/models`); 1–60 s is where image generation lands; 120 and 300 s
 * catch slow generations and long streams (300 s is above the default 180 s `response_timeout`).
 * 13 buckets + `+Inf`, `_sum`, `_count` = 16 series per label combination.
 */
export const DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
]);

/** The reasons of failures talking to the MythIQ API (SPEC §5, 502/504). */
export type UpstreamReason = Extract<Reason, `upstream_${string}`>;

export type KeyRefreshResult = "changed" | "unchanged" | "failed";

/** Why spans were dropped: the export queue was full, or the collector did not take an export. */
export type SpanDropReason = "queue_full" | "export_failed";
const SPAN_DROP_REASONS: readonly SpanDropReason[] = ["queue_full", "export_failed"];
const KEY_REFRESH_RESULTS: readonly KeyRefreshResult[] = ["changed", "unchanged", "failed"];

/** What a finished request reports (SPEC §7 `requests_total`, durations, bytes). */
export interface RequestFacts {
  /** Client id, once identified; anything not configured counts as `unknown`. */
  readonly client?: string | undefined;
  /** Matched route template; unmatched or not configured counts as `other`. */
  readonly route?: string | undefined;
  /** Model named in the body; absent or not configured counts as `other`. */
  readonly model?: string | undefined;
  /** Status sent to the caller; outside 100–599 (0 = none sent) counts as `other`. */
  readonly status: number;
  /** Seconds from the first byte of the request to the end of the response. */
  readonly durationSeconds: number;
  /** Request body bytes received. */
  readonly bytesIn: number;
  /** Response body bytes sent. */
  readonly bytesOut: number;
  /**
   * Name of the key the request was forwarded with (`key_requests_total`,
   * `key_last_used_timestamp_seconds`); undefined when no key was sent.
   */
  readonly key?: string | undefined;
}

/** The facts of a successfully fetched key; a `HeldKey` fits (its `value` is never read). */
export type KeyFacts = Pick<HeldKey, "name" | "source" | "fingerprint" | "version" | "fetchedAt">;

export interface Metrics {
  readonly registry: Registry;
  /** Content type of `metricsText()` (Prometheus text format 0.0.4). */
  readonly contentType: string;
  /**
   * Replaces the allowed label values and the config numbers behind the non-SPEC gauges (call at
   * start and on every applied reload, before the keyring of the new config starts). Series whose
   * client, route, model or key is no longer configured are removed; in-flight counts of a removed
   * client stay until those requests end. Keys listed in `keySettings` get their
   * `key_refresh_total` (every result) and `key_rotations_total` series at 0.
   */
  setLabelSets(sets: LabelSets): void;
  /**
   * One request ended: `requests_total`, `request_duration_seconds`, `request_bytes_total`,
   * `response_bytes_total`; with a `key`, `key_requests_total` (only for a client and key the config
   * pairs) and `key_last_used_timestamp_seconds` (configured keys only).
   */
  requestFinished(facts: RequestFacts): void;
  /** Seconds from sending the request upstream to the upstream's response headers. */
  upstreamDuration(route: string | undefined, seconds: number): void;
  /** A local refusal (`denied_total`). */
  denied(client: string | undefined, reason: Reason): void;
  /**
   * A failure talking to the MythIQ API (`upstream_errors_total`). Takes any catalogue reason so a
   * forwarder's `(reason: Reason) => void` hook fits; one that is not `upstream_*` counts as `other`.
   */
  upstreamError(reason: Reason): void;
  /**
   * A request of `client` started (+1) or ended (-1) being forwarded (`inflight_requests`). Pair the
   * calls with the same client id (try/finally). The gauge is computed at scrape time, so a reload
   * in between cannot unbalance it: a client removed by a reload shows as `unknown` until its
   * requests end.
   */
  inflight(client: string | undefined, delta: 1 | -1): void;
  /**
   * Estimated spend of one request, USD (`estimated_cost_usd_total`, and today's `budget_spent_usd`
   * of clients with a budget). Call once per request whose spend is kept. 0, negative or NaN is ignored.
   */
  cost(client: string | undefined, model: string | undefined, usd: number): void;
  /**
   * A fetch of a key succeeded (call after every successful fetch, changed or not). Counts
   * `key_refresh_total{result="changed"|"unchanged"}` by comparing the fingerprint with the one held
   * before, counts `key_rotations_total` when a held value was replaced, sets `key_info` (one series
   * per key) and the `fetchedAt` behind `key_age_seconds`. Keys not in the label sets are ignored.
   */
  keyFetched(key: KeyFacts): void;
  /** A fetch of a key failed (`key_refresh_total{result="failed"}`); the last good key stays reported. */
  keyFetchFailed(name: string, source: KeySourceKind): void;
  /** A reload was validated and applied, or rejected (`config_reloads_total`). */
  configReloaded(result: "applied" | "rejected"): void;
  /** The config now in force (`config_info{hash}`; the previous hash's series is removed). */
  configLoaded(hash: string): void;
  /**
   * A request met a broken invariant or a bug (`internal_errors_total`): its connection was reset
   * instead of answered. Not in SPEC §7; an alert fires on any.
   */
  internalError(): void;
  /** Spans the tracing exporter dropped (`trace_spans_dropped_total`, SPEC §11). */
  traceSpansDropped(reason: SpanDropReason, count: number): void;
  /** The Prometheus text exposition of the registry. Rejects when a collector fails. */
  metricsText(): Promise<string>;
}

export interface MetricsOptions {
  /** The proxy's version, for `build_info`. */
  readonly version: string;
  /** Default `process.version`. */
  readonly nodeVersion?: string;
  /** Wall clock in epoch ms, for `key_age_seconds` and the UTC day of `budget_spent_usd`; default `Date.now`. */
  readonly now?: () => number;
  /** Initial label sets; default none (everything is `unknown`/`other`). */
  readonly labelSets?: LabelSets;
  /** prom-client's default process metrics; default true. */
  readonly processMetrics?: boolean;
}

type Labels<T extends string> = Record<T, string>;
type LabelKind = "client" | "route" | "model" | "key";

// prom-client's default metrics include three gauges named `*_total`, which `promtool check metrics`
// reports as problems ("non-counter metrics should not have _total suffix"). Their per-type twins
// (`nodejs_active_handles`, …) carry the same numbers, so a scrape stays lint-clean without them.
const LINT_FAILING_DEFAULTS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

const UPSTREAM_REASONS: readonly UpstreamReason[] = REASONS.filter((r): r is UpstreamReason => r.startsWith("upstream_"));
const UPSTREAM_REASON_SET: ReadonlySet<string> = new Set(UPSTREAM_REASONS);

/**
 * A cache of bound children, keyed by their label values. It is also the index of every series the
 * metric has, which is what lets `prune` remove series whose config names went away.
 */
function seriesCache<T extends string, C>(
  labelNames: readonly T[],
  bind: (labels: Labels<T>) => C,
  remove: (labels: Labels<T>) => void,
) {
  const entries = new Map<string, { labels: Labels<T>; child: C }>();
  return {
    get(key: string, make: () => Labels<T>): C {
      const hit = entries.get(key);
      if (hit !== undefined) return hit.child;
      const labels = make();
      const child = bind(labels);
      entries.set(key, { labels, child });
      return child;
    },
    prune(bounds: LabelBounds): void {
      this.pruneWhere((labels) => labelNames.some((name) => isBounded(name) && !bounds.allows(name, labels[name])));
    },
    /** Removes the series whose labels `stale` says are no longer wanted. */
    pruneWhere(stale: (labels: Labels<T>) => boolean): void {
      for (const [key, entry] of entries) {
        if (stale(entry.labels)) {
          remove(entry.labels);
          entries.delete(key);
        }
      }
    },
    size: () => entries.size,
  };
}

function isBounded(name: string): name is LabelKind {
  return name === "client" || name === "route" || name === "model" || name === "key";
}

function counterCache<T extends string>(counter: Counter<T>, labelNames: readonly T[]) {
  return seriesCache(
    labelNames,
    (labels) => counter.labels(labels),
    (labels) => counter.remove(labels),
  );
}

/** A non-negative finite number, else undefined (prom-client throws on NaN and on negative counter steps). */
function amount(value: number): number | undefined {
  return Number.isFinite(value) && value >= 0 ? value : undefined;
}

/** Builds the registry and every metric of SPEC §7. */
export function createMetrics(options: MetricsOptions): Metrics {
  const now = options.now ?? Date.now;
  const registry = new Registry();
  const registers = [registry];
  const p = METRIC_PREFIX;
  let bounds = compileLabelSets(options.labelSets ?? EMPTY_LABEL_SETS);

  if (options.processMetrics !== false) {
    collectDefaultMetrics({ register: registry });
    for (const name of LINT_FAILING_DEFAULTS) registry.removeSingleMetric(name);
  }

  const requests = new Counter({
    name: `${p}requests_total`,
    help: "Requests answered, by client, route template, model and status sent.",
    labelNames: ["client", "route", "model", "status"] as const,
    registers,
  });
  const requestDuration = new Histogram({
    name: `${p}request_duration_seconds`,
    help: "Time from the request's arrival to the end of the response, in seconds.",
    labelNames: ["client", "route"] as const,
    buckets: [...DURATION_BUCKETS],
    registers,
  });
  const upstreamDurationHistogram = new Histogram({
    name: `${p}upstream_duration_seconds`,
    help: "Time from sending a request to the MythIQ API to its response headers, in seconds.",
    labelNames: ["route"] as const,
    buckets: [...DURATION_BUCKETS],
    registers,
  });
  const deniedCounter = new Counter({
    name: `${p}denied_total`,
    help: "Requests the proxy refused itself, by client and reason.",
    labelNames: ["client", "reason"] as const,
    registers,
  });
  const upstreamErrors = new Counter({
    name: `${p}upstream_errors_total`,
    help: "Failures talking to the MythIQ API, by reason.",
    labelNames: ["reason"] as const,
    registers,
  });
  // In-flight requests by the client id the caller reported (not by label): +1 and -1 always meet
  // in the same entry, and entries at 0 are dropped, so the map holds at most one entry per request
  // in flight whatever ids callers pass.
  const inflightCounts = new Map<string | undefined, number>();
  new Gauge({
    name: `${p}inflight_requests`,
    help: "Requests being forwarded to the MythIQ API, by client.",
    labelNames: ["client"] as const,
    registers,
    // Computed at scrape time with the label sets in force then; a gauge child removed by a reload
    // and then decremented would otherwise come back at -1.
    collect() {
      const totals = new Map<string, number>();
      for (const client of bounds.sets.clients) totals.set(client, 0);
      for (const [id, count] of inflightCounts) {
        const client = bounds.client(id);
        totals.set(client, (totals.get(client) ?? 0) + count);
      }
      this.reset();
      for (const [client, count] of totals) this.set({ client }, count);
    },
  });
  const requestBytes = new Counter({
    name: `${p}request_bytes_total`,
    help: "Request body bytes received, by client.",
    labelNames: ["client"] as const,
    registers,
  });
  const responseBytes = new Counter({
    name: `${p}response_bytes_total`,
    help: "Response body bytes sent, by client.",
    labelNames: ["client"] as const,
    registers,
  });
  const costCounter = new Counter({
    name: `${p}estimated_cost_usd_total`,
    help: "Estimated spend in USD from the configured pricing, by client and model.",
    labelNames: ["client", "model"] as const,
    registers,
  });
  const keyRefresh = new Counter({
    name: `${p}key_refresh_total`,
    help: "Key fetches, by key, source and result (changed, unchanged, failed).",
    labelNames: ["key", "source", "result"] as const,
    registers,
  });
  const held = new Map<string, { labels: Labels<"key" | "source" | "fingerprint" | "version">; fetchedAt: number }>();
  new Gauge({
    name: `${p}key_age_seconds`,
    help: "Seconds since the key was last fetched successfully.",
    labelNames: ["key"] as const,
    registers,
    collect() {
      this.reset();
      const t = now();
      for (const [key, state] of held) this.set({ key }, Math.max(0, (t - state.fetchedAt) / 1000));
    },
  });
  const keyInfo = new Gauge({
    name: `${p}key_info`,
    help: "The key held now: source, fingerprint (first 8 hex of its sha256) and the store's version. Always 1.",
    labelNames: ["key", "source", "fingerprint", "version"] as const,
    registers,
  });
  const keyRotations = new Counter({
    name: `${p}key_rotations_total`,
    help: "Times a new key value replaced the one held, by key.",
    labelNames: ["key"] as const,
    registers,
  });
  // Not in SPEC §7: numbers from the config that alert rules compare with (see
  // docs/observability.md). Computed at scrape time from the label sets in force, so a reload
  // changes them with no bookkeeping and a removed key or client leaves no series behind.
  new Gauge({
    name: `${p}key_refresh_interval_seconds`,
    help: "The key's configured refresh interval (refresh.interval), in seconds.",
    labelNames: ["key"] as const,
    registers,
    collect() {
      this.reset();
      for (const k of bounds.sets.keySettings ?? []) this.set({ key: k.key }, k.intervalSeconds);
    },
  });
  new Gauge({
    name: `${p}key_max_stale_seconds`,
    help: "The key's configured max_stale, in seconds: past this age it is no longer served. 0 = no limit.",
    labelNames: ["key"] as const,
    registers,
    collect() {
      this.reset();
      for (const k of bounds.sets.keySettings ?? []) this.set({ key: k.key }, k.maxStaleSeconds);
    },
  });
  new Gauge({
    name: `${p}budget_daily_usd`,
    help: "The client's configured daily budget (budget.daily_usd), in USD per UTC day.",
    labelNames: ["client"] as const,
    registers,
    collect() {
      this.reset();
      for (const b of bounds.sets.budgets ?? []) this.set({ client: b.client }, b.dailyUsd);
    },
  });
  // Today's spend, summed from the same `cost()` calls as `estimated_cost_usd_total`. PromQL cannot
  // take an increase "since 00:00 UTC" (a range is a fixed length), so this replica keeps the
  // running sum of the current UTC day itself. It is this replica's share since its start or
  // midnight, whichever is later: alert rules sum it over replicas.
  const spentToday = new Map<string, number>();
  let spentDay = utcDay(now());
  const rollDay = (): void => {
    const day = utcDay(now());
    if (day !== spentDay) {
      spentDay = day;
      spentToday.clear();
    }
  };
  new Gauge({
    name: `${p}budget_spent_usd`,
    help: "Estimated spend of the current UTC day counted by this replica, in USD, for clients with a budget. Resets at 00:00 UTC.",
    labelNames: ["client"] as const,
    registers,
    collect() {
      rollDay();
      this.reset();
      for (const b of bounds.sets.budgets ?? []) this.set({ client: b.client }, spentToday.get(b.client) ?? 0);
    },
  });
  const configReloads = new Counter({
    name: `${p}config_reloads_total`,
    help: "Config reloads, by result (applied, rejected).",
    labelNames: ["result"] as const,
    registers,
  });
  const configInfo = new Gauge({
    name: `${p}config_info`,
    help: "Hash of the config in force. Always 1.",
    labelNames: ["hash"] as const,
    registers,
  });
  const internalErrors = new Counter({
    name: `${p}internal_errors_total`,
    help: "Requests that met a broken invariant or a bug inside the proxy; their connection was reset.",
    registers,
  });
  // SPEC §11: which application uses which key, and when each key was last used (an alert asks
  // whether a key unused for 30 days should be revoked). The timestamp is kept per key here and
  // set at scrape time, like key_age_seconds: one Date.now() per request, no gauge call.
  const keyRequests = new Counter({
    name: `${p}key_requests_total`,
    help: "Requests forwarded to the MythIQ API, by the key sent and the client that sent it.",
    labelNames: ["key", "client"] as const,
    registers,
  });
  const lastUsed = new Map<string, number>();
  new Gauge({
    name: `${p}key_last_used_timestamp_seconds`,
    help: "Unix time the key was last sent to the MythIQ API by this replica; absent until its first use since start.",
    labelNames: ["key"] as const,
    registers,
    collect() {
      this.reset();
      for (const [key, at] of lastUsed) this.set({ key }, at / 1000);
    },
  });
  const spansDropped = new Counter({
    name: `${p}trace_spans_dropped_total`,
    help: "Spans the tracing exporter dropped, by reason: queue_full (the collector is slower than the traffic), export_failed (the collector did not take them).",
    labelNames: ["reason"] as const,
    registers,
  });
  const buildInfo = new Gauge({
    name: `${p}build_info`,
    help: "Version of the proxy and of Node.js. Always 1.",
    labelNames: ["version", "node"] as const,
    registers,
  });
  buildInfo.set({ version: boundedValue(options.version, 64), node: boundedValue(options.nodeVersion ?? process.version, 64) }, 1);

  // Series with a known, small value set start at 0, so `increase()` sees the first event and
  // alert rules have a series to compare against.
  for (const reason of UPSTREAM_REASONS) upstreamErrors.inc({ reason }, 0);
  configReloads.inc({ result: "applied" }, 0);
  configReloads.inc({ result: "rejected" }, 0);
  internalErrors.inc(0);
  for (const reason of SPAN_DROP_REASONS) spansDropped.inc({ reason }, 0);

  const requestSeries = counterCache(requests, ["client", "route", "model", "status"]);
  const durationSeries = seriesCache(
    ["client", "route"] as const,
    (labels) => requestDuration.labels(labels),
    (labels) => requestDuration.remove(labels),
  );
  const upstreamSeries = seriesCache(
    ["route"] as const,
    (labels) => upstreamDurationHistogram.labels(labels),
    (labels) => upstreamDurationHistogram.remove(labels),
  );
  const deniedSeries = counterCache(deniedCounter, ["client", "reason"]);
  const requestBytesSeries = counterCache(requestBytes, ["client"]);
  const responseBytesSeries = counterCache(responseBytes, ["client"]);
  const costSeries = counterCache(costCounter, ["client", "model"]);
  const keyRefreshSeries = counterCache(keyRefresh, ["key", "source", "result"]);
  const keyRotationSeries = counterCache(keyRotations, ["key"]);
  const keyRequestSeries = counterCache(keyRequests, ["key", "client"]);
  /** Key → client → its `key_requests_total` child, for the pairs the config makes (no lookup string built per request). */
  let keyRequestChildren = new Map<string, Map<string, ReturnType<typeof keyRequests.labels>>>();
  const caches = [
    requestSeries,
    durationSeries,
    upstreamSeries,
    deniedSeries,
    requestBytesSeries,
    responseBytesSeries,
    costSeries,
    keyRefreshSeries,
    keyRotationSeries,
    keyRequestSeries,
  ];

  // Key refresh series start at 0 for every configured key, so `increase()` sees the first failure
  // or rotation (a counter series that appears with its first event has no increase to show), and
  // series of a key's previous source go away when a reload changes the source.
  const initKeySeries = (): void => {
    const settings = bounds.sets.keySettings ?? [];
    const sourceOf = new Map(settings.map((k) => [k.key, k.source] as const));
    keyRefreshSeries.pruneWhere((labels) => {
      const source = sourceOf.get(labels.key);
      return source !== undefined && source !== labels.source;
    });
    for (const { key, source } of settings) {
      for (const result of KEY_REFRESH_RESULTS) keyRefreshSeries.get(`${key}\0${source}\0${result}`, () => ({ key, source, result })).inc(0);
      keyRotationSeries.get(key, () => ({ key })).inc(0);
    }
  };
  initKeySeries();

  // Series for exactly the configured (key, client) pairs, at 0 until used: the dashboard lists a
  // configured pair that is never used, and a client moved to another key leaves no series behind.
  const initKeyRequestSeries = (): void => {
    const pairs = bounds.sets.keyClients ?? [];
    const wanted = new Set(pairs.map((k) => `${k.key}\0${k.client}`));
    keyRequestSeries.pruneWhere((labels) => !wanted.has(`${labels.key}\0${labels.client}`));
    keyRequestChildren = new Map(bounds.sets.keys.map((key) => [key, new Map<string, ReturnType<typeof keyRequests.labels>>()]));
    for (const { key, client } of pairs) {
      const child = keyRequestSeries.get(`${key}\0${client}`, () => ({ key, client }));
      child.inc(0);
      keyRequestChildren.get(key)?.set(client, child);
    }
    for (const key of lastUsed.keys()) if (!bounds.hasKey(key)) lastUsed.delete(key);
  };
  initKeyRequestSeries();

  let configHash: string | undefined;

  return {
    registry,
    contentType: registry.contentType,

    setLabelSets(sets) {
      bounds = compileLabelSets(sets);
      for (const cache of caches) cache.prune(bounds);
      for (const client of spentToday.keys()) if (!bounds.allows("client", client)) spentToday.delete(client);
      initKeySeries();
      initKeyRequestSeries();
      for (const [key, state] of held) {
        if (!bounds.hasKey(key)) {
          keyInfo.remove(state.labels);
          held.delete(key);
        }
      }
    },

    requestFinished(facts) {
      const client = bounds.client(facts.client);
      const route = bounds.route(facts.route);
      const model = bounds.model(facts.model);
      const status = statusLabel(facts.status);
      requestSeries.get(`${client}\0${route}\0${model}\0${status}`, () => ({ client, route, model, status })).inc();
      const seconds = amount(facts.durationSeconds);
      if (seconds !== undefined) durationSeries.get(`${client}\0${route}`, () => ({ client, route })).observe(seconds);
      const bytesIn = amount(facts.bytesIn);
      if (bytesIn !== undefined) requestBytesSeries.get(client, () => ({ client })).inc(bytesIn);
      const bytesOut = amount(facts.bytesOut);
      if (bytesOut !== undefined) responseBytesSeries.get(client, () => ({ client })).inc(bytesOut);
      if (facts.key !== undefined) {
        // Configured keys only; the counter for the pairs the config makes.
        const children = keyRequestChildren.get(facts.key);
        if (children !== undefined) {
          lastUsed.set(facts.key, now());
          children.get(client)?.inc();
        }
      }
    },

    upstreamDuration(template, seconds) {
      const value = amount(seconds);
      if (value === undefined) return;
      const route = bounds.route(template);
      upstreamSeries.get(route, () => ({ route })).observe(value);
    },

    denied(id, reason) {
      const client = bounds.client(id);
      const label = reasonLabel(reason);
      deniedSeries.get(`${client}\0${label}`, () => ({ client, reason: label })).inc();
    },

    upstreamError(reason) {
      upstreamErrors.inc({ reason: UPSTREAM_REASON_SET.has(reason) ? reason : OTHER });
    },

    inflight(id, delta) {
      const count = (inflightCounts.get(id) ?? 0) + (delta === -1 ? -1 : 1);
      if (count === 0) inflightCounts.delete(id);
      else inflightCounts.set(id, count);
    },

    cost(id, name, usd) {
      const value = amount(usd);
      if (value === undefined || value === 0) return;
      const client = bounds.client(id);
      const model = bounds.model(name);
      costSeries.get(`${client}\0${model}`, () => ({ client, model })).inc(value);
      rollDay();
      spentToday.set(client, (spentToday.get(client) ?? 0) + value);
    },

    keyFetched(facts) {
      if (!bounds.hasKey(facts.name)) return;
      const key = facts.name;
      const labels = {
        key,
        source: facts.source,
        fingerprint: fingerprintLabel(facts.fingerprint),
        version: boundedValue(facts.version, 64),
      };
      const before = held.get(key);
      const changed = before === undefined || before.labels.fingerprint !== labels.fingerprint;
      const result: KeyRefreshResult = changed ? "changed" : "unchanged";
      keyRefreshSeries.get(`${key}\0${labels.source}\0${result}`, () => ({ key, source: labels.source, result })).inc();
      if (before !== undefined && changed) keyRotationSeries.get(key, () => ({ key })).inc();
      if (before !== undefined && !sameLabels(before.labels, labels)) keyInfo.remove(before.labels);
      keyInfo.set(labels, 1);
      held.set(key, { labels, fetchedAt: Number.isFinite(facts.fetchedAt) ? facts.fetchedAt : now() });
    },

    keyFetchFailed(key, source) {
      if (!bounds.hasKey(key)) return;
      keyRefreshSeries.get(`${key}\0${source}\0failed`, () => ({ key, source, result: "failed" })).inc();
    },

    configReloaded(result) {
      configReloads.inc({ result });
    },

    configLoaded(hash) {
      const label = boundedValue(hash, 100);
      if (configHash !== undefined && configHash !== label) configInfo.remove({ hash: configHash });
      configHash = label;
      configInfo.set({ hash: label }, 1);
    },

    internalError() {
      internalErrors.inc();
    },

    traceSpansDropped(reason, count) {
      const value = amount(count);
      if (value === undefined || value === 0) return;
      spansDropped.inc({ reason: SPAN_DROP_REASONS.includes(reason) ? reason : OTHER }, value);
    },

    metricsText: () => registry.metrics(),
  };
}

/** Days since the epoch in UTC: the epoch is midnight UTC and Unix time has no leap seconds. */
function utcDay(epochMs: number): number {
  return Math.floor(epochMs / 86_400_000);
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  return a["source"] === b["source"] && a["fingerprint"] === b["fingerprint"] && a["version"] === b["version"];
}
