/**
 * Browser `Origin` allowlists (SPEC §3 `origins`, §4 step 4), compiled once.
 *
 * An origin is compared as `scheme://host[:port]` after the same normalisation browsers apply when
 * they serialise one: lower-case scheme and host, the default port (80 for http, 443 for https)
 * left out. Nothing else is forgiven: a path, a trailing slash or dot, userinfo, a port with
 * leading zeros, `null`, or a list of origins is malformed and matches no allowlist.
 */
import { isIP } from "node:net";
import type { ClientConfig } from "../config/types.ts";
import { canonicalV6 } from "./ip.ts";

const ORIGIN = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(\[[^\]]*\]|[^:/?#[\]@\s]+)(?::([1-9][0-9]{0,4}))?$/;
const DNS_NAME = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/;
const DEFAULT_PORTS: Readonly<Record<string, number>> = { http: 80, https: 443 };
const MAX_HOST = 253;

interface ParsedOrigin {
  readonly scheme: string;
  readonly host: string;
  /** "" for the scheme's default port, else `:<port>`. */
  readonly port: string;
}

function parseParts(text: string, allowWildcard: boolean): ParsedOrigin | undefined {
  const match = ORIGIN.exec(text);
  if (!match) return undefined;
  const scheme = (match[1] ?? "").toLowerCase();
  let host = (match[2] ?? "").toLowerCase();
  const portText = match[3];
  if (host.startsWith("[")) {
    const inner = host.slice(1, -1);
    if (inner.includes("%") || isIP(inner) !== 6) return undefined;
    host = `[${canonicalV6(inner)}]`;
  } else {
    const name = allowWildcard && host.startsWith("*.") ? host.slice(2) : host;
    if (name.length > MAX_HOST || !DNS_NAME.test(name)) return undefined;
  }
  let port = "";
  if (portText !== undefined) {
    const value = Number(portText);
    if (value > 65535) return undefined;
    if (DEFAULT_PORTS[scheme] !== value) port = `:${value}`;
  }
  return { scheme, host, port };
}

/**
 * The canonical form of a request's `Origin` value (`https://app.example.com`), or `undefined`
 * when it is not exactly one serialised origin (`null`, empty, a path, a list, garbage).
 */
export function canonicalOrigin(text: string): string | undefined {
  const parts = parseParts(text, false);
  return parts && `${parts.scheme}://${parts.host}${parts.port}`;
}

/** One allowlist entry: an exact origin, or `scheme://*.suffix[:port]`. */
export type OriginPattern =
  | { readonly kind: "exact"; readonly origin: string }
  | { readonly kind: "wildcard"; readonly scheme: string; readonly port: string; readonly suffix: string };

/** `parseOriginPattern`'s answer: the pattern, or a message saying what is wrong and how to write it. */
export type ParsedOriginPattern = { readonly ok: true; readonly value: OriginPattern } | { readonly ok: false; readonly message: string };

const EXAMPLE = "write scheme://host[:port], e.g. https://app.example.com";
// Stands in for "*" while the WHATWG parser computes the spelling browsers would send.
const WILDCARD_LABEL = "x--wildcard--x";

const no = (message: string): ParsedOriginPattern => ({ ok: false, message });

/**
 * The one grammar for `origins` entries (SPEC §3, §4 step 4): config validation reports its
 * messages, `compileOrigins` compiles what it returns. Messages quote the entry: an origin is never
 * a secret.
 *
 * An entry is an http(s) origin written exactly as browsers send it in `Origin` (the WHATWG
 * serialisation: lower case, no default port, no path, no trailing slash), with a host the request
 * side can compare: a DNS name of at most 253 characters (labels of letters, digits, `-` and `_`,
 * no empty or trailing label), an IPv4 address or a bracketed IPv6 address; the port 1–65535.
 * An entry that is not written the way browsers send it could never match, so it is refused with
 * the right spelling rather than silently normalised.
 *
 * `https://*.example.com` matches any subdomain of example.com at any depth with the same scheme
 * and port, never `example.com` itself. `*` must be the whole left-most label and the rest must be
 * a DNS name of at least two labels whose last label is not numeric: `https://*.com`,
 * `https://*.0.1` and `*` anywhere else are refused. `null` is refused (an opaque origin, shared by
 * every sandboxed iframe and `file:` page, identifies nobody).
 */
export function parseOriginPattern(text: string): ParsedOriginPattern {
  const quoted = JSON.stringify(text);
  if (text === "null") {
    return no(`the "null" origin is never allowed: sandboxed frames and file: pages all send it, so it identifies nobody`);
  }
  if (text === "*") return no(`"*" would allow every site: list the origins instead`);
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(text);
  if (!m) return no(`${quoted} is not an origin: ${EXAMPLE}`);
  const scheme = (m[1] ?? "").toLowerCase();
  if (scheme !== "http" && scheme !== "https") return no(`${quoted}: only http and https origins are supported`);
  let rest = m[2] ?? "";
  const wildcard = rest.startsWith("*.");
  if (wildcard) rest = `${WILDCARD_LABEL}.${rest.slice(2)}`;
  if (rest.includes("*")) return no(`${quoted}: "*" is only allowed as the whole first label, e.g. https://*.example.com`);
  let url: URL;
  try {
    url = new URL(`${scheme}://${rest}`);
  } catch {
    return no(`${quoted} is not an origin: ${EXAMPLE}`);
  }
  if (url.username !== "" || url.password !== "" || rest.includes("@")) return no(`an origin has no user name or password: ${EXAMPLE}`);
  if (url.pathname !== "/" || /[/?#]/.test(rest)) {
    return no(`${quoted} must be only scheme://host[:port], without a path, query or trailing slash`);
  }
  if (wildcard && url.hostname.split(".").length < 3) {
    return no(`${quoted}: a wildcard needs a domain of at least two labels below it, e.g. https://*.example.com`);
  }
  const canonical = wildcard ? url.origin.replace(WILDCARD_LABEL, "*") : url.origin;
  if (canonical !== text) return no(`${quoted} is not written the way browsers send it: write ${canonical}`);
  if (url.port === "0") return no(`${quoted}: the port must be from 1 to 65535`);

  // The spelling is a browser's; what is left is whether the request side can compare it.
  const parts = parseParts(text, wildcard);
  if (parts === undefined || `${parts.scheme}://${parts.host}${parts.port}` !== text) {
    return no(
      `${quoted}: the host must be a DNS name of at most ${MAX_HOST} characters (labels of letters, digits, "-" and "_", ` +
        "separated by single dots, no trailing dot), an IPv4 address or an [IPv6] address",
    );
  }
  if (!wildcard) return { ok: true, value: { kind: "exact", origin: text } };
  const suffix = parts.host.slice(2);
  const labels = suffix.split(".");
  // Unreachable after the checks above (the URL parser refuses a numeric last label that is not
  // an IPv4 address); kept so the matcher's assumption does not rest on another module.
  if (labels.length < 2 || /^[0-9]+$/.test(labels[labels.length - 1] ?? "")) {
    return no(`${quoted}: a wildcard needs a domain of at least two labels below it, e.g. https://*.example.com`);
  }
  return { ok: true, value: { kind: "wildcard", scheme: parts.scheme, port: parts.port, suffix } };
}

/** A compiled origin allowlist. */
export interface OriginMatcher {
  /** True when `origin` is a well-formed origin allowed by one entry; false for `undefined`, `null`, malformed values. */
  matches(origin: string | undefined): boolean;
}

/**
 * Compiles an `origins` list. Throws on an entry `parseOriginPattern` refuses (config validation
 * refuses it first with `parseOriginPattern`'s own message, so this is a programming error). An
 * empty list matches nothing.
 */
export function compileOrigins(list: readonly string[]): OriginMatcher {
  const exact = new Set<string>();
  const wildcards: Array<{ scheme: string; port: string; dotSuffix: string }> = [];
  list.forEach((text, index) => {
    const parsed = parseOriginPattern(text);
    if (!parsed.ok) throw new Error(`origin #${index} is not a valid origin or wildcard origin`);
    const pattern = parsed.value;
    if (pattern.kind === "exact") exact.add(pattern.origin);
    else wildcards.push({ scheme: pattern.scheme, port: pattern.port, dotSuffix: `.${pattern.suffix}` });
  });
  return {
    matches(origin: string | undefined): boolean {
      if (origin === undefined) return false;
      const parts = parseParts(origin, false);
      if (parts === undefined) return false;
      if (exact.has(`${parts.scheme}://${parts.host}${parts.port}`)) return true;
      // The request host is a validated DNS name (no empty labels), so ending in ".example.com"
      // means at least one whole label in front of it: never the apex, never "evilexample.com".
      return wildcards.some(
        (w) => w.scheme === parts.scheme && w.port === parts.port && parts.host.endsWith(w.dotSuffix),
      );
    },
  };
}

/**
 * The origin allowlist of every client that lists `origins`, keyed by the client object itself so
 * a context holding a client from another config generation finds nothing (and is refused).
 */
export function compileClientOrigins(clients: readonly ClientConfig[]): ReadonlyMap<ClientConfig, OriginMatcher> {
  const map = new Map<ClientConfig, OriginMatcher>();
  for (const client of clients) {
    if (client.origins !== undefined) map.set(client, compileOrigins(client.origins));
  }
  return map;
}

/**
 * "Does any client allow this origin?" — for CORS preflights (SPEC §4 step 2). Clients without
 * `origins` accept any Origin but get no CORS headers, so they allow nothing here.
 */
export function compileAnyClientOrigin(clients: readonly ClientConfig[]): OriginMatcher {
  const matchers = [...compileClientOrigins(clients).values()];
  return { matches: (origin) => matchers.some((m) => m.matches(origin)) };
}
