// Ownership records in Redis, shared by two replicas (two proxies in front of one fake MythIQ, one
// real redis-server): what a user creates through replica 1 is refused to another user on replica
// 2, and still the creator's there. Keys carry a hash tag and no subject in clear. While Redis is
// away, `on_store_error` decides: `deny` (replica 2) serves no id and no list at all; `local`
// (replica 1) knows only what it recorded itself, so nobody gets an id that is not theirs.
import t from "tap";
import { loadConfigFile } from "../../src/config/load.ts";
import { createSessionIssuer } from "../../src/policy/sessions.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { send } from "../helpers/forward-harness.ts";
import { configHead, startTestProxy, TEST_KEY, waitReady, type TestProxy } from "../helpers/proxy-harness.ts";
import { startRedisServer, type RedisServer } from "../helpers/redis-server.ts";

const SESSION_SECRET = "ownership-redis-hs256-secret-0123456789abcdef";
const env = (redis: RedisServer) => ({ MYTHIQ_API_KEY: TEST_KEY, SESSION_SECRET, REDIS_URL: redis.url });

function yaml(upstreamUrl: string, onStoreError: "local" | "deny"): string {
  return `${configHead(upstreamUrl)}sessions:
  jwt: { issuer: https://auth.test, audience: mythiq-proxy, secret: { env: SESSION_SECRET }, algorithms: [HS256], client_claim: client }
clients:
  - id: web
    auth: { jwt: true }
    routes: [POST /v1/images/generations, GET /v1/media, "GET /v1/media/{id}"]
limits:
  store: redis
  redis: { url: { env: REDIS_URL }, prefix: "own-e2e:" }
  on_store_error: ${onStoreError}
ownership:
  media:
    ttl: 1h
    create: [{ route: POST /v1/images/generations, id: "data[].id" }]
    use: [{ route: "GET /v1/media/{id}" }]
    list: [{ route: GET /v1/media, items: result.medias, count: result.total }]
`;
}

let redis: RedisServer;
let upstream: FakeUpstream;
let one: TestProxy;
let two: TestProxy;

t.before(async () => {
  redis = await startRedisServer();
  upstream = await startFakeUpstream();
  upstream.fallback = { type: "mythiq" };
  one = await startTestProxy({ yaml: yaml(upstream.url, "local"), env: env(redis), watch: false, overload: false });
  two = await startTestProxy({ yaml: yaml(upstream.url, "deny"), env: env(redis), watch: false, overload: false });
  await Promise.all([waitReady(one), waitReady(two)]);
});
t.teardown(async () => {
  await one.close();
  await two.close();
  await upstream.close();
  await redis.close();
});

type Json = Record<string, unknown>;

async function call(proxy: TestProxy, who: string, method: string, path: string, json?: unknown) {
  const before = upstream.requests.length;
  const body = json === undefined ? undefined : JSON.stringify(json);
  const res = await send(proxy.port, {
    method,
    path,
    headers: { authorization: `Bearer ${who}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body }),
  });
  let parsed: Json = {};
  try {
    parsed = JSON.parse(res.body.toString()) as Json;
  } catch {
    // not JSON
  }
  return { ...res, json: parsed, arrived: upstream.requests.length - before };
}
const ids = (res: { json: Json }) => (((res.json["result"] as Json | undefined)?.["medias"] as Json[] | undefined) ?? []).map((m) => m["id"]);

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let waited = 0; !(await check()); waited += 50) {
    if (waited > 10_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

void t.test("replicas share ownership through Redis; on_store_error decides while it is away", async (t) => {
  const loaded = await loadConfigFile(one.configFile);
  if (!loaded.ok) throw new Error("config refused");
  const issuer = await createSessionIssuer(loaded.config, { SESSION_SECRET });
  const alice = await issuer.issue({ client: "web", sub: "alice@example.com" });
  const bob = await issuer.issue({ client: "web", sub: "bob@example.com" });

  const made = await call(one, alice, "POST", "/v1/images/generations", { prompt: "fox", n: 2 });
  const aliceIds = (made.json["data"] as Json[]).map((d) => String(d["id"]));
  t.equal(aliceIds.length, 2, "alice creates two images through replica 1");

  const probe = await call(two, bob, "GET", `/v1/media/${aliceIds[0]}`);
  t.same([probe.status, probe.json["reason"], probe.arrived], [404, "not_found", 0], "bob is refused on replica 2; MythIQ received nothing");
  t.same(ids(await call(two, bob, "GET", "/v1/media")), [], "bob's list on replica 2 is empty");
  t.equal((await call(two, alice, "GET", `/v1/media/${aliceIds[1]}`)).status, 200, "alice reads her image on replica 2");
  t.same(new Set(ids(await call(two, alice, "GET", "/v1/media"))), new Set(aliceIds), "and lists it there");

  const keys = (await redis.command("KEYS", "own-e2e:*")).split("\r\n").filter((l) => l.startsWith("own-e2e:"));
  t.equal(keys.length, 1, "one sorted set for alice's media");
  t.match(keys[0], /^own-e2e:\{own:media:[0-9a-f]{32}\}$/, "prefix, then the whole key as a hash tag (one Cluster slot)");
  t.notOk(keys.join().includes("alice"), "the subject is hashed, never in clear");
  const ttl = Number((await redis.command("PTTL", keys[0]!)).replace(/^:/, "").trim());
  t.ok(ttl > 3_500_000 && ttl <= 3_600_000, `the set expires with its newest id (${ttl} ms)`);

  // Redis goes away.
  await redis.stop();
  const denied = await call(two, alice, "GET", `/v1/media/${aliceIds[0]}`);
  t.same([denied.status, denied.json["reason"], denied.arrived], [503, "overloaded", 0], "deny: even the owner gets 503, nothing forwarded");
  const deniedList = await call(two, alice, "GET", "/v1/media");
  t.same([deniedList.status, deniedList.json["reason"]], [503, "overloaded"], "deny: no list is served");
  const deniedListId = String(deniedList.headers["x-request-id"]);
  t.match(
    await two.waitForLog((l) => l["request_id"] === deniedListId),
    { status: 503, reason: "overloaded", check: "ownership" },
    "its audit line names ownership as the check, not MythIQ",
  );
  t.equal(await two.metric("mythiq_proxy_ownership_withheld_total", { kind: "media", reason: "overloaded" }), 1);
  const madeDenied = await call(two, alice, "POST", "/v1/images/generations", { prompt: "during the outage" });
  t.equal(madeDenied.status, 200, "deny: a creator still gets the response");
  t.equal(await two.metric("mythiq_proxy_ownership_unrecorded_total", { kind: "media", reason: "store_unavailable" }), 1, "unrecorded, counted");

  await until(async () => (await call(one, bob, "GET", `/v1/media/${aliceIds[0]}`)).status === 404, "replica 1 refusing");
  t.equal((await call(one, alice, "GET", `/v1/media/${aliceIds[0]}`)).status, 404, "local: ids recorded in Redis are unknown here, even to their owner");
  const madeLocal = await call(one, bob, "POST", "/v1/images/generations", { prompt: "local" });
  const bobId = String((madeLocal.json["data"] as Json[])[0]!["id"]);
  t.equal((await call(one, bob, "GET", `/v1/media/${bobId}`)).status, 200, "local: what this replica recorded meanwhile is its creator's");
  t.equal((await call(one, alice, "GET", `/v1/media/${bobId}`)).status, 404, "and nobody else's");

  // Redis is back (empty: nothing was persisted): both replicas use it again without help.
  await redis.start();
  await until(async () => (await two.metric("mythiq_proxy_limits_store_up")) === 1, "replica 2 reconnected");
  const again = await call(two, alice, "POST", "/v1/images/generations", { prompt: "after" });
  const afterId = String((again.json["data"] as Json[])[0]!["id"]);
  await until(async () => (await one.metric("mythiq_proxy_limits_store_up")) === 1, "replica 1 reconnected");
  t.equal((await call(one, alice, "GET", `/v1/media/${afterId}`)).status, 200, "recorded on 2, owned on 1");
  t.equal((await call(one, bob, "GET", `/v1/media/${afterId}`)).status, 404, "and refused to bob on 1");
  t.equal((await call(one, bob, "GET", `/v1/media/${bobId}`)).status, 200, "what replica 1 recorded during the outage is still bob's there");
  t.equal((await call(one, alice, "GET", `/v1/media/${bobId}`)).status, 404, "and still nobody else's");
  t.equal((await call(two, bob, "GET", `/v1/media/${bobId}`)).status, 404, "replica 2 never learnt it (fail closed)");
  t.notOk(one.rawLog().includes(TEST_KEY) || two.rawLog().includes(TEST_KEY), "the key is in no log line");
});
