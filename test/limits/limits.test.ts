// buildLimits: the rules it returns for a config, stores adopted across reloads when the store
// settings are unchanged (a reload neither reconnects nor hands out a fresh budget), replaced stores
// closed, the store metrics registered once per registry, the redis URL read from its reference.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { parseConfig } from "../../src/config/load.ts";
import type { ProxyConfig } from "../../src/config/types.ts";
import { buildLimits, type Limits } from "../../src/limits/limits.ts";
import {
  LOCAL_DECISIONS_METRIC,
  STORE_ERRORS_METRIC,
  STORE_FAILOVERS_METRIC,
  STORE_UP_METRIC,
  WRITTEN_BACK_METRIC,
} from "../../src/observe/limits-metrics.ts";
import { createLogger } from "../../src/observe/log.ts";
import { createMetrics, type Metrics } from "../../src/observe/metrics.ts";
import { makeCaller } from "../helpers/context.ts";
import { parseScrape, valueOf } from "../helpers/prom-text.ts";
import { startRedisServer, type RedisServer } from "../helpers/redis-server.ts";

let redis: RedisServer;
const opened: Limits[] = [];
t.before(async () => {
  redis = await startRedisServer();
});
t.teardown(async () => {
  await Promise.all(opened.map((l) => l.close()));
  await redis.close();
});

function config(limits: string, client = "budget: { daily_usd: 0.02 }\n    rate_limit: { requests: 2, per: 1h }\n    concurrency: 1"): ProxyConfig {
  const text = `
keys: { default: { source: env, env: K } }
clients:
  - id: web
    auth: { tokens: ["sha256:${"a".repeat(64)}"] }
    routes: [POST /v1/images/generations]
    ${client}
pricing: { default: 0.01 }
${limits}
`;
  const result = parseConfig(text, "test.yaml");
  if (!result.ok) throw new Error(result.problems.map((p) => p.message).join("; "));
  return result.config;
}

function deps(metrics: Metrics, lines: string[], extra: Partial<Parameters<typeof buildLimits>[1]> = {}) {
  return {
    logger: createLogger({ write: (l) => lines.push(l), level: "debug" as const }),
    metrics,
    env: { REDIS_URL: redis.url },
    redis: { probeMs: 50, maxReconnectDelayMs: 100 },
    ...extra,
  };
}

function build(cfg: ProxyConfig, d: Parameters<typeof buildLimits>[1]): Limits {
  const limits = buildLimits(cfg, d);
  opened.push(limits);
  return limits;
}

const post = (client: ProxyConfig["clients"][number]) =>
  makeCaller({ client, method: "POST", path: "/v1/images/generations", headers: { "content-length": "2" } });

t.test("rules: rate limit, concurrency and the budget, each only when some client sets it", async (t) => {
  const cfg = config("");
  const limits = build(cfg, deps(createMetrics({ version: "t", processMetrics: false }), []));
  t.same([limits.rate?.name, limits.concurrency?.name, limits.budget?.name], ["rate-limit", "concurrency", "budget"]);
  const bare = build(config("", "max_body: 1KiB"), deps(createMetrics({ version: "t", processMetrics: false }), []));
  t.same([bare.rate, bare.concurrency], [undefined, undefined], "no limits configured: no rules");
  t.equal(bare.budget?.name, "budget", "still priced for estimated_cost_usd_total");
});

t.test("memory: a reload with the same store settings keeps what was counted", async (t) => {
  const metrics = createMetrics({ version: "t", processMetrics: false });
  const first = build(config(""), deps(metrics, []));
  const client = config("").clients[0]!;
  for (let i = 0; i < 2; i++) t.same(await first.budget!.check(post(client)), { ok: true });
  t.match(await first.budget!.check(post(client)), { reason: "budget_exhausted" });

  const reloaded = build(config("limits: { on_store_error: deny }"), deps(metrics, [], { previous: first }));
  t.equal(reloaded.stores, first.stores, "stores adopted");
  t.match(await reloaded.budget!.check(post(client)), { reason: "budget_exhausted" }, "the day's spend survived the reload");
  t.match(await reloaded.rate!.check(post(client)), { ok: true });
  const scrape = parseScrape(await metrics.metricsText());
  t.equal(valueOf(scrape, STORE_UP_METRIC), 1, "memory store: up");
  t.equal(valueOf(scrape, STORE_ERRORS_METRIC), 0);
});

t.test("redis: reloads adopt the connection; other redis settings replace it and the old one closes", async (t) => {
  const metrics = createMetrics({ version: "t", processMetrics: false });
  const lines: string[] = [];
  const redisLimits = 'limits: { store: redis, redis: { url: {env: REDIS_URL}, prefix: "lt1:" } }';
  const first = build(config(redisLimits), deps(metrics, lines));
  await first.stores.shared.started;
  t.equal(first.stores.shared.kind, "redis");
  t.equal(first.stores.shared.health(), "up");
  t.match(lines.join(""), /"msg":"limits store connected"/);
  t.notOk(lines.join("").includes(redis.url), "the URL is never logged");
  t.equal(valueOf(parseScrape(await metrics.metricsText()), STORE_UP_METRIC), 1);

  const client = config(redisLimits).clients[0]!;
  t.same(await first.rate!.check(post(client)), { ok: true });
  t.match(await redis.command("KEYS", "lt1:*"), /lt1:rate:web/, "counted in Redis under the prefix");

  const same = build(config(`${redisLimits}\n# another config, the same store settings`), deps(metrics, lines, { previous: first }));
  t.equal(same.stores, first.stores, "same settings: same connection");

  const moved = build(config(redisLimits.replace("lt1:", "lt2:")), deps(metrics, lines, { previous: same }));
  t.not(moved.stores, first.stores, "new prefix: new store");
  t.equal(moved.retiring.length, 1, "the old store is retiring");
  await moved.stores.shared.started;
  await moved.close();
  t.equal(first.stores.shared.health(), "up", "closing reports no transition");
  await t.rejects(first.stores.shared.take("x", { capacity: 1, refill: 1, periodMs: 1000 }), "the retired store was closed with the current one");
});

t.test("redis down: the metric and the log say so, with what on_store_error does; back: both say so", async (t) => {
  const metrics = createMetrics({ version: "t", processMetrics: false });
  const lines: string[] = [];
  const limits = build(config('limits: { store: redis, redis: { url: {env: REDIS_URL}, prefix: "lt3:" }, on_store_error: local }'), deps(metrics, lines));
  await limits.stores.shared.started;
  await redis.stop();
  try {
    const deadline = Date.now() + 5_000;
    while (limits.stores.shared.health() !== "down" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const client = config("").clients[0]!;
    t.same(await limits.rate!.check(post(client)), { ok: true }, "answered locally");
    t.equal(valueOf(parseScrape(await metrics.metricsText()), STORE_UP_METRIC), 0);
    const warn = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l["level"] === "warn");
    t.match(warn, { msg: /limits store unavailable: enforcing per-replica limits/, store: "redis", on_store_error: "local", error: String });
  } finally {
    await redis.start();
  }
  const deadline = Date.now() + 5_000;
  while (limits.stores.shared.health() !== "up" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.equal(valueOf(parseScrape(await metrics.metricsText()), STORE_UP_METRIC), 1);
  t.match(lines.at(-1), /limits store answers again/);
});

t.test("an outage under on_store_error: local: local decisions counted, spend written back counted and logged, a restarted Redis counted as a failover", async (t) => {
  const metrics = createMetrics({ version: "t", processMetrics: false });
  const lines: string[] = [];
  const cfg = config('limits: { store: redis, redis: { url: {env: REDIS_URL}, prefix: "lt6:" }, on_store_error: local }');
  // A generous timeout: on a loaded machine the first calls must not fall back for being slow.
  const limits = build(cfg, deps(metrics, lines, { redis: { probeMs: 50, maxReconnectDelayMs: 100, timeoutMs: 3_000 } }));
  await limits.stores.shared.started;
  const client = cfg.clients[0]!;
  const scrape = async () => parseScrape(await metrics.metricsText());
  t.equal(valueOf(await scrape(), STORE_FAILOVERS_METRIC), 0, "no failover yet");
  const ctx = post(client);
  t.same(await limits.budget!.check(ctx), { ok: true }, "0.01 of 0.02 reserved in Redis");
  for (const cleanup of ctx.cleanups) cleanup({ status: 200, forwarded: true, upstreamStatus: 200 });
  await redis.stop();
  try {
    const deadline = Date.now() + 5_000;
    while (limits.stores.shared.health() !== "down" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    t.equal(limits.stores.shared.health(), "down");
    t.equal(valueOf(await scrape(), LOCAL_DECISIONS_METRIC, { limit: "budget", result: "allowed" }), 0, "nothing decided locally yet");
    const local = post(client);
    t.same(await limits.budget!.check(local), { ok: true }, "the last 0.01, reserved locally");
    for (const cleanup of local.cleanups) cleanup({ status: 200, forwarded: true, upstreamStatus: 200 });
    t.match(await limits.budget!.check(post(client)), { reason: "budget_exhausted" }, "0.02 of 0.02: refused locally too");
    t.same(await limits.rate!.check(post(client)), { ok: true }, "rate limit, locally");
    const s = await scrape();
    t.equal(valueOf(s, LOCAL_DECISIONS_METRIC, { limit: "budget", result: "allowed" }), 1);
    t.equal(valueOf(s, LOCAL_DECISIONS_METRIC, { limit: "budget", result: "refused" }), 1);
    t.equal(valueOf(s, LOCAL_DECISIONS_METRIC, { limit: "rate_limit", result: "allowed" }), 1);
    t.equal(valueOf(s, LOCAL_DECISIONS_METRIC, { limit: "concurrency", result: "allowed" }), 0);
  } finally {
    await redis.start(); // empty: the 0.01 reserved in Redis before is gone too
  }
  const deadline = Date.now() + 5_000;
  while (limits.stores.shared.health() !== "up" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const s = await scrape();
  t.equal(valueOf(s, WRITTEN_BACK_METRIC, { client: "web" }), 0.02, "both reservations written back");
  t.equal(valueOf(s, STORE_FAILOVERS_METRIC), 1, "a restarted Redis is another server");
  const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(
    logged.find((l) => String(l["msg"]).includes("written back")),
    { level: "info", msg: "limits store: budget spend it did not hold was written back", client: "web", usd: 0.02 },
  );
  t.match(logged.find((l) => String(l["msg"]).includes("failed over")), { level: "info", store: "redis", mode: "standalone" });
  t.match(await limits.budget!.check(post(client)), { reason: "budget_exhausted" }, "Redis holds the day's spend again");
});

t.test("redis URL from a file reference", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "limits-url-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "url");
  writeFileSync(file, `${redis.url}\n`);
  const limits = build(
    config(`limits: { store: redis, redis: { url: {file: "${file}"}, prefix: "lt4:" } }`),
    deps(createMetrics({ version: "t", processMetrics: false }), []),
  );
  await limits.stores.shared.started;
  t.equal(limits.stores.shared.health(), "up");
});

t.test("memoryOnly: a redis config counts in memory and opens no connection (test-policy)", async (t) => {
  const before = await redis.command("CLIENT", "LIST");
  const limits = build(
    config('limits: { store: redis, redis: { url: {env: REDIS_URL}, prefix: "lt5:" }, on_store_error: deny }'),
    deps(createMetrics({ version: "t", processMetrics: false }), [], { memoryOnly: true }),
  );
  t.equal(limits.stores.shared.kind, "memory");
  const client = config("").clients[0]!;
  t.same(await limits.rate!.check(post(client)), { ok: true });
  t.equal((await redis.command("CLIENT", "LIST")).split("\n").length, before.split("\n").length, "no new Redis client");
});
