/**
 * Ownership records in this process's memory (`limits.store: memory`, and the per-replica fallback
 * of `on_store_error: local`). Exact for one replica; with several, each knows only what it recorded
 * itself, so use Redis there (README "Ownership").
 *
 * Bounded: at most `maxRecords` ids in all; past that, the owners active least recently are
 * forgotten first, whole. Forgetting fails closed: the owner gets 404 for those ids, nobody else
 * ever gets them. Expired ids go lazily, when their owner's entry is touched.
 *
 * The records of a memory limit store live as long as that store: a reload that keeps the store
 * (limits.ts adopts it when the store settings did not change) keeps them too.
 */
import type { LimitStore } from "../limits/store.ts";
import type { OwnershipRecords } from "./records.ts";

export interface MemoryRecordsOptions {
  /** Monotonic milliseconds; default `performance.now`. */
  readonly now?: () => number;
  /** Most ids held in all; default 100 000. */
  readonly maxRecords?: number;
}

/** Creates empty records. */
export function createMemoryRecords(options: MemoryRecordsOptions = {}): OwnershipRecords {
  const now = options.now ?? (() => performance.now());
  const maxRecords = options.maxRecords ?? 100_000;
  /** Key → id → expiry; Map order is least recently touched first. */
  const entries = new Map<string, Map<string, number>>();
  let total = 0;

  /** The entry of `key`, marked most recently used, its expired ids dropped from the oldest on. */
  function live(key: string, at: number): Map<string, number> | undefined {
    const ids = entries.get(key);
    if (ids === undefined) return undefined;
    // Oldest first and one ttl per kind: the first id still alive ends the sweep (an id that
    // outlives a shorter ttl after a reload goes later; `owned` checks every expiry itself).
    for (const [id, expires] of ids) {
      if (expires > at) break;
      ids.delete(id);
      total -= 1;
    }
    entries.delete(key);
    if (ids.size === 0) return undefined;
    entries.set(key, ids);
    return ids;
  }

  return {
    record(key, ids, ttlMs, maxItems) {
      const at = now();
      const entry = live(key, at) ?? new Map<string, number>();
      for (const id of ids) {
        if (!entry.has(id)) total += 1;
        // Delete first so the Map keeps ids oldest first: the cap below drops the oldest.
        entry.delete(id);
        entry.set(id, at + ttlMs);
      }
      for (const id of entry.keys()) {
        if (entry.size <= maxItems) break;
        entry.delete(id);
        total -= 1;
      }
      entries.delete(key);
      entries.set(key, entry);
      for (const [oldest, held] of entries) {
        if (total <= maxRecords || oldest === key) break;
        entries.delete(oldest);
        total -= held.size;
      }
      return Promise.resolve();
    },

    owned(key, ids) {
      const at = now();
      const entry = live(key, at);
      return Promise.resolve(ids.map((id) => (entry?.get(id) ?? 0) > at));
    },
  };
}

const byStore = new WeakMap<LimitStore, OwnershipRecords>();

/** The records that live beside a memory limit store, created on first use. */
export function memoryRecordsOf(store: LimitStore): OwnershipRecords {
  let records = byStore.get(store);
  if (records === undefined) {
    records = createMemoryRecords();
    byStore.set(store, records);
  }
  return records;
}
