import t from "tap";
import { register as globalRegistry } from "prom-client";
import { createMetrics, DURATION_BUCKETS, type Metrics } from "../../src/observe/metrics.ts";
import type { LabelSets } from "../../src/observe/labels.ts";
import { REASONS, type Reason } from "../../src/errors.ts";
import { find, parseScrape, valueOf, type Scrape } from "../helpers/prom-text.ts";

const SETS: LabelSets = {
  clients: ["web-app", "batch"],
  routes: ["GET /v1/models", "POST /v1/images/generations", "GET /v1/generations?limit&after"],
  models: ["stability/sdxl"],
  keys: ["default", "production"],
  keyClients: [
    { key: "production", client: "web-app" },
    { key: "default", client: "batch" },
  ],
};

function metricsWith(sets: LabelSets = SETS, now?: () => number): Metrics {
  return createMetrics({ version: "1.2.3", nodeVersion: "v24.0.0", labelSets: sets, ...(now ? { now } : {}) });
}

async function scrape(m: Metrics): Promise<Scrape> {
  return parseScrape(await m.metricsText());
}

/** One of each fact, so that every metric has at least one series. */
function recordOneOfEach(m: Metrics): void {
  m.requestFinished({ client: "web-app", route: "GET /v1/models", status: 200, durationSeconds: 0.02, bytesIn: 0, bytesOut: 512, key: "production" });
  m.traceSpansDropped("export_failed", 2);
  m.upstreamDuration("GET /v1/models", 0.015);
  m.denied("web-app", "route_not_allowed");
  m.upstreamError("upstream_timeout");
  m.inflight("web-app", 1);
  m.cost("web-app", "stability/sdxl", 0.004);
  m.keyFetched({ name: "production", source: "vault", fingerprint: "0123abcd", version: "7", fetchedAt: Date.now() });
  m.keyFetchFailed("production", "vault");
  m.keyFetched({ name: "production", source: "vault", fingerprint: "89abcdef", version: "8", fetchedAt: Date.now() });
  m.configReloaded("applied");
  m.configLoaded("0123456789ab");
}

// SPEC §7, exactly: name (without prefix) → [type, label names].
const SPEC_METRICS: Record<string, [string, string[]]> = {
  requests_total: ["counter", ["client", "route", "model", "status"]],
  request_duration_seconds: ["histogram", ["client", "route"]],
  upstream_duration_seconds: ["histogram", ["route"]],
  denied_total: ["counter", ["client", "reason"]],
  upstream_errors_total: ["counter", ["reason"]],
  inflight_requests: ["gauge", ["client"]],
  request_bytes_total: ["counter", ["client"]],
  response_bytes_total: ["counter", ["client"]],
  estimated_cost_usd_total: ["counter", ["client", "model"]],
  key_refresh_total: ["counter", ["key", "source", "result"]],
  key_age_seconds: ["gauge", ["key"]],
  key_info: ["gauge", ["key", "source", "fingerprint", "version"]],
  key_rotations_total: ["counter", ["key"]],
  config_reloads_total: ["counter", ["result"]],
  config_info: ["gauge", ["hash"]],
  build_info: ["gauge", ["version", "node"]],
  // SPEC §11
  key_requests_total: ["counter", ["key", "client"]],
  key_last_used_timestamp_seconds: ["gauge", ["key"]],
  trace_spans_dropped_total: ["counter", ["reason"]],
};

// Beyond SPEC (docs/observability.md): config numbers that alert rules compare with, and bugs met.
const EXTRA_METRICS: Record<string, [string, string[]]> = {
  internal_errors_total: ["counter", []],
  key_refresh_interval_seconds: ["gauge", ["key"]],
  key_max_stale_seconds: ["gauge", ["key"]],
  budget_daily_usd: ["gauge", ["client"]],
  budget_spent_usd: ["gauge", ["client"]],
};

void t.test("every SPEC metric is exposed with its type and exactly its label names", async (t) => {
  const m = metricsWith();
  recordOneOfEach(m);
  const s = await scrape(m);
  for (const [short, [type, labels]] of Object.entries(SPEC_METRICS)) {
    const name = `mythiq_proxy_${short}`;
    t.equal(s.types.get(name), type, `${name} is a ${type}`);
    const sampleName = type === "histogram" ? `${name}_count` : name;
    const samples = find(s, sampleName);
    t.ok(samples.length > 0, `${name} has samples`);
    for (const sample of samples) t.same(Object.keys(sample.labels).sort(), [...labels].sort(), `${name} labels`);
  }
  const ours = [...s.types.keys()].filter((n) => n.startsWith("mythiq_proxy_"));
  t.same(
    ours.sort(),
    [...Object.keys(SPEC_METRICS), ...Object.keys(EXTRA_METRICS)].map((n) => `mythiq_proxy_${n}`).sort(),
    "no metric beyond SPEC's and the documented config gauges",
  );
  const buckets = find(s, "mythiq_proxy_request_duration_seconds_bucket").map((b) => b.labels["le"]);
  t.same(buckets, [...DURATION_BUCKETS.map(String), "+Inf"], "histogram buckets 0.005 … 300 s");
  t.equal(DURATION_BUCKETS[0], 0.005);
  t.equal(DURATION_BUCKETS.at(-1), 300);
});

void t.test("prom-client's default process metrics are on the same registry, the global one stays empty", async (t) => {
  const m = metricsWith();
  const s = await scrape(m);
  for (const name of ["process_cpu_user_seconds_total", "process_start_time_seconds", "nodejs_eventloop_lag_seconds", "nodejs_heap_size_used_bytes", "nodejs_gc_duration_seconds"]) {
    t.ok(s.types.has(name), name);
  }
  t.notOk(s.types.has("nodejs_active_handles_total"), "gauges named _total are left out (promtool lint)");
  t.ok(s.types.has("nodejs_active_handles"), "their per-type twin stays");
  t.equal(globalRegistry.getMetricsAsArray().length, 0, "nothing on prom-client's global registry");
  const bare = createMetrics({ version: "1", processMetrics: false });
  t.notOk(parseScrape(await bare.metricsText()).types.has("process_cpu_user_seconds_total"), "process metrics can be turned off");
});

void t.test("build_info and config_info", async (t) => {
  const m = metricsWith();
  let s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_build_info", { version: "1.2.3", node: "v24.0.0" }), 1);
  t.equal(find(s, "mythiq_proxy_config_info").length, 0, "no config_info before a config is loaded");
  m.configLoaded("aaaaaaaaaaaa");
  m.configLoaded("aaaaaaaaaaaa");
  m.configLoaded("bbbbbbbbbbbb");
  s = await scrape(m);
  t.same(find(s, "mythiq_proxy_config_info").map((x) => [x.labels["hash"], x.value]), [["bbbbbbbbbbbb", 1]], "only the hash in force");
  m.configLoaded("x".repeat(500));
  s = await scrape(m);
  t.same(find(s, "mythiq_proxy_config_info").map((x) => x.labels["hash"]), ["invalid"], "an oversized hash is not a label");
  const defaulted = createMetrics({ version: "9", processMetrics: false });
  t.equal(valueOf(await scrape(defaulted), "mythiq_proxy_build_info", { node: process.version }), 1, "node defaults to process.version");
});

void t.test("config_reloads_total and upstream_errors_total start at 0 for every known value", async (t) => {
  const m = metricsWith();
  let s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_config_reloads_total", { result: "applied" }), 0);
  t.equal(valueOf(s, "mythiq_proxy_config_reloads_total", { result: "rejected" }), 0);
  t.equal(find(s, "mythiq_proxy_upstream_errors_total").length, 7, "the six of SPEC §5 and upstream_unfilterable");
  m.configReloaded("rejected");
  m.configReloaded("rejected");
  m.configReloaded("applied");
  m.upstreamError("upstream_reset");
  m.upstreamError("bogus" as "upstream_reset");
  m.upstreamError("rate_limited");
  s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_config_reloads_total", { result: "rejected" }), 2);
  t.equal(valueOf(s, "mythiq_proxy_config_reloads_total", { result: "applied" }), 1);
  t.equal(valueOf(s, "mythiq_proxy_upstream_errors_total", { reason: "upstream_reset" }), 1);
  t.equal(valueOf(s, "mythiq_proxy_upstream_errors_total", { reason: "other" }), 2, "a reason outside the upstream ones is other");
});

void t.test("configured names pass; anything else collapses to unknown/other", async (t) => {
  const m = metricsWith();
  const base = { status: 200, durationSeconds: 0.1, bytesIn: 10, bytesOut: 20 };
  m.requestFinished({ ...base, client: "web-app", route: "POST /v1/images/generations", model: "stability/sdxl" });
  m.requestFinished({ ...base, client: "intruder", route: "GET /admin", model: "openai/dall-e-3" });
  m.requestFinished({ ...base });
  m.requestFinished({ ...base, client: "web-app", route: "GET /v1/generations?limit&after" });
  m.requestFinished({ ...base, client: "web-app", route: "GET /v1/generations" });
  m.denied("intruder", "invalid_credentials");
  m.denied(undefined, "missing_credentials");
  m.cost("intruder", "openai/dall-e-3", 0.04);
  m.upstreamDuration("GET /secret/path", 1);
  const s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_requests_total", { client: "web-app", route: "POST /v1/images/generations", model: "stability/sdxl", status: "200" }), 1);
  t.equal(valueOf(s, "mythiq_proxy_requests_total", { client: "unknown", route: "other", model: "other", status: "200" }), 2, "unknown client, route and model; and none at all");
  t.equal(valueOf(s, "mythiq_proxy_requests_total", { client: "web-app", route: "GET /v1/generations", model: "other" }), 2, "a route's ?query list is not part of its label");
  t.equal(valueOf(s, "mythiq_proxy_denied_total", { client: "unknown", reason: "invalid_credentials" }), 1);
  t.equal(valueOf(s, "mythiq_proxy_denied_total", { client: "unknown", reason: "missing_credentials" }), 1);
  t.equal(valueOf(s, "mythiq_proxy_estimated_cost_usd_total", { client: "unknown", model: "other" }), 0.04);
  t.equal(valueOf(s, "mythiq_proxy_upstream_duration_seconds_count", { route: "other" }), 1);
  t.equal(valueOf(s, "mythiq_proxy_request_bytes_total", { client: "unknown" }), 20);
  t.equal(valueOf(s, "mythiq_proxy_response_bytes_total", { client: "web-app" }), 60);
  const text = await m.metricsText();
  for (const leaked of ["intruder", "/admin", "dall-e-3", "/secret/path"]) t.notOk(text.includes(leaked), `${leaked} is not a label`);
});

void t.test("status is the number for 100–599 only", async (t) => {
  const m = metricsWith();
  const statuses = [99, 100, 204, 404, 499, 599, 600, 0, -1, 200.5, Number.NaN, 1e9];
  for (const status of statuses) m.requestFinished({ client: "batch", status, durationSeconds: 0, bytesIn: 0, bytesOut: 0 });
  const s = await scrape(m);
  const got = find(s, "mythiq_proxy_requests_total", { client: "batch" }).map((x) => [x.labels["status"], x.value]);
  t.same(new Map(got as [string, number][]), new Map([["100", 1], ["204", 1], ["404", 1], ["499", 1], ["599", 1], ["other", 7]]));
});

void t.test("denied_total takes every catalogue reason and nothing else", async (t) => {
  const m = metricsWith();
  for (const reason of REASONS) m.denied("web-app", reason);
  m.denied("web-app", "__proto__" as Reason);
  m.denied("web-app", "Bearer sk-secret" as Reason);
  const s = await scrape(m);
  for (const reason of REASONS) t.equal(valueOf(s, "mythiq_proxy_denied_total", { client: "web-app", reason }), 1, reason);
  t.equal(valueOf(s, "mythiq_proxy_denied_total", { client: "web-app", reason: "other" }), 2);
  t.notOk((await m.metricsText()).includes("sk-secret"));
});

void t.test("10 000 random label values leave the number of series flat", async (t) => {
  const m = metricsWith();
  const random = () => Math.random().toString(36).slice(2) + "\n\"\\{}" + "x".repeat(Math.floor(Math.random() * 200));
  const traffic = (n: number) => {
    for (let i = 0; i < n; i++) {
      m.requestFinished({ client: random(), route: random(), model: random(), status: 200 + (i % 400), durationSeconds: Math.random() * 10, bytesIn: i, bytesOut: i });
      m.upstreamDuration(random(), Math.random());
      m.denied(random(), random() as Reason);
      m.upstreamError(random() as Reason);
      m.cost(random(), random(), 0.01);
      m.inflight(random(), 1);
      m.keyFetched({ name: random(), source: "env", fingerprint: random(), version: random(), fetchedAt: 0 });
      m.keyFetchFailed(random(), "file");
    }
  };
  traffic(400); // every status 200–599 seen once
  const before = (await scrape(m)).samples.filter((x) => x.name.startsWith("mythiq_proxy_")).length;
  traffic(10_000);
  const after = (await scrape(m)).samples.filter((x) => x.name.startsWith("mythiq_proxy_")).length;
  t.equal(after, before, `series stay at ${before}`);
  t.ok(before < 600, "and the count is small");
});

void t.test("replacing the label sets on reload removes the series of names that disappeared", async (t) => {
  const m = metricsWith();
  const base = { status: 200, durationSeconds: 0.1, bytesIn: 1, bytesOut: 1 };
  m.requestFinished({ ...base, client: "web-app", route: "GET /v1/models" });
  m.requestFinished({ ...base, client: "batch", route: "POST /v1/images/generations" });
  m.upstreamDuration("GET /v1/models", 0.1);
  m.denied("web-app", "rate_limited");
  m.cost("batch", "stability/sdxl", 0.004);
  m.keyFetched({ name: "production", source: "vault", fingerprint: "0123abcd", version: "1", fetchedAt: Date.now() });
  m.keyFetched({ name: "default", source: "env", fingerprint: "deadbeef", version: "", fetchedAt: Date.now() });
  m.keyFetchFailed("production", "vault");

  m.setLabelSets({ clients: ["batch", "newcomer"], routes: ["POST /v1/images/generations"], models: [], keys: ["default"] });
  const s = await scrape(m);
  const text = await m.metricsText();
  t.notOk(text.includes('"web-app"'), "removed client's series are gone");
  t.notOk(text.includes('"GET /v1/models"'), "removed route's series are gone");
  t.notOk(text.includes('"stability/sdxl"'), "removed model's series are gone");
  t.notOk(text.includes('"production"'), "removed key's series are gone (info, age, refreshes)");
  t.equal(valueOf(s, "mythiq_proxy_requests_total", { client: "batch", route: "POST /v1/images/generations" }), 1, "kept series keep counting");
  t.equal(valueOf(s, "mythiq_proxy_key_info", { key: "default" }), 1);
  t.equal(valueOf(s, "mythiq_proxy_inflight_requests", { client: "newcomer" }), 0, "a new client's gauge starts at 0");

  m.requestFinished({ ...base, client: "web-app", route: "GET /v1/models" });
  m.requestFinished({ ...base, client: "newcomer", route: "POST /v1/images/generations" });
  const after = await scrape(m);
  t.equal(valueOf(after, "mythiq_proxy_requests_total", { client: "unknown", route: "other" }), 1, "the removed names now collapse");
  t.equal(valueOf(after, "mythiq_proxy_requests_total", { client: "newcomer" }), 1, "new names pass");
});

void t.test("key metrics: one key_info series per key, rotations, refresh results, age at scrape time", async (t) => {
  let clock = 1_000_000;
  const m = metricsWith(SETS, () => clock);
  m.keyFetched({ name: "production", source: "vault", fingerprint: "0123abcd", version: "7", fetchedAt: clock });
  m.keyFetched({ name: "production", source: "vault", fingerprint: "0123abcd", version: "7", fetchedAt: clock + 1000 });
  m.keyFetchFailed("production", "vault");
  clock += 61_000;
  let s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_key_age_seconds", { key: "production" }), 60, "age from the last successful fetch, at scrape time");
  t.equal(find(s, "mythiq_proxy_key_age_seconds").length, 1, "no age for a key never held");
  t.equal(valueOf(s, "mythiq_proxy_key_refresh_total", { key: "production", source: "vault", result: "changed" }), 1, "the first value counts as changed");
  t.equal(valueOf(s, "mythiq_proxy_key_refresh_total", { result: "unchanged" }), 1);
  t.equal(valueOf(s, "mythiq_proxy_key_refresh_total", { result: "failed" }), 1);
  t.equal(find(s, "mythiq_proxy_key_rotations_total").length, 0, "no rotation yet");

  m.keyFetched({ name: "production", source: "vault", fingerprint: "0123abcd", version: "8", fetchedAt: clock });
  m.keyFetched({ name: "production", source: "vault", fingerprint: "fedc4321", version: "9", fetchedAt: clock });
  clock += 5_500;
  s = await scrape(m);
  t.same(find(s, "mythiq_proxy_key_info", { key: "production" }).map((x) => [x.labels, x.value]), [
    [{ key: "production", source: "vault", fingerprint: "fedc4321", version: "9" }, 1],
  ]);
  t.equal(valueOf(s, "mythiq_proxy_key_rotations_total", { key: "production" }), 1, "a new value is a rotation; a new version of the same value is not");
  t.equal(valueOf(s, "mythiq_proxy_key_refresh_total", { result: "changed" }), 2);
  t.equal(valueOf(s, "mythiq_proxy_key_refresh_total", { result: "unchanged" }), 2);
  t.equal(valueOf(s, "mythiq_proxy_key_age_seconds", { key: "production" }), 5.5);

  m.keyFetched({ name: "production", source: "aws", fingerprint: "fedc4321", version: "9", fetchedAt: clock });
  s = await scrape(m);
  t.same(find(s, "mythiq_proxy_key_info", { key: "production" }).map((x) => x.labels["source"]), ["aws"], "a changed source replaces the series");
  m.keyFetched({ name: "production", source: "aws", fingerprint: "fedc4321", version: "9", fetchedAt: clock + 10_000 });
  t.equal(valueOf(await scrape(m), "mythiq_proxy_key_age_seconds", { key: "production" }), 0, "a fetch time ahead of the clock is age 0, never negative");
});

void t.test("a key value passed by mistake never becomes a label", async (t) => {
  const m = metricsWith();
  const key = "sk-live-0123456789abcdef0123456789abcdef";
  m.keyFetched({ name: "default", source: "env", fingerprint: key, version: key + "\n", fetchedAt: Date.now() });
  m.keyFetched({ name: key, source: "env", fingerprint: "0123abcd", version: "1", fetchedAt: Date.now() });
  m.keyFetchFailed(key, "env");
  const text = await m.metricsText();
  t.notOk(text.includes("sk-live"), "the value appears nowhere");
  t.equal(valueOf(parseScrape(text), "mythiq_proxy_key_info", { key: "default", fingerprint: "invalid", version: "invalid" }), 1);
});

void t.test("inflight_requests stays balanced, also across a reload", async (t) => {
  const m = metricsWith();
  m.inflight("web-app", 1);
  m.inflight("web-app", 1);
  m.inflight("batch", 1);
  m.inflight("batch", -1);
  let s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_inflight_requests", { client: "web-app" }), 2);
  t.equal(valueOf(s, "mythiq_proxy_inflight_requests", { client: "batch" }), 0);

  m.setLabelSets({ ...SETS, clients: ["batch"] });
  s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_inflight_requests", { client: "unknown" }), 2, "a removed client's requests still in flight show as unknown");
  m.inflight("web-app", -1);
  m.inflight("web-app", -1);
  s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_inflight_requests", { client: "unknown" }), undefined, "and leave no series once they end");
  t.equal(valueOf(s, "mythiq_proxy_inflight_requests", { client: "batch" }), 0);
  t.notOk(find(s, "mythiq_proxy_inflight_requests").some((x) => x.value < 0), "never negative");
});

void t.test("bad numbers are ignored, never thrown", async (t) => {
  const m = metricsWith(SETS, () => 5_000);
  t.doesNotThrow(() => {
    m.requestFinished({ client: "web-app", status: 200, durationSeconds: Number.NaN, bytesIn: -5, bytesOut: Number.POSITIVE_INFINITY });
    m.upstreamDuration("GET /v1/models", -1);
    m.cost("web-app", "stability/sdxl", -3);
    m.cost("web-app", "stability/sdxl", Number.NaN);
    m.cost("web-app", "stability/sdxl", 0);
    m.keyFetched({ name: "default", source: "env", fingerprint: "0123abcd", version: "", fetchedAt: Number.NaN });
  });
  const s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_requests_total", { client: "web-app" }), 1, "the request still counts");
  t.equal(find(s, "mythiq_proxy_request_duration_seconds_count").length, 0);
  t.equal(find(s, "mythiq_proxy_upstream_duration_seconds_count").length, 0);
  t.equal(find(s, "mythiq_proxy_estimated_cost_usd_total").length, 0);
  t.equal(find(s, "mythiq_proxy_request_bytes_total").length, 0);
  t.equal(valueOf(s, "mythiq_proxy_key_age_seconds", { key: "default" }), 0, "a NaN fetch time means now");
  t.ok(s.samples.filter((x) => x.name.startsWith("mythiq_proxy_")).every((x) => Number.isFinite(x.value)), "no NaN or Inf in our series");
});

void t.test("histograms put observations in the right buckets", async (t) => {
  const m = metricsWith();
  for (const seconds of [0.004, 0.03, 2, 45, 200, 1000]) {
    m.requestFinished({ client: "batch", route: "POST /v1/images/generations", status: 200, durationSeconds: seconds, bytesIn: 0, bytesOut: 0 });
  }
  const s = await scrape(m);
  const bucket = (le: string) => valueOf(s, "mythiq_proxy_request_duration_seconds_bucket", { client: "batch", le });
  t.equal(bucket("0.005"), 1);
  t.equal(bucket("0.1"), 2);
  t.equal(bucket("2.5"), 3);
  t.equal(bucket("60"), 4);
  t.equal(bucket("300"), 5);
  t.equal(bucket("+Inf"), 6);
  t.equal(valueOf(s, "mythiq_proxy_request_duration_seconds_count", { client: "batch" }), 6);
});

// The cost per request is measured by `npm run bench:components`, not here (no timed tests); the
// figure is only printed as a comment.
void t.test("100 000 requests recorded in a row: every one counted", async (t) => {
  const m = metricsWith();
  const facts = [
    { client: "web-app", route: "POST /v1/images/generations", model: "stability/sdxl", status: 200, durationSeconds: 3.2, bytesIn: 120, bytesOut: 40_000, key: "production" },
    { client: "batch", route: "GET /v1/models", status: 200, durationSeconds: 0.02, bytesIn: 0, bytesOut: 900, key: "default" },
    { client: "nobody", route: "GET /x", status: 401, durationSeconds: 0.001, bytesIn: 0, bytesOut: 90 },
  ];
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      const f = facts[i % 3]!;
      m.requestFinished(f);
      m.inflight(f.client, 1);
      m.inflight(f.client, -1);
    }
  };
  run(10_000); // warm up
  const n = 100_000;
  const start = process.hrtime.bigint();
  run(n);
  const perRequestUs = Number(process.hrtime.bigint() - start) / n / 1000;
  t.comment(`requestFinished (key usage included) + inflight ±1: ${perRequestUs.toFixed(2)} µs per request`);
  const unknownCalls = Math.floor((10_000 + 1) / 3) + Math.floor((n + 1) / 3); // i % 3 === 2 in each run
  t.equal(valueOf(await scrape(m), "mythiq_proxy_requests_total", { client: "unknown" }), unknownCalls, "every call counted");
});

void t.test("key usage: requests per configured key and client, and when each key was last used", async (t) => {
  let clock = 1_700_000_000_000;
  const m = metricsWith(SETS, () => clock);
  let s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_key_requests_total", { key: "production", client: "web-app" }), 0, "configured pairs start at 0");
  t.equal(valueOf(s, "mythiq_proxy_key_requests_total", { key: "default", client: "batch" }), 0);
  t.equal(find(s, "mythiq_proxy_key_requests_total").length, 2, "and only they exist");
  t.equal(find(s, "mythiq_proxy_key_last_used_timestamp_seconds").length, 0, "no key used yet: no timestamp");

  const base = { status: 200, durationSeconds: 0.1, bytesIn: 0, bytesOut: 0 };
  m.requestFinished({ ...base, client: "web-app", key: "production" });
  clock += 2_500;
  m.requestFinished({ ...base, client: "web-app", key: "production" });
  m.requestFinished({ ...base, client: "web-app", status: 403 }); // refused: no key sent
  m.requestFinished({ ...base, client: "batch", key: "production" }); // not a configured pair (a reload moved it)
  m.requestFinished({ ...base, client: "intruder", key: "production" });
  m.requestFinished({ ...base, client: "batch", key: "sk-live-not-a-key-name" });
  s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_key_requests_total", { key: "production", client: "web-app" }), 2);
  t.equal(find(s, "mythiq_proxy_key_requests_total").length, 2, "no series beyond the configured pairs");
  t.equal(valueOf(s, "mythiq_proxy_key_last_used_timestamp_seconds", { key: "production" }), (clock) / 1000, "the last use, in Unix seconds");
  t.equal(find(s, "mythiq_proxy_key_last_used_timestamp_seconds").length, 1, "only configured keys that were used");
  t.notOk((await m.metricsText()).includes("sk-live"), "a key value never becomes a label");

  // A reload moves batch to production and drops the default key.
  m.setLabelSets({ ...SETS, keys: ["production"], keyClients: [{ key: "production", client: "web-app" }, { key: "production", client: "batch" }] });
  s = await scrape(m);
  t.same(find(s, "mythiq_proxy_key_requests_total").map((x) => [x.labels["key"], x.labels["client"], x.value]).sort(), [
    ["production", "batch", 0],
    ["production", "web-app", 2],
  ]);
  t.equal(valueOf(s, "mythiq_proxy_key_last_used_timestamp_seconds", { key: "production" }), clock / 1000, "a kept key keeps its last use");
});

void t.test("trace_spans_dropped_total: both reasons at 0, counts added, bad numbers ignored", async (t) => {
  const m = metricsWith();
  let s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_trace_spans_dropped_total", { reason: "queue_full" }), 0);
  t.equal(valueOf(s, "mythiq_proxy_trace_spans_dropped_total", { reason: "export_failed" }), 0);
  m.traceSpansDropped("queue_full", 1);
  m.traceSpansDropped("export_failed", 512);
  m.traceSpansDropped("export_failed", Number.NaN);
  m.traceSpansDropped("export_failed", -3);
  m.traceSpansDropped("surprise" as "queue_full", 1);
  s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_trace_spans_dropped_total", { reason: "queue_full" }), 1);
  t.equal(valueOf(s, "mythiq_proxy_trace_spans_dropped_total", { reason: "export_failed" }), 512);
  t.equal(valueOf(s, "mythiq_proxy_trace_spans_dropped_total", { reason: "other" }), 1);
});

const CONFIGURED: LabelSets = {
  ...SETS,
  keySettings: [
    { key: "default", source: "env", intervalSeconds: 300, maxStaleSeconds: 0 },
    { key: "production", source: "vault", intervalSeconds: 60, maxStaleSeconds: 3600 },
  ],
  budgets: [{ client: "web-app", dailyUsd: 25 }],
};

void t.test("the extra gauges carry the config numbers, with exactly their label names", async (t) => {
  const m = metricsWith(CONFIGURED);
  const s = await scrape(m);
  for (const [short, [type, labels]] of Object.entries(EXTRA_METRICS)) {
    const name = `mythiq_proxy_${short}`;
    t.equal(s.types.get(name), type, `${name} is a ${type}`);
    t.ok(find(s, name).length > 0, `${name} has samples`);
    for (const sample of find(s, name)) t.same(Object.keys(sample.labels), labels, `${name} labels`);
  }
  t.equal(valueOf(s, "mythiq_proxy_key_refresh_interval_seconds", { key: "default" }), 300);
  t.equal(valueOf(s, "mythiq_proxy_key_refresh_interval_seconds", { key: "production" }), 60);
  t.equal(valueOf(s, "mythiq_proxy_key_max_stale_seconds", { key: "default" }), 0, "0 = no limit");
  t.equal(valueOf(s, "mythiq_proxy_key_max_stale_seconds", { key: "production" }), 3600);
  t.same(find(s, "mythiq_proxy_budget_daily_usd").map((x) => [x.labels["client"], x.value]), [["web-app", 25]], "only clients with a budget");
  t.same(find(s, "mythiq_proxy_budget_spent_usd").map((x) => [x.labels["client"], x.value]), [["web-app", 0]], "spend starts at 0");

  m.setLabelSets({ ...CONFIGURED, keySettings: [{ key: "default", source: "env", intervalSeconds: 30, maxStaleSeconds: 120 }], budgets: [] });
  const after = await scrape(m);
  t.same(find(after, "mythiq_proxy_key_max_stale_seconds").map((x) => [x.labels["key"], x.value]), [["default", 120]], "a reload replaces them");
  t.equal(find(after, "mythiq_proxy_budget_daily_usd").length, 0, "a removed budget leaves no series");
  t.equal(find(after, "mythiq_proxy_budget_spent_usd").length, 0);
});

void t.test("budget_spent_usd sums today's cost per budgeted client and resets at 00:00 UTC", async (t) => {
  let clock = Date.UTC(2025, 0, 10, 23, 59, 0);
  const m = metricsWith(CONFIGURED, () => clock);
  m.cost("web-app", "stability/sdxl", 0.25);
  m.cost("web-app", "mystery", 0.5);
  m.cost("batch", "stability/sdxl", 7);
  let s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_budget_spent_usd", { client: "web-app" }), 0.75, "every model counts");
  t.equal(valueOf(s, "mythiq_proxy_budget_spent_usd", { client: "batch" }), undefined, "no series without a budget");
  t.equal(valueOf(s, "mythiq_proxy_estimated_cost_usd_total", { client: "batch" }), 7, "the counter still counts it");

  clock = Date.UTC(2025, 0, 11, 0, 0, 0);
  s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_budget_spent_usd", { client: "web-app" }), 0, "a new UTC day starts at 0 at scrape time");
  m.cost("web-app", "stability/sdxl", 1);
  clock = Date.UTC(2025, 0, 11, 23, 59, 59);
  m.cost("web-app", "stability/sdxl", 2);
  s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_budget_spent_usd", { client: "web-app" }), 3);
  clock = Date.UTC(2025, 0, 12, 0, 0, 1);
  m.cost("web-app", "stability/sdxl", 0.5);
  s = await scrape(m);
  t.equal(valueOf(s, "mythiq_proxy_budget_spent_usd", { client: "web-app" }), 0.5, "and also when the first event of the day is a cost");
  t.equal(valueOf(s, "mythiq_proxy_estimated_cost_usd_total", { client: "web-app", model: "stability/sdxl" }), 3.75, "the counter never resets");
});

void t.test("key refresh and rotation series start at 0 for configured keys, and follow a changed source", async (t) => {
  const m = metricsWith(CONFIGURED);
  let s = await scrape(m);
  for (const [key, source] of [["default", "env"], ["production", "vault"]] as const) {
    for (const result of ["changed", "unchanged", "failed"]) {
      t.equal(valueOf(s, "mythiq_proxy_key_refresh_total", { key, source, result }), 0, `${key} ${result} at 0`);
    }
    t.equal(valueOf(s, "mythiq_proxy_key_rotations_total", { key }), 0);
  }
  m.keyFetchFailed("production", "vault");
  m.setLabelSets({ ...CONFIGURED, keySettings: [{ key: "production", source: "aws", intervalSeconds: 60, maxStaleSeconds: 0 }, CONFIGURED.keySettings![0]!] });
  s = await scrape(m);
  t.same(
    find(s, "mythiq_proxy_key_refresh_total", { key: "production" }).map((x) => [x.labels["source"], x.labels["result"], x.value]),
    [["aws", "changed", 0], ["aws", "unchanged", 0], ["aws", "failed", 0]],
    "the old source's series are gone, the new one's start at 0",
  );
  t.equal(find(s, "mythiq_proxy_key_refresh_total", { key: "default" }).length, 3, "other keys untouched");
});
