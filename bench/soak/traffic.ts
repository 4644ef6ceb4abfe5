/**
 * The soak's callers: every kind of request, grouped in pools that run side by side.
 *
 * - short: token and session callers, held JSON bodies, refusals (bad model, bad token, no
 *   credentials, unlisted route), paced at `--rate` requests per second (open loop, at most
 *   SHORT_MAX_IN_FLIGHT at once);
 * - bulk: streamed 1 MiB uploads (with a length and chunked) and 4 MiB downloads;
 * - events: Server-Sent Events streams, for token and session callers;
 * - slow: a slow uploader, a slow reader, a caller that never finishes its headers, a caller that
 *   gives up;
 * - the opening burst (OPENING_BURST).
 *
 * Callers with wrong credentials come from 127.0.0.2, so the proxy's per-IP `auth_failures` limit
 * (which they trip, as designed) never touches the legitimate callers on 127.0.0.1.
 */
import http from "node:http";
import net from "node:net";
import type { Expectation } from "./classify.ts";
import { send, type Outcome, type RequestSpec } from "./client.ts";
import { ALLOWED_MODEL, REFUSED_MODEL, WEB_ORIGIN, sessionToken, type Credentials } from "./config.ts";
import type { Rng } from "./rng.ts";
import { DOWNLOAD_BYTES, SSE_EVENTS } from "./upstream.ts";

export type PoolName = "short" | "bulk" | "events" | "slow" | "burst";

export interface Kind {
  readonly name: string;
  readonly pool: PoolName;
  readonly weight: number;
  readonly expect: Expectation;
  /** What is wrong with a 200 body, if anything. */
  readonly check?: (outcome: Outcome) => string | undefined;
}

export interface TrafficContext {
  readonly port: number;
  readonly creds: Credentials;
  readonly rng: Rng;
  /** Milliseconds on the soak's clock. */
  readonly now: () => number;
  /** A new session JWT was signed (the proxy must never print it). */
  readonly onSessionToken?: (token: string) => void;
}

const UPLOAD_CHUNK = Buffer.alloc(64 * 1024, 0x75);
const SLOW_CHUNK = Buffer.alloc(16 * 1024, 0x73);
export const UPLOAD_BYTES = UPLOAD_CHUNK.length * 16;
const SLOW_UPLOAD_BYTES = SLOW_CHUNK.length * 16;
const SUBJECTS = 20;
const SESSION_REFRESH_MS = 10 * 60_000;
const REFUSED_IP = "127.0.0.2";

const hasData = (o: Outcome): string | undefined => (o.body !== undefined && o.body.includes('"data"') ? undefined : "no data in the JSON body");
const sizeIs = (bytes: number) => (o: Outcome): string | undefined => (o.bodyBytes === bytes ? undefined : `${o.bodyBytes} bytes instead of ${bytes}`);
const echoes = (bytes: number) => (o: Outcome): string | undefined =>
  o.body?.toString("utf8") === `{"bytes":${bytes}}` ? undefined : `MythIQ received ${o.body?.toString("utf8") ?? "?"} instead of ${bytes} bytes`;
const allEvents = (o: Outcome): string | undefined => {
  const text = o.body?.toString("utf8") ?? "";
  const count = text.split("event: progress").length - 1;
  return count === SSE_EVENTS && text.includes(`"seq":${SSE_EVENTS - 1}`) ? undefined : `${count} of ${SSE_EVENTS} events`;
};

const forwardHeld: Expectation = { type: "forward", body: "held" };
const forwardStream: Expectation = { type: "forward", body: "stream" };
const authRefusal = (reason: string): Expectation => ({ type: "refuse", answers: [`401 ${reason}`, "429 auth_failures"] });

export const KINDS: readonly Kind[] = [
  { name: "token GET", pool: "short", weight: 30, expect: forwardHeld, check: hasData },
  { name: "token GET by id", pool: "short", weight: 8, expect: forwardHeld },
  { name: "token POST held JSON", pool: "short", weight: 25, expect: forwardHeld, check: hasData },
  { name: "session GET", pool: "short", weight: 10, expect: forwardHeld, check: hasData },
  { name: "session POST held JSON", pool: "short", weight: 10, expect: forwardHeld, check: hasData },
  { name: "session cookie POST held JSON", pool: "short", weight: 5, expect: forwardHeld, check: hasData },
  { name: "bad-model", pool: "short", weight: 3, expect: { type: "refuse", answers: ["403 model_not_allowed"] } },
  { name: "unlisted-route", pool: "short", weight: 3, expect: { type: "refuse", answers: ["403 route_not_allowed"] } },
  { name: "bad-token", pool: "short", weight: 2, expect: authRefusal("invalid_credentials") },
  { name: "no-credentials", pool: "short", weight: 1, expect: authRefusal("missing_credentials") },
  { name: "upload 1 MiB streamed", pool: "bulk", weight: 3, expect: forwardStream, check: echoes(UPLOAD_BYTES) },
  { name: "upload 1 MiB chunked", pool: "bulk", weight: 1, expect: forwardStream, check: echoes(UPLOAD_BYTES) },
  { name: "download 4 MiB", pool: "bulk", weight: 2, expect: forwardHeld, check: sizeIs(DOWNLOAD_BYTES) },
  { name: "SSE token", pool: "events", weight: 1, expect: forwardHeld, check: allEvents },
  { name: "SSE session", pool: "events", weight: 1, expect: forwardHeld, check: allEvents },
  { name: "slow upload 256 KiB", pool: "slow", weight: 2, expect: forwardStream, check: echoes(SLOW_UPLOAD_BYTES) },
  { name: "slow reader 4 MiB", pool: "slow", weight: 2, expect: forwardHeld, check: sizeIs(DOWNLOAD_BYTES) },
  { name: "slowloris", pool: "slow", weight: 1, expect: { type: "refuse", answers: ["408 request_timeout"] } },
  { name: "caller gives up", pool: "slow", weight: 1, expect: { type: "abort" } },
  // Not in any pool: the opening burst (see OPENING_BURST).
  { name: "opening burst: held 2 s", pool: "burst", weight: 0, expect: forwardHeld, check: (o) => (o.body?.toString("utf8") === '{"ok":true}' ? undefined : "not the slow answer") },
];

/**
 * The most short requests in flight at once: past it, the paced pool skips (and counts) requests
 * instead of queueing them without bound when the proxy falls behind.
 */
export const SHORT_MAX_IN_FLIGHT = 200;

/**
 * What the run opens with, all at once (spread over a second): 400 requests held 2 s, twice what
 * the traffic ever has in flight afterwards (SHORT_MAX_IN_FLIGHT, plus eight streams and slow
 * callers), with 16 uploads and 16 downloads, eight times the bulk pool's two. The proxy's memory
 * follows the largest concurrent load it has seen (BENCHMARKS.md, "Soak"): opening with more than
 * the rest of the run brings puts that high-water mark in the first half, so growth in the second
 * half is a leak, not a new peak.
 */
export const OPENING_BURST: Readonly<Record<string, number>> = {
  "opening burst: held 2 s": 400,
  "upload 1 MiB streamed": 16,
  "download 4 MiB": 16,
};

export interface Callers {
  /** Sends one request of `kind` with soak id `id`. */
  run(kind: Kind, id: number): Promise<Outcome>;
  close(): void;
}

export function createCallers(ctx: TrafficContext): Callers {
  // Idle keep-alive connections are closed here after 10 s, well before the proxy's 30 s
  // `keep_alive_timeout`: a request written on a connection the proxy is closing at that moment is
  // lost on the wire (ECONNRESET, never read), and a busy machine makes that race likely. Node's
  // agent only honours the server's `Keep-Alive: timeout` hint when it has a timeout of its own.
  const keepAlive = { keepAlive: true, timeout: 10_000 };
  const agents = {
    app: new http.Agent({ ...keepAlive, maxSockets: 256 }),
    web: new http.Agent({ ...keepAlive, maxSockets: 256 }),
    bulk: new http.Agent({ ...keepAlive, maxSockets: 64 }),
  };
  const sessions: { token: string; at: number }[] = [];
  const session = (): string => {
    const index = ctx.rng.int(SUBJECTS);
    const held = sessions[index];
    if (held !== undefined && ctx.now() - held.at < SESSION_REFRESH_MS) return held.token;
    const token = sessionToken(ctx.creds.sessionSecret, `user-${index}`);
    ctx.onSessionToken?.(token);
    sessions[index] = { token, at: ctx.now() };
    return token;
  };
  const soak = (id: number, kind: Kind): Record<string, string> => ({ "x-soak-id": String(id), "x-soak-kind": kind.name });
  const json = { "content-type": "application/json" };
  const generation = (id: number, model = ALLOWED_MODEL): Buffer => Buffer.from(JSON.stringify({ model, prompt: `a lighthouse at dusk, soak ${id}` }));

  function spec(kind: Kind, id: number): RequestSpec {
    const app = { authorization: `Bearer ${ctx.creds.app}`, ...soak(id, kind) };
    const bulk = { authorization: `Bearer ${ctx.creds.bulk}`, ...soak(id, kind) };
    const base = { agent: agents.app, timeoutMs: 30_000 };
    switch (kind.name) {
      case "token GET":
        return { ...base, method: "GET", path: "/v1/models", headers: app };
      case "token GET by id":
        return { ...base, method: "GET", path: "/v1/models/sdxl", headers: app };
      case "token POST held JSON":
        return { ...base, method: "POST", path: "/v1/images/generations", headers: { ...app, ...json }, body: generation(id) };
      case "session GET":
        return { ...base, agent: agents.web, method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${session()}`, ...soak(id, kind) } };
      case "session POST held JSON":
        return {
          ...base,
          agent: agents.web,
          method: "POST",
          path: "/v1/images/generations",
          headers: { authorization: `Bearer ${session()}`, ...json, ...soak(id, kind) },
          body: generation(id),
        };
      case "session cookie POST held JSON":
        return {
          ...base,
          agent: agents.web,
          method: "POST",
          path: "/v1/images/generations",
          headers: { cookie: `session=${session()}`, origin: WEB_ORIGIN, ...json, ...soak(id, kind) },
          body: generation(id),
        };
      case "bad-model":
        return { ...base, method: "POST", path: "/v1/images/generations", headers: { ...app, ...json }, body: generation(id, REFUSED_MODEL) };
      case "unlisted-route":
        return { ...base, method: "GET", path: "/v1/admin/keys", headers: app };
      case "bad-token":
        return { ...base, agent: false, localAddress: REFUSED_IP, method: "GET", path: "/v1/models", headers: { authorization: "Bearer not-a-client-token-0000", ...soak(id, kind) } };
      case "no-credentials":
        return { ...base, agent: false, localAddress: REFUSED_IP, method: "GET", path: "/v1/models", headers: soak(id, kind) };
      case "upload 1 MiB streamed":
      case "upload 1 MiB chunked":
        return {
          ...base,
          agent: agents.bulk,
          method: "POST",
          path: "/v1/uploads",
          headers: { ...bulk, "content-type": "application/octet-stream" },
          body: { chunk: UPLOAD_CHUNK, chunks: 16, delayMs: 0, withLength: kind.name.endsWith("streamed") },
        };
      case "download 4 MiB":
        return { ...base, agent: agents.bulk, method: "GET", path: "/v1/files/file-soak/content", headers: bulk };
      case "SSE token":
        return { ...base, agent: agents.bulk, method: "GET", path: "/v1/events", headers: { ...bulk, accept: "text/event-stream" } };
      case "SSE session":
        return { ...base, agent: agents.web, method: "GET", path: "/v1/events", headers: { authorization: `Bearer ${session()}`, accept: "text/event-stream", ...soak(id, kind) } };
      case "slow upload 256 KiB":
        return {
          ...base,
          agent: agents.bulk,
          method: "POST",
          path: "/v1/uploads",
          headers: { ...bulk, "content-type": "application/octet-stream" },
          body: { chunk: SLOW_CHUNK, chunks: 16, delayMs: 100, withLength: true },
        };
      case "slow reader 4 MiB":
        return { ...base, agent: agents.bulk, method: "GET", path: "/v1/files/file-slow/content", headers: bulk, slowRead: { every: 512 * 1024, pauseMs: 200 } };
      case "caller gives up":
        return { ...base, agent: false, method: "GET", path: "/v1/slow", headers: bulk, abortAfterMs: 300 };
      case "opening burst: held 2 s":
        return { ...base, agent: false, method: "GET", path: "/v1/slow", headers: bulk };
      default:
        throw new Error(`no request for kind ${kind.name}`);
    }
  }

  return {
    run(kind, id) {
      if (kind.name === "slowloris") return slowHeaders(ctx.port, ctx.now);
      return send(ctx.port, spec(kind, id), ctx.now);
    },
    close() {
      for (const agent of Object.values(agents)) agent.destroy();
    },
  };
}

/**
 * A caller that starts a request and never finishes its header block: the proxy answers 408
 * `request_timeout` at `server.headers_timeout` and closes the connection.
 */
export function slowHeaders(port: number, now: () => number): Promise<Outcome> {
  return new Promise((resolve) => {
    const startedAt = now();
    let sent = false;
    let raw = "";
    const socket = net.connect({ port, host: "127.0.0.1" });
    // headers_timeout (10 s) plus a wide margin: on a busy machine the proxy may accept late.
    const timer = setTimeout(() => socket.destroy(new Error("client timeout")), 40_000);
    socket.on("connect", () => {
      sent = true;
      socket.write("GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\nx-soak-kind: slowloris\r\n");
    });
    socket.setEncoding("latin1");
    socket.on("data", (text: string) => (raw += text));
    const done = (error: string | undefined): void => {
      clearTimeout(timer);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1];
      const body = raw.slice(raw.indexOf("\r\n\r\n") + 4);
      const reason = /"reason":"([a-z_]+)"/.exec(body)?.[1];
      resolve({
        status: status === undefined ? undefined : Number(status),
        reason,
        requestId: /\r\nx-request-id: ([^\r\n]+)/i.exec(raw)?.[1],
        error: status === undefined ? (error ?? "closed without an answer") : undefined,
        truncated: false,
        bodyBytes: body.length,
        body: Buffer.from(body, "latin1"),
        sent,
        startedAt,
        endedAt: now(),
      });
    };
    socket.on("error", (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    socket.on("close", () => done(undefined));
  });
}

export interface PoolRunner {
  /** Stops starting requests; resolves when the last one in flight has ended. */
  stop(): Promise<void>;
  inFlight(): number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `loops` callers, each sending one request after another (a pause between), until stopped. */
export function runLoops(loops: number, pauseMs: number, next: () => Promise<void>): PoolRunner {
  let stopping = false;
  let inFlight = 0;
  const loop = async (): Promise<void> => {
    while (!stopping) {
      inFlight += 1;
      try {
        await next();
      } finally {
        inFlight -= 1;
      }
      if (pauseMs > 0 && !stopping) await sleep(pauseMs);
    }
  };
  const all = Promise.all(Array.from({ length: loops }, loop));
  return {
    async stop() {
      stopping = true;
      await all;
    },
    inFlight: () => inFlight,
  };
}

/**
 * An open-loop pool: `rate` requests per second whatever the answers' latency, at most
 * `maxInFlight` at once (a proxy slower than that is noted in `skipped`, not queued without bound).
 */
export function runPaced(rate: number, maxInFlight: number, next: () => Promise<void>): PoolRunner & { skipped(): number } {
  let stopping = false;
  let inFlight = 0;
  let skipped = 0;
  let owed = 0;
  let last = performance.now();
  const idle: (() => void)[] = [];
  const tick = setInterval(() => {
    const at = performance.now();
    owed += ((at - last) / 1000) * rate;
    last = at;
    while (owed >= 1 && !stopping) {
      owed -= 1;
      if (inFlight >= maxInFlight) {
        skipped += 1;
        continue;
      }
      inFlight += 1;
      void next().finally(() => {
        inFlight -= 1;
        if (inFlight === 0) for (const wake of idle.splice(0)) wake();
      });
    }
  }, 10);
  return {
    async stop() {
      stopping = true;
      clearInterval(tick);
      if (inFlight > 0) await new Promise<void>((resolve) => idle.push(resolve));
    },
    inFlight: () => inFlight,
    skipped: () => skipped,
  };
}
