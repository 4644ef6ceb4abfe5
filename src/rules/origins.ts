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

/**
 * Parses one `origins` entry; `undefined` when it is not allowed (config validation reports it).
 *
 * `https://*.example.com` matches any subdomain of example.com at any depth with the same scheme
 * and port, never `example.com` itself. `*` must be the whole left-most label and the rest must be
 * a DNS name of at least two labels whose last label is not numeric: `https://*.com`,
 * `https://*.0.1` and `*` anywhere else are refused. `null` is refused (an opaque origin, shared by
 * every sandboxed iframe and `file:` page, identifies nobody).
 */
export function parseOriginPattern(text: string): OriginPattern | undefined {
  const parts = parseParts(text, true);
  if (parts === undefined) return undefined;
  if (!parts.host.startsWith("*.")) return { kind: "exact", origin: `${parts.scheme}://${parts.host}${parts.port}` };
  const suffix = parts.host.slice(2);
  const labels = suffix.split(".");
  const last = labels[labels.length - 1] ?? "";
  if (labels.length < 2 || /^[0-9]+$/.test(last)) return undefined;
  return { kind: "wildcard", scheme: parts.scheme, port: parts.port, suffix };
}

/** A compiled origin allowlist. */
export interface OriginMatcher {
  /** True when `origin` is a well-formed origin allowed by one entry; false for `undefined`, `null`, malformed values. */
  matches(origin: string | undefined): boolean;
}

/**
 * Compiles an `origins` list. Throws on an entry `parseOriginPattern` refuses (config validation
 * refuses it first, so this is a programming error). An empty list matches nothing.
 */
export function compileOrigins(list: readonly string[]): OriginMatcher {
  const exact = new Set<string>();
  const wildcards: Array<{ scheme: string; port: string; dotSuffix: string }> = [];
  list.forEach((text, index) => {
    const pattern = parseOriginPattern(text);
    if (pattern === undefined) throw new Error(`origin #${index} is not a valid origin or wildcard origin`);
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
