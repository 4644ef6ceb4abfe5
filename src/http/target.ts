/**
 * Request-target hardening (SPEC §4 step 1).
 *
 * The route allowlist compares the path exactly, so the path we check must be the path the upstream
 * acts on. Anything a URL parser, a proxy library or the upstream's framework would rewrite (dot
 * segments, `%2e`, backslashes, `//`, `;` parameters, fragments, absolute-form) is refused here,
 * never normalised: http-proxy-3 re-parses `req.url` with the WHATWG parser, which resolved
 * `/v1/images/generations/../../admin` to `/v1/admin`, with the key attached (docs/security.md §1).
 * A refusal's `detail` is a fixed string: the target itself may carry a secret and is never logged.
 */
import { deny, type Deny } from "../pipeline/types.ts";

/** A target that passed every check: `path` and `query` are forwarded byte for byte. */
export type Target = {
  ok: true;
  /** The canonical path, exactly as received. */
  path: string;
  /** The raw query without the leading `?`; "" when the target had no `?`. */
  query: string;
  /** The query's parameter names in order, duplicates kept. */
  queryNames: string[];
};

/**
 * Characters a path may hold: RFC 3986 `pchar` and `/`, without percent-escapes and without `;`.
 * Everything else in printable ASCII (`"<>[\]^`{|}`) is percent-encoded or rejected by some URL
 * parser on the way upstream, so the upstream would see a different path than the one we matched.
 */
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,=:@/]*$/;

/** Query characters the WHATWG parser percent-encodes (its special-query set, printable part). */
const QUERY_REWRITTEN = /["'<>]/;

/** Query parameter names the route syntax can list (`?limit&after`). */
const QUERY_NAME = /^[A-Za-z0-9_.-]+$/;

/** Printable ASCII only: no space, no control bytes, no DEL, nothing above 0x7E. */
const PRINTABLE = /^[\x21-\x7e]*$/;

function invalidPath(detail: string): Deny {
  return deny("invalid_path", detail);
}

function checkPath(path: string): Deny | undefined {
  // Each of these is rewritten by some layer between us and the upstream: WHATWG turns `\` into
  // `/` and decodes `%2e` as a dot segment, Tomcat-style servers strip `;params`, nginx merges `//`.
  if (path.includes("\\")) return invalidPath("backslash in path");
  if (path.includes(";")) return invalidPath("semicolon in path");
  if (path.includes("%")) return invalidPath("percent-escape in path");
  if (!PATH_CHARS.test(path)) return invalidPath("character outside RFC 3986 pchar in path");
  const segments = path.split("/").slice(1);
  for (let i = 0; i < segments.length; i += 1) {
    const segment = segments[i] ?? "";
    // A trailing "/" is a real, different path (SPEC §4 step 5); an empty segment elsewhere is `//`.
    if (segment === "" && i < segments.length - 1) return invalidPath("empty path segment");
    if (segment === "." || segment === "..") return invalidPath("dot segment in path");
    // Windows/IIS-style servers drop a segment's trailing dots, so `/v1/models.` would become `/v1/models`.
    if (segment.endsWith(".")) return invalidPath("path segment ends with a dot");
  }
  return undefined;
}

function parseQuery(query: string): string[] | Deny {
  // A bare `?` would be forwarded as nothing, i.e. changed: refuse it rather than drop it.
  if (query === "") return deny("query_not_allowed", "empty query after ?");
  // Some frameworks also split the query on `;`: `?limit=1;admin=1` would carry a parameter we never saw.
  if (query.includes(";")) return invalidPath("semicolon in query");
  // WHATWG percent-encodes these in a query: refusing them keeps every accepted target a fixed
  // point of URL parsing, however the forwarder builds the outgoing URL.
  if (QUERY_REWRITTEN.test(query)) return invalidPath("character in query that URL parsers percent-encode");
  const names: string[] = [];
  for (const part of query.split("&")) {
    const eq = part.indexOf("=");
    const name = eq === -1 ? part : part.slice(0, eq);
    // A name we cannot read exactly (empty, escaped, `+`) could never match a listed name, and the
    // upstream would decode it into one we did not check.
    if (!QUERY_NAME.test(name)) return deny("query_not_allowed", name === "" ? "empty query parameter name" : "query parameter name not in [A-Za-z0-9_.-]");
    names.push(name);
  }
  return names;
}

/**
 * Checks a raw request target (`req.url`) and splits it into path and query.
 *
 * Accepts origin-form only (`/path` with an optional `?query`). Refusals:
 * - `invalid_path`: not origin-form (absolute-form, authority-form, `*`, empty); a byte outside
 *   0x21–0x7E; `#` anywhere; in the path `\`, `;`, `%`, a character outside RFC 3986 pchar, `//`,
 *   a `.`/`..` segment or a segment ending in `.`; `;`, `"`, `'`, `<` or `>` in the query.
 * - `query_not_allowed`: an empty query after `?`, an empty parameter (`a=1&&b=2`), or a parameter
 *   name outside `[A-Za-z0-9_.-]+` (e.g. `%61`, `a+b`, `=1`). Values are opaque.
 */
export function parseTarget(rawUrl: string): Target | Deny {
  if (!rawUrl.startsWith("/")) return invalidPath("target is not origin-form");
  if (!PRINTABLE.test(rawUrl)) return invalidPath("non-printable or non-ASCII byte in target");
  // Fragments are never sent by clients; WHATWG drops everything after `#`, so `/v1/models#/../x`
  // would be checked as one thing and forwarded as another.
  if (rawUrl.includes("#")) return invalidPath("fragment in target");

  const mark = rawUrl.indexOf("?");
  const path = mark === -1 ? rawUrl : rawUrl.slice(0, mark);
  const pathDeny = checkPath(path);
  if (pathDeny !== undefined) return pathDeny;
  if (mark === -1) return { ok: true, path, query: "", queryNames: [] };

  const query = rawUrl.slice(mark + 1);
  const names = parseQuery(query);
  if (!Array.isArray(names)) return names;
  return { ok: true, path, query, queryNames: names };
}
