/**
 * What of the upstream's response head reaches the client (SPEC §4 step 9).
 *
 * Hop-by-hop headers belong to the upstream connection, not to ours. `set-cookie` and other
 * origin-scoped headers would be stored by the browser against the *proxy's* origin (the
 * frontend's own site), so an upstream could set cookies on, pin HSTS to, or wipe the storage of
 * the application that embeds the proxy. The upstream's CORS headers are dropped because the
 * proxy's own per-client origin rules decide CORS; ours come in through `extra`.
 */

const DROPPED = new Set([
  // Hop-by-hop (RFC 9110 §7.6.1).
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  // Origin-scoped state the upstream must not set on the frontend's origin.
  "set-cookie",
  "set-cookie2",
  "strict-transport-security",
  "alt-svc",
  "clear-site-data",
]);

const DROPPED_PREFIXES = ["access-control-"];

/** True for upstream statuses that are redirects (never followed, never passed: SPEC §4 step 9). */
export function isRedirect(status: number): boolean {
  // 304 Not Modified is not a redirect: it has no Location and answers the caller's own
  // conditional request, so it passes through like any success.
  return status >= 300 && status < 400 && status !== 304;
}

function connectionTokens(rawHeaders: readonly string[]): Set<string> {
  const tokens = new Set<string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== "connection") continue;
    for (const token of rawHeaders[i + 1]!.split(",")) {
      const name = token.trim().toLowerCase();
      if (name !== "") tokens.add(name);
    }
  }
  return tokens;
}

/**
 * The response headers for the client: the upstream's raw headers (repeated fields kept, names
 * lower-cased) minus the dropped ones, then `extra` (x-request-id, CORS) on top. `vary` values
 * from both sides are merged, since a cache must honour both.
 */
export function relayedHeaders(
  rawHeaders: readonly string[],
  extra: Readonly<Record<string, string>>,
): Record<string, string | string[]> {
  const named = connectionTokens(rawHeaders);
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    const value = rawHeaders[i + 1]!;
    if (DROPPED.has(name) || named.has(name) || DROPPED_PREFIXES.some((p) => name.startsWith(p))) continue;
    const existing = out[name];
    if (existing === undefined) out[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else out[name] = [existing, value];
  }
  for (const [rawName, value] of Object.entries(extra)) {
    const name = rawName.toLowerCase();
    const upstreamVary = out[name];
    if (name === "vary" && upstreamVary !== undefined) {
      out[name] = mergeTokens([upstreamVary, value].flat());
    } else {
      out[name] = value;
    }
  }
  return out;
}

function mergeTokens(values: readonly string[]): string {
  const seen = new Map<string, string>();
  for (const value of values) {
    for (const token of value.split(",")) {
      const trimmed = token.trim();
      if (trimmed !== "" && !seen.has(trimmed.toLowerCase())) seen.set(trimmed.toLowerCase(), trimmed);
    }
  }
  return [...seen.values()].join(", ");
}
