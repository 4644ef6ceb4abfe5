/**
 * A policy case's request as the proxy would receive it: the head Node would parse (headers in
 * order, lower-cased in `headers`, raw pairs in `rawHeaders`) and the body bytes.
 */
import { randomBytes } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { RequestHead } from "../pipeline/types.ts";
import type { CaseRequest } from "./cases.ts";

export interface CaseHttpRequest {
  readonly head: RequestHead;
  readonly body: Buffer;
}

/** Node folds these repeated headers into one value (keeping the first); others are joined. */
const SINGLE_VALUED = new Set(["host", "authorization", "content-type", "content-length", "user-agent", "origin", "referer"]);

function multipartBody(fields: Readonly<Record<string, string | number | boolean>>): { type: string; bytes: Buffer } {
  const boundary = `mythiq-policy-${randomBytes(8).toString("hex")}`;
  let text = "";
  for (const [name, value] of Object.entries(fields)) {
    text += `--${boundary}\r\nContent-Disposition: form-data; name="${name.replace(/["\r\n]/g, "")}"\r\n\r\n${String(value)}\r\n`;
  }
  text += `--${boundary}--\r\n`;
  return { type: `multipart/form-data; boundary=${boundary}`, bytes: Buffer.from(text, "utf8") };
}

/**
 * Builds the request. `session` is the session JWT to send (from `jwt`, or issued for `claims`),
 * `cookieName` the configured session cookie.
 */
export function buildCaseRequest(request: CaseRequest, session: string | undefined, cookieName: string | undefined): CaseHttpRequest {
  const pairs: Array<[string, string]> = [["Host", "mythiq-proxy.test"]];
  let target = request.path;
  if (request.query !== undefined) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(request.query)) params.append(name, String(value));
    target += (target.includes("?") ? "&" : "?") + params.toString();
  }

  if (request.token !== undefined) pairs.push(["Authorization", `Bearer ${request.token}`]);
  const cookies: string[] = [];
  if (request.cookie !== undefined) cookies.push(request.cookie);
  if (session !== undefined) {
    if (request.cookie_session && cookieName !== undefined) cookies.push(`${cookieName}=${session}`);
    else pairs.push(["Authorization", `Bearer ${session}`]);
  }
  if (cookies.length > 0) pairs.push(["Cookie", cookies.join("; ")]);
  if (request.origin !== undefined) pairs.push(["Origin", request.origin]);
  if (request.forwarded_for !== undefined) pairs.push(["X-Forwarded-For", request.forwarded_for]);

  let body: Buffer = Buffer.alloc(0);
  let contentType: string | undefined;
  if (request.json !== undefined) {
    body = Buffer.from(JSON.stringify(request.json), "utf8");
    contentType = "application/json";
  } else if (request.multipart !== undefined) {
    const form = multipartBody(request.multipart);
    body = form.bytes;
    contentType = form.type;
  } else if (request.body !== undefined) {
    body = Buffer.from(request.body, "utf8");
  }
  const given = Object.entries(request.headers ?? {});
  if (contentType !== undefined && !given.some(([name]) => name.toLowerCase() === "content-type")) pairs.push(["Content-Type", contentType]);
  for (const pair of given) pairs.push(pair);
  if (body.length > 0 && !pairs.some(([name]) => ["content-length", "transfer-encoding"].includes(name.toLowerCase()))) {
    pairs.push(["Content-Length", String(body.length)]);
  }

  const headers: IncomingHttpHeaders = {};
  const bag = headers as Record<string, string | string[] | undefined>;
  for (const [rawName, value] of pairs) {
    const name = rawName.toLowerCase();
    const existing = bag[name];
    if (existing === undefined) bag[name] = name === "set-cookie" ? [value] : value;
    else if (SINGLE_VALUED.has(name)) continue;
    else if (name === "cookie") bag[name] = `${String(existing)}; ${value}`;
    else bag[name] = `${String(existing)}, ${value}`;
  }

  return {
    head: {
      method: request.method,
      url: target,
      httpVersionMajor: 1,
      httpVersionMinor: 1,
      headers,
      rawHeaders: pairs.flat(),
      socketAddress: request.ip,
    },
    body,
  };
}
