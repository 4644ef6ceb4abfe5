// The budget ledger: this replica's share of each day's counter, what it may still reserve while
// Redis is away (the budget left as Redis last reported it), and what it must write back.
import t from "tap";
import { createBudgetLedger } from "../../src/limits/budget-ledger.ts";

const HOUR = 3_600_000;

t.test("offline reservations: against the total Redis last reported, never past the cap", async (t) => {
  const ledger = createBudgetLedger(() => 0);
  ledger.seen("p:budget:web:d", "budget:web:d", 70, HOUR);
  t.equal(ledger.reserveOffline("p:budget:web:d", "budget:web:d", 20, 100, HOUR), 1, "70 + 20 ≤ 100");
  t.equal(ledger.reserveOffline("p:budget:web:d", "budget:web:d", 11, 100, HOUR), undefined, "70 + 20 + 11 > 100");
  t.equal(ledger.reserveOffline("p:budget:web:d", "budget:web:d", 10, 100, HOUR), 2, "exactly the cap");
  t.equal(ledger.unwritten(), 30);
  t.equal(ledger.reserveOffline("p:budget:other:d", "budget:other:d", 100, 100, HOUR), 1, "a counter never seen: the whole budget");
});

t.test("pending shares: shared and offline reservations, minus what was given back", async (t) => {
  const ledger = createBudgetLedger(() => 0);
  ledger.seen("k", "budget:web:d", 10, HOUR);
  ledger.reservedShared("k", "budget:web:d", 10, HOUR);
  ledger.reservedShared("k", "budget:web:d", 5, HOUR);
  ledger.returnedShared("k", 5);
  const seq = ledger.reserveOffline("k", "budget:web:d", 7, 100, HOUR);
  t.equal(seq, 1);
  const pending = ledger.pending();
  t.same(pending, [{ fullKey: "k", key: "budget:web:d", share: 17, ttlMs: HOUR, seq: 1, unwritten: 7 }]);
  t.equal(ledger.returnedOffline("k", 7, 1), false, "given back before it was written: Redis never had it");
  t.equal(ledger.unwritten(), 0);
  t.same(ledger.pending().map((p) => p.share), [10]);
});

t.test("after a write-back: unwritten drops by what was sent; later offline reservations stay unwritten", async (t) => {
  const ledger = createBudgetLedger(() => 0);
  ledger.reserveOffline("k", "budget:web:d", 5, 100, HOUR);
  const [sent] = ledger.pending();
  ledger.reserveOffline("k", "budget:web:d", 3, 100, HOUR); // while the write-back is on its way
  ledger.restored(sent!, 40);
  t.equal(ledger.unwritten(), 3, "the reservation made after the snapshot is still to write");
  t.equal(ledger.returnedOffline("k", 5, 1), true, "the first one is in Redis: giving it back there too is right");
  t.equal(ledger.returnedOffline("k", 3, 2), false);
  t.equal(ledger.unwritten(), 0);
  t.equal(ledger.reserveOffline("k", "budget:web:d", 60, 100, HOUR), 1 + 2, "the new total (40) is the base now");
  t.equal(ledger.reserveOffline("k", "budget:web:d", 1, 100, HOUR), undefined, "40 + 60 + 1 > 100");
});

t.test("entries end with their counter (wall clock)", async (t) => {
  let now = 1_000;
  const ledger = createBudgetLedger(() => now);
  ledger.reservedShared("k", "budget:web:d", 10, 500);
  t.same(ledger.pending().map((p) => p.ttlMs), [500]);
  now += 499;
  t.same(ledger.pending().map((p) => p.ttlMs), [1]);
  now += 1;
  t.same(ledger.pending(), [], "expired: nothing to write back");
  t.equal(ledger.reserveOffline("k", "budget:web:d", 100, 100, 500), 1, "a new day starts from nothing");
  t.equal(ledger.returnedOffline("gone", 1, 1), false, "an unknown counter is ignored");
  ledger.returnedShared("gone", 1);
  ledger.restored({ fullKey: "gone", key: "x", share: 1, ttlMs: 1, seq: 0, unwritten: 0 }, 1);
  t.equal(ledger.unwritten(), 100);
});
