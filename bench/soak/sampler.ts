/**
 * The proxy's vital signs over time: RSS (anonymous and file-backed, from /proc/PID/status), its
 * threads and CPU time, and its open file descriptors (/proc/PID/fd) every second; heap, external
 * memory, event-loop delay and the counters the soak checks from the admin port's /metrics every
 * few seconds.
 *
 * File descriptors are split in two: TCP connections that are open at both ends (ESTABLISHED in
 * /proc/net/tcp*), whose number follows the load (each caller's connection, each pooled upstream
 * connection), and everything else: listening sockets, pipes, files, watchers, and sockets whose
 * peer has gone (CLOSE_WAIT and the like), which is where a descriptor leak shows.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { cpuSeconds, rssParts } from "../proc.ts";

export interface ProcSample {
  readonly t: number;
  readonly rss: number;
  readonly anon: number;
  readonly file: number;
  readonly fds: number;
  /** fds that are TCP connections open at both ends. */
  readonly established: number;
  /** fds − established: the ones a leak would add to. */
  readonly otherFds: number;
  readonly threads: number;
  /** CPU seconds used so far. */
  readonly cpu: number;
}

export interface MetricsSample {
  readonly t: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  /** prom-client's event-loop delay since the previous scrape, seconds. */
  readonly lagP99: number;
  readonly lagMax: number;
  readonly requests: number;
  readonly storeUp: number;
  readonly rotations: number;
  readonly reloadsApplied: number;
  readonly reloadsRejected: number;
}

/** Sum of every sample of `name` (all label sets) in Prometheus text; NaN when absent. */
export function metricSum(text: string, name: string, labels = ""): number {
  let sum = NaN;
  const prefix = `${name}{`;
  const bare = `${name} `;
  for (const line of text.split("\n")) {
    if (!(line.startsWith(prefix) || line.startsWith(bare))) continue;
    if (labels !== "" && !line.includes(labels)) continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(value)) sum = (Number.isNaN(sum) ? 0 : sum) + value;
  }
  return sum;
}

export function parseMetrics(t: number, text: string): MetricsSample {
  return {
    t,
    heapUsed: metricSum(text, "nodejs_heap_size_used_bytes"),
    heapTotal: metricSum(text, "nodejs_heap_size_total_bytes"),
    external: metricSum(text, "nodejs_external_memory_bytes"),
    lagP99: metricSum(text, "nodejs_eventloop_lag_p99_seconds"),
    lagMax: metricSum(text, "nodejs_eventloop_lag_max_seconds"),
    requests: metricSum(text, "mythiq_proxy_requests_total"),
    storeUp: metricSum(text, "mythiq_proxy_limits_store_up"),
    rotations: metricSum(text, "mythiq_proxy_key_rotations_total"),
    reloadsApplied: metricSum(text, "mythiq_proxy_config_reloads_total", 'result="applied"'),
    reloadsRejected: metricSum(text, "mythiq_proxy_config_reloads_total", 'result="rejected"'),
  };
}

/** Inodes of the ESTABLISHED TCP sockets in this network namespace. */
function establishedInodes(): Set<string> {
  const inodes = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
      if (fields[3] === "01" && fields[9] !== undefined) inodes.add(fields[9]);
    }
  }
  return inodes;
}

/** Open fds of `pid`, and how many are ESTABLISHED TCP connections. */
export function fdCounts(pid: number): { fds: number; established: number } {
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return { fds: NaN, established: NaN };
  }
  const open = establishedInodes();
  let established = 0;
  for (const name of names) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${name}`);
      if (target.startsWith("socket:[") && open.has(target.slice(8, -1))) established += 1;
    } catch {
      // Closed between the listing and the look.
    }
  }
  return { fds: names.length, established };
}

function threads(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/^Threads:\s+(\d+)$/m.exec(status)?.[1] ?? NaN);
}

export interface Sampler {
  readonly proc: ProcSample[];
  readonly metrics: MetricsSample[];
  /** Failed scrapes (the admin port must answer throughout). */
  readonly scrapeErrors: string[];
  stop(): void;
}

export function startSampler(pid: number, scrape: () => Promise<string>, now: () => number, metricsEveryMs = 2_000): Sampler {
  const proc: ProcSample[] = [];
  const metrics: MetricsSample[] = [];
  const scrapeErrors: string[] = [];
  const takeProc = (): void => {
    try {
      const parts = rssParts(pid);
      // An exited process (a zombie until reaped) has no VmRSS: nothing to sample any more.
      if (!Number.isFinite(parts.rss)) return;
      const fds = fdCounts(pid);
      proc.push({ t: now(), ...parts, ...fds, otherFds: fds.fds - fds.established, threads: threads(pid), cpu: cpuSeconds(pid) });
    } catch {
      // The process is gone.
    }
  };
  let scraping = false;
  const takeMetrics = (): void => {
    if (scraping) return;
    scraping = true;
    const t = now();
    scrape()
      .then((text) => metrics.push(parseMetrics(t, text)))
      .catch((err: unknown) => {
        if (scrapeErrors.length < 20) scrapeErrors.push(`${(t / 1000).toFixed(1)}s ${(err as Error).message}`);
      })
      .finally(() => (scraping = false));
  };
  takeProc();
  takeMetrics();
  const procTimer = setInterval(takeProc, 1_000);
  const metricsTimer = setInterval(takeMetrics, metricsEveryMs);
  return {
    proc,
    metrics,
    scrapeErrors,
    stop() {
      clearInterval(procTimer);
      clearInterval(metricsTimer);
    },
  };
}
