// on_store_error: what the rules get when the shared store is down or fails mid-call — the local
// store's answer (`local`) or UNAVAILABLE (`deny`) — and that a down store is not called at all.
import t from "tap";
import { createGuardedStore, UNAVAILABLE } from "../../src/limits/fallback.ts";
import { createMemoryStore } from "../../src/limits/memory-store.ts";
import type { LimitStore, StoreHealth } from "../../src/limits/store.ts";

/** A shared store whose health the test sets; its calls fail while `failing`. */
function fakeShared() {
  const memory = createMemoryStore();
  let health: StoreHealth = "up";
  let markStarted: () => void = () => {};
  const started = new Promise<void>((r) => (markStarted = r));
  const state = { failing: false, calls: 0 };
  const guard = <T>(op: () => Promise<T>): Promise<T> => {
    state.calls += 1;
    if (state.failing) {
      health = "down";
      return Promise.reject(new Error("boom"));
    }
    return op();
  };
  const store: LimitStore = {
    kind: "redis",
    take: (k, s) => guard(() => memory.take(k, s)),
    acquire: (k, l) => guard(() => memory.acquire(k, l)),
    reserve: (k, a, c, ttl) => guard(() => memory.reserve(k, a, c, ttl)),
    health: () => health,
    started,
    outstanding: () => memory.outstanding(),
    close: () => Promise.resolve(),
  };
  return {
    store,
    state,
    setHealth(next: StoreHealth) {
      if (health === "starting" && next !== "starting") markStarted();
      health = next;
    },
  };
}

const bucket = { capacity: 1, refill: 1, periodMs: 60_000 };

t.test("up: the shared store answers", async (t) => {
  const shared = fakeShared();
  const local = createMemoryStore();
  const store = createGuardedStore({ shared: shared.store, local, onStoreError: "deny" });
  t.same(await store.take("k", bucket), { ok: true });
  t.match(await store.take("k", bucket), { ok: false, retryAfterMs: Number });
  t.equal(shared.state.calls, 2);
});

t.test("local: a failing call and a down store fall back to this replica's store", async (t) => {
  const shared = fakeShared();
  const local = createMemoryStore();
  const store = createGuardedStore({ shared: shared.store, local, onStoreError: "local" });
  t.same(await store.take("k", bucket), { ok: true }, "shared bucket used");
  shared.state.failing = true;
  t.same(await store.take("k", bucket), { ok: true }, "the call failed: answered by the local store (a fresh bucket)");
  t.equal(shared.store.health(), "down");
  const callsWhileDown = shared.state.calls;
  const second = await store.take("k", bucket);
  t.equal(second !== UNAVAILABLE && second.ok, false, "the local bucket is now empty");
  t.equal(shared.state.calls, callsWhileDown, "a down store is not called");
  const slot = await store.acquire("c", 1);
  t.ok(slot !== UNAVAILABLE && slot !== undefined);
  t.equal(await store.acquire("c", 1), undefined, "local concurrency limit");
  const held = await store.reserve("b", 5, 5, 1_000);
  t.ok(held !== UNAVAILABLE && held !== undefined);
  t.equal(await store.reserve("b", 1, 5, 1_000), undefined, "local budget");
  shared.state.failing = false;
  shared.setHealth("up");
  const back = await store.take("k", bucket);
  t.equal(back !== UNAVAILABLE && back.ok, false, "back on the shared bucket, which is still empty");
  t.equal(shared.state.calls, callsWhileDown + 1);
});

t.test("deny: a failing call and a down store answer UNAVAILABLE", async (t) => {
  const shared = fakeShared();
  const store = createGuardedStore({ shared: shared.store, local: createMemoryStore(), onStoreError: "deny" });
  shared.state.failing = true;
  t.equal(await store.take("k", bucket), UNAVAILABLE);
  t.equal(await store.acquire("c", 1), UNAVAILABLE);
  t.equal(await store.reserve("b", 1, 5, 1_000), UNAVAILABLE);
  t.equal(shared.state.calls, 1, "only the first call reached the store");
});

t.test("starting: a request waits for the first connection, but not longer than startWaitMs", async (t) => {
  const shared = fakeShared();
  shared.setHealth("starting");
  const store = createGuardedStore({ shared: shared.store, local: createMemoryStore(), onStoreError: "deny", startWaitMs: 5_000 });
  const pending = store.take("k", bucket);
  setTimeout(() => shared.setHealth("up"), 20);
  t.same(await pending, { ok: true }, "answered by the shared store once connected");

  const slow = fakeShared();
  slow.setHealth("starting");
  const quick = createGuardedStore({ shared: slow.store, local: createMemoryStore(), onStoreError: "deny", startWaitMs: 30 });
  const started = Date.now();
  t.equal(await quick.take("k", bucket), UNAVAILABLE);
  t.ok(Date.now() - started < 1_000, "gave up after startWaitMs");
  t.equal(slow.state.calls, 0);
});
