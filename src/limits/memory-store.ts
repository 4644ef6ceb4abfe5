/**
 * The `memory` limit store: plain maps in this process. Exact for one replica; with several, each
 * replica enforces the whole limit on its own (docs/limits.md). Also the per-replica fallback when
 * the redis store cannot be reached and `on_store_error: local`.
 *
 * Nothing runs in the background: buckets refill and counters expire lazily when touched.
 */
import type { BucketSpec, LimitStore, Release, Settle, TakeResult } from "./store.ts";

export interface MemoryStoreOptions {
  /** Monotonic clock in milliseconds; default `performance.now`. */
  readonly now?: () => number;
  /**
   * Most buckets and counters remembered at once (least recently used forgotten first, which
   * refills that bucket early); default 100 000. Concurrency counts are never forgotten.
   */
  readonly maxEntries?: number;
}

interface Bucket {
  tokens: number;
  updated: number;
}

interface Counter {
  value: number;
  expiresAt: number;
}

/** Creates an empty memory store. */
export function createMemoryStore(options: MemoryStoreOptions = {}): LimitStore {
  const now = options.now ?? (() => performance.now());
  const maxEntries = options.maxEntries ?? 100_000;
  const buckets = new Map<string, Bucket>();
  const slots = new Map<string, number>();
  const counters = new Map<string, Counter>();
  let held = 0;

  /** Re-inserts so Map order is least recently used first, then forgets the oldest past the cap. */
  function touch<V>(map: Map<string, V>, key: string, value: V): void {
    map.delete(key);
    map.set(key, value);
    if (map.size > maxEntries) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
  }

  function once(settle: (keep: boolean) => void): Settle {
    let done = false;
    held += 1;
    return (keep) => {
      if (done) return;
      done = true;
      held -= 1;
      settle(keep);
    };
  }

  function take(key: string, spec: BucketSpec): TakeResult {
    const at = now();
    const ratePerMs = spec.refill / spec.periodMs;
    const bucket = buckets.get(key) ?? { tokens: spec.capacity, updated: at };
    bucket.tokens = Math.min(spec.capacity, bucket.tokens + Math.max(0, at - bucket.updated) * ratePerMs);
    bucket.updated = at;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      touch(buckets, key, bucket);
      return { ok: true };
    }
    touch(buckets, key, bucket);
    // Multiply before dividing, and forgive float noise, so 1 token at 2 per hour is 1 800 000 ms, not 1 800 001.
    return { ok: false, retryAfterMs: Math.max(1, Math.ceil(((1 - bucket.tokens) * spec.periodMs) / spec.refill - 1e-6)) };
  }

  function acquire(key: string, limit: number): Release | undefined {
    const inUse = slots.get(key) ?? 0;
    if (inUse >= limit) return undefined;
    slots.set(key, inUse + 1);
    const settle = once(() => {
      const left = (slots.get(key) ?? 1) - 1;
      if (left <= 0) slots.delete(key);
      else slots.set(key, left);
    });
    return () => settle(false);
  }

  function current(key: string, at: number): Counter | undefined {
    const counter = counters.get(key);
    if (counter !== undefined && counter.expiresAt <= at) {
      counters.delete(key);
      return undefined;
    }
    return counter;
  }

  function reserve(key: string, amount: number, cap: number, ttlMs: number): Settle | undefined {
    const at = now();
    const counter = current(key, at) ?? { value: 0, expiresAt: at + ttlMs };
    if (counter.value + amount > cap) return undefined;
    counter.value += amount;
    counter.expiresAt = at + ttlMs;
    touch(counters, key, counter);
    return once((keep) => {
      // Only the counter this amount went into: after expiry the key holds a new day's spend.
      if (keep || current(key, now()) !== counter) return;
      counter.value = Math.max(0, counter.value - amount);
    });
  }

  return {
    kind: "memory",
    take: (key, spec) => Promise.resolve(take(key, spec)),
    acquire: (key, limit) => Promise.resolve(acquire(key, limit)),
    reserve: (key, amount, cap, ttlMs) => Promise.resolve(reserve(key, amount, cap, ttlMs)),
    health: () => "up",
    started: Promise.resolve(),
    outstanding: () => held,
    close: () => Promise.resolve(),
  };
}
