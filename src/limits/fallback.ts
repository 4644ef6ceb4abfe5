/**
 * What happens when the shared store cannot be reached (SPEC `limits.on_store_error`):
 * `local` runs the same operation on this replica's memory store (per-replica limits until Redis
 * answers again), `deny` answers `UNAVAILABLE`, which the rules turn into 503 `overloaded`.
 *
 * A store that is `down` is not called at all: requests do not each wait for a timeout while Redis
 * is away. The store itself notices when it answers again (reconnection or probe).
 *
 * No operation waits for the shared store longer than `timeoutMs`, the first connection's wait
 * included, whatever the client library does: past it the request is decided by `on_store_error`,
 * and a slot or reservation the shared store grants afterwards is given straight back.
 *
 * Budgets in `local` mode are reserved through the shared store's own offline ledger when it has
 * one (redis-store.ts `reserveOffline`): against the budget left as Redis last reported it, and
 * written back to Redis when it returns, so the day's spend is not handed out again.
 */
import { deadline } from "./deadline.ts";
import type { BucketSpec, LimitStore, Release, Settle, TakeResult } from "./store.ts";

export type OnStoreError = "local" | "deny";

/** The shared store could not be used and `on_store_error` is `deny`. */
export const UNAVAILABLE: unique symbol = Symbol("limits store unavailable");
export type Unavailable = typeof UNAVAILABLE;

/** Which limit a decision of the local fallback was for (a metric label). */
export type LocalLimit = "rate_limit" | "concurrency" | "budget";

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
  /** Longest wait for the shared store in one operation, ms; default 250 (`limits.redis.timeout`). */
  readonly timeoutMs?: number;
  /**
   * While the shared store is still making its first connection, how long a request waits for it
   * before treating it as down, ms; default 250, never more than `timeoutMs`.
   */
  readonly startWaitMs?: number;
  /** Told of every decision the local fallback takes (`on_store_error: local`), for the metrics. */
  readonly onLocal?: (limit: LocalLimit, allowed: boolean) => void;
}

const LATE: unique symbol = Symbol("the shared store did not answer in time");

export function createGuardedStore(options: GuardOptions): GuardedStore {
  const { shared, local, onStoreError } = options;
  const timeoutMs = options.timeoutMs ?? 250;
  const startWaitMs = Math.min(options.startWaitMs ?? 250, timeoutMs);
  const onLocal = options.onLocal ?? (() => {});

  /**
   * The shared store's answer, or LATE when it is down, failed, or took longer than what is left of
   * `timeoutMs`; `giveBack` undoes an answer that arrives after that.
   */
  async function fromShared<T>(op: (store: LimitStore) => Promise<T>, giveBack: (late: T) => void): Promise<T | typeof LATE> {
    // `store: memory`: the one store is its own fallback, answers at once and is never down.
    if (shared === local) return op(shared);
    const begun = performance.now();
    if (shared.health() === "starting") await waitFor(shared.started, startWaitMs);
    if (shared.health() !== "up") return LATE;
    const left = timeoutMs - (performance.now() - begun);
    if (left <= 0) return LATE;
    let cancel: () => void = () => {};
    let late = false;
    const call: Promise<T | typeof LATE> = op(shared).then(
      (value): T => {
        if (late) giveBack(value);
        return value;
      },
      // The store has marked itself down and counted the error; fall through to the policy.
      (): typeof LATE => LATE,
    );
    const due = new Promise<typeof LATE>((resolve) => {
      cancel = deadline(left, () => {
        late = true;
        resolve(LATE);
      });
    });
    try {
      return await Promise.race([call, due]);
    } finally {
      cancel();
    }
  }

  async function decide<T>(
    limit: LocalLimit,
    op: (store: LimitStore) => Promise<T>,
    offline: () => Promise<T>,
    allowed: (result: T) => boolean,
    giveBack: (late: T) => void = () => {},
  ): Promise<T | Unavailable> {
    const result = await fromShared(op, giveBack);
    if (result !== LATE) return result;
    if (onStoreError === "deny") return UNAVAILABLE;
    const decided = await offline();
    onLocal(limit, allowed(decided));
    return decided;
  }

  return {
    take: (key, bucket) =>
      decide(
        "rate_limit",
        (s) => s.take(key, bucket),
        () => local.take(key, bucket),
        (r) => r.ok,
      ),
    acquire: (key, limit) =>
      decide(
        "concurrency",
        (s) => s.acquire(key, limit),
        () => local.acquire(key, limit),
        (r) => r !== undefined,
        (late) => late?.(),
      ),
    reserve: (key, amount, cap, ttlMs) =>
      decide(
        "budget",
        (s) => s.reserve(key, amount, cap, ttlMs),
        () =>
          shared.reserveOffline === undefined
            ? local.reserve(key, amount, cap, ttlMs)
            : Promise.resolve(shared.reserveOffline(key, amount, cap, ttlMs)),
        (r) => r !== undefined,
        (late) => late?.(false),
      ),
  };
}

/** Resolves when `promise` does or after `ms`, whichever is first; leaves no timer behind. */
function waitFor(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
