/**
 * A test bench for the forwarder: a fake MythIQ upstream, the forwarder pointed at it, and a small
 * HTTP server on 127.0.0.1:0 whose handler builds a RequestContext and calls `forward`, the way the
 * lead's pipeline does once every check has passed. Plus a client that keeps the raw response bytes.
 */
import * as http from "node:http";
import * as net from "node:net";
import type { AddressInfo, LookupFunction } from "node:net";
import type { UpstreamConfig } from "../../src/config/types.ts";
import { createHeldKey } from "../../src/keys/held-key.ts";
import type { HeldKey } from "../../src/keys/types.ts";
import { createLogger } from "../../src/observe/log.ts";
import { createForwarder, type ForwardInput, type ForwardResult, type Forwarder } from "../../src/proxy/forward.ts";
import type { Reason } from "../../src/errors.ts";
import { makeContext, type ContextInit } from "./context.ts";
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from "./fake-upstream.ts";

export const KEY_VALUE = "sk-live-9f8e7d6c5b4a39281706SECRETKEY";
export const NEW_KEY_VALUE = "sk-live-rotated-00112233445566778899NEW";

export function makeKey(value: string = KEY_VALUE, name = "default"): HeldKey {
  return createHeldKey({ name, source: "env", version: "", fingerprint: value === KEY_VALUE ? "0a1b2c3d" : "4e5f6a7b", fetchedAt: 0, value });
}

export const DEFAULT_UPSTREAM: Omit<UpstreamConfig, "url"> = {
  allow_insecure_upstream: true,
  connect_timeout: 2_000,
  response_timeout: 5_000,
  idle_timeout: 5_000,
  max_sockets: 16,
};

export interface HarnessOptions {
  readonly upstream?: Partial<UpstreamConfig>;
  /** false: no fake upstream (point `upstream.url` somewhere yourself). */
  readonly fake?: FakeUpstreamOptions | false;
  readonly key?: HeldKey;
  readonly refreshKey?: (name: string, refused: HeldKey) => Promise<HeldKey | undefined>;
  readonly lookup?: LookupFunction;
  readonly ca?: string | Buffer;
}

export interface Harness {
  readonly port: number;
  readonly fake: FakeUpstream;
  readonly forwarder: Forwarder;
  /** How the next requests' bodies are handed over: read first ("held") or piped ("stream"). */
  body: "held" | "stream";
  /** `maxBytes` for streamed bodies. */
  maxBytes: number;
  key: HeldKey;
  /** Context fields that replace what the request would give (e.g. a query no parser would pass). */
  context: ContextInit;
  /** Runs just before `forward` (e.g. to make the client disappear first). */
  beforeForward: ((req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>) | undefined;
  readonly results: ForwardResult[];
  readonly upstreamErrors: Reason[];
  /** Every log line written (no secret registered, so a leaked key would show as itself). */
  readonly logs: string[];
  /** Resolves with the n-th (1-based) forward result. */
  result(n: number): Promise<ForwardResult>;
  close(): Promise<void>;
}

function readAll(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const fake = options.fake === false ? (undefined as unknown as FakeUpstream) : await startFakeUpstream(options.fake ?? {});
  const logs: string[] = [];
  const logger = createLogger({ write: (line) => logs.push(line), level: "debug" });
  const upstreamErrors: Reason[] = [];
  const forwarder = createForwarder({
    upstream: { ...DEFAULT_UPSTREAM, url: fake?.url ?? "http://127.0.0.1:1", ...options.upstream },
    logger,
    ...(options.refreshKey === undefined ? {} : { refreshKey: options.refreshKey }),
    onUpstreamError: (reason) => upstreamErrors.push(reason),
    ...(options.lookup === undefined ? {} : { lookup: options.lookup }),
    ...(options.ca === undefined ? {} : { ca: options.ca }),
  });
  const results: ForwardResult[] = [];
  const waiters: Array<() => void> = [];
  let seq = 0;

  const harness: Harness = {
    port: 0,
    fake,
    forwarder,
    body: "held",
    maxBytes: 1024 * 1024,
    key: options.key ?? makeKey(),
    context: {},
    beforeForward: undefined,
    results,
    upstreamErrors,
    logs,
    result(n) {
      return new Promise((resolve) => {
        const check = (): boolean => {
          const r = results[n - 1];
          if (r === undefined) return false;
          resolve(r);
          return true;
        };
        if (!check()) waiters.push(() => void check());
      });
    },
    async close() {
      forwarder.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fake?.close();
    },
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const rawUrl = req.url ?? "/";
    const q = rawUrl.indexOf("?");
    const ctx = makeContext({
      id: `req-${++seq}`,
      method: req.method ?? "GET",
      path: q === -1 ? rawUrl : rawUrl.slice(0, q),
      query: q === -1 ? "" : rawUrl.slice(q + 1),
      headers: req.headers,
      ...harness.context,
    });
    const body: ForwardInput["body"] =
      harness.body === "held" ? { kind: "held", bytes: await readAll(req) } : { kind: "stream", maxBytes: harness.maxBytes };
    await harness.beforeForward?.(req, res);
    const result = await forwarder.forward({
      ctx,
      req,
      res,
      keyName: "default",
      key: harness.key,
      body,
      responseHeaders: { "x-request-id": ctx.id, "access-control-allow-origin": "https://app.example.com", vary: "Origin" },
    });
    results.push(result);
    for (const waiter of waiters.splice(0)) waiter();
  };

  const server = http.createServer((req, res) => void handle(req, res));
  // As the lead's listener does: `100 Continue` only once the checks passed, then forward.
  server.on("checkContinue", (req, res) => {
    res.writeContinue();
    void handle(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  Object.assign(harness, { port: (server.address() as AddressInfo).port });
  return harness;
}

export interface ClientResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  /** Every byte that came back on the connection (head and body, as on the wire). */
  readonly raw: Buffer;
  /** The response ended properly (false: the connection was cut before the end). */
  readonly complete: boolean;
  /** The request failed before any response (connection error). */
  readonly error?: string;
}

export interface SendOptions {
  readonly method?: string;
  readonly path?: string;
  readonly headers?: http.OutgoingHttpHeaders;
  /** Written in order; `{ delayMs }` pauses between writes. */
  readonly body?: string | Buffer | ReadonlyArray<string | Buffer | { readonly delayMs: number }>;
  readonly agent?: http.Agent | false;
  /** Called with each body chunk as it arrives. */
  readonly onChunk?: (chunk: Buffer) => void;
  /** Abort the request when this resolves. */
  readonly abortWhen?: Promise<unknown>;
}

/** One request to the harness; never rejects. */
export function send(port: number, options: SendOptions = {}): Promise<ClientResponse> {
  return new Promise((resolve) => {
    const raw: Buffer[] = [];
    const body: Buffer[] = [];
    let settled = false;
    const done = (r: ClientResponse): void => {
      if (settled) return;
      settled = true;
      resolve(r);
    };
    const req = http.request({
      host: "127.0.0.1",
      port,
      method: options.method ?? "GET",
      path: options.path ?? "/v1/models",
      headers: options.headers,
      agent: options.agent ?? false,
    });
    req.on("socket", (socket) => socket.on("data", (d: Buffer) => raw.push(d)));
    req.on("response", (res) => {
      res.on("data", (chunk: Buffer) => {
        body.push(chunk);
        options.onChunk?.(chunk);
      });
      const finish = (complete: boolean): void =>
        done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(body), raw: Buffer.concat(raw), complete });
      res.on("end", () => finish(true));
      res.on("error", () => finish(false));
      res.on("close", () => finish(res.complete));
    });
    req.on("error", (err: NodeJS.ErrnoException) =>
      done({ status: 0, headers: {}, body: Buffer.concat(body), raw: Buffer.concat(raw), complete: false, error: err.code ?? err.message }),
    );
    void options.abortWhen?.then(() => req.destroy());
    const expectsContinue = Object.keys(options.headers ?? {}).some((name) => name.toLowerCase() === "expect");
    void (async () => {
      // A real client waits for `100 Continue` before sending the body it announced.
      if (expectsContinue) await new Promise((r) => req.once("continue", r));
      const parts = options.body === undefined ? [] : typeof options.body === "string" || Buffer.isBuffer(options.body) ? [options.body] : options.body;
      for (const part of parts) {
        if (typeof part === "object" && !Buffer.isBuffer(part)) await new Promise((r) => setTimeout(r, part.delayMs));
        else if (!req.destroyed) req.write(part);
      }
      if (!req.destroyed) req.end();
    })();
  });
}

/**
 * A raw exchange for what an `http` client would smooth over: writes `parts` (pausing on
 * `{ delayMs }`) and returns every byte received until the server closes the connection or
 * `timeoutMs` passes.
 */
export function rawExchange(
  port: number,
  parts: ReadonlyArray<string | Buffer | { readonly delayMs: number }>,
  timeoutMs = 3_000,
): Promise<{ readonly raw: Buffer; readonly closed: boolean }> {
  return new Promise((resolve) => {
    const received: Buffer[] = [];
    const socket = net.connect(port, "127.0.0.1");
    let closed = false;
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on("data", (d: Buffer) => received.push(d));
    socket.on("error", () => {});
    socket.on("end", () => (closed = true));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ raw: Buffer.concat(received), closed });
    });
    void (async () => {
      for (const part of parts) {
        if (socket.destroyed) return;
        if (typeof part === "object" && !Buffer.isBuffer(part)) await new Promise((r) => setTimeout(r, part.delayMs));
        else socket.write(part);
      }
    })();
  });
}
