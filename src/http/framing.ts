/**
 * Message-framing hardening (SPEC §4 step 1): what Node's strict parser still lets through.
 *
 * llhttp refuses CL+TE, duplicate Content-Length, obs-fold, bare LF and lowercase methods, but on
 * Node 24 it still accepts `Transfer-Encoding: ,chunked`, `identity, chunked`, chunked bodies on
 * HTTP/1.0, `HTTP/2.0` and HTTP/0.9 request lines, TRACE and WebDAV methods, duplicate `Host`,
 * header names with `_`, and `Connection: keep-alive, authorization`. Each of these is a way to make
 * the upstream (or a hop in between) read the request differently from us. The checks read
 * `req.rawHeaders`: `req.headers` silently keeps only the first `Host`/`Authorization`/`Content-Type`.
 * A refusal's `detail` is a fixed string: header values may be secrets and are never logged.
 */
import type { IncomingMessage } from "node:http";
import { CONTINUE, deny, type Verdict } from "../pipeline/types.ts";

export interface FramingLimits {
  /** Most header lines a request may carry (`server.max_header_count`); more → 431. */
  readonly maxHeaderCount: number;
}

/** The methods the MythIQ API uses; TRACE, CONNECT, WebDAV, QUERY and the rest → 405. */
const ALLOWED_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/**
 * Headers that must appear at most once. Node keeps only the first `Host`/`Authorization`/
 * `Content-Type` in `req.headers`, so a second one is a parser differential waiting to happen.
 */
const SINGLETON_HEADERS: ReadonlySet<string> = new Set(["host", "authorization", "content-type", "content-length", "transfer-encoding"]);

/** `Connection` tokens a client may send; any other token names a header to strip hop by hop. */
const CONNECTION_TOKENS: ReadonlySet<string> = new Set(["keep-alive", "close"]);

/** Header facts collected in one pass over `rawHeaders`. */
interface HeaderFacts {
  readonly count: number;
  readonly counts: ReadonlyMap<string, number>;
  readonly underscore: boolean;
  readonly transferEncoding: readonly string[];
  readonly contentLength: readonly string[];
  readonly connectionTokens: readonly string[];
  readonly upgrade: boolean;
  readonly expect: readonly string[];
}

function collect(rawHeaders: readonly string[]): HeaderFacts {
  const counts = new Map<string, number>();
  const transferEncoding: string[] = [];
  const contentLength: string[] = [];
  const connectionTokens: string[] = [];
  const expect: string[] = [];
  let underscore = false;
  let upgrade = false;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] ?? "").toLowerCase();
    const value = rawHeaders[i + 1] ?? "";
    counts.set(name, (counts.get(name) ?? 0) + 1);
    if (name.includes("_")) underscore = true;
    switch (name) {
      case "transfer-encoding":
        transferEncoding.push(value);
        break;
      case "content-length":
        contentLength.push(value);
        break;
      case "connection":
        for (const token of value.split(",")) connectionTokens.push(token.trim().toLowerCase());
        break;
      case "upgrade":
        upgrade = true;
        break;
      case "expect":
        expect.push(value);
        break;
    }
  }
  return { count: Math.floor(rawHeaders.length / 2), counts, underscore, transferEncoding, contentLength, connectionTokens, upgrade, expect };
}

function checkTransferEncoding(facts: HeaderFacts, http10: boolean): Verdict {
  if (facts.transferEncoding.length === 0) return CONTINUE;
  // `,chunked`, `identity, chunked` and `gzip, chunked` are read as chunked by llhttp and forwarded
  // verbatim by http-proxy-3; another parser may read them as no body at all (request smuggling).
  if (facts.transferEncoding.length > 1 || facts.transferEncoding[0]?.toLowerCase() !== "chunked") {
    return deny("invalid_header", "transfer-encoding is not exactly chunked");
  }
  // HTTP/1.0 has no chunked coding: a 1.0 hop would read the chunk framing as the body.
  if (http10) return deny("invalid_header", "transfer-encoding on HTTP/1.0");
  if (facts.contentLength.length > 0) return deny("invalid_header", "transfer-encoding with content-length");
  return CONTINUE;
}

function hasBody(facts: HeaderFacts): boolean {
  if (facts.transferEncoding.length > 0) return true;
  // llhttp has already refused anything but a single run of digits.
  return facts.contentLength.some((value) => Number(value) > 0);
}

/**
 * Checks the request line and header block Node has parsed. The first failing check wins, in this
 * order (request line first, then the header block as a whole, then single headers, then semantics):
 *
 * 1. HTTP version other than 1.0/1.1 (`HTTP/2.0` and HTTP/0.9 lines reach us) → 400 `malformed_request`
 * 2. method other than GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS (TRACE, CONNECT, …) → 405 `method_not_allowed`
 * 3. more than `maxHeaderCount` header lines → 431 `headers_too_large`
 * 4. HTTP/1.1 without `Host` → 400 `malformed_request` (done here, not by Node, so the reply is JSON)
 * 5. any `Upgrade` header or a `Connection: upgrade` token (WebSocket, h2c) → 405 `method_not_allowed`
 * 6. a header name containing `_` → 400 `invalid_header`
 * 7. a second `Host`, `Authorization`, `Content-Type`, `Content-Length` or `Transfer-Encoding` → 400 `invalid_header`
 * 8. `Transfer-Encoding` other than one header reading `chunked` (any case), or on HTTP/1.0, or with
 *    `Content-Length` → 400 `invalid_header`
 * 9. a `Connection` token other than `keep-alive`/`close` (any case; empty tokens included) → 400 `invalid_header`
 * 10. `Expect` other than one header reading `100-continue` (any case) → 417 `expectation_failed`
 * 11. GET or HEAD with `Content-Length` > 0 or `Transfer-Encoding` → 400 `body_not_allowed`
 *
 * A refused request should be answered with `{ close: true }`: its body has not been read and the
 * connection's framing can no longer be trusted.
 */
export function checkFraming(
  req: Pick<IncomingMessage, "httpVersionMajor" | "httpVersionMinor" | "method"> & { readonly rawHeaders: readonly string[] },
  limits: FramingLimits,
): Verdict {
  const major = req.httpVersionMajor;
  const minor = req.httpVersionMinor;
  if (major !== 1 || (minor !== 0 && minor !== 1)) return deny("malformed_request", "http version is not 1.0 or 1.1");
  const http10 = minor === 0;

  const method = req.method ?? "";
  if (!ALLOWED_METHODS.has(method)) return deny("method_not_allowed", "method not allowed");

  const facts = collect(req.rawHeaders);
  if (facts.count > limits.maxHeaderCount) return deny("headers_too_large", "too many header lines");
  if (!http10 && !facts.counts.has("host")) return deny("malformed_request", "http/1.1 request without host");

  // An upgrade is refused as such even when it also carries other odd headers: it names what the
  // client is attempting (a tunnel past every later check).
  if (facts.upgrade || facts.connectionTokens.includes("upgrade")) return deny("method_not_allowed", "protocol upgrade");

  // Envoy's `headers_with_underscores_action: REJECT_REQUEST`: frameworks that map `_` and `-` to
  // the same name (CGI, nginx, oauth2-proxy CVE-2025-64484) would see `x_api_key` as `x-api-key`.
  if (facts.underscore) return deny("invalid_header", "header name contains an underscore");

  for (const name of SINGLETON_HEADERS) {
    if ((facts.counts.get(name) ?? 0) > 1) return deny("invalid_header", `duplicate ${name} header`);
  }

  const te = checkTransferEncoding(facts, http10);
  if (!te.ok) return te;

  // RFC 9110 §7.6.1: every token names a header a hop must delete. `Connection: authorization`
  // would make an RFC-compliant hop drop the key we inject (docs/security.md §3).
  if (facts.connectionTokens.some((token) => !CONNECTION_TOKENS.has(token))) {
    return deny("invalid_header", "connection token other than keep-alive or close");
  }

  // Node's own test is a substring match (`foo, 100-continue` counts as 100-continue); ours is exact.
  if (facts.expect.length > 1 || (facts.expect.length === 1 && facts.expect[0]?.toLowerCase() !== "100-continue")) {
    return deny("expectation_failed", "expect other than 100-continue");
  }

  if ((method === "GET" || method === "HEAD") && hasBody(facts)) return deny("body_not_allowed", "body on GET or HEAD");
  return CONTINUE;
}
