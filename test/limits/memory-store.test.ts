// The memory store's arithmetic, driven by a fake clock: token buckets (burst, refill, the wait
// until the next token), concurrency slots, budget reservations, expiry and the entry cap.
import t from "tap";
import { createMemoryStore } from "../../src/limits/memory-store.ts";

function clock(start = 1_000) {
  let at = start;
  return { now: () => at, advance: (ms: number) => (at += ms) };
}

t.test("a bucket gives `capacity` tokens at once, then one per period/refill, and says how long to wait", async (t) => {
  const c = clock();
  const store = createMemoryStore({ now: c.now });
  const spec = { capacity: 3, refill: 1, periodMs: 1_000 };
  for (let i = 0; i < 3; i++) t.same(await store.take("k", spec), { ok: true }, `token ${i + 1}`);
  t.same(await store.take("k", spec), { ok: false, retryAfterMs: 1_000 });
  c.advance(400);
  t.same(await store.take("k", spec), { ok: false, retryAfterMs: 600 }, "the wait shrinks as the bucket refills");
  c.advance(600);
  t.same(await store.take("k", spec), { ok: true }, "one token back after a full refill step");
  t.same(await store.take("k", spec), { ok: false, retryAfterMs: 1_000 });
  c.advance(3_600_000);
  for (let i = 0; i < 3; i++) t.same(await store.take("k", spec), { ok: true });
  t.equal((await store.take("k", spec)).ok, false, "a long pause never fills past capacity");
});

t.test("burst smaller than requests: the bucket is small but refills fast", async (t) => {
  const c = clock();
  const store = createMemoryStore({ now: c.now });
  const spec = { capacity: 2, refill: 60, periodMs: 60_000 };
  t.equal((await store.take("k", spec)).ok, true);
  t.equal((await store.take("k", spec)).ok, true);
  t.same(await store.take("k", spec), { ok: false, retryAfterMs: 1_000 });
  c.advance(1_000);
  t.equal((await store.take("k", spec)).ok, true);
});

t.test("buckets are independent per key", async (t) => {
  const store = createMemoryStore({ now: clock().now });
  const spec = { capacity: 1, refill: 1, periodMs: 60_000 };
  t.equal((await store.take("a", spec)).ok, true);
  t.equal((await store.take("a", spec)).ok, false);
  t.equal((await store.take("b", spec)).ok, true);
});

t.test("concurrency slots: `limit` at once; a release frees exactly one slot, however often it is called", async (t) => {
  const store = createMemoryStore();
  const first = await store.acquire("c", 2);
  const second = await store.acquire("c", 2);
  t.ok(first && second);
  t.equal(await store.acquire("c", 2), undefined, "third refused");
  t.equal(store.outstanding(), 2);
  first!();
  first!();
  first!();
  t.equal(store.outstanding(), 1);
  const third = await store.acquire("c", 2);
  t.ok(third, "one slot came back");
  t.equal(await store.acquire("c", 2), undefined, "and only one");
  second!();
  third!();
  t.equal(store.outstanding(), 0);
  t.ok(await store.acquire("c", 2));
});

t.test("reservations: up to the cap exactly; given back unless kept; settled once", async (t) => {
  const store = createMemoryStore({ now: clock().now });
  const a = await store.reserve("b", 4, 10, 60_000);
  const b = await store.reserve("b", 4, 10, 60_000);
  t.ok(a && b);
  t.equal(await store.reserve("b", 4, 10, 60_000), undefined, "4 + 4 + 4 > 10");
  const c = await store.reserve("b", 2, 10, 60_000);
  t.ok(c, "4 + 4 + 2 = 10 is allowed: only passing the cap is refused");
  t.equal(await store.reserve("b", 1, 10, 60_000), undefined);
  a!(false);
  a!(false);
  t.ok(await store.reserve("b", 4, 10, 60_000), "a given-back reservation frees its amount once");
  t.equal(await store.reserve("b", 1, 10, 60_000), undefined);
  b!(true);
  b!(false);
  t.equal(await store.reserve("b", 1, 10, 60_000), undefined, "a kept amount stays spent even if settled again");
  t.equal(store.outstanding(), 2, "the two reservations not settled yet");
});

t.test("a counter expires ttl after its last reservation", async (t) => {
  const c = clock();
  const store = createMemoryStore({ now: c.now });
  t.ok(await store.reserve("b", 10, 10, 5_000));
  t.equal(await store.reserve("b", 1, 10, 5_000), undefined);
  c.advance(5_000);
  t.ok(await store.reserve("b", 10, 10, 5_000), "a fresh counter after expiry");
});

t.test("a settlement after the counter expired does not go negative", async (t) => {
  const c = clock();
  const store = createMemoryStore({ now: c.now });
  const old = await store.reserve("b", 5, 10, 1_000);
  c.advance(1_000);
  t.ok(await store.reserve("b", 10, 10, 1_000));
  old!(false);
  t.equal(await store.reserve("b", 1, 10, 1_000), undefined, "the new counter was not reduced by the old reservation");
});

t.test("past maxEntries the least recently used bucket is forgotten", async (t) => {
  const store = createMemoryStore({ now: clock().now, maxEntries: 2 });
  const spec = { capacity: 1, refill: 1, periodMs: 60_000 };
  await store.take("a", spec);
  await store.take("b", spec);
  await store.take("a", spec); // refused, but marks a as recently used
  await store.take("c", spec); // evicts b
  t.equal((await store.take("b", spec)).ok, true, "b was forgotten: full again");
  t.equal((await store.take("c", spec)).ok, false, "c is remembered");
});

t.test("health and lifecycle", async (t) => {
  const store = createMemoryStore();
  t.equal(store.kind, "memory");
  t.equal(store.health(), "up");
  await store.started;
  await store.close();
});
