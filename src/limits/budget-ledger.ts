/**
 * This replica's own account of the budget spend it holds in Redis, so that spend is never lost to
 * an outage or a failover (docs/limits.md "After an outage").
 *
 * In Redis a day's budget counter is a hash: `total`, and one field per replica instance with that
 * replica's *share* (what it reserved and did not give back). This ledger keeps the same share in
 * memory, plus:
 *
 * - `lastTotal`: the counter's total as Redis last reported it. While Redis does not answer, the
 *   replica reserves against it (`reserveOffline`): at most the budget that was left as it last saw
 *   it, minus what it already reserved offline since.
 * - `unwritten`: what it reserved offline and Redis does not hold yet.
 *
 * When Redis answers again the store writes every share back (redis-scripts.ts RESTORE): Redis's
 * field becomes the larger of the two and the total grows by the difference. That puts back both the
 * spend reserved offline and any reservation a failover lost (Redis replicates asynchronously: a
 * reservation acknowledged by a primary that died may never have reached its replica). Writing a
 * share back is idempotent (a maximum, not an increment), so a write-back whose reply was lost can
 * be sent again without counting anything twice.
 *
 * Amounts are integers in the counter's unit (micro-dollars, pricing.ts). Entries expire with the
 * counter (the end of its UTC day plus grace), by the wall clock.
 */

interface Entry {
  /** The logical key (without the prefix), for events. */
  readonly key: string;
  share: number;
  lastTotal: number;
  unwritten: number;
  /** Offline reservations are numbered; those up to `writtenSeq` are in Redis. */
  seq: number;
  writtenSeq: number;
  expiresAt: number;
}

/** A share to write back: send `share`, then report the reply to `restored` with `seq`. */
export interface PendingShare {
  readonly fullKey: string;
  readonly key: string;
  readonly share: number;
  readonly ttlMs: number;
  /** The last offline reservation included, and what of them was not in Redis yet. */
  readonly seq: number;
  readonly unwritten: number;
}

export interface BudgetLedger {
  /** Redis reported `total` for the counter (after a reservation, refused or not). */
  seen(fullKey: string, key: string, total: number, ttlMs: number): void;
  /** A reservation in Redis succeeded. */
  reservedShared(fullKey: string, key: string, amount: number, ttlMs: number): void;
  /** A reservation in Redis is being given back (an UNRESERVE was sent). */
  returnedShared(fullKey: string, amount: number): void;
  /**
   * Reserves without Redis: refused (undefined) when the last total Redis reported plus what was
   * reserved offline since plus `amount` would pass `cap`. Returns the reservation's number.
   */
  reserveOffline(fullKey: string, key: string, amount: number, cap: number, ttlMs: number): number | undefined;
  /**
   * An offline reservation is given back. True when it had already been written to Redis (then
   * Redis still counts it, and the caller may give it back there too).
   */
  returnedOffline(fullKey: string, amount: number, seq: number): boolean;
  /** Every live share, to write back. */
  pending(): PendingShare[];
  /** A write-back of `pending` succeeded; Redis's total is now `total`. */
  restored(share: PendingShare, total: number): void;
  /** Offline reservations not yet in Redis, over all counters (for tests and the log). */
  unwritten(): number;
}

/** `now`: wall clock in epoch ms (the counters live until the end of a UTC day). */
export function createBudgetLedger(now: () => number = Date.now): BudgetLedger {
  const entries = new Map<string, Entry>();

  function live(fullKey: string): Entry | undefined {
    const entry = entries.get(fullKey);
    if (entry !== undefined && entry.expiresAt <= now()) {
      entries.delete(fullKey);
      return undefined;
    }
    return entry;
  }

  function entry(fullKey: string, key: string, ttlMs: number): Entry {
    const expiresAt = now() + ttlMs;
    const found = live(fullKey);
    if (found !== undefined) {
      found.expiresAt = Math.max(found.expiresAt, expiresAt);
      return found;
    }
    const created: Entry = { key, share: 0, lastTotal: 0, unwritten: 0, seq: 0, writtenSeq: 0, expiresAt };
    entries.set(fullKey, created);
    return created;
  }

  return {
    seen(fullKey, key, total, ttlMs) {
      entry(fullKey, key, ttlMs).lastTotal = total;
    },
    reservedShared(fullKey, key, amount, ttlMs) {
      entry(fullKey, key, ttlMs).share += amount;
    },
    returnedShared(fullKey, amount) {
      const found = live(fullKey);
      if (found !== undefined) found.share = Math.max(0, found.share - amount);
    },
    reserveOffline(fullKey, key, amount, cap, ttlMs) {
      const e = entry(fullKey, key, ttlMs);
      if (e.lastTotal + e.unwritten + amount > cap) return undefined;
      e.share += amount;
      e.unwritten += amount;
      e.seq += 1;
      return e.seq;
    },
    returnedOffline(fullKey, amount, seq) {
      const found = live(fullKey);
      if (found === undefined) return false;
      found.share = Math.max(0, found.share - amount);
      if (seq <= found.writtenSeq) return true;
      found.unwritten = Math.max(0, found.unwritten - amount);
      return false;
    },
    pending() {
      const at = now();
      const out: PendingShare[] = [];
      for (const [fullKey, e] of entries) {
        if (e.expiresAt <= at) entries.delete(fullKey);
        else if (e.share > 0) out.push({ fullKey, key: e.key, share: e.share, ttlMs: e.expiresAt - at, seq: e.seq, unwritten: e.unwritten });
      }
      return out;
    },
    restored(share, total) {
      const found = live(share.fullKey);
      if (found === undefined) return;
      // Offline reservations made while the write-back was on its way are not in it: they stay unwritten.
      found.unwritten = Math.max(0, found.unwritten - share.unwritten);
      found.writtenSeq = Math.max(found.writtenSeq, share.seq);
      found.lastTotal = total;
    },
    unwritten() {
      let sum = 0;
      for (const e of entries.values()) sum += e.unwritten;
      return sum;
    },
  };
}
