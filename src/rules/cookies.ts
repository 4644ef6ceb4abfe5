/**
 * Reading one named cookie from a request's `Cookie` header (RFC 6265 §5.4), for session JWTs
 * carried in a cookie (SPEC §3 `sessions.jwt.cookie`).
 */

export type CookieRead =
  | { readonly kind: "none" }
  | { readonly kind: "value"; readonly value: string }
  /**
   * The cookie came several times with different values. Browsers send one per matching
   * domain/path, so a sibling subdomain can plant a second `session` cookie ("cookie tossing");
   * which one a server reads differs between frameworks, so neither is trusted.
   */
  | { readonly kind: "conflict" };

/**
 * The value of cookie `name` (compared case-sensitively, as browsers do). `header` is Node's
 * `req.headers.cookie`: several `Cookie` headers arrive joined with `; `. Surrounding double quotes
 * are removed (RFC 6265 allows them). The same value sent twice is not a conflict.
 */
export function readCookie(header: string | readonly string[] | undefined, name: string): CookieRead {
  if (header === undefined) return { kind: "none" };
  const joined = typeof header === "string" ? header : header.join("; ");
  let found: string | undefined;
  for (const pair of joined.split(";")) {
    const eq = pair.indexOf("=");
    if (eq === -1) continue;
    if (pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (found !== undefined && found !== value) return { kind: "conflict" };
    found = value;
  }
  return found === undefined ? { kind: "none" } : { kind: "value", value: found };
}
