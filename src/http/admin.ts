/**
 * The admin port (SPEC §6): `/metrics` for Prometheus, `/healthz` and `/readyz` for the kubelet.
 *
 * It never proxies and never throws. It is kept apart from the listen port so that metrics and
 * probes are not reachable by the frontends' callers (pomerium CVE-2022-24797 exposed metrics on
 * the public listener), and it has its own small limits: its only clients are a scraper and a
 * kubelet, which send tiny requests.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { writeRawReply } from "./reply.ts";
import type { Metrics } from "../observe/metrics.ts";
import { errorFields, type Logger } from "../observe/log.ts";

export interface AdminReadiness {
  readonly ready: boolean;
  /** Why not ready, e.g. `key production not loaded`. Must not contain secrets. */
  readonly reasons: readonly string[];
}

export interface AdminServerOptions {
  readonly metrics: Pick<Metrics, "metricsText" | "contentType">;
  /** Asked on every `/readyz`; a throw answers 503. */
  readonly readiness: () => AdminReadiness;
  readonly logger: Logger;
}

/** Admin server limits. Probes and scrapes are small and quick; anything slower is not one of them. */
export const ADMIN_LIMITS = Object.freeze({
  /** Bytes of request line + headers. */
  maxHeaderSize: 8 * 1024,
  maxHeadersCount: 50,
  /** Milliseconds. */
  headersTimeout: 5_000,
  requestTimeout: 10_000,
  keepAliveTimeout: 5_000,
  /** Idle socket, ms: a scraper that stops reading a large /metrics body is dropped. */
  socketTimeout: 30_000,
  /** Generous: refusing connections would fail liveness probes and restart the pod. */
  maxConnections: 256,
});

const PATHS = new Set(["/metrics", "/healthz", "/readyz"]);
const ALLOW = "GET, HEAD";
/** Longest readiness reason and number of reasons kept in a /readyz body. */
const MAX_REASONS = 50;
const MAX_REASON_LENGTH = 200;

const JSON_TYPE = "application/json; charset=utf-8";

function send(req: IncomingMessage, res: ServerResponse, status: number, contentType: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, {
    "content-type": contentType,
    "content-length": String(Buffer.byteLength(body)),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...extra,
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

function sendJson(req: IncomingMessage, res: ServerResponse, status: number, value: unknown, extra?: Record<string, string>): void {
  send(req, res, status, JSON_TYPE, JSON.stringify(value), extra);
}

// Error bodies in MythIQ's shape like every other local reply (SPEC §5). `not_found` and
// `internal_error` exist only on this port, so they are not in the listen port's catalogue.
const NOT_FOUND = { success: false, message: "Not found", code: "invalid_request_error", reason: "not_found" };
const METHOD_NOT_ALLOWED = { success: false, message: "Method is not allowed", code: "invalid_request_error", reason: "method_not_allowed" };
const INTERNAL = { success: false, message: "Metrics could not be collected", code: "internal_error", reason: "internal_error" };

function pathOf(url: string | undefined): string {
  const raw = url ?? "";
  const q = raw.indexOf("?");
  return q === -1 ? raw : raw.slice(0, q);
}

function readinessBody(check: () => AdminReadiness, logger: Logger): { status: number; body: unknown } {
  let state: AdminReadiness;
  try {
    state = check();
  } catch (err) {
    logger.error("readiness check failed", errorFields(err));
    return { status: 503, body: { ready: false, reasons: ["readiness check failed"] } };
  }
  if (state.ready) return { status: 200, body: { ready: true } };
  const reasons = state.reasons.slice(0, MAX_REASONS).map((r) => (r.length > MAX_REASON_LENGTH ? r.slice(0, MAX_REASON_LENGTH) : r));
  return { status: 503, body: { ready: false, reasons } };
}

async function handle(options: AdminServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // The body of a request to this port is never read; drain it so keep-alive stays usable.
  req.resume();
  const path = pathOf(req.url);
  if (!PATHS.has(path)) return sendJson(req, res, 404, NOT_FOUND);
  if (req.method !== "GET" && req.method !== "HEAD") return sendJson(req, res, 405, METHOD_NOT_ALLOWED, { allow: ALLOW });

  switch (path) {
    case "/healthz":
      return sendJson(req, res, 200, { ok: true });
    case "/readyz": {
      const { status, body } = readinessBody(options.readiness, options.logger);
      return sendJson(req, res, status, body);
    }
    default: {
      let text: string;
      try {
        text = await options.metrics.metricsText();
      } catch (err) {
        options.logger.error("metrics collection failed", errorFields(err));
        return sendJson(req, res, 500, INTERNAL);
      }
      // Prometheus 3 refuses a scrape without a valid content type.
      return send(req, res, 200, options.metrics.contentType, text);
    }
  }
}

function onClientError(err: Error & { code?: string }, socket: Duplex): void {
  // A peer that went away needs no answer; anything else gets the same JSON as the listen port.
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  const reason =
    err.code === "HPE_HEADER_OVERFLOW" ? "headers_too_large" : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "request_timeout" : "malformed_request";
  writeRawReply(socket, { ok: false, reason });
}

/**
 * Builds the admin server (not yet listening): `GET`/`HEAD` on `/metrics`, `/healthz`, `/readyz`;
 * 404 JSON for any other path, 405 JSON (with `Allow`) for other methods on those paths; 500 JSON
 * when a collector fails. Listening, closing and draining are the caller's.
 */
export function createAdminServer(options: AdminServerOptions): Server {
  const server = createServer(
    {
      maxHeaderSize: ADMIN_LIMITS.maxHeaderSize,
      headersTimeout: ADMIN_LIMITS.headersTimeout,
      requestTimeout: ADMIN_LIMITS.requestTimeout,
      keepAliveTimeout: ADMIN_LIMITS.keepAliveTimeout,
    },
    (req, res) => {
      handle(options, req, res).catch((err: unknown) => {
        options.logger.error("admin request failed", errorFields(err));
        if (res.headersSent) res.destroy();
        else sendJson(req, res, 500, INTERNAL);
      });
    },
  );
  server.maxHeadersCount = ADMIN_LIMITS.maxHeadersCount;
  server.maxConnections = ADMIN_LIMITS.maxConnections;
  server.setTimeout(ADMIN_LIMITS.socketTimeout);
  server.on("clientError", onClientError);
  // Without a listener Node drops a CONNECT silently; answer it like any other method we refuse.
  server.on("connect", (_req: IncomingMessage, socket: Duplex) => writeRawReply(socket, { ok: false, reason: "method_not_allowed" }));
  return server;
}
