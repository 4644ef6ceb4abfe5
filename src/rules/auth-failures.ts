/**
 * In-memory limiter for failed authentications per caller (SPEC §3 `limits.auth_failures`, §4
 * step 3): a token bucket per caller of size `requests`, refilled at `requests` per `per`. Each
 * failed attempt takes one token; with none left the caller gets 429 `auth_failures` until one
 * has refilled. This is the per-replica fallback; a shared (redis) store can implement the same
 * `AuthFailures` interface.
 */
import type { AuthFailures } from "./identity-check.ts";
import { UNKNOWN_IP, normalizeIp } from "./ip.ts";
import { deny, type Deny } from "../pipeline/types.ts";

export interface AuthFailureLimiterOptions {
  /** Failed attempts allowed in a burst, and refilled per `per`. At least 1. */
  readonly requests: number;
  /** Refill period in milliseconds. */
  readonly per: number;
  /** Monotonic clock in milliseconds; default `performance.now`. */
  readonly now?: () => number;
  /** Most callers remembered at once (least recently seen forgotten first); default 100 000. */
  readonly maxEntries?: number;
}

export interface AuthFailureLimiter extends AuthFailures {
  /** Callers currently remembered. */
  readonly size: number;
}

interface Bucket {
  tokens: number;
  updated: number;
}

/**
 * The bucket key for a caller: an IPv4 address as is, an IPv6 address by its /64 — one host
 * usually holds a whole /64, so counting single IPv6 addresses would let it rotate past the limit.
 */
export function callerKey(ip: string): string {
  const address = normalizeIp(ip);
  if (address === undefined) return UNKNOWN_IP;
  if (!address.includes(":")) return address;
  const [head = "", tail] = address.split("::");
  const headParts = head === "" ? [] : head.split(":");
  const tailParts = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros: string[] = new Array<string>(8 - headParts.length - tailParts.length).fill("0");
  const full = [...headParts, ...zeros, ...tailParts];
  return `${full.slice(0, 4).join(":")}::/64`;
}

/** Creates the limiter. Nothing runs in the background: buckets refill lazily when read. */
export function createAuthFailureLimiter(options: AuthFailureLimiterOptions): AuthFailureLimiter {
  const capacity = Math.max(1, options.requests);
  const ratePerMs = capacity / Math.max(1, options.per);
  const now = options.now ?? (() => performance.now());
  const maxEntries = options.maxEntries ?? 100_000;
  const buckets = new Map<string, Bucket>();

  function refill(bucket: Bucket, at: number): void {
    bucket.tokens = Math.min(capacity, bucket.tokens + Math.max(0, at - bucket.updated) * ratePerMs);
    bucket.updated = at;
  }

  return {
    get size() {
      return buckets.size;
    },
    blocked(ip: string): Deny | undefined {
      const key = callerKey(ip);
      const bucket = buckets.get(key);
      if (bucket === undefined) return undefined;
      refill(bucket, now());
      if (bucket.tokens >= capacity) {
        buckets.delete(key); // fully recovered: nothing left to remember
        return undefined;
      }
      if (bucket.tokens >= 1) return undefined;
      const retryAfterSeconds = Math.max(1, Math.ceil((1 - bucket.tokens) / ratePerMs / 1000));
      return deny("auth_failures", "too many failed authentications from this caller", retryAfterSeconds);
    },
    failed(ip: string): void {
      const key = callerKey(ip);
      const at = now();
      const bucket = buckets.get(key) ?? { tokens: capacity, updated: at };
      refill(bucket, at);
      bucket.tokens = Math.max(0, bucket.tokens - 1);
      // Re-insert so Map order is least recently failed first, then forget the oldest past the cap.
      buckets.delete(key);
      buckets.set(key, bucket);
      if (buckets.size > maxEntries) {
        const oldest = buckets.keys().next();
        if (!oldest.done) buckets.delete(oldest.value);
      }
    },
  };
}
