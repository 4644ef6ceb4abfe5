// Two proxy processes (real `node src/main.ts` children) sharing one real redis-server enforce one
// combined limit: a rate limit, a concurrency cap and a daily budget. Then Redis goes away mid-test:
// with `on_store_error: local` each replica enforces the limit on its own (and says so in
// mythiq_proxy_limits_store_up and the log); after a reload to `deny` (which keeps the Redis
// connection) limited requests get 503 overloaded; when Redis comes back both replicas share the
// limit again without help. MythIQ (a fake) receives nothing for any refusal.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t, { type Test } from "tap";
import { hashToken } from "../../src/cli/hash-token.ts";
import { startFakeUpstream, type FakeUpstream, type Reply } from "../helpers/fake-upstream.ts";
import { send, type ClientResponse } from "../helpers/forward-harness.ts";
import { TEST_KEY } from "../helpers/proxy-harness.ts";
import { startReplica, until, type Replica } from "../helpers/proxy-replica.ts";
import { startRedisServer, type RedisServer } from "../helpers/redis-server.ts";

const TOKENS = {
  rated: "tok-rated-0123456789abcdef",
  spender: "tok-spender-0123456789abcdef",
  streams: "tok-streams-0123456789abcdef",
  outage: "tok-outage-0123456789abcdef",
  open: "tok-open-0123456789abcdef",
} as const;

function yaml(upstreamUrl: string, ports: { listen: number; admin: number }, onStoreError: "local" | "deny"): string {
  return `
listen: { host: 127.0.0.1, port: ${ports.listen} }
admin: { host: 127.0.0.1, port: ${ports.admin} }
upstream: { url: ${upstreamUrl}, allow_insecure_upstream: true, connect_timeout: 2s, response_timeout: 10s, idle_timeout: 10s }
keys:
  default: { source: env, env: MYTHIQ_API_KEY }
clients:
  - id: rated
    auth: { tokens: ["${hashToken(TOKENS.rated)}"] }
    routes: [GET /v1/models]
    rate_limit: { requests: 10, per: 1h }
  - id: spender
    auth: { tokens: ["${hashToken(TOKENS.spender)}"] }
    routes: [POST /v1/images/generations]
    budget: { daily_usd: 0.10 }
  - id: streams
    auth: { tokens: ["${hashToken(TOKENS.streams)}"] }
    routes: [GET /v1/models]
    concurrency: 3
  - id: outage
    auth: { tokens: ["${hashToken(TOKENS.outage)}"] }
    routes: [GET /v1/models]
    rate_limit: { requests: 5, per: 1h }
  - id: open
    auth: { tokens: ["${hashToken(TOKENS.open)}"] }
    routes: [GET /v1/models]
pricing: { default: 0.01 }
limits:
  store: redis
  redis: { url: {env: REDIS_URL}, prefix: "e2e:" }
  on_store_error: ${onStoreError}
`;
}

function startReplicaFor(name: string, dir: string, upstreamUrl: string, redisUrl: string): Promise<Replica> {
  return startReplica({ name, dir, yaml: (ports) => yaml(upstreamUrl, ports, "local"), env: { REDIS_URL: redisUrl } });
}

let redis: RedisServer;
let upstream: FakeUpstream;
let replicas: Replica[] = [];
const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-limits-redis-"));
const defaultFallback: Reply = { type: "json", status: 200, body: { object: "list", data: [] } };

t.before(async () => {
  redis = await startRedisServer();
  upstream = await startFakeUpstream();
  upstream.fallback = defaultFallback;
  replicas = await Promise.all([startReplicaFor("a", dir, upstream.url, redis.url), startReplicaFor("b", dir, upstream.url, redis.url)]);
  for (const r of replicas) await until(`${r.name} to reach redis`, async () => (await r.metric("mythiq_proxy_limits_store_up")) === 1);
});
t.teardown(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await upstream.close();
  await redis.close();
  rmSync(dir, { recursive: true, force: true });
});

const get = (replica: Replica, token: string, extra: Parameters<typeof send>[1] = {}) =>
  send(replica.port, { path: "/v1/models", headers: { authorization: `Bearer ${token}` }, ...extra });

const generate = (replica: Replica, token: string) => {
  const body = JSON.stringify({ model: "stability/sdxl", prompt: "a lighthouse" });
  return send(replica.port, {
    method: "POST",
    path: "/v1/images/generations",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    body,
  });
};

/** `n` requests at once, alternating between the two replicas. */
function spread(n: number, request: (replica: Replica) => Promise<ClientResponse>): Promise<ClientResponse[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => request(replicas[i % 2]!)));
}

function refusal(t: Test, res: ClientResponse, status: number, reason: string): number {
  t.equal(res.status, status, `${reason}: ${status}`);
  t.match(JSON.parse(res.body.toString()), { success: false, reason });
  t.match(res.headers["retry-after"], /^[1-9]\d*$/, "with Retry-After");
  t.notOk(res.raw.includes(TEST_KEY), "no key byte came back");
  return Number(res.headers["retry-after"]);
}

t.test("two replicas, one rate limit: 10 per hour in total, not 10 each", async (t) => {
  const before = upstream.requests.length;
  const results = await spread(30, (r) => get(r, TOKENS.rated));
  const accepted = results.filter((r) => r.status === 200).length;
  t.comment(`rate limit 10/h, 30 requests over two replicas: ${accepted} accepted`);
  t.ok(Math.abs(accepted - 10) <= 1, `accepted ${accepted} is within 1 of the limit 10`);
  t.equal(upstream.requests.length - before, accepted, "MythIQ received exactly the accepted ones");
  for (const res of results.filter((r) => r.status !== 200)) refusal(t, res, 429, "rate_limited");
  const perReplica = await Promise.all(replicas.map((r) => r.metric("mythiq_proxy_denied_total", { client: "rated", reason: "rate_limited" })));
  t.equal((perReplica[0] ?? 0) + (perReplica[1] ?? 0), 30 - accepted);
  t.ok((perReplica[0] ?? 0) > 0 && (perReplica[1] ?? 0) > 0, `both replicas refused (${perReplica.join(" + ")})`);
});

t.test("two replicas, one daily budget: concurrent requests never spend past daily_usd", async (t) => {
  const before = upstream.requests.length;
  const results = await spread(40, (r) => generate(r, TOKENS.spender));
  const accepted = results.filter((r) => r.status === 200).length;
  t.comment(`budget 0.10/day at 0.01 per request, 40 concurrent requests over two replicas: ${accepted} accepted`);
  t.equal(accepted, 10, "exactly 0.10 spent: no overspend, not even by one request");
  t.equal(upstream.requests.length - before, accepted);
  for (const res of results.filter((r) => r.status !== 200)) refusal(t, res, 429, "budget_exhausted");
  const spent = await Promise.all(replicas.map((r) => r.metric("mythiq_proxy_estimated_cost_usd_total", { client: "spender" })));
  t.equal(Math.round(((spent[0] ?? 0) + (spent[1] ?? 0)) * 1e6) / 1e6, 0.1, "estimated_cost_usd_total over both replicas");
});

t.test("two replicas, one concurrency cap: 3 in flight in total", async (t) => {
  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  upstream.fallback = { type: "sse", events: [{ data: "first" }, { data: "last", until: gate }] };
  t.teardown(() => {
    open();
    upstream.fallback = defaultFallback;
  });
  const before = upstream.requests.length;
  const streams = Array.from({ length: 8 }, (_, i) => get(replicas[i % 2]!, TOKENS.streams));
  await until("refusals", async () => {
    const refused = await Promise.all(replicas.map((r) => r.metric("mythiq_proxy_denied_total", { client: "streams", reason: "concurrency_limited" })));
    return (refused[0] ?? 0) + (refused[1] ?? 0) === 5;
  });
  t.equal(upstream.requests.length - before, 3, "three streams reached MythIQ");
  open();
  const results = await Promise.all(streams);
  t.equal(results.filter((r) => r.status === 200).length, 3);
  for (const res of results.filter((r) => r.status !== 200)) t.equal(refusal(t, res, 429, "concurrency_limited"), 1);
});

t.test("Redis stops mid-test with on_store_error: local: per-replica limits, said in the metric and the log; shared again when it returns", async (t) => {
  let before = upstream.requests.length;
  const shared = await spread(8, (r) => get(r, TOKENS.outage));
  t.equal(shared.filter((r) => r.status === 200).length, 5, "5 per hour over both replicas while Redis is up");
  t.equal(upstream.requests.length - before, 5);

  await redis.stop();
  for (const r of replicas) await until(`${r.name} to notice`, async () => (await r.metric("mythiq_proxy_limits_store_up")) === 0);
  for (const r of replicas) {
    t.ok(
      r.logs.some((l) => l["level"] === "warn" && /limits store unavailable: enforcing per-replica limits/.test(String(l["msg"]))),
      `${r.name} logged the fallback`,
    );
  }
  before = upstream.requests.length;
  const local = await spread(16, (r) => get(r, TOKENS.outage));
  const acceptedEach = replicas.map((_, i) => local.filter((res, j) => j % 2 === i && res.status === 200).length);
  t.comment(`Redis down: replica a accepted ${acceptedEach[0]}, replica b ${acceptedEach[1]} (limit 5 each)`);
  t.same(acceptedEach, [5, 5], "each replica enforces the whole limit on its own");
  t.equal(upstream.requests.length - before, 10);
  for (const res of local.filter((r) => r.status !== 200)) refusal(t, res, 429, "rate_limited");

  await redis.start();
  for (const r of replicas) await until(`${r.name} to reconnect`, async () => (await r.metric("mythiq_proxy_limits_store_up")) === 1);
  for (const r of replicas) t.ok(r.logs.some((l) => /limits store answers again/.test(String(l["msg"]))), `${r.name} logged the recovery`);
  const again = await spread(12, (r) => get(r, TOKENS.outage));
  t.equal(again.filter((r) => r.status === 200).length, 5, "one shared limit again (the restarted Redis started empty)");
});

t.test("after a reload to on_store_error: deny (same Redis connection): 503 overloaded while Redis is away, then back", async (t) => {
  const connectedBefore = replicas.map((r) => r.logs.filter((l) => l["msg"] === "limits store connected").length);
  for (const r of replicas) {
    const text = yaml(upstream.url, { listen: r.port, admin: r.adminPort }, "deny");
    writeFileSync(r.configFile, text);
    r.signal("SIGHUP");
  }
  for (const r of replicas) await until(`${r.name} to reload`, () => r.logs.some((l) => l["msg"] === "config reloaded"));
  t.same(
    replicas.map((r) => r.logs.filter((l) => l["msg"] === "limits store connected").length),
    connectedBefore,
    "the reload adopted the Redis connection: no reconnection",
  );

  await redis.stop();
  for (const r of replicas) await until(`${r.name} to notice`, async () => (await r.metric("mythiq_proxy_limits_store_up")) === 0);
  const before = upstream.requests.length;
  const limited = await spread(6, (r) => get(r, TOKENS.outage));
  for (const res of limited) {
    t.equal(refusal(t, res, 503, "overloaded"), 2);
    t.match(JSON.parse(res.body.toString()), { code: "service_unavailable" });
  }
  const priced = await spread(4, (r) => generate(r, TOKENS.spender));
  for (const res of priced) refusal(t, res, 503, "overloaded");
  t.equal(upstream.requests.length, before, "MythIQ received nothing");
  const unlimited = await spread(4, (r) => get(r, TOKENS.open));
  t.same(
    unlimited.map((r) => r.status),
    [200, 200, 200, 200],
    "a client without limits does not need the store",
  );
  for (const r of replicas) {
    t.ok(r.logs.some((l) => /refusing limited requests with 503 overloaded/.test(String(l["msg"]))), `${r.name} logged the refusal mode`);
  }

  await redis.start();
  for (const r of replicas) await until(`${r.name} to reconnect`, async () => (await r.metric("mythiq_proxy_limits_store_up")) === 1);
  const back = await spread(8, (r) => get(r, TOKENS.outage));
  t.equal(back.filter((r) => r.status === 200).length, 5, "limited requests pass again, under one shared limit");
});
