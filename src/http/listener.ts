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
import type { Reason } from "../errors.ts";
import { deny } from "../rules/verdict.ts";
import { sendDeny, writeRawReply } from "./reply.ts";

/**
 * Handles one request. `expectsContinue` is true when an HTTP/1.1 client sent `Expect:
 * 100-continue` and is waiting: nothing has been sent yet, and the handler calls
 * `res.writeContinue()` only once every check has passed (SPEC §4 step 7).
 */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean) => void | Promise<void>;

export interface ListenerOptions {
  /**
   * Told about each refusal the listener makes itself, before or beside the handler: parser errors
   * (`malformed_request`, `headers_too_large`), `request_timeout`, CONNECT/upgrades
   * (`method_not_allowed`), `expectation_failed`, and connections dropped over `max_connections`
   * (`overloaded`). `detail` is a fixed string (a Node error code or a word), never caller bytes.
   */
  readonly onClientError?: (reason: Reason, detail: string, reply?: RawReplyFacts) => void;
  /**
   * Told when the handler throws or rejects, or writes to a finished response. The connection is
   * then reset: no status fits an internal bug, and a reset can never pass for a success.
   */
  readonly onHandlerError?: (err: unknown) => void;
}

/** Request line plus header block, in bytes; more → 431 (Node's HPE_HEADER_OVERFLOW). */
export const MAX_HEADER_SIZE = 16384;

/** A refusal the listener answered itself (the handler never saw the request). */
export interface RawReplyFacts {
  /** The `x-request-id` sent with the reply. */
  readonly id: string;
  /** The TCP peer, as the socket reports it. */
  readonly ip: string;
}

/** How long a refused connection may take to read its reply before it is destroyed, in ms. */
const LINGER_MS = 5000;

/** What the listener knows about the latest request on a connection. */
interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
}

function reasonFor(err: Error & { code?: unknown }): Reason | undefined {
  const code = typeof err.code === "string" ? err.code : "";
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
  const requestTimeout = server.request_timeout;
  const headersTimeout = requestTimeout > 0 ? Math.min(server.headers_timeout, requestTimeout) : server.headers_timeout;
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
  listener.maxHeadersCount = server.max_header_count + 1;
  listener.maxConnections = server.max_connections;

  // The latest request seen on each connection, to decide whether a late parser error or timeout
  // can still be answered (see onClientError).
  const latest = new WeakMap<Duplex, Exchange>();
  // Connections already refused: llhttp reports further errors (the peer closing mid-request) on them.
  const refused = new WeakSet<Duplex>();

  function report(reason: Reason, detail: string, reply?: RawReplyFacts): void {
    try {
      options.onClientError?.(reason, detail, reply);
    } catch {
      // A failing observer must not take a refusal (or the process) down with it.
    }
  }

  /** Answers on the raw socket with its own request id, and reports it as an answered request. */
  function rawReply(socket: Duplex, reason: Reason, detail: string): void {
    const id = randomUUID();
    writeRawReply(socket, deny(reason, detail), { "x-request-id": id });
    report(reason, detail, { id, ip: socket instanceof Socket ? (socket.remoteAddress ?? "") : "" });
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
    closeAfterReply(socket);
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
    const id = randomUUID();
    sendDeny(res, deny("expectation_failed"), { close: true, headers: { "x-request-id": id } });
    report("expectation_failed", "expect", { id, ip: req.socket.remoteAddress ?? "" });
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
    const code = typeof err.code === "string" ? err.code : "client_error";
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
      closeAfterReply(socket);
    };
    // A response still owed for the previous request goes out first: a raw reply now would be read
    // as its answer. If that response is destroyed instead, the socket goes with it.
    if (exchange === undefined || exchange.res.writableFinished) answer();
    else exchange.res.once("finish", answer);
  });

  listener.on("drop", () => report("overloaded", "max_connections"));

  return listener;
}
