/**
 * The string formats of the config (SPEC §3): routes, CIDRs, origins, URLs, token hashes, names.
 *
 * Each check returns the accepted (sometimes normalised) value or a message saying what is wrong and
 * what is allowed. Messages quote the offending value only for formats that can never hold a secret
 * (routes, CIDRs, origins); token entries and URLs that may carry credentials are never echoed.
 */
import { isIPv4, isIPv6 } from "node:net";

export type Check<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };

const ok = <T>(value: T): Check<T> => ({ ok: true, value });
const no = (message: string): Check<never> => ({ ok: false, message });

// ---------------------------------------------------------------------------------------------
// Routes

/**
 * Methods a route may name. OPTIONS is answered by the proxy itself (CORS preflight) and is never
 * forwarded; CONNECT and TRACE are refused at the listener (SPEC §4 step 1).
 */
export const ROUTE_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] as const;
export type RouteMethod = (typeof ROUTE_METHODS)[number];

/** One path segment of a route: literal text, or `{name}` matching exactly one non-empty segment. */
export type RouteSegment = { readonly literal: string } | { readonly param: string };

export interface RouteSpec {
  readonly method: RouteMethod;
  /** The path as written, e.g. `/v1/models/{id}`. */
  readonly path: string;
  /** Segments after the leading `/`; a trailing `/` gives a final empty literal. */
  readonly segments: readonly RouteSegment[];
  /** Query parameter names allowed on this route; empty = none. */
  readonly query: readonly string[];
}

const PARAM = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
const QUERY_NAME = /^[A-Za-z0-9_.-]+$/;
const PRINTABLE = /^[\x21-\x7e]*$/;

/**
 * Parses `METHOD /canonical/path[?name&name]`. The path must already be in the only form a request
 * can match (SPEC §4 step 1 refuses everything else), so a route that could never match is an error
 * here rather than a silent dead rule.
 */
export function parseRoute(text: string): Check<RouteSpec> {
  const m = /^([^ ]+) ([^ ]+)$/.exec(text);
  if (!m) return no(`${JSON.stringify(text)} is not a route: write "METHOD /path" with one space, e.g. "GET /v1/models"`);
  const method = m[1] ?? "";
  const target = m[2] ?? "";
  if (!(ROUTE_METHODS as readonly string[]).includes(method)) {
    const upper = method.toUpperCase();
    if ((ROUTE_METHODS as readonly string[]).includes(upper)) return no(`method ${JSON.stringify(method)} must be upper case: ${upper}`);
    if (upper === "OPTIONS") return no("OPTIONS is not routed: the proxy answers CORS preflight requests itself");
    if (upper === "CONNECT" || upper === "TRACE") return no(`${upper} is never allowed`);
    return no(`unknown method ${JSON.stringify(method)} (allowed: ${ROUTE_METHODS.join(", ")})`);
  }
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  const pathProblem = checkRoutePath(path);
  if (pathProblem) return no(`${JSON.stringify(text)}: ${pathProblem}`);

  const query: string[] = [];
  if (q >= 0) {
    const list = target.slice(q + 1);
    for (const name of list.split("&")) {
      if (name.includes("=")) {
        return no(`${JSON.stringify(text)}: list query parameter names only, e.g. ?limit&after (values are not matched)`);
      }
      if (!QUERY_NAME.test(name)) {
        return no(`${JSON.stringify(text)}: query parameter names are letters, digits, "_", "." or "-", separated by "&", e.g. ?limit&after`);
      }
      if (query.includes(name)) return no(`${JSON.stringify(text)}: query parameter ${name} is listed twice`);
      query.push(name);
    }
  }

  const segments: RouteSegment[] = [];
  for (const seg of path.slice(1).split("/")) {
    const p = PARAM.exec(seg);
    segments.push(p ? { param: p[1] ?? "" } : { literal: seg });
  }
  return ok({ method: method as RouteMethod, path, segments, query });
}

/** Why `path` is not a canonical route path, or undefined when it is. */
function checkRoutePath(path: string): string | undefined {
  if (!path.startsWith("/")) return "the path must start with /";
  if (!PRINTABLE.test(path)) return "the path must be printable ASCII without spaces";
  for (const [ch, why] of [
    ["%", "percent-escapes never match: requests with them are refused"],
    ["\\", "backslashes are refused in requests"],
    [";", "path parameters (;) are refused in requests"],
    ["#", "fragments are never sent"],
    ["*", "wildcards are not supported: list each route, and use {name} for one segment"],
  ] as const) {
    if (path.includes(ch)) return `"${ch}" is not allowed in a route path (${why})`;
  }
  if (path.includes("//")) return `"//" is not allowed in a route path (requests with empty segments are refused)`;
  const names = new Set<string>();
  for (const seg of path.slice(1).split("/")) {
    if (seg === "." || seg === "..") return `"${seg}" segments are not allowed (requests with them are refused)`;
    if (seg.includes("{") || seg.includes("}")) {
      const p = PARAM.exec(seg);
      if (!p) return `${JSON.stringify(seg)}: a parameter is a whole segment like {id}, named with letters, digits and _`;
      const name = p[1] ?? "";
      if (names.has(name)) return `the parameter {${name}} appears twice`;
      names.add(name);
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// CIDRs

/**
 * A CIDR block, v4 or v6; a bare address is taken as /32 or /128. Host bits must be zero, so
 * `10.0.0.1/8` (which someone surely did not mean as "all of 10/8") is refused with the fix.
 * Returns the normalised `address/prefix` string.
 */
export function checkCidr(text: string): Check<string> {
  const slash = text.indexOf("/");
  const addr = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  const v4 = isIPv4(addr);
  const v6 = !v4 && !addr.includes("%") && isIPv6(addr);
  if (!v4 && !v6) {
    return no(`${JSON.stringify(text)} is not a CIDR block (use e.g. 10.0.0.0/8, 203.0.113.7, fd00::/8 or ::1)`);
  }
  const bits = v4 ? 32 : 128;
  let prefix = bits;
  if (prefixText !== undefined) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > bits) {
      return no(`${JSON.stringify(text)}: the prefix length must be a number from 0 to ${bits}`);
    }
    prefix = Number(prefixText);
  }
  const value = v4 ? ipv4ToBigInt(addr) : ipv6ToBigInt(addr);
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((value & hostMask) !== 0n) {
    const network = value & ~hostMask;
    const fixed = `${v4 ? bigIntToIpv4(network) : bigIntToIpv6(network)}/${prefix}`;
    return no(`${JSON.stringify(text)} has host bits set: write ${fixed}`);
  }
  return ok(`${addr}/${prefix}`);
}

function ipv4ToBigInt(addr: string): bigint {
  return addr.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function bigIntToIpv4(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 255n)).join(".");
}

function ipv6ToBigInt(addr: string): bigint {
  let text = addr;
  // An embedded IPv4 tail (::ffff:10.0.0.1) becomes two hex groups.
  const dot = text.lastIndexOf(":");
  const tail = text.slice(dot + 1);
  if (tail.includes(".")) {
    const v4 = ipv4ToBigInt(tail);
    text = `${text.slice(0, dot + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = "", rest] = text.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = rest === undefined || rest === "" ? [] : rest.split(":");
  const groups = rest === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function bigIntToIpv6(v: bigint): string {
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((v >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

// ---------------------------------------------------------------------------------------------
// Origins

const WILDCARD_LABEL = "x--wildcard--x";

/**
 * A browser origin exactly as browsers send it in `Origin`: `scheme://host[:port]`, lower case, no
 * default port, no path or trailing slash. `https://*.example.com` allows any subdomain (never the
 * apex); `*` may only be the whole first label and must be followed by at least two labels.
 */
export function checkOrigin(text: string): Check<string> {
  const example = "write scheme://host[:port], e.g. https://app.example.com";
  if (text === "null") {
    return no(`the "null" origin is never allowed: sandboxed frames and file: pages all send it, so it identifies nobody`);
  }
  if (text === "*") return no(`"*" would allow every site: list the origins instead`);
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(text);
  if (!m) return no(`${JSON.stringify(text)} is not an origin: ${example}`);
  const scheme = (m[1] ?? "").toLowerCase();
  if (scheme !== "http" && scheme !== "https") return no(`${JSON.stringify(text)}: only http and https origins are supported`);
  let rest = m[2] ?? "";
  const wildcard = rest.startsWith("*.");
  if (wildcard) rest = `${WILDCARD_LABEL}.${rest.slice(2)}`;
  if (rest.includes("*")) return no(`${JSON.stringify(text)}: "*" is only allowed as the whole first label, e.g. https://*.example.com`);
  let url: URL;
  try {
    url = new URL(`${scheme}://${rest}`);
  } catch {
    return no(`${JSON.stringify(text)} is not an origin: ${example}`);
  }
  if (url.username !== "" || url.password !== "" || rest.includes("@")) {
    return no(`an origin has no user name or password: ${example}`);
  }
  if (url.pathname !== "/" || /[/?#]/.test(rest)) {
    return no(`${JSON.stringify(text)} must be only scheme://host[:port], without a path, query or trailing slash`);
  }
  if (wildcard && url.hostname.split(".").length < 3) {
    return no(`${JSON.stringify(text)}: a wildcard needs a domain of at least two labels below it, e.g. https://*.example.com`);
  }
  const canonical = wildcard ? url.origin.replace(WILDCARD_LABEL, "*") : url.origin;
  if (canonical !== text) {
    return no(`${JSON.stringify(text)} is not written the way browsers send it: write ${canonical}`);
  }
  return ok(text);
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

const TOKEN_HASH = /^sha256:[0-9a-f]{64}$/;

/**
 * A stored client token: `sha256:<64 lowercase hex>`. The value is never quoted back, because the
 * usual mistake is pasting the raw token itself.
 */
export function checkTokenHash(text: string): Check<string> {
  if (TOKEN_HASH.test(text)) return ok(text);
  if (/^sha256:[0-9a-fA-F]{64}$/.test(text)) return no("the hex digits of a token hash must be lower case");
  if (text.startsWith("sha256:")) return no("a token hash is sha256: followed by exactly 64 lower-case hex digits");
  return no(
    "is not a token hash (sha256:<64 lower-case hex>). If this is a raw client token, treat it as exposed: " +
      "remove it, create a new token, and list the output of `mythiq-proxy hash-token` instead",
  );
}

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
