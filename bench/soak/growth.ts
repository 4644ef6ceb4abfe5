/**
 * "Still growing?" for a series of samples over the second half of the run.
 *
 * Two numbers per series:
 * - spread: max − min of the samples in the window;
 * - rise: the least-squares line through the samples, its value at the end minus its value at
 *   the start (slope × window length).
 *
 * A series is growing when both pass their limits: it moved more than `spreadLimit` *and* its
 * trend rose more than `riseLimit`. A series that stays within `spreadLimit` is flat whatever its
 * trend (10 MB of RSS is the "flat" of the issue); one with wide swings but no upward trend (GC
 * sawtooth, a burst of uploads that is given back) is bounded, not growing. The trend line uses
 * every sample, so one spike cannot make it rise the way it widens the spread.
 */

export interface Sample {
  /** Milliseconds on the soak's clock. */
  readonly t: number;
  readonly v: number;
}

export interface Growth {
  readonly samples: number;
  readonly first: number;
  readonly last: number;
  readonly min: number;
  readonly max: number;
  readonly spread: number;
  /** Slope per minute. */
  readonly slopePerMinute: number;
  readonly rise: number;
  readonly growing: boolean;
}

export function growth(samples: readonly Sample[], spreadLimit: number, riseLimit: number): Growth {
  const n = samples.length;
  if (n < 3) return { samples: n, first: NaN, last: NaN, min: NaN, max: NaN, spread: 0, slopePerMinute: 0, rise: 0, growing: false };
  const meanT = samples.reduce((s, p) => s + p.t, 0) / n;
  const meanV = samples.reduce((s, p) => s + p.v, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of samples) {
    num += (p.t - meanT) * (p.v - meanV);
    den += (p.t - meanT) ** 2;
  }
  const slope = den === 0 ? 0 : num / den;
  const values = samples.map((p) => p.v);
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = samples[n - 1]!.t - samples[0]!.t;
  const rise = slope * span;
  const spread = max - min;
  return {
    samples: n,
    first: samples[0]!.v,
    last: samples[n - 1]!.v,
    min,
    max,
    spread,
    slopePerMinute: slope * 60_000,
    rise,
    growing: spread > spreadLimit && rise > riseLimit,
  };
}

/** The samples taken at or after the middle of [from, to]. */
export function secondHalf<T extends { readonly t: number }>(samples: readonly T[], from: number, to: number): T[] {
  const middle = from + (to - from) / 2;
  return samples.filter((p) => p.t >= middle && p.t <= to);
}
