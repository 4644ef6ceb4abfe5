/**
 * Route templates (SPEC §3 `routes`, §4 step 5): `"METHOD /path/{name}?a&b"`, compiled once into
 * buckets by method and segment count, matched segment by segment with exact string comparison.
 *
 * There are no wildcards beyond `{name}` (exactly one non-empty segment): no prefixes, no regular
 * expressions, no `*` — the bypass classes of prefix and glob matchers (Envoy CVE-2019-9901,
 * CVE-2025-46821) have nothing to work with. Matching is case-sensitive and a trailing `/` is a
 * different path, because the upstream may treat them differently and we forward exactly the
 * checked path.
 */

/** One path segment of a template: a literal, or `null` for a `{name}` placeholder. */
type Segment = string | null;

/**
 * Methods a route may name. OPTIONS is answered by the proxy itself (CORS preflight) and is never
 * forwarded; CONNECT and TRACE are refused at the listener (SPEC §4 step 1); anything else is
 * refused there too, so a route naming it could never match.
 */
export const ROUTE_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] as const;
export type RouteMethod = (typeof ROUTE_METHODS)[number];

export interface RouteTemplate {
  readonly method: RouteMethod;
  /** `METHOD /path` without the query part: `ctx.route`, the `route` metric label, and what makes two entries "the same route". */
  readonly label: string;
  readonly segments: readonly Segment[];
  /** Query parameter names allowed by this entry. */
  readonly query: readonly string[];
}

/** `parseRouteTemplate`'s answer: the template, or a message saying what is wrong and what to write. */
export type ParsedRoute = { readonly ok: true; readonly value: RouteTemplate } | { readonly ok: false; readonly message: string };

const PARAM = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
// RFC 3986 pchar without "%" (no escapes in canonical paths) and without ";" (path parameters):
// the same set the target parser (http/target.ts) accepts in a request path.
const LITERAL_CHAR = /[A-Za-z0-9\-._~!$&'()*+,=:@]/;
// The same set the target parser reads: a name outside it could never match.
const QUERY_NAME = /^[A-Za-z0-9_.-]+$/;
const PRINTABLE = /^[\x21-\x7e]*$/;

const no = (message: string): ParsedRoute => ({ ok: false, message });

/**
 * The one grammar for `routes` entries (SPEC §3, §4 step 5): config validation reports its messages,
 * `compileRoutes` compiles what it returns. Messages quote the entry: a route is never a secret.
 *
 * Grammar: a method from `ROUTE_METHODS`, one space, a path starting with `/`, optionally `?`
 * followed by `&`-separated query names (`[A-Za-z0-9_.-]+`, each once). Path segments are literals
 * (RFC 3986 path characters except `%`, `;` and `*`; not `.`/`..`, not ending in `.`) or `{name}`
 * (letters, digits, `_`; each name once); an empty segment only at the end (a trailing `/`, or the
 * root path `/`). The path must already be in the only form a request can have (the target parser
 * refuses everything else), so a route that could never match is an error, not a silent dead rule.
 */
export function parseRouteTemplate(text: string): ParsedRoute {
  const quoted = JSON.stringify(text);
  const m = /^([^ ]+) ([^ ]+)$/.exec(text);
  if (!m) return no(`${quoted} is not a route: write "METHOD /path" with one space, e.g. "GET /v1/models"`);
  const method = m[1] ?? "";
  const target = m[2] ?? "";
  if (!isRouteMethod(method)) {
    const upper = method.toUpperCase();
    if (isRouteMethod(upper)) return no(`method ${JSON.stringify(method)} must be upper case: ${upper}`);
    if (upper === "OPTIONS") return no("OPTIONS is not routed: the proxy answers CORS preflight requests itself");
    if (upper === "CONNECT" || upper === "TRACE") return no(`${upper} is never allowed`);
    return no(`unknown method ${JSON.stringify(method)} (allowed: ${ROUTE_METHODS.join(", ")})`);
  }
  const q = target.indexOf("?");
  const path = q === -1 ? target : target.slice(0, q);
  const segments = parsePath(path);
  if (typeof segments === "string") return no(`${quoted}: ${segments}`);

  const query: string[] = [];
  if (q !== -1) {
    for (const name of target.slice(q + 1).split("&")) {
      if (name.includes("=")) return no(`${quoted}: list query parameter names only, e.g. ?limit&after (values are not matched)`);
      if (!QUERY_NAME.test(name)) {
        return no(`${quoted}: query parameter names are letters, digits, "_", "." or "-", separated by "&", e.g. ?limit&after`);
      }
      if (query.includes(name)) return no(`${quoted}: query parameter ${name} is listed twice`);
      query.push(name);
    }
  }
  return { ok: true, value: { method, label: `${method} ${path}`, segments, query } };
}

function isRouteMethod(method: string): method is RouteMethod {
  return (ROUTE_METHODS as readonly string[]).includes(method);
}

/** The segments of a canonical route path, or why `path` is not one. */
function parsePath(path: string): Segment[] | string {
  if (!path.startsWith("/")) return "the path must start with /";
  if (!PRINTABLE.test(path)) return "the path must be printable ASCII without spaces";
  for (const [ch, why] of [
    ["%", "percent-escapes never match: requests with them are refused"],
    ["\\", "backslashes are refused in requests"],
    [";", "path parameters (;) are refused in requests"],
    ["#", "fragments are never sent"],
    // "*" is a legal path character, but whoever writes it means a wildcard, which this syntax
    // does not have: refuse it rather than silently match only a literal "*".
    ["*", "wildcards are not supported: list each route, and use {name} for one segment"],
  ] as const) {
    if (path.includes(ch)) return `"${ch}" is not allowed in a route path (${why})`;
  }
  if (path.includes("//")) return `"//" is not allowed in a route path (requests with empty segments are refused)`;
  const names = new Set<string>();
  const segments: Segment[] = [];
  for (const part of path.slice(1).split("/")) {
    if (part === "." || part === "..") return `"${part}" segments are not allowed (requests with them are refused)`;
    if (part.includes("{") || part.includes("}")) {
      const p = PARAM.exec(part);
      if (!p) return `${JSON.stringify(part)}: a parameter is a whole segment like {id}, named with letters, digits and _`;
      const name = p[1] ?? "";
      if (names.has(name)) return `the parameter {${name}} appears twice`;
      names.add(name);
      segments.push(null);
      continue;
    }
    for (const ch of part) {
      if (!LITERAL_CHAR.test(ch)) {
        return `${JSON.stringify(ch)} is not allowed in a route path (requests with characters outside RFC 3986 path characters are refused)`;
      }
    }
    // IIS-style servers drop a segment's trailing dots, so the target parser refuses them.
    if (part.endsWith(".")) return `${JSON.stringify(part)}: a segment ending in "." is not allowed (requests with one are refused)`;
    segments.push(part);
  }
  return segments;
}

/** The route a request matched. */
export interface RouteMatch {
  /** `METHOD /path/{name}` from the config, without the query part. */
  readonly label: string;
  /** Query names allowed on this route. */
  readonly query: ReadonlySet<string>;
}

export interface RouteTable {
  /** The matching route for `method` and a canonical `path` (no query), or `undefined`. */
  match(method: string, path: string): RouteMatch | undefined;
}

interface Entry extends RouteMatch {
  readonly segments: readonly Segment[];
  readonly query: ReadonlySet<string>;
}

/** Literal-before-placeholder at the first position where two same-length templates differ. */
function bySpecificity(a: Entry, b: Entry): number {
  for (let i = 0; i < a.segments.length; i++) {
    const aParam = a.segments[i] === null;
    const bParam = b.segments[i] === null;
    if (aParam !== bParam) return aParam ? 1 : -1;
  }
  return 0;
}

/**
 * Compiles a client's `routes`. Throws on an entry `parseRouteTemplate` refuses, or on the same
 * `METHOD /path` listed twice (config validation refuses both first, with the same functions, so
 * this is a programming error).
 *
 * - When several templates match one path, the one with a literal segment at the first position
 *   where they differ wins: `GET /v1/models/special` beats `GET /v1/models/{id}` for
 *   `/v1/models/special`, whatever the order in the file. It decides the label and the query names.
 * - Methods are exact: `GET` does not allow `HEAD`, which must be listed itself.
 */
export function compileRoutes(list: readonly string[]): RouteTable {
  const byLabel = new Map<string, Entry & { readonly index: number }>();
  list.forEach((text, index) => {
    const parsed = parseRouteTemplate(text);
    if (!parsed.ok) throw new Error(`route #${index}: ${parsed.message}`);
    const { label, segments, query } = parsed.value;
    const first = byLabel.get(label);
    if (first) throw new Error(`route #${index}: ${label} is already listed at route #${first.index}`);
    byLabel.set(label, { label, segments, query: new Set(query), index });
  });

  // method -> segment count -> entries, most specific first.
  const buckets = new Map<string, Map<number, Entry[]>>();
  for (const [label, entry] of byLabel) {
    const method = label.slice(0, label.indexOf(" "));
    let byCount = buckets.get(method);
    if (!byCount) {
      byCount = new Map<number, Entry[]>();
      buckets.set(method, byCount);
    }
    const bucket = byCount.get(entry.segments.length);
    if (bucket) bucket.push(entry);
    else byCount.set(entry.segments.length, [entry]);
  }
  for (const byCount of buckets.values()) for (const bucket of byCount.values()) bucket.sort(bySpecificity);

  return {
    match(method: string, path: string): RouteMatch | undefined {
      if (!path.startsWith("/")) return undefined;
      const parts = path.slice(1).split("/");
      const bucket = buckets.get(method)?.get(parts.length);
      if (!bucket) return undefined;
      return bucket.find((entry) =>
        entry.segments.every((segment, i) => {
          const part = parts[i] ?? "";
          // Step 1 already refuses dot segments; refusing them here too keeps a placeholder from
          // ever standing for "go up a level" should that order change.
          return segment === null ? part !== "" && part !== "." && part !== ".." : segment === part;
        }),
      );
    },
  };
}
