/**
 * Comparisons in alternating rounds: every system runs the same scenario once per round, in an
 * order that rotates from round to round, and the medians over rounds are reported.
 */
import { otherShareWindow } from "./proc.ts";
import { fmt, median } from "./report.ts";
import type { LatencyRound, ProxyUnderTest, SystemName, ThroughputRound } from "./scenarios.ts";

/** One value per system that took part. */
export type PerSystem<T> = Partial<Record<SystemName, T>>;

/** mythiq-proxy and the bare pass-through: the scenarios only those two run (latency, streams, memory). */
export interface Pair<T> {
  readonly bare: T;
  readonly mythiq: T;
}

export interface Comparison<T> {
  readonly rounds: PerSystem<T>[];
  /** Rounds run again because the machine was busy with other work. */
  readonly repeated: number;
  /** Share of the machine other processes used during each kept round. */
  readonly noise: number[];
}

/**
 * `rounds` rounds of `run` on every proxy; round i starts with proxies[i mod n] (with two proxies:
 * bare, mythiq / mythiq, bare …), so no system always runs first or last. A round during which other
 * processes used more than `noisy` of the machine is run again, at most `rounds` extra times in all.
 */
export async function alternate<T>(
  rounds: number,
  proxies: readonly ProxyUnderTest[],
  run: (p: ProxyUnderTest) => Promise<T>,
  options: { label: string; noisy: number; log: (line: string) => void },
): Promise<Comparison<T>> {
  const out: PerSystem<T>[] = [];
  const noise: number[] = [];
  let repeated = 0;
  for (let i = 0; out.length < rounds; i++) {
    const shift = i % proxies.length;
    const order = [...proxies.slice(shift), ...proxies.slice(0, shift)];
    const got: PerSystem<T> = {};
    const window = otherShareWindow(proxies.flatMap((p) => p.pids));
    for (const proxy of order) got[proxy.name] = await run(proxy);
    const other = window.stop();
    if (other > options.noisy && repeated < rounds) {
      repeated += 1;
      options.log(`  ${options.label} round ${out.length + 1}/${rounds}: other processes used ${fmt.pct(other)} of the machine, running it again`);
      continue;
    }
    noise.push(other);
    out.push(got);
    options.log(`  ${options.label} round ${out.length}/${rounds} done (other load ${fmt.pct(other)})`);
  }
  return { rounds: out, repeated, noise };
}

/** The values of one system over the rounds (rounds it missed are left out). */
function series<T>(rounds: readonly PerSystem<T>[], name: SystemName): T[] {
  return rounds.flatMap((r) => (r[name] === undefined ? [] : [r[name]]));
}

function failures(statuses: Readonly<Record<string, number>>): number {
  return Object.entries(statuses)
    .filter(([s]) => !s.startsWith("2"))
    .reduce((n, [, c]) => n + c, 0);
}

export interface ThroughputSide {
  /** Medians over rounds. */
  readonly rps: number;
  readonly proxyUtil: number;
  readonly benchUtil: number;
  readonly cpuUsPerRequest: number;
  readonly p50: number;
  readonly p99: number;
  /** Totals over rounds. */
  readonly non2xx: number;
  readonly errors: number;
}

export interface ThroughputSummary {
  readonly systems: PerSystem<ThroughputSide>;
  readonly repeated: number;
  readonly noise: number[];
  readonly rounds: PerSystem<ThroughputRound>[];
}

export function throughputSummary(c: Comparison<ThroughputRound>, names: readonly SystemName[]): ThroughputSummary {
  const systems: PerSystem<ThroughputSide> = {};
  for (const name of names) {
    const rs = series(c.rounds, name);
    const pick = (f: (r: ThroughputRound) => number): number => median(rs.map(f));
    systems[name] = {
      rps: pick((r) => r.rps),
      proxyUtil: pick((r) => r.proxyUtil),
      benchUtil: pick((r) => r.benchUtil),
      cpuUsPerRequest: pick((r) => r.cpuUsPerRequest),
      p50: pick((r) => r.p50),
      p99: pick((r) => r.p99),
      non2xx: rs.reduce((n, r) => n + failures(r.statuses), 0),
      errors: rs.reduce((n, r) => n + r.errors, 0),
    };
  }
  return { systems, repeated: c.repeated, noise: c.noise, rounds: c.rounds };
}

/**
 * `a` against `b` in one throughput comparison: the ratio of their median req/s (what the targets
 * use), and the ratio of CPU time per request (b's ÷ a's: what the req/s ratio would be with both
 * CPU-bound, and steadier than req/s on a busy machine). NaN when either did not take part.
 */
export function versus(t: ThroughputSummary, a: SystemName, b: SystemName): { ratio: number; cpuRatio: number } {
  const x = t.systems[a];
  const y = t.systems[b];
  if (x === undefined || y === undefined) return { ratio: NaN, cpuRatio: NaN };
  return { ratio: x.rps / y.rps, cpuRatio: y.cpuUsPerRequest / x.cpuUsPerRequest };
}

export interface LatencySide {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly errors: number;
  readonly non2xx: number;
}

/** mythiq-proxy against bare at a fixed rate: medians, and the added latency as the median of per-round differences. */
export function latencySummary(c: Comparison<LatencyRound>) {
  const side = (name: "bare" | "mythiq"): LatencySide => {
    const rs = series(c.rounds, name);
    return {
      p50: median(rs.map((r) => r.p50)),
      p99: median(rs.map((r) => r.p99)),
      max: Math.max(...rs.map((r) => r.max)),
      errors: rs.reduce((n, r) => n + r.errors, 0),
      non2xx: rs.reduce((n, r) => n + failures(r.statuses), 0),
    };
  };
  const paired = c.rounds.flatMap((r) => (r.bare !== undefined && r.mythiq !== undefined ? [{ bare: r.bare, mythiq: r.mythiq }] : []));
  return {
    bare: side("bare"),
    mythiq: side("mythiq"),
    addedP50: median(paired.map((r) => r.mythiq.p50 - r.bare.p50)),
    addedP99: median(paired.map((r) => r.mythiq.p99 - r.bare.p99)),
    repeated: c.repeated,
    noise: c.noise,
    rounds: c.rounds,
  };
}

export type LatencySummary = ReturnType<typeof latencySummary>;
