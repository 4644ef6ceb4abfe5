/** A small seeded PRNG (mulberry32), so a soak's traffic mix and fault picks can be replayed with `--seed`. */
export interface Rng {
  /** A number in [0, 1). */
  next(): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
  /** An integer in [0, n). */
  int(n: number): number;
  /** One of `items`, weighted by `weight`. */
  pick<T>(items: readonly T[], weight: (item: T) => number): T;
}

export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    chance: (p) => next() < p,
    int: (n) => Math.floor(next() * n),
    pick(items, weight) {
      const total = items.reduce((sum, item) => sum + weight(item), 0);
      let at = next() * total;
      for (const item of items) {
        at -= weight(item);
        if (at < 0) return item;
      }
      return items[items.length - 1]!;
    },
  };
}
