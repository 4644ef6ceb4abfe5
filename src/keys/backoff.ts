/**
 * Timing of key refreshes: jitter so that the replicas of a Deployment, started together, do not hit
 * Vault or AWS in the same second for ever after; exponential backoff so that a secret store that is
 * down is not hammered by every replica once a second.
 */

/** Fraction by which a delay is spread either way: 0.1 = ±10 %. */
export const JITTER_FRACTION = 0.1;
/** First retry delay after a failed fetch, in ms. */
export const BACKOFF_BASE_MS = 1_000;
/** Growth of the retry delay per consecutive failure. */
export const BACKOFF_FACTOR = 2;

/**
 * Spreads `ms` uniformly over [0.9·ms, 1.1·ms) (with the default fraction).
 * `random` returns a number in [0, 1), like `Math.random`.
 */
export function jitter(ms: number, random: () => number, fraction: number = JITTER_FRACTION): number {
  return Math.round(ms * (1 + fraction * (2 * random() - 1)));
}

/**
 * Delay before the retry that follows the `failures`-th consecutive failure (1 = first failure):
 * 1 s, 2 s, 4 s, … capped at `capMs` (the key's refresh interval), then jittered. A cap below the
 * base (a sub-second interval) caps the base too.
 */
export function backoffDelay(failures: number, capMs: number, random: () => number): number {
  const exponent = Math.max(0, Math.min(failures - 1, 52));
  const raw = Math.min(BACKOFF_BASE_MS * BACKOFF_FACTOR ** exponent, capMs);
  return Math.max(1, jitter(raw, random));
}
