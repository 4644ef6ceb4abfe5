/**
 * Span names and attributes (SPEC §11): the OpenTelemetry HTTP semantic conventions for the server
 * span of a request and the client span of each upstream attempt, plus the proxy's own
 * `mythiq_proxy.*` attributes (client id, model, reason, check, key name and fingerprint, request id).
 *
 * Built from named fields only, like the audit record (audit.ts), never by copying headers or the
 * request context: no key, client token, cookie, JWT or query value can reach a span. Values the
 * caller chose (path, model, user agent) are bounded the way the audit log bounds them.
 */
import type { RequestContext, RequestHead } from "../../pipeline/types.ts";
import { AUDIT_MODEL_MAX, bounded, boundedWithin, pathForLog } from "../audit.ts";
import { fingerprintLabel, routeLabel } from "../labels.ts";
import type { AttemptEnd, AttemptStart, ServerSpanEnd, SpanKey } from "./types.ts";

export type SpanAttributes = Record<string, string | number>;

/** Attribute names: OpenTelemetry's stable HTTP semantic conventions, then the proxy's own. */
export const ATTR = {
  method: "http.request.method",
  status: "http.response.status_code",
  route: "http.route",
  urlPath: "url.path",
  urlScheme: "url.scheme",
  urlFull: "url.full",
  clientAddress: "client.address",
  peerAddress: "network.peer.address",
  protocolVersion: "network.protocol.version",
  userAgent: "user_agent.original",
  serverAddress: "server.address",
  serverPort: "server.port",
  resendCount: "http.request.resend_count",
  errorType: "error.type",
  requestId: "mythiq_proxy.request_id",
  client: "mythiq_proxy.client",
  model: "mythiq_proxy.model",
  reason: "mythiq_proxy.reason",
  check: "mythiq_proxy.check",
  key: "mythiq_proxy.key",
  keyFingerprint: "mythiq_proxy.key_fingerprint",
} as const;

/** Methods the semantic conventions name; any other is recorded as `_OTHER`. */
const KNOWN_METHODS: ReadonlySet<string> = new Set(["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"]);

export function methodAttribute(method: string | undefined): string {
  return method !== undefined && KNOWN_METHODS.has(method) ? method : "_OTHER";
}

/** The path part of a route template: `GET /v1/models/{id}?x` → `/v1/models/{id}`. */
function routePath(template: string): string {
  const label = routeLabel(template);
  const space = label.indexOf(" ");
  return space === -1 ? label : label.slice(space + 1);
}

/** `{method} {route}` (the semantic conventions' span name), or the method alone without a matched route. */
export function serverSpanName(ctx: RequestContext | undefined, head: RequestHead): string {
  const method = methodAttribute(ctx?.method ?? head.method);
  return ctx?.route === undefined ? method : `${method} ${routePath(ctx.route)}`;
}

function keyAttributes(out: SpanAttributes, key: SpanKey): void {
  out[ATTR.key] = key.name;
  out[ATTR.keyFingerprint] = fingerprintLabel(key.fingerprint);
}

/** The server span's attributes once the request has ended. */
export function serverAttributes(id: string, head: RequestHead, ctx: RequestContext | undefined, end: ServerSpanEnd): SpanAttributes {
  const out: SpanAttributes = {
    [ATTR.method]: methodAttribute(ctx?.method ?? head.method),
    [ATTR.urlScheme]: "http",
    [ATTR.urlPath]: ctx === undefined ? pathForLog(head.url ?? "") : bounded(ctx.path),
    [ATTR.protocolVersion]: `${head.httpVersionMajor}.${head.httpVersionMinor}`,
    [ATTR.requestId]: bounded(id, 128),
  };
  const agent = head.headers["user-agent"];
  if (typeof agent === "string") out[ATTR.userAgent] = bounded(agent, 256);
  if (ctx !== undefined) {
    out[ATTR.clientAddress] = ctx.ip;
    out[ATTR.peerAddress] = ctx.socketIp;
    if (ctx.route !== undefined) out[ATTR.route] = routePath(ctx.route);
    if (ctx.client !== undefined) out[ATTR.client] = ctx.client.id;
    if (ctx.model !== undefined) out[ATTR.model] = boundedWithin(ctx.model, AUDIT_MODEL_MAX);
  }
  if (end.status > 0) out[ATTR.status] = end.status;
  if (end.reason !== undefined) out[ATTR.reason] = end.reason;
  if (end.check !== undefined) out[ATTR.check] = end.check;
  if (end.key !== undefined) keyAttributes(out, end.key);
  // Server spans are errors for 5xx only (a 4xx is the caller's doing, not a failure here).
  const errorType = end.failed ? "internal_error" : end.status >= 500 ? (end.reason ?? String(end.status)) : undefined;
  if (errorType !== undefined) out[ATTR.errorType] = errorType;
  return out;
}

/** True when the server span's status is Error. */
export function serverFailed(end: ServerSpanEnd): boolean {
  return end.failed || end.status >= 500;
}

/** The upstream's host and port as the client span names them. */
function serverOf(url: string): { address: string; port: number } | undefined {
  try {
    const u = new URL(url);
    return { address: u.hostname.replace(/^\[|\]$/g, ""), port: u.port === "" ? (u.protocol === "https:" ? 443 : 80) : Number(u.port) };
  } catch {
    return undefined;
  }
}

/** The client span's name and attributes as an upstream attempt starts; `resends` = attempts before this one. */
export function clientStart(start: AttemptStart, resends: number): { name: string; attributes: SpanAttributes } {
  const method = methodAttribute(start.method);
  const out: SpanAttributes = {
    [ATTR.method]: method,
    [ATTR.urlFull]: start.url,
    [ATTR.protocolVersion]: "1.1",
  };
  const server = serverOf(start.url);
  if (server !== undefined) {
    out[ATTR.serverAddress] = server.address;
    out[ATTR.serverPort] = server.port;
  }
  if (resends > 0) out[ATTR.resendCount] = resends;
  keyAttributes(out, start.key);
  return { name: method, attributes: out };
}

/**
 * The client span's attributes as the attempt ends, and whether its status is Error: the upstream
 * answered 4xx/5xx, or the attempt ended with a reason (no answer, a withheld answer, a cut body).
 */
export function clientEnd(end: AttemptEnd): { attributes: SpanAttributes; failed: boolean } {
  const out: SpanAttributes = {};
  if (end.upstreamStatus !== undefined) out[ATTR.status] = end.upstreamStatus;
  if (end.reason !== undefined) out[ATTR.reason] = end.reason;
  const failedStatus = end.upstreamStatus !== undefined && end.upstreamStatus >= 400;
  const errorType = end.reason ?? (failedStatus ? String(end.upstreamStatus) : undefined);
  if (errorType !== undefined) out[ATTR.errorType] = errorType;
  return { attributes: out, failed: errorType !== undefined };
}
