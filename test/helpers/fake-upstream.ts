/**
 * A fake MythIQ API (OpenAI-compatible) for tests.
 *
 * It is a raw HTTP/1.1 server on 127.0.0.1:0 (plain TCP, or TLS with a given key and certificate)
 * that parses requests itself, so it records exactly what arrived on the wire — the request head
 * bytes as they came, header lines in order — and can misbehave at the TCP level (stall, reset,
 * hang up, die mid-body) in ways a Node `http.Server` would not allow.
 *
 * API
 * ```ts
 * const fake = await startFakeUpstream({ tls?: { key, cert } });
 * fake.url                  "http://127.0.0.1:PORT" (https:// with tls)
 * fake.port
 * fake.requests             RecordedRequest[], pushed as soon as a head is parsed; `body` fills in as it arrives
 * fake.connectionCount      TCP connections accepted so far (keep-alive pooling shows as 1 for N requests)
 * fake.connections          ConnectionInfo[] (`closed` promise, `isClosed()`)
 * fake.reply(...replies)    queue scripted replies, one per request in arrival order
 * fake.fallback             the reply (or `(req) => reply`) used when the queue is empty; default: MythIQ's Media
 *                           API for `/v1/media` paths (see `mythiq` below), else a 200 models list
 * fake.media                the fake account's media library (test/helpers/fake-mythiq-media.ts)
 * fake.waitForRequests(n)   resolves with `requests` once n request heads have arrived
 * fake.close()              closes the listener and destroys every connection and timer
 * ```
 *
 * Replies (`Reply`):
 * - `{ type: "json", status?, body, headers? }`: a JSON body with content-length.
 * - `{ type: "echo", status?, headers? }`: JSON `{ method, url, headers, body }` of what was received
 *   (so the key comes back: use with an error status to test the leak scan).
 * - `{ type: "respond", status, headers?, body?, framing?, end?, delayMs? }`: anything. `body` is a
 *   string/Buffer or a list of parts: data, `{ delayMs }`, `{ until: promise }` (a gate the test opens).
 *   `framing`: "length" (default: content-length summed from the data parts unless `headers` set
 *   content-length or transfer-encoding), "chunked", or "close" (body ends with the connection).
 *   `end`: "finish" (default), "stall" (stop writing, keep the connection open), "destroy" (close the
 *   socket mid-body), "reset" (TCP RST mid-body). `delayMs` delays the status line.
 * - `{ type: "sse", events, end? }`: `text/event-stream`, chunked; each event `{ data, event?, delayMs?, until? }`
 *   is written after its delay/gate. Write times are in `request.writes`.
 * - `{ type: "redirect", status?, location }`: a 3xx with `Location` and a small body.
 * - `{ type: "unauthorized", reveal? }`: MythIQ's 401 with the received key masked in the message
 *   (`reveal: true` puts the whole key in it).
 * - `{ type: "mythiq" }`: MythIQ's Media API (test/helpers/fake-mythiq-media.ts): generations that
 *   create media items and return their ids, uploads, `GET /v1/media` in MythIQ's shape
 *   (`{"result":{"total":N,"medias":[...]},"success":true}`), `GET`/`POST /v1/media/{id}`; any other
 *   path gets the models list.
 * - `{ type: "stall" }`: never answers. `{ type: "reset" }`: TCP RST before any response byte.
 *   `{ type: "hangup" }`: closes the connection before any response byte ("socket hang up").
 */
import { STATUS_CODES } from "node:http";
import * as net from "node:net";
import * as tls from "node:tls";
import { createMediaLibrary, type MediaLibrary } from "./fake-mythiq-media.ts";

export type Part = string | Buffer | { readonly delayMs: number } | { readonly until: Promise<unknown> };

export type EndMode = "finish" | "stall" | "destroy" | "reset";

export type Headers = Readonly<Record<string, string | readonly string[]>>;

export interface SseEvent {
  readonly data: string;
  readonly event?: string;
  readonly delayMs?: number;
  readonly until?: Promise<unknown>;
}

export type Reply =
  | { readonly type: "json"; readonly status?: number; readonly body: unknown; readonly headers?: Headers }
  | { readonly type: "echo"; readonly status?: number; readonly headers?: Headers }
  | {
      readonly type: "respond";
      readonly status: number;
      readonly headers?: Headers;
      readonly body?: string | Buffer | readonly Part[];
      readonly framing?: "length" | "chunked" | "close";
      readonly end?: EndMode;
      readonly delayMs?: number;
    }
  | { readonly type: "sse"; readonly events: readonly SseEvent[]; readonly end?: EndMode; readonly headers?: Headers }
  | { readonly type: "redirect"; readonly status?: number; readonly location: string }
  | { readonly type: "unauthorized"; readonly reveal?: boolean }
  | { readonly type: "mythiq" }
  | { readonly type: "stall" }
  | { readonly type: "reset" }
  | { readonly type: "hangup" };

export interface ConnectionInfo {
  /** 1-based, in accept order. */
  readonly id: number;
  /** Resolves when the connection has closed (either side). */
  readonly closed: Promise<void>;
  isClosed(): boolean;
}

export interface RecordedRequest {
  /** 0-based, in arrival order. */
  readonly index: number;
  readonly connection: ConnectionInfo;
  /** The request line and header lines exactly as received, including the final CRLF CRLF. */
  readonly head: Buffer;
  readonly requestLine: string;
  readonly method: string;
  /** The request target exactly as sent. */
  readonly target: string;
  readonly version: string;
  /** Header lines in order, names as sent. */
  readonly rawHeaders: ReadonlyArray<readonly [string, string]>;
  /** Lower-cased names; repeated fields joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  /** How many times a header name (any case) appeared. */
  count(name: string): number;
  /** The body as received so far, de-chunked. */
  body: Buffer;
  readonly chunked: boolean;
  /** The whole body arrived. */
  complete: boolean;
  /** Resolves when the body is complete or the connection closed first. */
  readonly ended: Promise<void>;
  /** `performance.now()` of each response body write (data parts and SSE events). */
  readonly writes: number[];
}

export interface FakeUpstream {
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedRequest[];
  readonly connections: ConnectionInfo[];
  readonly connectionCount: number;
  reply(...replies: Reply[]): void;
  fallback: Reply | ((req: RecordedRequest) => Reply);
  readonly media: MediaLibrary;
  waitForRequests(n: number): Promise<RecordedRequest[]>;
  close(): Promise<void>;
}

export interface FakeUpstreamOptions {
  readonly tls?: { readonly key: string | Buffer; readonly cert: string | Buffer };
}

const MAX_HEAD = 64 * 1024;
const MODELS_LIST: Reply = { type: "json", status: 200, body: { object: "list", data: [{ id: "stability/sdxl", object: "model" }] } };
const CRLF = Buffer.from("\r\n");
const HEAD_END = Buffer.from("\r\n\r\n");

/** A byte queue over a socket with awaitable reads; `undefined` means the peer went away. */
function createReader(socket: net.Socket) {
  let buffer: Buffer = Buffer.alloc(0);
  let ended = false;
  let wake: (() => void) | undefined;
  const signal = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  socket.on("data", (chunk: Buffer) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    signal();
  });
  socket.on("end", () => {
    ended = true;
    signal();
  });
  socket.on("close", () => {
    ended = true;
    signal();
  });
  const more = (): Promise<void> => new Promise((resolve) => (wake = resolve));

  return {
    /** Bytes up to and including `delimiter`. */
    async until(delimiter: Buffer, max: number): Promise<Buffer | undefined> {
      for (;;) {
        const at = buffer.indexOf(delimiter);
        if (at >= 0) {
          const out = buffer.subarray(0, at + delimiter.length);
          buffer = buffer.subarray(at + delimiter.length);
          return out;
        }
        if (ended || buffer.length > max) return undefined;
        await more();
      }
    },
    /** Between 1 and `max` bytes, as soon as any are there. */
    async some(max: number): Promise<Buffer | undefined> {
      for (;;) {
        if (buffer.length > 0) {
          const out = buffer.subarray(0, max);
          buffer = buffer.subarray(out.length);
          return out;
        }
        if (ended) return undefined;
        await more();
      }
    },
  };
}

type Reader = ReturnType<typeof createReader>;

function parseHead(head: Buffer): { requestLine: string; method: string; target: string; version: string; rawHeaders: Array<[string, string]> } | undefined {
  const lines = head.subarray(0, head.length - 4).toString("latin1").split("\r\n");
  const requestLine = lines[0] ?? "";
  const match = /^([A-Z]+) (\S+) (HTTP\/\d\.\d)$/.exec(requestLine);
  if (!match) return undefined;
  const rawHeaders: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) return undefined;
    rawHeaders.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  return { requestLine, method: match[1]!, target: match[2]!, version: match[3]!, rawHeaders };
}

/** Reads the body into `req.body` as it arrives; true when it completed. */
async function readBody(reader: Reader, req: RecordedRequest): Promise<boolean> {
  const append = (bytes: Buffer): void => {
    req.body = Buffer.concat([req.body, bytes]);
  };
  if (req.chunked) {
    for (;;) {
      const line = await reader.until(CRLF, 1024);
      if (line === undefined) return false;
      const size = Number.parseInt(line.toString("latin1").split(";")[0]!.trim(), 16);
      if (!Number.isFinite(size) || size < 0) return false;
      if (size === 0) {
        // Trailer section, ended by an empty line.
        for (;;) {
          const trailer = await reader.until(CRLF, MAX_HEAD);
          if (trailer === undefined) return false;
          if (trailer.length === 2) return true;
        }
      }
      let remaining = size;
      while (remaining > 0) {
        const bytes = await reader.some(remaining);
        if (bytes === undefined) return false;
        append(bytes);
        remaining -= bytes.length;
      }
      if ((await reader.until(CRLF, 2)) === undefined) return false;
    }
  }
  let remaining = Number(req.headers["content-length"] ?? "0");
  while (remaining > 0) {
    const bytes = await reader.some(remaining);
    if (bytes === undefined) return false;
    append(bytes);
    remaining -= bytes.length;
  }
  return true;
}

function maskKey(authorization: string | undefined): { masked: string; full: string } {
  const full = (authorization ?? "").replace(/^Bearer /i, "");
  const masked = full.length > 8 ? `${full.slice(0, 3)}****${full.slice(-4)}` : "****";
  return { masked, full };
}

export async function startFakeUpstream(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const requests: RecordedRequest[] = [];
  const connections: ConnectionInfo[] = [];
  const queue: Reply[] = [];
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const waiters: Array<() => void> = [];
  let connectionCount = 0;
  let closing = false;

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  const fake: FakeUpstream = {
    url: "",
    port: 0,
    requests,
    connections,
    get connectionCount() {
      return connectionCount;
    },
    reply(...replies) {
      queue.push(...replies);
    },
    fallback: (req) => (/^\/v1\/media(?:[/?]|$)/.test(req.target) ? { type: "mythiq" } : MODELS_LIST),
    media: createMediaLibrary(),
    waitForRequests(n) {
      return new Promise((resolve) => {
        // Every arrival wakes every waiter once (the list is emptied), so a waiter still short of
        // its count re-registers itself for the next arrival.
        const check = (): void => {
          if (requests.length >= n) resolve(requests);
          else waiters.push(check);
        };
        check();
      });
    },
    async close() {
      closing = true;
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  async function respond(socket: net.Socket, req: RecordedRequest, reply: Reply, closed: Promise<void>): Promise<boolean> {
    const alive = (): boolean => !socket.destroyed && !closing;
    switch (reply.type) {
      case "stall":
        await closed;
        return false;
      case "reset":
        socket.resetAndDestroy();
        return false;
      case "hangup":
        socket.end();
        return false;
      case "json":
        return respond(socket, req, {
          type: "respond",
          status: reply.status ?? 200,
          headers: { "content-type": "application/json", ...reply.headers },
          body: JSON.stringify(reply.body),
        }, closed);
      case "echo":
        return respond(socket, req, {
          type: "json",
          status: reply.status ?? 200,
          body: { method: req.method, url: req.target, headers: req.headers, body: req.body.toString("utf8") },
          ...(reply.headers === undefined ? {} : { headers: reply.headers }),
        }, closed);
      case "redirect":
        return respond(socket, req, {
          type: "respond",
          status: reply.status ?? 302,
          headers: { location: reply.location, "content-type": "text/plain" },
          body: `Moved to ${reply.location}`,
        }, closed);
      case "mythiq": {
        const answer = fake.media.answer(req.method, req.target, req.body);
        return respond(socket, req, answer === undefined ? MODELS_LIST : { type: "json", status: answer.status, body: answer.body }, closed);
      }
      case "unauthorized": {
        const { masked, full } = maskKey(req.headers["authorization"]);
        return respond(socket, req, {
          type: "json",
          status: 401,
          body: { success: false, message: `Invalid API key: ${reply.reveal === true ? full : masked}`, code: "authentication_error" },
        }, closed);
      }
      case "sse": {
        const parts: Part[] = [];
        for (const event of reply.events) {
          if (event.delayMs !== undefined) parts.push({ delayMs: event.delayMs });
          if (event.until !== undefined) parts.push({ until: event.until });
          parts.push(`${event.event === undefined ? "" : `event: ${event.event}\n`}data: ${event.data}\n\n`);
        }
        return respond(socket, req, {
          type: "respond",
          status: 200,
          headers: { "content-type": "text/event-stream", "cache-control": "no-cache", ...reply.headers },
          body: parts,
          framing: "chunked",
          ...(reply.end === undefined ? {} : { end: reply.end }),
        }, closed);
      }
      case "respond": {
        if (reply.delayMs !== undefined) await sleep(reply.delayMs);
        if (!alive()) return false;
        const parts: readonly Part[] = reply.body === undefined ? [] : typeof reply.body === "string" || Buffer.isBuffer(reply.body) ? [reply.body] : reply.body;
        const headers: Array<[string, string]> = [];
        for (const [name, value] of Object.entries(reply.headers ?? {})) {
          for (const v of typeof value === "string" ? [value] : value) headers.push([name, v]);
        }
        const has = (name: string): string | undefined => headers.find(([n]) => n.toLowerCase() === name)?.[1];
        let chunked = /chunked/i.test(has("transfer-encoding") ?? "");
        const framing = reply.framing ?? "length";
        if (has("content-length") === undefined && !chunked) {
          if (framing === "chunked") {
            headers.push(["Transfer-Encoding", "chunked"]);
            chunked = true;
          } else if (framing === "close") {
            headers.push(["Connection", "close"]);
          } else {
            let length = 0;
            for (const part of parts) if (typeof part === "string" || Buffer.isBuffer(part)) length += Buffer.byteLength(part);
            headers.push(["Content-Length", String(length)]);
          }
        }
        const keepAlive = framing !== "close" && !/close/i.test(req.headers["connection"] ?? "");
        let head = `HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? "Unknown"}\r\n`;
        for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
        socket.write(head + "\r\n");
        const bodyAllowed = req.method !== "HEAD" && reply.status !== 204 && reply.status !== 304;
        for (const part of parts) {
          if (!alive()) return false;
          if (typeof part === "string" || Buffer.isBuffer(part)) {
            if (!bodyAllowed) continue;
            const bytes = Buffer.from(part);
            req.writes.push(performance.now());
            socket.write(chunked ? Buffer.concat([Buffer.from(bytes.length.toString(16) + "\r\n"), bytes, CRLF]) : bytes);
          } else if ("delayMs" in part) {
            await sleep(part.delayMs);
          } else {
            await Promise.race([part.until, closed]);
          }
        }
        if (!alive()) return false;
        switch (reply.end ?? "finish") {
          case "stall":
            await closed;
            return false;
          case "destroy":
            await new Promise<void>((resolve) => socket.write("", () => resolve()));
            socket.destroy();
            return false;
          case "reset":
            await new Promise<void>((resolve) => socket.write("", () => resolve()));
            socket.resetAndDestroy();
            return false;
          case "finish":
            if (chunked && bodyAllowed) socket.write("0\r\n\r\n");
            if (!keepAlive) socket.end();
            return keepAlive;
        }
      }
    }
  }

  async function serve(socket: net.Socket): Promise<void> {
    sockets.add(socket);
    socket.on("error", () => {});
    let isClosed = false;
    const closed = new Promise<void>((resolve) =>
      socket.once("close", () => {
        isClosed = true;
        sockets.delete(socket);
        resolve();
      }),
    );
    const connection: ConnectionInfo = { id: connections.length + 1, closed, isClosed: () => isClosed };
    connections.push(connection);
    const reader = createReader(socket);

    for (;;) {
      const head = await reader.until(HEAD_END, MAX_HEAD);
      if (head === undefined) break;
      const parsed = parseHead(head);
      if (parsed === undefined) {
        socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        break;
      }
      const headers: Record<string, string> = {};
      for (const [name, value] of parsed.rawHeaders) {
        const lower = name.toLowerCase();
        headers[lower] = headers[lower] === undefined ? value : `${headers[lower]}, ${value}`;
      }
      let markEnded: () => void = () => {};
      const request: RecordedRequest = {
        index: requests.length,
        connection,
        head: Buffer.from(head),
        ...parsed,
        headers,
        count: (name) => parsed.rawHeaders.filter(([n]) => n.toLowerCase() === name.toLowerCase()).length,
        body: Buffer.alloc(0),
        chunked: /chunked/i.test(headers["transfer-encoding"] ?? ""),
        complete: false,
        ended: new Promise<void>((resolve) => (markEnded = resolve)),
        writes: [],
      };
      void closed.then(() => markEnded());
      requests.push(request);
      for (const waiter of waiters.splice(0)) waiter();

      const complete = await readBody(reader, request);
      request.complete = complete;
      markEnded();
      if (!complete) break;

      const next = queue.shift() ?? (typeof fake.fallback === "function" ? fake.fallback(request) : fake.fallback);
      const keepGoing = await respond(socket, request, next, closed);
      if (!keepGoing) break;
    }
  }

  const onConnection = (socket: net.Socket): void => {
    void serve(socket);
  };
  const server: net.Server = options.tls
    ? tls.createServer({ key: options.tls.key, cert: options.tls.cert }, onConnection)
    : net.createServer(onConnection);
  server.on("connection", (socket: net.Socket) => {
    connectionCount++;
    // A TLS handshake that fails never reaches `serve`: keep the raw socket closable.
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  if (options.tls) server.on("tlsClientError", () => {});

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  Object.assign(fake, { port, url: `${options.tls ? "https" : "http"}://127.0.0.1:${port}` });
  return fake;
}
