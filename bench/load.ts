/**
 * The load generator: raw keep-alive HTTP/1.1 connections with a minimal response parser.
 *
 * Why not `http.Agent`: on a two-core machine the generator shares its core with the upstream, and
 * Node's HTTP client costs about as much per request as the proxy under test does. A prebuilt request
 * buffer written to a socket and a parser that only finds the status and the end of the body keep
 * the generator's share small, so the proxy's core, not the generator's, is what saturates.
 */
import net from "node:net";

export interface RequestSpec {
  readonly method: string;
  /** Request target, origin-form. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Buffer;
}

/** The wire bytes of one request (`host` and `content-length` added). */
export function encodeRequest(spec: RequestSpec, port: number): Buffer {
  const lines = [`${spec.method} ${spec.path} HTTP/1.1`, `host: 127.0.0.1:${port}`];
  for (const [name, value] of Object.entries(spec.headers ?? {})) lines.push(`${name}: ${value}`);
  if (spec.body !== undefined) lines.push(`content-length: ${spec.body.length}`);
  const head = Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1");
  return spec.body === undefined ? head : Buffer.concat([head, spec.body]);
}

export interface Response {
  readonly status: number;
  /** Lower-case header names; repeated headers keep the last value. */
  readonly headers: Readonly<Record<string, string>>;
  readonly bodyBytes: number;
  /** Set when the parser was asked to keep it. */
  readonly body?: Buffer;
  readonly close: boolean;
}

type ParserEvents = {
  /** The head arrived (before the body). */
  onHead?: (status: number, headers: Readonly<Record<string, string>>) => void;
  /** A piece of body (chunked framing removed). */
  onBody?: (chunk: Buffer) => void;
  onResponse: (response: Response) => void;
};

const CRLFCRLF = Buffer.from("\r\n\r\n");

/**
 * An incremental HTTP/1.1 response parser: content-length, chunked, or read-until-close bodies.
 * Good enough for a benchmark against known servers; it does not validate framing.
 */
export function createResponseParser(events: ParserEvents, keepBody = false) {
  let buffered: Buffer = Buffer.alloc(0);
  let state: "head" | "length" | "chunk-size" | "chunk-data" | "chunk-crlf" | "trailer" | "until-close" = "head";
  let status = 0;
  let headers: Record<string, string> = {};
  let remaining = 0;
  let bodyBytes = 0;
  let close = false;
  let parts: Buffer[] = [];

  const body = (chunk: Buffer): void => {
    if (chunk.length === 0) return;
    bodyBytes += chunk.length;
    if (keepBody) parts.push(chunk);
    events.onBody?.(chunk);
  };

  const done = (): void => {
    const response: Response = { status, headers, bodyBytes, close, ...(keepBody ? { body: Buffer.concat(parts) } : {}) };
    state = "head";
    parts = [];
    bodyBytes = 0;
    events.onResponse(response);
  };

  function push(chunk: Buffer): void {
    let data = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    buffered = Buffer.alloc(0);
    for (;;) {
      if (data.length === 0) return;
      switch (state) {
        case "head": {
          const end = data.indexOf(CRLFCRLF);
          if (end === -1) {
            buffered = data;
            return;
          }
          const lines = data.toString("latin1", 0, end).split("\r\n");
          data = data.subarray(end + 4);
          status = Number(lines[0]?.slice(9, 12));
          headers = {};
          for (let i = 1; i < lines.length; i++) {
            const line = lines[i]!;
            const colon = line.indexOf(":");
            if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
          }
          close = (headers["connection"] ?? "").toLowerCase() === "close";
          events.onHead?.(status, headers);
          if ((headers["transfer-encoding"] ?? "").toLowerCase().includes("chunked")) state = "chunk-size";
          else if (headers["content-length"] !== undefined) {
            remaining = Number(headers["content-length"]);
            if (remaining === 0 || status === 204 || status === 304) done();
            else state = "length";
          } else if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
            if (status >= 200) done();
          } else state = "until-close";
          break;
        }
        case "length": {
          const take = Math.min(remaining, data.length);
          body(data.subarray(0, take));
          data = data.subarray(take);
          remaining -= take;
          if (remaining === 0) done();
          break;
        }
        case "chunk-size": {
          const eol = data.indexOf("\r\n");
          if (eol === -1) {
            buffered = data;
            return;
          }
          remaining = parseInt(data.toString("latin1", 0, eol), 16);
          data = data.subarray(eol + 2);
          state = remaining === 0 ? "trailer" : "chunk-data";
          break;
        }
        case "chunk-data": {
          const take = Math.min(remaining, data.length);
          body(data.subarray(0, take));
          data = data.subarray(take);
          remaining -= take;
          if (remaining === 0) state = "chunk-crlf";
          break;
        }
        case "chunk-crlf": {
          if (data.length < 2) {
            buffered = data;
            return;
          }
          data = data.subarray(2);
          state = "chunk-size";
          break;
        }
        case "trailer": {
          // No trailers from our servers: the last chunk is followed by one empty line.
          if (data.length < 2) {
            buffered = data;
            return;
          }
          data = data.subarray(2);
          done();
          break;
        }
        case "until-close":
          body(data);
          return;
      }
    }
  }

  /** The connection ended: a read-until-close body is complete, anything else was cut. */
  function end(): boolean {
    if (state === "until-close") {
      done();
      return true;
    }
    return state === "head" && buffered.length === 0;
  }

  return { push, end };
}

/** A keep-alive connection that sends one request at a time. */
export interface Connection {
  /** Sends `bytes` and resolves with the response; rejects when the connection fails first. */
  request(bytes: Buffer | ((socket: net.Socket) => void), events?: Omit<ParserEvents, "onResponse">): Promise<Response>;
  readonly alive: () => boolean;
  close(): void;
}

export function connect(port: number, keepBody = false): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", noDelay: true });
    let pending: { resolve: (r: Response) => void; reject: (e: Error) => void; events?: Omit<ParserEvents, "onResponse"> } | undefined;
    let alive = false;
    const parser = createResponseParser(
      {
        onHead: (status, headers) => pending?.events?.onHead?.(status, headers),
        onBody: (chunk) => pending?.events?.onBody?.(chunk),
        onResponse: (response) => {
          const p = pending;
          pending = undefined;
          if (response.close) {
            alive = false;
            socket.end();
          }
          p?.resolve(response);
        },
      },
      keepBody,
    );
    socket.on("data", (chunk: Buffer) => parser.push(chunk));
    const fail = (err: Error): void => {
      alive = false;
      const p = pending;
      pending = undefined;
      p?.reject(err);
    };
    socket.on("error", fail);
    socket.on("close", () => {
      parser.end();
      fail(new Error("connection closed"));
    });
    socket.once("connect", () => {
      alive = true;
      socket.off("error", reject);
      resolve({
        request(bytes, events) {
          return new Promise<Response>((res, rej) => {
            if (!alive) {
              rej(new Error("connection closed"));
              return;
            }
            pending = { resolve: res, reject: rej, ...(events === undefined ? {} : { events }) };
            if (typeof bytes === "function") bytes(socket);
            else socket.write(bytes);
          });
        },
        alive: () => alive,
        close: () => socket.destroy(),
      });
    });
    socket.once("error", reject);
  });
}

/** Latency samples in milliseconds, with the usual summaries. */
export function summarize(samples: readonly number[]): { count: number; p50: number; p90: number; p99: number; max: number; mean: number } {
  if (samples.length === 0) return { count: 0, p50: NaN, p90: NaN, p99: NaN, max: NaN, mean: NaN };
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const sum = sorted.reduce((a, b) => a + b, 0);
  return { count: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1]!, mean: sum / sorted.length };
}

export interface ClosedLoopResult {
  /** Completed requests in the measured window. */
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  /** Responses by status in the measured window. */
  readonly statuses: Readonly<Record<string, number>>;
  /** Connection failures (whole run). */
  readonly errors: number;
  /** Completed requests including the warm-up. */
  readonly total: number;
  /** Milliseconds from writing each request to its last response byte, for those completed in the measured window. */
  readonly latencies: readonly number[];
}

/**
 * `connections` keep-alive connections, each sending the next request as soon as the previous
 * answer is complete, for `warmupMs + durationMs`; only the last `durationMs` is counted. The
 * latency of each request counted is kept: at saturation it is mostly queueing in the proxy, so its
 * tail shows pauses (GC, long turns) that the mean rate hides.
 * `onMeasureStart`/`onMeasureEnd` bracket the measured window (CPU sampling).
 */
export async function closedLoop(options: {
  port: number;
  request: RequestSpec;
  connections: number;
  warmupMs: number;
  durationMs: number;
  onMeasureStart?: () => void;
  onMeasureEnd?: () => void;
}): Promise<ClosedLoopResult> {
  const bytes = encodeRequest(options.request, options.port);
  let measuring = false;
  let stopping = false;
  let requests = 0;
  let total = 0;
  let errors = 0;
  const statuses: Record<string, number> = {};
  const latencies: number[] = [];

  async function worker(): Promise<void> {
    let conn: Connection | undefined;
    while (!stopping) {
      try {
        if (conn === undefined || !conn.alive()) conn = await connect(options.port);
        const sent = performance.now();
        const response = await conn.request(bytes);
        total += 1;
        if (measuring) {
          latencies.push(performance.now() - sent);
          requests += 1;
          statuses[response.status] = (statuses[response.status] ?? 0) + 1;
        }
      } catch {
        if (!stopping) errors += 1;
        conn = undefined;
      }
    }
    conn?.close();
  }

  const workers = Array.from({ length: options.connections }, () => worker());
  await sleep(options.warmupMs);
  options.onMeasureStart?.();
  measuring = true;
  const started = performance.now();
  await sleep(options.durationMs);
  measuring = false;
  const seconds = (performance.now() - started) / 1000;
  options.onMeasureEnd?.();
  stopping = true;
  await Promise.all(workers);
  return { requests, seconds, rps: requests / seconds, statuses, errors, total, latencies };
}

export interface OpenLoopResult {
  /** Milliseconds from the moment each request was due to its last response byte. */
  readonly latencies: readonly number[];
  readonly statuses: Readonly<Record<string, number>>;
  readonly errors: number;
  /** Requests that could not be sent on time (every connection busy and the cap reached). */
  readonly late: number;
}

/**
 * Requests at a fixed rate, whatever the answers do (open loop). Latency counts from when a request
 * was due, not from when it was sent, so a stall is charged to every request it delayed
 * (no coordinated omission).
 */
export async function openLoop(options: {
  port: number;
  request: RequestSpec;
  rate: number;
  warmupMs: number;
  durationMs: number;
  maxConnections?: number;
}): Promise<OpenLoopResult> {
  const bytes = encodeRequest(options.request, options.port);
  const idle: Connection[] = [];
  let open = 0;
  const maxConnections = options.maxConnections ?? 64;
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  let late = 0;
  const inflight = new Set<Promise<void>>();
  const interval = 1000 / options.rate;
  const start = performance.now();
  const measureFrom = start + options.warmupMs;
  const endAt = measureFrom + options.durationMs;
  const queue: number[] = [];

  async function fire(due: number): Promise<void> {
    let conn = idle.pop();
    try {
      if (conn === undefined) {
        open += 1;
        conn = await connect(options.port);
      }
      const response = await conn.request(bytes);
      if (due >= measureFrom) {
        latencies.push(performance.now() - due);
        statuses[response.status] = (statuses[response.status] ?? 0) + 1;
      }
      if (conn.alive()) idle.push(conn);
      else open -= 1;
    } catch {
      errors += 1;
      open -= 1;
    }
    const next = queue.shift();
    if (next !== undefined) track(fire(next));
  }

  function track(p: Promise<void>): void {
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  }

  let n = 0;
  while (performance.now() < endAt) {
    const now = performance.now();
    while (start + n * interval <= now) {
      const due = start + n * interval;
      n += 1;
      if (idle.length > 0 || open < maxConnections) track(fire(due));
      else {
        late += 1;
        queue.push(due);
      }
    }
    const wait = start + n * interval - performance.now();
    await sleep(Math.max(0, Math.floor(wait)));
  }
  while (inflight.size > 0) await Promise.all([...inflight]);
  for (const conn of idle) conn.close();
  return { latencies, statuses, errors, late };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
