// The ownership records: in memory (ttl, the per-owner cap, the overall cap) and in a real Redis
// through a redis limit store (the same scripts the replicas run), plus the key format.
import t from "tap";
import { createRedisStore } from "../../src/limits/redis-store.ts";
import { createMemoryStore } from "../../src/limits/memory-store.ts";
import { createMemoryRecords, memoryRecordsOf } from "../../src/ownership/memory-records.ts";
import { canonicalId, MAX_ID_LENGTH, recordsKey } from "../../src/ownership/records.ts";
import { createRedisRecords } from "../../src/ownership/redis-records.ts";
import { startRedisServer } from "../helpers/redis-server.ts";

void t.test("keys: one hash tag per kind and owner, the owner hashed", async (t) => {
  const key = recordsKey("media", "s:alice@example.com");
  t.match(key, /^\{own:media:[0-9a-f]{32}\}$/);
  t.notOk(key.includes("alice"));
  t.not(recordsKey("media", "s:alice"), recordsKey("media", "c:alice"), "a subject and a client of the same name are different owners");
  t.not(recordsKey("media", "s:a"), recordsKey("images", "s:a"), "kinds are apart");
});

void t.test("canonical ids", async (t) => {
  t.equal(canonicalId("med_1"), "med_1");
  t.equal(canonicalId(123), "123");
  t.equal(canonicalId("x".repeat(MAX_ID_LENGTH)), "x".repeat(MAX_ID_LENGTH));
  for (const no of ["", "x".repeat(MAX_ID_LENGTH + 1), -1, 1.5, 2 ** 60, null, true, ["a"], { id: "a" }, undefined]) {
    t.equal(canonicalId(no), undefined, JSON.stringify(no) ?? "undefined");
  }
});

void t.test("memory: ttl, per-owner cap, overall cap", async (t) => {
  let now = 1000;
  const records = createMemoryRecords({ now: () => now, maxRecords: 5 });
  await records.record("a", ["1", "2"], 100, 10);
  t.same(await records.owned("a", ["1", "2", "3"]), [true, true, false]);
  t.same(await records.owned("b", ["1"]), [false], "another owner owns nothing");
  now = 1099;
  t.same(await records.owned("a", ["1"]), [true]);
  now = 1100;
  t.same(await records.owned("a", ["1", "2"]), [false, false], "expired at ttl");

  await records.record("a", ["1", "2", "3"], 1000, 2);
  t.same(await records.owned("a", ["1", "2", "3"]), [false, true, true], "the per-owner cap forgets the oldest");
  await records.record("a", ["2"], 1000, 2);
  await records.record("a", ["4"], 1000, 2);
  t.same(await records.owned("a", ["2", "3", "4"]), [true, false, true], "recording again refreshes an id");

  await records.record("b", ["x", "y"], 1000, 10);
  await records.record("c", ["z"], 1000, 10);
  t.same(await records.owned("a", ["2", "4"]), [true, true], "at the overall cap (5) nothing is forgotten yet");
  await records.record("d", ["w"], 1000, 10);
  t.same(await records.owned("b", ["x", "y"]), [false, false], "past it, the owner active least recently is forgotten whole");
  t.same(await records.owned("a", ["2"]), [true]);
  t.same(await records.owned("d", ["w"]), [true]);
});

void t.test("memory records live as long as their limit store", async (t) => {
  const store = createMemoryStore();
  await memoryRecordsOf(store).record("k", ["1"], 60_000, 10);
  t.same(await memoryRecordsOf(store).owned("k", ["1"]), [true], "the same records for the same store (a reload that adopts it)");
  t.same(await memoryRecordsOf(createMemoryStore()).owned("k", ["1"]), [false], "a new store starts empty");
  t.throws(() => createRedisRecords(store), /redis/, "memory stores run no scripts");
});

void t.test("redis: the scripts, ttl in Redis time, cap, one key per owner", async (t) => {
  const redis = await startRedisServer();
  t.teardown(() => redis.close());
  // What is tested is the scripts, not the hot path's 250 ms cut-off: a loaded machine gets 5 s.
  const store = createRedisStore({ target: () => Promise.resolve({ mode: "standalone", url: redis.url }), prefix: "t:", timeoutMs: 5_000 });
  t.teardown(() => store.close());
  await store.started;
  t.equal(store.health(), "up");
  const records = createRedisRecords(store);
  const key = recordsKey("media", "s:alice");

  await records.record(key, ["1", "2", "med_é✓", "a/b"], 1_000, 3);
  t.same(await records.owned(key, ["1", "2", "med_é✓", "a/b", "nope"]), [false, true, true, true, false], "the oldest beyond max_items is dropped");
  t.same(await records.owned(recordsKey("media", "s:bob"), ["2"]), [false]);
  t.same(await records.owned(key, []), [], "nothing asked, nothing sent");
  const keys = await redis.command("KEYS", "t:*");
  t.match(keys, new RegExp(`t:\\{own:media:[0-9a-f]{32}\\}`), "prefix + hash-tagged key");
  await new Promise((r) => setTimeout(r, 1_100));
  t.same(await records.owned(key, ["2", "a/b"]), [false, false], "expired after ttl");
  t.equal((await redis.command("EXISTS", keys.split("\r\n").find((l) => l.startsWith("t:")) ?? "")).trim(), ":0", "and the set itself is gone");

  const many = Array.from({ length: 25_000 }, (_, i) => `med_${i}`);
  await records.record(key, many.slice(0, 1000), 60_000, 10_000);
  const answer = await records.owned(key, many);
  t.equal(answer.length, many.length, "a list of 25 000 ids is answered whole (in batches)");
  t.equal(answer.filter(Boolean).length, 1000);
  t.same([answer[0], answer[999], answer[1000], answer[24_999]], [true, true, false, false]);
  t.equal(store.health(), "up", "and the store stays up");

  await redis.stop();
  await t.rejects(records.owned(key, ["1"]), "a call while Redis is away fails (the guard applies on_store_error)");
  t.equal(store.health(), "down", "and marks the limits store down, as for the limits");
});
