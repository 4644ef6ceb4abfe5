/** Refusals shared by the limit rules. */
import { deny, type Deny } from "../pipeline/types.ts";

/**
 * `Retry-After` when the shared store is down and `on_store_error: deny`: about the time the store
 * takes to notice that Redis answers again (a PING every second, reconnections at most 2 s apart).
 */
export const STORE_DOWN_RETRY_SECONDS = 2;

/**
 * 503 `overloaded`: of SPEC's 503 reasons it is the one that is true here (the proxy cannot take
 * more limited requests right now and the caller should come back later). `key_unavailable` would
 * send operators to the key source and `draining` tells callers this replica is going away.
 */
export function storeUnavailable(): Deny {
  return deny("overloaded", "limits store unavailable (on_store_error: deny)", STORE_DOWN_RETRY_SECONDS);
}

/** Whole seconds for `Retry-After`, rounded up, at least 1. */
export function retrySeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}
