/**
 * The listen port's `http.Server`, hardened: strict parser, bounded header block and timeouts, and
 * every refusal Node makes before a request exists (parser errors, timeouts, CONNECT, upgrades,
 * unknown `Expect`) answered with SPEC §5's JSON instead of Node's bare status lines.
 *
 * This module only wires Node. The pipeline behind `handler` runs `checkFraming` and `parseTarget`
 * first thing; the listener never inspects headers or paths itself.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { ServerConfig } from "../config/types.ts";
import { errnoCode } from "../errno.ts";
import type { Reason } from "../errors.ts";
import { deny, type Deny } from "../pipeline/types.ts";
import { sendDeny, writeRawReply } from "./reply.ts";

/**
 * Handles one request. `expectsContinue` is true when an HTTP/1.1 client sent `Expect:
 * 100-continue` and is waiting: nothing has been sent yet, and the handler calls
 * `res.writeContinue()` only once every check has passed (SPEC §4 step 7).
 */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean) => void | Promise<void>;

export interface ListenerOptions {
  /**
   * Handed each refusal the listener answers itself before a request exists: parser errors
   * (`malformed_request`, `headers_too_large`), `request_timeout`, CONNECT/upgrades
   * (`method_not_allowed`) and `expectation_failed`. The receiver must call `reply` (or `reset`)
   * once; without a receiver the listener replies itself.
   */
  readonly onRefusal?: (refusal: ListenerRefusal) => void;
  /**
   * Told about refusals that get no reply of their own, to count them: a parser error in the body of
   * a request the handler holds (the handler answers and accounts for that request), a malformed
   * request after a response that closes the connection, and connections dropped over
   * `max_connections` (`overloaded`). `detail` is a fixed string (a Node error code or a word),
   * never caller bytes.
   */
  readonly onClientError?: (reason: Reason, detail: string) => void;
  /**
   * Told when the handler throws or rejects, or writes to a finished response. The connection is
   * then reset: no status fits an internal bug, and a reset can never pass for a success.
   */
  readonly onHandlerError?: (err: unknown) => void;
}

/** Request line plus header block, in bytes; more → 431 (Node's HPE_HEADER_OVERFLOW). */
export const MAX_HEADER_SIZE = 16384;

/** A refusal the listener makes itself (the handler never sees the request). */
export interface ListenerRefusal {
  /** The `x-request-id` the reply carries. */
  readonly id: string;
  readonly reason: Reason;
  /** A fixed string (a Node error code or a word), never caller bytes. */
  readonly detail: string;
  /** The TCP peer, as the socket reports it. */
  readonly ip: string;
  /** Sends SPEC §5's JSON for `verdict` and closes the connection; returns the body's size in bytes. */
  reply(verdict: Deny): number;
  /** Cuts the connection without a reply. */
  reset(): void;
}

/** How long a refused connection may take to read its reply before it is destroyed, in ms. */
const LINGER_MS = 5000;

/** What the listener knows about the latest request on a connection. */
interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
}

function reasonFor(err: Error & { code?: unknown }): Reason | undefined {
  const code = errnoCode(err, "");
  if (code === "HPE_HEADER_OVERFLOW") return "headers_too_large";
  if (code === "ERR_HTTP_REQUEST_TIMEOUT") return "request_timeout";
  // SPEC §4: unknown methods are 405. llhttp knows TRACE, PROPFIND, QUERY… (those reach
  // checkFraming); a method it does not know at all (`FOO`, lowercase `get`) ends up here.
  if (code === "HPE_INVALID_METHOD") return "method_not_allowed";
  // Every other llhttp refusal (bad framing, bare LF, CL+TE, obs-fold, bad version, the HTTP/2
  // preface, oversized chunk extensions) is one answer: the request could not be parsed.
  if (code.startsWith("HPE_")) return "malformed_request";
  // ECONNRESET, EPIPE, …: the peer is gone, there is nobody to answer.
  return undefined;
}

/** Smallest positive value, or undefined when none is. */
function smallestPositive(...values: number[]): number | undefined {
  const positive = values.filter((v) => v > 0);
  return positive.length === 0 ? undefined : Math.min(...positive);
}

/** Node requires `headersTimeout` ≤ `requestTimeout` when both are set. */
function timeouts(server: ServerConfig): { headersTimeout: number; requestTimeout: number } {
  const requestTimeout = server.request_timeout;
  return { requestTimeout, headersTimeout: requestTimeout > 0 ? Math.min(server.headers_timeout, requestTimeout) : server.headers_timeout };
}

/**
 * Applies `server:` settings to a listener, at creation and on a reload (SPEC §11). Node reads these
 * properties when it checks timeouts, sets up a new connection or writes a response, so a reload
 * changes them for what comes next: the connections checker (every 25–1000 ms, chosen at start)
 * picks up new timeouts at its next run, new connections get the new header count and connection
 * limit, and the next response the new keep-alive timeout. `drain_timeout` and `max_header_count`'s
 * own check are read from the config in force when they are needed.
 */
export function applyServerSettings(listener: http.Server, server: ServerConfig): void {
  const { headersTimeout, requestTimeout } = timeouts(server);
  listener.headersTimeout = headersTimeout;
  listener.requestTimeout = requestTimeout;
  listener.keepAliveTimeout = server.keep_alive_timeout;
  listener.maxHeadersCount = server.max_header_count + 1;
  listener.maxConnections = server.max_connections;
}

/** Ends a refused connection once its reply has been flushed, and in any case after LINGER_MS. */
function closeAfterReply(socket: Duplex): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
  socket.once("finish", () => socket.destroy());
}

/**
 * Creates the listen-port server (not yet listening). Settings, from `server:` unless noted:
 * `headersTimeout` = `headers_timeout` (capped at `request_timeout`, which Node requires),
 * `requestTimeout` = `request_timeout` (whole request incl. body; a handler still working after
 * the body arrived is not cut), `keepAliveTimeout` = `keep_alive_timeout`, `maxConnections` =
 * `max_connections` (excess connections are closed by Node), `maxHeaderSize` 16384 bytes,
 * `maxHeadersCount` = `max_header_count + 1` (Node 24 refuses more with HPE_HEADER_OVERFLOW, older
 * Node silently drops the excess: keeping one more lets `checkFraming` see the overflow either way),
 * `insecureHTTPParser` false (also overrides a stray `--insecure-http-parser`), `requireHostHeader`
 * false (Node's refusal has no JSON body; `checkFraming` refuses a missing Host instead), and
 * timeouts checked at least every second (Node's default is every 30 s).
 */
export function createListener(server: ServerConfig, handler: RequestHandler, options: ListenerOptions = {}): http.Server {
  const { headersTimeout, requestTimeout } = timeouts(server);
  const shortest = smallestPositive(headersTimeout, requestTimeout) ?? 1000;

  const listener = http.createServer({
    headersTimeout,
    requestTimeout,
    keepAliveTimeout: server.keep_alive_timeout,
    connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(shortest / 4))),
    maxHeaderSize: MAX_HEADER_SIZE,
    insecureHTTPParser: false,
    requireHostHeader: false,
  });
  applyServerSettings(listener, server);

  // The latest request seen on each connection, to decide whether a late parser error or timeout
  // can still be answered (see onClientError).
  const latest = new WeakMap<Duplex, Exchange>();
  // Connections already refused: llhttp reports further errors (the peer closing mid-request) on them.
  const refused = new WeakSet<Duplex>();

  function report(reason: Reason, detail: string): void {
    try {
      options.onClientError?.(reason, detail);
    } catch {
      // A failing observer must not take a refusal (or the process) down with it.
    }
  }

  /** Hands a refusal to `onRefusal` (which replies through `reply`), or replies at once without one. */
  function refuse(reason: Reason, detail: string, ip: string, reply: (verdict: Deny, id: string) => number, reset: () => void): void {
    const id = randomUUID();
    let answered = false;
    const refusal: ListenerRefusal = {
      id,
      reason,
      detail,
      ip,
      reply(verdict) {
        if (answered) return 0;
        answered = true;
        return reply(verdict, id);
      },
      reset() {
        answered = true;
        reset();
      },
    };
    try {
      if (options.onRefusal === undefined) refusal.reply(deny(reason, detail));
      else options.onRefusal(refusal);
    } catch {
      // Same as report(); the caller still gets its answer.
    }
    if (!answered) refusal.reply(deny(reason, detail));
  }

  /** Answers on the raw socket with its own request id, then closes the connection. */
  function rawReply(socket: Duplex, reason: Reason, detail: string): void {
    refuse(
      reason,
      detail,
      socket instanceof Socket ? (socket.remoteAddress ?? "") : "",
      (verdict, id) => {
        const bytes = writeRawReply(socket, verdict, { "x-request-id": id });
        closeAfterReply(socket);
        return bytes;
      },
      () => socket.destroy(),
    );
  }

  function handlerFailed(err: unknown, res: ServerResponse): void {
    try {
      options.onHandlerError?.(err);
    } catch {
      // Same as report().
    }
    res.destroy();
  }

  function refuseSocket(socket: Duplex, reason: Reason, detail: string): void {
    refused.add(socket);
    rawReply(socket, reason, detail);
  }

  function dispatch(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    latest.set(req.socket, { req, res });
    // Writing to an ended response emits 'error' on it, which would crash the process unheard.
    res.on("error", (err) => handlerFailed(err, res));
    try {
      const result: unknown = handler(req, res, expectsContinue);
      if (result instanceof Promise) result.catch((err: unknown) => handlerFailed(err, res));
    } catch (err) {
      handlerFailed(err, res);
    }
  }

  listener.on("request", (req: IncomingMessage, res: ServerResponse) => dispatch(req, res, false));
  // With this listener Node sends no `100 Continue` of its own: the client's body stays unsent
  // until the pipeline has authenticated and sized the request.
  listener.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => dispatch(req, res, true));
  // HTTP/1.1 `Expect` without `100-continue` in it; HTTP/1.0 Expects reach the handler (checkFraming).
  listener.on("checkExpectation", (req: IncomingMessage, res: ServerResponse) => {
    latest.set(req.socket, { req, res });
    refuse(
      "expectation_failed",
      "expect",
      req.socket.remoteAddress ?? "",
      (verdict, id) => sendDeny(res, verdict, { close: true, headers: { "x-request-id": id } }),
      () => res.destroy(),
    );
  });

  // Node hands these sockets over without its error listener: add one before anything can fail.
  // Reading on (into nothing) keeps unread tunnel bytes from turning our close into a reset that
  // could destroy the reply before the client reads it.
  listener.on("connect", (_req: IncomingMessage, socket: Duplex) => {
    socket.on("error", () => socket.destroy());
    socket.resume();
    refuseSocket(socket, "method_not_allowed", "connect");
  });
  listener.on("upgrade", (_req: IncomingMessage, socket: Duplex) => {
    socket.on("error", () => socket.destroy());
    socket.resume();
    refuseSocket(socket, "method_not_allowed", "upgrade");
  });

  listener.on("clientError", (err: Error & { code?: unknown }, socket: Duplex) => {
    const reason = reasonFor(err);
    if (reason === undefined || refused.has(socket) || !socket.writable) {
      socket.destroy();
      return;
    }
    refused.add(socket);
    const code = errnoCode(err, "client_error");
    const exchange = latest.get(socket);
    if (exchange !== undefined && !exchange.req.complete) {
      // The error is in the body of a request the handler holds (a stalled upload, a broken
      // chunk): answer through its response, so that the handler sees `headersSent` and stops
      // (and accounts for that request itself).
      report(reason, code);
      if (sendDeny(exchange.res, deny(reason, code), { close: true }) > 0) closeAfterReply(socket);
      return;
    }
    // Otherwise the error is in the head of the next request on a keep-alive connection.
    const answer = (): void => {
      if (exchange !== undefined && !exchange.res.shouldKeepAlive) {
        // That response closes the connection (e.g. `Connection: close` followed by more bytes):
        // a reply after it would be unsolicited bytes.
        report(reason, code);
        closeAfterReply(socket);
        return;
      }
      rawReply(socket, reason, code);
    };
    // A response still owed for the previous request goes out first: a raw reply now would be read
    // as its answer. If that response is destroyed instead, the socket goes with it.
    if (exchange === undefined || exchange.res.writableFinished) answer();
    else exchange.res.once("finish", answer);
  });

  listener.on("drop", () => report("overloaded", "max_connections"));

  return listener;
}
