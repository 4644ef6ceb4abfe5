/**
 * The one interface behind which limit state lives (SPEC §3 `limits.store`): `memory` for a single
 * replica, `redis` so that every replica enforces one shared limit. Each operation is atomic in its
 * store, so two requests racing for the last token, slot or dollar can never both win.
 *
 * Keys are logical (`rate:web`, `conc:web`, `budget:web:2025-01-31`); the redis store puts
 * `limits.redis.prefix` in front of them.
 */

/** A token bucket: `capacity` tokens at most, `refill` tokens added per `periodMs`. */
export interface BucketSpec {
  /** Most tokens held (SPEC `burst`, default `requests`). At least 1. */
  readonly capacity: number;
  /** Tokens added per `periodMs` (SPEC `requests`). At least 1. */
  readonly refill: number;
  /** Milliseconds (SPEC `per`). */
  readonly periodMs: number;
}

export type TakeResult = { readonly ok: true } | { readonly ok: false; readonly retryAfterMs: number };

/**
 * Gives back the slot an `acquire` took. Idempotent (only the first call counts) and never throws: a
 * store that cannot be reached lets the lease expire instead.
 */
export type Release = () => void;

/**
 * Ends a reservation: `keep` leaves the amount counted (it was spent), otherwise it is given back.
 * Idempotent and never throws, like `Release`.
 */
export type Settle = (keep: boolean) => void;

/** Whether the store answers: `starting` until its first connection settles (redis only). */
export type StoreHealth = "starting" | "up" | "down";

export interface LimitStore {
  readonly kind: "memory" | "redis";
  /** Takes one token; when none is left, says how long until one will be there. */
  take(key: string, bucket: BucketSpec): Promise<TakeResult>;
  /** Takes one of `limit` slots, or resolves undefined when all are taken. */
  acquire(key: string, limit: number): Promise<Release | undefined>;
  /**
   * Adds `amount` to the counter `key` unless that would take it past `cap`; resolves undefined when
   * refused. The counter expires `ttlMs` after its last reservation.
   */
  reserve(key: string, amount: number, cap: number, ttlMs: number): Promise<Settle | undefined>;
  /**
   * Redis only: runs a Lua script on the one key `key` (the prefix put in front) over this store's
   * connection, with its timeouts and health tracking. Ownership records use it (src/ownership/).
   */
  runScript?(script: { readonly lua: string; readonly sha: string }, key: string, args: readonly (string | number)[]): Promise<unknown>;
  /**
   * Redis only: reserves like `reserve` while the store is down (`on_store_error: local`), without
   * it: against the total it last reported, and written back to it when it answers again.
   */
  reserveOffline?(key: string, amount: number, cap: number, ttlMs: number): Settle | undefined;
  health(): StoreHealth;
  /** Resolves when `health()` is no longer `starting`. */
  readonly started: Promise<void>;
  /** Slots not released and reservations not settled yet (held by requests in flight). */
  outstanding(): number;
  /** Stops timers and closes connections. Releases after this are dropped. */
  close(): Promise<void>;
}
