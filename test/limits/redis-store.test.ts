// The redis store against a real redis-server: the same answers as the memory store, atomic under
// concurrency and across store instances ("replicas"), keys under the prefix with TTLs, leases that
// free a dead replica's slots, health that follows Redis going away (stopped or hung) and coming
// back without help, and budget spend that survives an outage: reserved offline, written back
// before the store is up again, once.
import t from "tap";
import { openRedisLink } from "../../src/limits/redis-link.ts";
import { createRedisStore, type RedisLimitStore, type RedisStoreOptions } from "../../src/limits/redis-store.ts";
import { startRedisServer, type RedisServer } from "../helpers/redis-server.ts";

let redis: RedisServer;
const stores: RedisLimitStore[] = [];
let prefixes = 0;

t.before(async () => {
  redis = await startRedisServer();
});
t.teardown(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await redis.close();
});

interface Recorded {
  readonly store: RedisLimitStore;
  readonly events: string[];
  readonly prefix: string;
}

/** A store on the test server with a fresh prefix (or `prefix`), recording its events. */
async function open(options: Partial<RedisStoreOptions> = {}): Promise<Recorded> {
  const events: string[] = [];
  const prefix = options.prefix ?? `t${(prefixes += 1)}:`;
  const store = createRedisStore({
    target: () => Promise.resolve({ mode: "standalone", url: redis.url }),
    probeMs: 50,
    maxReconnectDelayMs: 100,
    // Generous, so that a loaded machine does not time calls out; tests of the timeout set their own.
    timeoutMs: 2_000,
    ...options,
    prefix,
    events: {
      up: () => events.push("up"),
      down: (why) => events.push(`down: ${why}`),
      error: () => events.push("error"),
      failover: () => events.push("failover"),
      wroteBack: (key, amount) => events.push(`wrote back ${amount} to ${key}`),
    },
  });
  stores.push(store);
  await store.started;
  return { store, events, prefix };
}

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const HOUR = 3_600_000;

t.test("a bucket gives capacity tokens, then refuses with the wait for the next token", async (t) => {
  const { store } = await open();
  t.equal(store.health(), "up");
  const spec = { capacity: 3, refill: 3, periodMs: HOUR };
  for (let i = 0; i < 3; i++) t.same(await store.take("rate:a", spec), { ok: true });
  const refused = await store.take("rate:a", spec);
  t.equal(refused.ok, false);
  if (!refused.ok) t.ok(refused.retryAfterMs > HOUR / 3 - 5_000 && refused.retryAfterMs <= HOUR / 3, `wait ${refused.retryAfterMs} ms ≈ 20 min`);
});

t.test("a bucket refills at refill per period (Redis's clock)", async (t) => {
  const { store } = await open();
  const spec = { capacity: 1, refill: 1, periodMs: 300 };
  t.equal((await store.take("rate:r", spec)).ok, true);
  const refused = await store.take("rate:r", spec);
  t.equal(refused.ok, false);
  await new Promise((r) => setTimeout(r, refused.ok ? 0 : refused.retryAfterMs + 20));
  t.equal((await store.take("rate:r", spec)).ok, true, "a token is back once the announced wait has passed");
});

t.test("keys live under the prefix and expire", async (t) => {
  const { store, prefix } = await open();
  await store.take("rate:x", { capacity: 5, refill: 5, periodMs: 60_000 });
  const release = await store.acquire("conc:x", 2);
  const settle = await store.reserve("budget:x:2025-01-01", 100, 1_000, 90_000);
  for (const key of ["rate:x", "conc:x", "budget:x:2025-01-01"]) {
    const ttl = Number((await redis.command("PTTL", prefix + key)).slice(1));
    t.ok(ttl > 0, `${key} has a TTL (${ttl} ms)`);
  }
  t.match(await redis.command("KEYS", `${prefix}*`), /^\*3\r\n/, "three keys, all under the prefix");
  t.equal(Number((await redis.command("PTTL", `${prefix}rate:x`)).slice(1)) <= 60_000 / 5 + 1_000, true, "a bucket key lives until it would be full again");
  release?.();
  settle?.(false);
});

t.test("atomic under concurrency: exactly the limit wins, in one store and across two", async (t) => {
  const a = (await open()).store;
  const b = (await open({ prefix: "shared-atomic:" })).store;
  const c = (await open({ prefix: "shared-atomic:" })).store;

  const takes = await Promise.all(Array.from({ length: 50 }, () => a.take("rate:k", { capacity: 10, refill: 10, periodMs: HOUR })));
  t.equal(takes.filter((r) => r.ok).length, 10, "10 of 50 tokens");

  const slots = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? b : c).acquire("conc:k", 7)));
  t.equal(slots.filter((s) => s !== undefined).length, 7, "7 of 40 slots across two replicas");

  const reserved = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? b : c).reserve("budget:k:d", 1, 37, HOUR)));
  t.equal(reserved.filter((r) => r !== undefined).length, 37, "37 of 100 reservations across two replicas");
  t.equal(await redis.command("HGET", "shared-atomic:budget:k:d", "total"), "$2\r\n37\r\n", "never past the cap");

  for (const s of slots) s?.();
  for (const r of reserved) r?.(false);
  await until("reservations given back", () => b.outstanding() + c.outstanding() === 0);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(await redis.command("HGET", "shared-atomic:budget:k:d", "total"), "$1\r\n0\r\n", "everything given back");
  t.equal(await redis.command("ZCARD", "shared-atomic:conc:k"), ":0\r\n");
});

t.test("a kept reservation stays; giving back an absent counter never makes it negative", async (t) => {
  const { store, prefix } = await open();
  const kept = await store.reserve("budget:y:d", 30, 100, HOUR);
  kept?.(true);
  t.equal(await redis.command("HGET", `${prefix}budget:y:d`, "total"), "$2\r\n30\r\n");
  const lost = await store.reserve("budget:y:d", 50, 100, HOUR);
  await redis.command("DEL", `${prefix}budget:y:d`); // as if Redis had restarted empty
  lost?.(false);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(await redis.command("EXISTS", `${prefix}budget:y:d`), ":0\r\n", "still absent, not -50");
});

t.test("a dead replica's slots free themselves when their lease runs out; a live one's are renewed", async (t) => {
  // A 1 s lease, renewed every third of it: a loaded machine's timer lag stays well inside it.
  const live = (await open({ prefix: "lease:", leaseMs: 1_000 })).store;
  const dying = (await open({ prefix: "lease:", leaseMs: 1_000 })).store;
  const other = (await open({ prefix: "lease:", leaseMs: 1_000 })).store;
  const held = await live.acquire("conc:live", 1);
  t.ok(held);
  t.ok(await dying.acquire("conc:dead", 1));
  await dying.close(); // dies holding its slot: no release, no renewal
  t.equal(await other.acquire("conc:dead", 1), undefined, "still held right after");
  await new Promise((r) => setTimeout(r, 1_300));
  const freed = await other.acquire("conc:dead", 1);
  t.ok(freed, "free once the lease ran out");
  t.equal(await other.acquire("conc:live", 1), undefined, "the live replica's slot was renewed past its first lease");
  held?.();
  freed?.();
});

t.test("scripts are sent again after Redis forgot them", async (t) => {
  const { store } = await open();
  t.equal((await store.take("rate:s", { capacity: 2, refill: 2, periodMs: HOUR })).ok, true);
  t.equal(await redis.command("SCRIPT", "FLUSH"), "+OK\r\n");
  t.equal((await store.take("rate:s", { capacity: 2, refill: 2, periodMs: HOUR })).ok, true);
  t.equal((await store.take("rate:s", { capacity: 2, refill: 2, periodMs: HOUR })).ok, false, "same bucket, state kept");
  t.equal(store.health(), "up");
});

t.test("Redis stopped: calls fail fast and the store is down; back: up again on its own", async (t) => {
  const { store, events } = await open();
  t.same(events, ["up"]);
  await redis.stop();
  await until("down", () => store.health() === "down");
  const started = Date.now();
  await t.rejects(store.take("rate:d", { capacity: 1, refill: 1, periodMs: HOUR }));
  t.ok(Date.now() - started < 100, "no waiting while disconnected");
  t.equal(events.filter((e) => e.startsWith("down")).length, 1, "one down event");
  await redis.start();
  await until("up", () => store.health() === "up");
  t.equal(events.at(-1), "up");
  t.equal((await store.take("rate:d", { capacity: 1, refill: 1, periodMs: HOUR })).ok, true);
});

t.test("Redis hung: a call times out after timeoutMs, the store is down until a PING answers", async (t) => {
  const { store, events } = await open({ timeoutMs: 100 });
  redis.pause();
  try {
    const started = Date.now();
    await t.rejects(store.take("rate:h", { capacity: 1, refill: 1, periodMs: HOUR }), /timed out/);
    const took = Date.now() - started;
    t.ok(took >= 90 && took < 1_000, `timed out after ${took} ms`);
    t.equal(store.health(), "down");
    t.match(events, ["up", "error", /^down: .*timed out/]);
    await t.rejects(store.take("rate:h", { capacity: 1, refill: 1, periodMs: HOUR }), /not connected/, "skipped while down");
  } finally {
    redis.resume();
  }
  await until("up after resume", () => store.health() === "up");
  t.equal((await store.take("rate:h2", { capacity: 1, refill: 1, periodMs: HOUR })).ok, true);
  t.equal(
    (await store.take("rate:h", { capacity: 1, refill: 1, periodMs: HOUR })).ok,
    false,
    "the call that timed out still ran when Redis woke up: counted once too often, never too rarely",
  );
});

t.test("no Redis at the start: down after the connect timeout, up once it appears", async (t) => {
  await redis.stop();
  const { store, events } = await open({ connectTimeoutMs: 200 });
  t.equal(store.health(), "down");
  t.equal(events.length, 1);
  await redis.start();
  await until("up", () => store.health() === "up");
  t.same(events.slice(-1), ["up"]);
});

t.test("a URL that cannot be read leaves the store down, saying why without any value", async (t) => {
  const { store, events } = await open({ target: () => Promise.reject(new Error("secret environment variable REDIS_URL is not set")) });
  t.equal(store.health(), "down");
  t.same(events, ["down: redis settings could not be read: secret environment variable REDIS_URL is not set"]);
});

t.test("a wrong password is reported without the password or the URL", async (t) => {
  await redis.command("CONFIG", "SET", "requirepass", "right-password-123");
  try {
    const url = `redis://:wrong-password-456@127.0.0.1:${redis.port}`;
    const { store, events } = await open({ target: () => Promise.resolve({ mode: "standalone", url }), connectTimeoutMs: 1_000 });
    await until("down", () => store.health() === "down");
    const text = events.join("\n");
    t.match(text, /down: /);
    t.notOk(text.includes("wrong-password-456"), "no password");
    t.notOk(text.includes(url), "no URL");
    await store.close();
  } finally {
    await redisAuthCommand("right-password-123", ["CONFIG", "SET", "requirepass", ""]);
  }
});

/** CONFIG SET through an authenticated connection (the helper's raw command has no AUTH). */
async function redisAuthCommand(password: string, args: string[]): Promise<void> {
  const { Redis } = await import("ioredis");
  const client = new Redis(redis.url, { password, lazyConnect: true, maxRetriesPerRequest: 0 });
  await client.connect();
  await client.call(args[0]!, ...args.slice(1));
  client.disconnect();
}

const total = async (key: string): Promise<number> => Number((await redis.command("HGET", key, "total")).split("\r\n")[1] ?? "NaN");

t.test("an outage: budget reserved offline (against the last total) is written back before the store is up, and only once", async (t) => {
  const { store, events, prefix } = await open();
  const key = "budget:w:2030-01-01";
  const kept = await store.reserve(key, 30, 100, HOUR);
  kept?.(true);
  await redis.stop(); // comes back empty: the 30 are lost too
  await until("down", () => store.health() === "down");
  const offline = store.reserveOffline(key, 50, 100, HOUR);
  t.ok(offline, "30 + 50 ≤ 100");
  t.equal(store.reserveOffline(key, 30, 100, HOUR), undefined, "30 + 50 + 30 > 100: refused");
  const givenBack = store.reserveOffline(key, 10, 100, HOUR);
  givenBack?.(false);
  offline?.(true);
  t.equal(store.outstanding(), 0);

  await redis.start();
  await until("up", () => store.health() === "up");
  t.equal(await total(prefix + key), 80, "the shared 30 the restart lost and the 50 reserved offline");
  t.same(events.filter((e) => e.startsWith("wrote back")), [`wrote back 80 to ${key}`]);
  t.ok(events.indexOf(`wrote back 80 to ${key}`) < events.lastIndexOf("up"), "written back before the store said up");
  t.equal(await store.reserve(key, 21, 100, HOUR), undefined, "the day's budget is not handed out again");

  // Down and up again without losing anything: the write-back adds nothing (it is a maximum).
  redis.pause();
  await t.rejects(store.take("rate:w", { capacity: 1, refill: 1, periodMs: HOUR }));
  redis.resume();
  await until("up again", () => store.health() === "up");
  t.equal(await total(prefix + key), 80, "still 80");
  t.equal(events.filter((e) => e.startsWith("wrote back")).length, 1, "nothing more written back");
});

t.test("a failover that lost reservations: each replica puts back its own share when it reconnects", async (t) => {
  const a = await open({ prefix: "lost:" });
  const b = await open({ prefix: "lost:" });
  const key = "budget:f:2030-01-01";
  (await a.store.reserve(key, 7, 100, HOUR))?.(true);
  (await b.store.reserve(key, 5, 100, HOUR))?.(true);
  const gone = await a.store.reserve(key, 3, 100, HOUR);
  gone?.(false); // given back while up: not part of a's share any more
  for (let i = 0; i < 100 && (await total(`lost:${key}`)) !== 12; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(await total(`lost:${key}`), 12);
  // As if a new primary had taken over without the last writes: the counter is gone, and every
  // connection drops (what a failover does to clients).
  await redis.command("DEL", `lost:${key}`);
  await redis.command("CLIENT", "KILL", "TYPE", "normal");
  await until("both back up", () => a.events.filter((e) => e === "up").length === 2 && b.events.filter((e) => e === "up").length === 2);
  t.equal(await total(`lost:${key}`), 12, "7 + 5 again");
  t.same(a.events.filter((e) => e.startsWith("wrote back")), [`wrote back 7 to ${key}`]);
  t.same(b.events.filter((e) => e.startsWith("wrote back")), [`wrote back 5 to ${key}`]);
  t.equal(a.events.includes("failover"), false, "the same Redis server: not a failover");
  // A replica can only give back its own share.
  const over = await b.store.reserve(key, 1, 100, HOUR);
  await redis.command("HSET", `lost:${key}`, `r:unknown`, "0");
  over?.(false);
  await until("given back", () => b.store.outstanding() === 0);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(await total(`lost:${key}`), 12);
});

t.test("a restarted Redis is another server: counted as a failover", async (t) => {
  const { store, events } = await open();
  await redis.stop();
  await until("down", () => store.health() === "down");
  await redis.start();
  await until("up", () => store.health() === "up");
  t.equal(events.filter((e) => e === "failover").length, 1);
});

t.test("a counter written by an earlier version (a plain integer) is kept: it becomes the hash with its value", async (t) => {
  const { store, prefix } = await open();
  const key = `${prefix}budget:l:2030-01-01`;
  await redis.command("SET", key, "300", "PX", "500000");
  t.ok(await store.reserve("budget:l:2030-01-01", 5, 1_000, HOUR), "reserved on top of the old count");
  t.equal(await redis.command("TYPE", key), "+hash\r\n");
  t.equal(await total(key), 305);
  t.equal(await redis.command("HGET", key, "legacy"), "$3\r\n300\r\n");
  t.equal(await store.reserve("budget:l:2030-01-01", 696, 1_000, HOUR), undefined, "305 + 696 > 1000");
  const ttl = Number((await redis.command("PTTL", key)).slice(1));
  t.ok(ttl > 0 && ttl <= HOUR, `it expires with the day like any counter (${ttl} ms)`);
});

t.test("a client that ioredis ends for good is replaced by a new one", async (t) => {
  const ended: Array<() => void> = [];
  let opened = 0;
  const { store, events } = await open({
    maxReconnectDelayMs: 50,
    openLink(target, ioredis, tuning) {
      opened += 1;
      const link = openRedisLink(target, ioredis, tuning);
      return {
        ...link,
        on(event, listener) {
          if (event === "end") ended.push(listener);
          link.on(event, listener);
        },
      };
    },
  });
  t.equal(opened, 1);
  t.equal(store.health(), "up");
  ended[0]?.(); // as ioredis does after an interrupted Sentinel lookup
  t.equal(store.health(), "down");
  await until("a new client, up", () => opened === 2 && store.health() === "up");
  t.match(events, ["up", "down: connection to redis ended", "up"]);
  t.equal((await store.take("rate:e", { capacity: 1, refill: 1, periodMs: HOUR })).ok, true);
});

t.test("a write refused with READONLY (the server became a replica: a failover endpoint's old node) reconnects", async (t) => {
  const other = await startRedisServer();
  t.teardown(() => other.close());
  const ids = async (): Promise<string[]> => [...(await redis.command("CLIENT", "LIST")).matchAll(/id=(\d+) .*name=mythiq-proxy/g)].map((m) => m[1] ?? "");
  const others = await ids();
  const { store } = await open();
  const mine = (await ids()).filter((id) => !others.includes(id));
  t.equal(mine.length, 1, "this store's connection");
  await redis.command("REPLICAOF", "127.0.0.1", String(other.port));
  try {
    await t.rejects(store.reserve("budget:ro:2030-01-01", 1, 10, HOUR), /READONLY/);
    const deadline = Date.now() + 5_000;
    while ((await ids()).includes(mine[0] ?? "") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    t.notOk((await ids()).includes(mine[0] ?? ""), "that connection was dropped: ioredis connects again (to whatever the address names now)");
  } finally {
    await redis.command("REPLICAOF", "NO", "ONE");
  }
  await until("up again", () => store.health() === "up");
});
