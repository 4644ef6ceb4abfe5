/**
 * What happens when the shared store cannot be reached (SPEC `limits.on_store_error`):
 * `local` runs the same operation on this replica's memory store (per-replica limits until Redis
 * answers again), `deny` answers `UNAVAILABLE`, which the rules turn into 503 `overloaded`.
 *
 * A store that is `down` is not called at all: requests do not each wait for a timeout while Redis
 * is away. The store itself notices when it answers again (reconnection or background PING).
 */
import type { BucketSpec, LimitStore, Release, Settle, TakeResult } from "./store.ts";

export type OnStoreError = "local" | "deny";

/** The shared store could not be used and `on_store_error` is `deny`. */
export const UNAVAILABLE: unique symbol = Symbol("limits store unavailable");
export type Unavailable = typeof UNAVAILABLE;

/** The store operations as the rules see them: from the shared store, the local fallback, or UNAVAILABLE. */
export interface GuardedStore {
  take(key: string, bucket: BucketSpec): Promise<TakeResult | Unavailable>;
  acquire(key: string, limit: number): Promise<Release | undefined | Unavailable>;
  reserve(key: string, amount: number, cap: number, ttlMs: number): Promise<Settle | undefined | Unavailable>;
}

export interface GuardOptions {
  readonly shared: LimitStore;
  /** Per-replica store used while `shared` is down and `onStoreError` is `local`. */
  readonly local: LimitStore;
  readonly onStoreError: OnStoreError;
  /**
   * While the shared store is still making its first connection, how long a request waits for it
   * before treating it as down, ms; default 250.
   */
  readonly startWaitMs?: number;
}

export function createGuardedStore(options: GuardOptions): GuardedStore {
  const { shared, local, onStoreError } = options;
  const startWaitMs = options.startWaitMs ?? 250;

  async function attempt<T>(op: (store: LimitStore) => Promise<T>): Promise<T | Unavailable> {
    if (shared.health() === "starting") await waitFor(shared.started, startWaitMs);
    if (shared.health() === "up") {
      try {
        return await op(shared);
      } catch {
        // The store has marked itself down and counted the error; fall through to the policy.
      }
    }
    return onStoreError === "local" ? op(local) : UNAVAILABLE;
  }

  return {
    take: (key, bucket) => attempt((s) => s.take(key, bucket)),
    acquire: (key, limit) => attempt((s) => s.acquire(key, limit)),
    reserve: (key, amount, cap, ttlMs) => attempt((s) => s.reserve(key, amount, cap, ttlMs)),
  };
}

/** Resolves when `promise` does or after `ms`, whichever is first; leaves no timer behind. */
function waitFor(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
