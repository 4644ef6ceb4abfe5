/**
 * One function per measurement. Each takes the port (and pid) of a running proxy and returns plain
 * numbers; run.ts decides the order, the rounds and the targets.
 */
import http from "node:http";
import { BULK_BYTES, type Upstream } from "./upstream.ts";
import { closedLoop, connect, encodeRequest, openLoop, sleep, summarize, type Connection, type RequestSpec } from "./load.ts";
import { cpuWindow, rssBytes, sampleRss } from "./proc.ts";

/** The systems the benchmark knows: the proxy under test and its peers (bench/peers/). */
export type SystemName = "mythiq" | "bare" | "express" | "nginx";

export interface ProxyUnderTest {
  readonly name: SystemName;
  readonly port: number;
  /** The process that serves requests: its CPU time is measured (nginx: the worker). */
  readonly pid: number;
  /** All of the system's processes (nginx: master and worker), for RSS and the noise check. */
  readonly pids: readonly number[];
}

export interface ThroughputRound {
  readonly rps: number;
  readonly requests: number;
  /** Including the warm-up. */
  readonly total: number;
  readonly statuses: Readonly<Record<string, number>>;
  readonly errors: number;
  /** Share of one core the proxy used in the measured window (1 = saturated). */
  readonly proxyUtil: number;
  /** Share of one core the benchmark process (generator + upstream) used. */
  readonly benchUtil: number;
  /** Proxy CPU time per request, microseconds. */
  readonly cpuUsPerRequest: number;
  /** Latency of the requests counted (closed loop, so at saturation), milliseconds. */
  readonly p50: number;
  readonly p99: number;
}

export async function throughput(
  proxy: ProxyUnderTest,
  request: RequestSpec,
  options: { connections: number; warmupMs: number; durationMs: number },
): Promise<ThroughputRound> {
  let window: ReturnType<typeof cpuWindow> | undefined;
  let cpu = { proxyCpuSeconds: NaN, proxyUtil: NaN, benchUtil: NaN };
  const result = await closedLoop({
    port: proxy.port,
    request,
    ...options,
    onMeasureStart: () => (window = cpuWindow(proxy.pid)),
    onMeasureEnd: () => {
      if (window !== undefined) cpu = window.stop();
    },
  });
  const latency = summarize(result.latencies);
  return {
    rps: result.rps,
    requests: result.requests,
    total: result.total,
    statuses: result.statuses,
    errors: result.errors,
    proxyUtil: cpu.proxyUtil,
    benchUtil: cpu.benchUtil,
    cpuUsPerRequest: (cpu.proxyCpuSeconds / result.requests) * 1e6,
    p50: latency.p50,
    p99: latency.p99,
  };
}

export interface LatencyRound {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly count: number;
  readonly errors: number;
  readonly late: number;
  readonly statuses: Readonly<Record<string, number>>;
}

export async function fixedRate(
  proxy: ProxyUnderTest,
  request: RequestSpec,
  options: { rate: number; warmupMs: number; durationMs: number },
): Promise<LatencyRound> {
  const result = await openLoop({ port: proxy.port, request, ...options });
  const s = summarize(result.latencies);
  return { p50: s.p50, p90: s.p90, p99: s.p99, max: s.max, count: s.count, errors: result.errors, late: result.late, statuses: result.statuses };
}

/** One request, its status and body (for sanity checks). */
export async function once(port: number, request: RequestSpec): Promise<{ status: number; body: string }> {
  const conn = await connect(port, true);
  try {
    const response = await conn.request(encodeRequest(request, port));
    return { status: response.status, body: response.body?.toString("utf8") ?? "" };
  } finally {
    conn.close();
  }
}

export interface SseResult {
  readonly events: number;
  readonly expected: number;
  /** Milliseconds from the upstream writing an event to the client having all of it. */
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly status: number;
}

/** Server-Sent Events: `count` events `intervalMs` apart; the delay of each one through the proxy. */
export async function serverSentEvents(
  proxy: ProxyUnderTest,
  upstream: Upstream,
  request: RequestSpec,
  options: { count: number; intervalMs: number },
): Promise<SseResult> {
  upstream.sse = { count: options.count, intervalMs: options.intervalMs, written: [] };
  const delays: number[] = [];
  let text = "";
  const conn = await connect(proxy.port);
  try {
    const response = await conn.request(encodeRequest(request, proxy.port), {
      onBody(chunk) {
        const at = performance.now();
        text += chunk.toString("utf8");
        let end: number;
        while ((end = text.indexOf("\n\n")) !== -1) {
          const event = text.slice(0, end);
          text = text.slice(end + 2);
          const seq = /"seq":(\d+)/.exec(event)?.[1];
          const written = seq === undefined ? undefined : upstream.sse.written[Number(seq)];
          if (written !== undefined) delays.push(at - written.writtenAt);
        }
      },
    });
    const s = summarize(delays);
    return { events: delays.length, expected: options.count, p50: s.p50, p99: s.p99, max: s.max, status: response.status };
  } finally {
    conn.close();
  }
}

export interface BulkResult {
  readonly status: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly mibPerSecond: number;
  /** Highest RSS during the transfer minus RSS just before, bytes. */
  readonly rssGrowth: number;
  readonly rssBefore: number;
}

const BOUNDARY = "bench-boundary-7d1f0c";
const CHUNK = Buffer.alloc(64 * 1024, 0x62);

/** A 100 MiB multipart/form-data upload (one file field), streamed with backpressure. */
export async function upload(proxy: ProxyUnderTest, upstream: Upstream, token: string): Promise<BulkResult> {
  const preamble = Buffer.from(
    `--${BOUNDARY}\r\ncontent-disposition: form-data; name="file"; filename="big.bin"\r\ncontent-type: application/octet-stream\r\n\r\n`,
  );
  const epilogue = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
  const total = BULK_BYTES;
  const head = encodeRequest(
    {
      method: "POST",
      path: "/v1/uploads",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": `multipart/form-data; boundary=${BOUNDARY}`,
        "content-length": String(total),
      },
    },
    proxy.port,
  );
  upstream.lastUploadBytes = 0;
  const conn = await connect(proxy.port, true);
  const rssBefore = rssBytes(proxy.pid);
  const sampler = sampleRss(proxy.pid);
  const started = performance.now();
  try {
    const response = await conn.request((socket) => {
      let left = total - preamble.length - epilogue.length;
      socket.write(head);
      socket.write(preamble);
      const pump = (): void => {
        while (left > 0) {
          const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
          left -= piece.length;
          if (!socket.write(piece)) {
            socket.once("drain", pump);
            return;
          }
        }
        socket.write(epilogue);
      };
      pump();
    });
    const seconds = (performance.now() - started) / 1000;
    const peak = sampler.stop();
    return {
      status: response.status,
      bytes: upstream.lastUploadBytes,
      seconds,
      mibPerSecond: upstream.lastUploadBytes / 1048576 / seconds,
      rssGrowth: peak.maxBytes - rssBefore,
      rssBefore,
    };
  } finally {
    sampler.stop();
    conn.close();
  }
}

/** A 100 MiB download, read as fast as the client can. */
export async function download(proxy: ProxyUnderTest, token: string): Promise<BulkResult> {
  const conn: Connection = await connect(proxy.port);
  const rssBefore = rssBytes(proxy.pid);
  const sampler = sampleRss(proxy.pid);
  const started = performance.now();
  try {
    const response = await conn.request(
      encodeRequest({ method: "GET", path: "/v1/files/file-0123/content", headers: { authorization: `Bearer ${token}` } }, proxy.port),
    );
    const seconds = (performance.now() - started) / 1000;
    const peak = sampler.stop();
    return {
      status: response.status,
      bytes: response.bodyBytes,
      seconds,
      mibPerSecond: response.bodyBytes / 1048576 / seconds,
      rssGrowth: peak.maxBytes - rssBefore,
      rssBefore,
    };
  } finally {
    sampler.stop();
    conn.close();
  }
}

export interface HoldResult {
  readonly requests: number;
  readonly ok: number;
  readonly errors: number;
  readonly statuses: Readonly<Record<string, number>>;
  /** Most requests the upstream held at once. */
  readonly heldAtOnce: number;
  readonly rssBefore: number;
  readonly rssMax: number;
  readonly seconds: number;
}

/** `count` requests at once, each held by the upstream for `upstream.slowMs`. */
export async function concurrentHold(proxy: ProxyUnderTest, upstream: Upstream, token: string, count: number): Promise<HoldResult> {
  const bytes = encodeRequest({ method: "GET", path: "/v1/slow", headers: { authorization: `Bearer ${token}` } }, proxy.port);
  upstream.maxHeld = 0;
  const rssBefore = rssBytes(proxy.pid);
  const sampler = sampleRss(proxy.pid, 100);
  const statuses: Record<string, number> = {};
  let errors = 0;
  const started = performance.now();
  const one = async (): Promise<void> => {
    let conn: Connection | undefined;
    try {
      conn = await connect(proxy.port);
      const response = await conn.request(bytes);
      statuses[response.status] = (statuses[response.status] ?? 0) + 1;
    } catch {
      errors += 1;
    } finally {
      conn?.close();
    }
  };
  // Opened in batches so the listen backlog (511 by default in Node) never overflows: an overflow
  // is a SYN retry a second later, which would measure the kernel, not the proxy.
  const all: Promise<void>[] = [];
  for (let i = 0; i < count; i += 200) {
    for (let j = i; j < Math.min(count, i + 200); j++) all.push(one());
    await sleep(20);
  }
  await Promise.all(all);
  const peak = sampler.stop();
  return {
    requests: count,
    ok: statuses["200"] ?? 0,
    errors,
    statuses,
    heldAtOnce: upstream.maxHeld,
    rssBefore,
    rssMax: peak.maxBytes,
    seconds: (performance.now() - started) / 1000,
  };
}

/** GET `path` on 127.0.0.1:`port` with Node's client; undefined when nothing answers. */
export function getStatus(port: number, path: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("error", () => resolve(undefined));
    req.setTimeout(2000, () => req.destroy());
  });
}

/** Polls `/readyz` every `everyMs` until 200; milliseconds from `startedAt`, or undefined on timeout. */
export async function waitReady(adminPort: number, startedAt: number, timeoutMs = 10_000, everyMs = 5): Promise<number | undefined> {
  while (performance.now() - startedAt < timeoutMs) {
    if ((await getStatus(adminPort, "/readyz")) === 200) return performance.now() - startedAt;
    await sleep(everyMs);
  }
  return undefined;
}

export interface ScrapeResult {
  readonly p50: number;
  readonly max: number;
  readonly scrapes: number;
  readonly bytes: number;
  /** Sample lines (not comments) in the exposition. */
  readonly series: number;
  readonly requestSeries: number;
}

/** `/metrics`, `scrapes` times one after another on a fresh connection each; wall time of each. */
export async function scrape(adminPort: number, scrapes: number): Promise<ScrapeResult> {
  const times: number[] = [];
  let body = "";
  for (let i = 0; i < scrapes; i++) {
    const conn = await connect(adminPort, true);
    const started = performance.now();
    const response = await conn.request(encodeRequest({ method: "GET", path: "/metrics", headers: { accept: "text/plain" } }, adminPort));
    times.push(performance.now() - started);
    conn.close();
    if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
    body = response.body?.toString("utf8") ?? "";
  }
  const lines = body.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
  const s = summarize(times);
  return {
    p50: s.p50,
    max: s.max,
    scrapes,
    bytes: Buffer.byteLength(body),
    series: lines.length,
    requestSeries: lines.filter((l) => l.startsWith("mythiq_proxy_requests_total{")).length,
  };
}

/** Sends every request once over `connections` keep-alive connections; statuses counted. */
export async function sendAll(port: number, requests: readonly Buffer[], connections: number): Promise<Record<string, number>> {
  const statuses: Record<string, number> = {};
  let next = 0;
  const worker = async (): Promise<void> => {
    let conn: Connection | undefined;
    while (next < requests.length) {
      const bytes = requests[next++]!;
      try {
        if (conn === undefined || !conn.alive()) conn = await connect(port);
        const response = await conn.request(bytes);
        statuses[response.status] = (statuses[response.status] ?? 0) + 1;
      } catch {
        statuses["error"] = (statuses["error"] ?? 0) + 1;
        conn = undefined;
      }
    }
    conn?.close();
  };
  await Promise.all(Array.from({ length: connections }, () => worker()));
  return statuses;
}
