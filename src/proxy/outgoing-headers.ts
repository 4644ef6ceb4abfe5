/**
 * The request MythIQ receives, built from scratch (SPEC §4 step 8).
 *
 * Nothing here is done in an http-proxy-3 `proxyReq` listener: http-proxy-3 skips that event when
 * the outgoing request carries `Expect`, which would forward the caller's own credentials without
 * our key (docs/security.md §2). The header set is complete before
 * `proxy.web()` is called, and the caller's credentials, hop-by-hop headers and framing headers are
 * dropped *before* ours are set, so no client-named `Connection` token can remove a header we add
 * (Traefik CVE-2021-32813 class).
 */
import type { IncomingHttpHeaders } from "node:http";

/** Request headers never forwarded, whatever the caller sends. */
const DROPPED = new Set([
  // The caller's credentials: MythIQ only ever sees the proxy's key.
  "authorization",
  "cookie",
  "proxy-authorization",
  "x-api-key",
  // Hop-by-hop (RFC 9110 §7.6.1) and HTTP/2 upgrade negotiation.
  "connection",
  "keep-alive",
  "te",
  "trailer",
  "upgrade",
  "http2-settings",
  "expect",
  // Framing: recomputed from the body actually sent.
  "content-length",
  "transfer-encoding",
  // The upstream's Host is the upstream's.
  "host",
  // Claims about the caller's address that the caller could forge.
  "forwarded",
  "x-real-ip",
  "x-client-ip",
  "true-client-ip",
  "x-cluster-client-ip",
  "cf-connecting-ip",
  // Method and URL overrides honoured by some frameworks: the checked method and path are final.
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "x-original-url",
  "x-original-uri",
  "x-rewrite-url",
  // Ours replaces the caller's.
  "x-request-id",
]);

/** Methods whose empty body is sent without `content-length` (they do not anticipate content). */
const BODYLESS_METHODS = new Set(["GET", "HEAD", "DELETE", "OPTIONS"]);

/** How the request body is framed upstream. */
export type OutgoingBody =
  /** The checked bytes, sent from memory with an exact `content-length`. */
  | { readonly kind: "held"; readonly length: number }
  /** Piped from the caller: its `content-length` when it sent one, else chunked. */
  | { readonly kind: "stream" };

export interface OutgoingHeadersInput {
  readonly method: string;
  /** The caller's headers, lower-cased as Node parsed them. */
  readonly headers: IncomingHttpHeaders;
  readonly body: OutgoingBody;
  /** Our `x-request-id`. */
  readonly requestId: string;
  /** The upstream's `Host` value (`host[:port]`). */
  readonly host: string;
  /** The MythIQ key; becomes `authorization: Bearer <key>`. */
  readonly key: string;
}

const NO_TOKENS: ReadonlySet<string> = new Set();

/** Names the caller's `Connection` header lists: they are hop-by-hop for this request. */
function connectionTokens(headers: IncomingHttpHeaders): ReadonlySet<string> {
  const raw: string | string[] | undefined = headers.connection;
  if (raw === undefined) return NO_TOKENS;
  const values: readonly string[] = Array.isArray(raw) ? raw : [raw];
  const tokens = new Set<string>();
  for (const value of values) {
    for (const token of value.split(",")) {
      const name = token.trim().toLowerCase();
      if (name !== "") tokens.add(name);
    }
  }
  return tokens;
}

function dropped(name: string, named: ReadonlySet<string>): boolean {
  return DROPPED.has(name) || named.has(name) || name.startsWith(":") || name.startsWith("proxy-") || name.startsWith("x-forwarded-");
}

/** The caller's declared body length, when it sent a valid one (Node's parser has refused bad ones). */
function declaredLength(headers: IncomingHttpHeaders): number | undefined {
  const raw = headers["content-length"];
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  const value = Number(raw);
  return Number.isSafeInteger(value) ? value : undefined;
}

/**
 * The complete header set sent to MythIQ: the caller's headers minus everything in the drop list,
 * then framing, `host`, `authorization: Bearer <key>` and `x-request-id`. Names are lower-case.
 */
export function buildOutgoingHeaders(input: OutgoingHeadersInput): Record<string, string | string[]> {
  const named = connectionTokens(input.headers);
  const out: Record<string, string | string[]> = {};
  const headers = input.headers;
  // Node's parser gives lower-case names; `toLowerCase` keeps that true for any other caller.
  for (const rawName of Object.keys(headers)) {
    const value = headers[rawName];
    const name = rawName.toLowerCase();
    if (value === undefined || dropped(name, named)) continue;
    out[name] = value;
  }

  if (input.body.kind === "held") {
    const empty = input.body.length === 0;
    if (!(empty && BODYLESS_METHODS.has(input.method))) out["content-length"] = String(input.body.length);
  } else {
    const length = declaredLength(input.headers);
    if (length !== undefined) out["content-length"] = String(length);
    else out["transfer-encoding"] = "chunked";
  }

  out["host"] = input.host;
  out["authorization"] = `Bearer ${input.key}`;
  out["x-request-id"] = input.requestId;
  return out;
}

/**
 * The request target sent upstream: the upstream url's base path, then the checked path exactly,
 * then `?query` when there is one. Never re-resolved: the caller of this function hands it to
 * http-proxy-3 in a way that bypasses its WHATWG URL re-parse (see forward.ts).
 */
export function upstreamTarget(basePath: string, path: string, query: string): string {
  return basePath + path + (query === "" ? "" : `?${query}`);
}

/**
 * True when `target` can be written on a request line as it is: origin-form, visible ASCII only.
 * The listener checks the path; this guards the raw query too, so http.request never throws on it.
 */
export function isSendableTarget(target: string): boolean {
  return /^\/[\x21-\x7e]*$/.test(target);
}
