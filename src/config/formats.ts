/**
 * The string formats of the config (SPEC §3): routes, CIDRs, origins, URLs, token hashes, names.
 *
 * Each check returns the accepted (sometimes normalised) value or a message saying what is wrong and
 * what is allowed. Messages quote the offending value only for formats that can never hold a secret
 * (routes, CIDRs, origins); token entries and URLs that may carry credentials are never echoed.
 */
import { isIPv4, isIPv6 } from "node:net";
import { parseCidr } from "../rules/ip.ts";
import { parseOriginPattern } from "../rules/origins.ts";
import { parseRouteTemplate } from "../rules/routes.ts";
import { parseTokenHash } from "../rules/tokens.ts";
import type { HostPort } from "./types.ts";

export type Check<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };

const ok = <T>(value: T): Check<T> => ({ ok: true, value });
const no = (message: string): Check<never> => ({ ok: false, message });

// ---------------------------------------------------------------------------------------------
// Routes, CIDRs, origins, token hashes
//
// Each of these formats has exactly one grammar, in the rules module that compiles it: validation
// and compilation call the same function, so the config can never accept a string that would make
// `buildRuntime` throw at start-up or on reload, nor refuse one the rules could use. The messages
// live there too, because saying *why* a string is refused takes the same parse as refusing it.

/** A `routes` entry (`METHOD /path[?a&b]`, see `parseRouteTemplate`); the value is kept as written. */
export function checkRoute(text: string): Check<string> {
  const r = parseRouteTemplate(text);
  return r.ok ? ok(text) : r;
}

/**
 * A CIDR block or bare address (see `parseCidr`). The value is the canonical spelling:
 * `203.0.113.7` → `203.0.113.7/32`, `2001:DB8::/32` → `2001:db8::/32`, `::ffff:10.0.0.0/104` →
 * `10.0.0.0/8` (what it matches).
 */
export function checkCidr(text: string): Check<string> {
  const r = parseCidr(text);
  return r.ok ? ok(r.value.text) : r;
}

/** An `origins` entry exactly as browsers send it, or a `*.` wildcard (see `parseOriginPattern`). */
export function checkOrigin(text: string): Check<string> {
  const r = parseOriginPattern(text);
  return r.ok ? ok(text) : r;
}

/** A stored client token, `sha256:<64 lower-case hex>` (see `parseTokenHash`); never quoted back. */
export function checkTokenHash(text: string): Check<string> {
  const r = parseTokenHash(text);
  return r.ok ? ok(text) : r;
}

// ---------------------------------------------------------------------------------------------
// URLs

export interface UrlRules {
  /** What the URL is for, in messages: "the upstream url". */
  readonly what: string;
  /** `origin`: scheme://host[:port] only; `path`: a base path allowed (trailing slash dropped); `any`: path and query. */
  readonly form: "origin" | "path" | "any";
}

export interface CheckedUrl {
  /** The normalised URL: origin (+ path without trailing slash for `path`, the full href for `any`). */
  readonly href: string;
  readonly insecure: boolean;
}

/**
 * An http(s) URL. Never echoes the value: a URL can carry a password. User info and fragments are
 * always refused; `http:` is accepted here and judged by the caller (error or warning).
 */
export function checkUrl(text: string, rules: UrlRules): Check<CheckedUrl> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return no(`${rules.what} is not a valid URL (write e.g. https://host.example.com)`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return no(`${rules.what} must be an https:// URL`);
  if (url.username !== "" || url.password !== "") {
    return no(`${rules.what} must not contain a user name or password (credentials never go in URLs here)`);
  }
  if (text.includes("#")) return no(`${rules.what} must not have a #fragment`);
  if (rules.form !== "any" && text.includes("?")) return no(`${rules.what} must not have a ?query`);
  const path = url.pathname.replace(/\/+$/, "");
  if (rules.form === "origin" && path !== "") return no(`${rules.what} must be only scheme://host[:port], without a path`);
  if (rules.form === "any") return ok({ href: url.href, insecure: url.protocol === "http:" });
  const href = url.origin + path;
  // The URL parser silently rewrites case, dot segments and default ports; ask for the real thing.
  if (text !== href && text !== `${href}/`) return no(`${rules.what} is not in canonical form: write ${href}`);
  return ok({ href, insecure: url.protocol === "http:" });
}

// ---------------------------------------------------------------------------------------------
// Small formats

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Client ids and key names: they become metric labels and log fields, so they stay short and plain. */
export function checkName(text: string): Check<string> {
  if (NAME.test(text)) return ok(text);
  return no(`${JSON.stringify(text)} is not a valid name: use 1 to 64 letters, digits, "_", "." or "-", starting with a letter or digit`);
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;

/** An environment variable name, as used by `{env: NAME}` and `source: env`. */
export function checkEnvName(text: string): Check<string> {
  if (ENV_NAME.test(text)) return ok(text);
  return no(`${JSON.stringify(text)} is not an environment variable name (letters, digits and _, not starting with a digit)`);
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** A listen address: an IPv4 or IPv6 literal (no brackets) or a host name such as `localhost`. */
export function checkHost(text: string): Check<string> {
  if (isIPv4(text) || (isIPv6(text) && !text.includes("%")) || HOSTNAME.test(text)) return ok(text);
  if (/^\[.*\]$/.test(text)) return no(`${JSON.stringify(text)}: write IPv6 addresses without brackets, e.g. ::1`);
  return no(`${JSON.stringify(text)} is not an IP address or host name (use e.g. 0.0.0.0, 127.0.0.1, ::)`);
}

/**
 * `host:port` of a Redis node or sentinel: a DNS name or IPv4 address, or an IPv6 address in
 * brackets (`[fd00::5]:26379`), and a port 1–65535. Never echoes the value: a URL pasted here may
 * carry a password.
 */
export function checkHostPort(text: string): Check<HostPort> {
  const example = "e.g. redis-sentinel.redis.svc:26379, 10.0.0.5:6379 or [fd00::5]:6379";
  if (text.includes("://") || text.includes("@") || text.includes("/")) {
    return no(`must be host:port, not a URL (${example}); a password goes in password: {env: NAME}`);
  }
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(text);
  const colon = text.lastIndexOf(":");
  if (bracketed === null && colon < 0) return no(`has no port: write host:port (${example})`);
  const host = bracketed !== null ? (bracketed[1] ?? "") : text.slice(0, colon);
  const portText = bracketed !== null ? (bracketed[2] ?? "") : text.slice(colon + 1);
  if (bracketed === null && host.includes(":")) return no(`an IPv6 address goes in brackets: [fd00::5]:6379`);
  const validHost = bracketed !== null ? isIPv6(host) && !host.includes("%") : isIPv4(host) || HOSTNAME.test(host);
  if (!validHost) return no(`is not host:port: the host must be a DNS name or an IP address (${example})`);
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : 0;
  if (port < 1 || port > 65535) return no("the port must be a whole number from 1 to 65535");
  return ok({ host, port });
}

/** The name a TLS server's certificate must carry (SNI and verification): a DNS name or an IP address. */
export function checkServerName(text: string): Check<string> {
  if (HOSTNAME.test(text) || isIPv4(text) || isIPv6(text)) return ok(text);
  return no(`${JSON.stringify(text)} is not a host name (the name on the server's certificate, e.g. redis.example.com)`);
}

/** RFC 6265 cookie-name (an HTTP token). */
export function checkCookieName(text: string): Check<string> {
  if (/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$/.test(text)) return ok(text);
  return no(`${JSON.stringify(text)} is not a cookie name (letters, digits and !#$%&'*+-.^_\`|~)`);
}

/** JWT algorithms jose verifies; `none` is never among them. */
export const JWT_ALGORITHMS = [
  "HS256", "HS384", "HS512",
  "RS256", "RS384", "RS512",
  "PS256", "PS384", "PS512",
  "ES256", "ES384", "ES512",
  "EdDSA", "Ed25519",
] as const;

export function checkJwtAlgorithm(text: string): Check<string> {
  if ((JWT_ALGORITHMS as readonly string[]).includes(text)) return ok(text);
  if (text.toLowerCase() === "none") return no(`"none" is never accepted: it would let anyone forge a session`);
  return no(`${JSON.stringify(text)} is not a supported algorithm (allowed: ${JWT_ALGORITHMS.join(", ")})`);
}

/** True for the symmetric (shared-secret) algorithms. */
export function isHmacAlgorithm(alg: string): boolean {
  return /^HS(256|384|512)$/.test(alg);
}
