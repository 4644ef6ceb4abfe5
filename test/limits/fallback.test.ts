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

/** A shared store that answers (from its own memory) only after `delayMs`. */
function slowShared(delayMs: number) {
  const memory = createMemoryStore();
  const later = <T>(op: () => Promise<T>): Promise<T> => new Promise((resolve) => setTimeout(() => resolve(op()), delayMs));
  const store: LimitStore = {
    kind: "redis",
    take: (k, s) => later(() => memory.take(k, s)),
    acquire: (k, l) => later(() => memory.acquire(k, l)),
    reserve: (k, a, c, ttl) => later(() => memory.reserve(k, a, c, ttl)),
    health: () => "up",
    started: Promise.resolve(),
    outstanding: () => memory.outstanding(),
    close: () => Promise.resolve(),
  };
  return { store, memory };
}

t.test("a shared store slower than timeoutMs: decided locally at the deadline; what it grants late is given back", async (t) => {
  // The store is far slower than the deadline, so a loaded machine's timer lag cannot blur the two.
  const shared = slowShared(600);
  const decisions: string[] = [];
  const store = createGuardedStore({
    shared: shared.store,
    local: createMemoryStore(),
    onStoreError: "local",
    timeoutMs: 40,
    onLocal: (limit, allowed) => decisions.push(`${limit} ${allowed ? "allowed" : "refused"}`),
  });
  const started = performance.now();
  const [token, slot, reservation] = await Promise.all([store.take("k", bucket), store.acquire("c", 1), store.reserve("b", 5, 5, 60_000)]);
  const took = performance.now() - started;
  t.ok(took >= 35 && took < 400, `decided after about timeoutMs, not the store's 600 ms (${took.toFixed(0)} ms)`);
  t.same(token, { ok: true });
  t.ok(slot !== UNAVAILABLE && slot !== undefined);
  t.ok(reservation !== UNAVAILABLE && reservation !== undefined);
  t.same(decisions.sort(), ["budget allowed", "concurrency allowed", "rate_limit allowed"]);
  await new Promise((r) => setTimeout(r, 1_000));
  t.equal(shared.memory.outstanding(), 0, "the slot and the reservation the shared store granted late were given back");
  t.ok(await shared.memory.reserve("b", 5, 5, 60_000), "the late reservation no longer counts");
});

t.test("local decisions are reported with their limit and result; a refusal of the shared store is not one", async (t) => {
  const shared = fakeShared();
  const decisions: string[] = [];
  const store = createGuardedStore({
    shared: shared.store,
    local: createMemoryStore(),
    onStoreError: "local",
    onLocal: (limit, allowed) => decisions.push(`${limit} ${allowed ? "allowed" : "refused"}`),
  });
  await store.take("k", bucket);
  await store.take("k", bucket);
  t.same(decisions, [], "answered by the shared store");
  shared.state.failing = true;
  await store.take("k2", bucket);
  await store.take("k2", bucket);
  await store.acquire("c", 1);
  await store.acquire("c", 1);
  t.same(decisions, ["rate_limit allowed", "rate_limit refused", "concurrency allowed", "concurrency refused"]);
});

t.test("budgets while down go through the shared store's own offline reservation when it has one", async (t) => {
  const shared = fakeShared();
  const offline: string[] = [];
  const store = createGuardedStore({
    shared: {
      ...shared.store,
      reserveOffline(key, amount, cap) {
        offline.push(`${key} ${amount}/${cap}`);
        return amount <= cap ? () => {} : undefined;
      },
    },
    local: createMemoryStore(),
    onStoreError: "local",
  });
  shared.setHealth("down");
  t.ok(await store.reserve("budget:web:d", 3, 10, 1_000));
  t.equal(await store.reserve("budget:web:d", 11, 10, 1_000), undefined);
  t.same(offline, ["budget:web:d 3/10", "budget:web:d 11/10"]);
  t.equal(shared.state.calls, 0);
});

t.test("the first connection's wait counts against timeoutMs", async (t) => {
  const shared = slowShared(500);
  let up: () => void = () => {};
  const started = new Promise<void>((r) => (up = r));
  let health: "starting" | "up" = "starting";
  const store = createGuardedStore({
    shared: { ...shared.store, health: () => health, started },
    local: createMemoryStore(),
    onStoreError: "deny",
    timeoutMs: 80,
    startWaitMs: 1_000,
  });
  setTimeout(() => {
    health = "up";
    up();
  }, 50);
  const begun = performance.now();
  t.equal(await store.take("k", bucket), UNAVAILABLE);
  const took = performance.now() - begun;
  t.ok(took >= 75 && took < 400, `50 ms waiting for the connection + 30 ms for the call = timeoutMs (${took.toFixed(0)} ms)`);
});
