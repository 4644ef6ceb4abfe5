/**
 * Local replies: every response the proxy makes itself is SPEC §5's JSON. Two shapes exist because
 * some refusals happen before Node has built a request/response pair (parser errors, CONNECT,
 * upgrades): those are written straight to the socket and the connection is closed.
 */
import type { ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { ERRORS, errorBody } from "../errors.ts";
import type { Deny } from "../pipeline/types.ts";

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  417: "Expectation Failed",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

export interface ReplyOptions {
  /** Extra headers (CORS, x-request-id). Values must not be secrets. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Close the connection after the reply (framing errors, body cut off mid-stream). */
  readonly close?: boolean;
}

function replyHeaders(deny: Deny, body: string, close: boolean): Record<string, string> {
  const headers: Record<string, string> = {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  };
  const status = ERRORS[deny.reason].status;
  if (status === 401) headers["www-authenticate"] = "Bearer";
  if (deny.retryAfterSeconds !== undefined) headers["retry-after"] = String(Math.max(1, Math.ceil(deny.retryAfterSeconds)));
  if (close) headers["connection"] = "close";
  return headers;
}

/**
 * Sends the JSON error for `deny` on a response that has not started yet and returns the body's
 * size in bytes (for `response_bytes_total` and the audit log). Returns 0 (and destroys the
 * response) when headers were already sent: a half-sent upstream response must look truncated to
 * the client, never like a success.
 */
export function sendDeny(res: ServerResponse, deny: Deny, options: ReplyOptions = {}): number {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return 0;
  }
  const body = errorBody(deny.reason);
  const headers = { ...options.headers, ...replyHeaders(deny, body, options.close === true) };
  if (options.close === true) res.shouldKeepAlive = false;
  res.writeHead(ERRORS[deny.reason].status, headers);
  res.end(body);
  return Buffer.byteLength(body);
}

/**
 * Writes a complete HTTP/1.1 error response to a raw socket and closes it; returns the body's size
 * in bytes (0 when the socket was already gone). `extra` headers must not be secrets.
 */
export function writeRawReply(socket: Duplex, deny: Deny, extra: Readonly<Record<string, string>> = {}): number {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return 0;
  }
  const body = errorBody(deny.reason);
  const status = ERRORS[deny.reason].status;
  const headers = { ...extra, ...replyHeaders(deny, body, true) };
  let head = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  socket.end(head + "\r\n" + body);
  return Buffer.byteLength(body);
}
