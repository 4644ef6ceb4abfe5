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

export interface RouteTemplate {
  readonly method: string;
  /** `METHOD /path` without the query part: `ctx.route` and the `route` metric label. */
  readonly label: string;
  readonly segments: readonly Segment[];
  /** Query parameter names allowed by this entry. */
  readonly query: readonly string[];
}

export type ParsedRoute = { readonly ok: true; readonly route: RouteTemplate } | { readonly ok: false; readonly problem: string };

const METHOD = /^[A-Z]+$/;
const PARAM = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
// RFC 3986 pchar without "%" (no escapes in canonical paths) and without ";" (path parameters).
const LITERAL = /^[A-Za-z0-9\-._~!$&'()*+,=:@]+$/;
// The same set the target parser (http/target.ts) reads: a name outside it could never match.
const QUERY_NAME = /^[A-Za-z0-9_.-]+$/;

/**
 * Parses one `routes` entry. The problem text (for config validation) never quotes the entry.
 *
 * Grammar: `METHOD` (upper-case letters), one space, a path starting with `/`, optionally `?`
 * followed by `&`-separated query names (`[A-Za-z0-9_.-]+`). Path segments are literals (RFC 3986
 * path characters except `%`, `;` and `*`, not ending in `.`, so no `.`/`..`) or `{name}`; an empty
 * segment only at the end (a trailing `/`, or the root path `/`).
 */
export function parseRouteTemplate(text: string): ParsedRoute {
  const space = text.indexOf(" ");
  if (space === -1) return { ok: false, problem: "must be METHOD /path" };
  const method = text.slice(0, space);
  if (!METHOD.test(method)) return { ok: false, problem: "method must be upper-case letters" };
  const rest = text.slice(space + 1);
  const questionMark = rest.indexOf("?");
  const path = questionMark === -1 ? rest : rest.slice(0, questionMark);
  if (!path.startsWith("/")) return { ok: false, problem: "path must start with /" };
  const parts = path.slice(1).split("/");
  const segments: Segment[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? "";
    if (part === "") {
      if (i !== parts.length - 1) return { ok: false, problem: "path must not contain empty segments (//)" };
      segments.push("");
      continue;
    }
    if (PARAM.test(part)) {
      segments.push(null);
      continue;
    }
    // The target parser refuses dot segments and segments ending in "." (IIS drops trailing dots),
    // so such a literal could never match: refuse it in the config instead.
    // "*" is a legal path character, but an operator writing it means a wildcard, which this
    // syntax does not have: refuse it rather than silently match only a literal "*".
    if (part.includes("*")) return { ok: false, problem: "path must not contain * (there are no wildcards; use {name} for one segment)" };
    if (part.endsWith(".") || !LITERAL.test(part)) {
      return { ok: false, problem: "path segment must be {name} or canonical path characters (no %, ;, dot segments, trailing dot)" };
    }
    segments.push(part);
  }
  const query: string[] = [];
  if (questionMark !== -1) {
    for (const name of rest.slice(questionMark + 1).split("&")) {
      if (!QUERY_NAME.test(name)) return { ok: false, problem: "query names must be non-empty [A-Za-z0-9_.-]" };
      query.push(name);
    }
  }
  return { ok: true, route: { method, label: `${method} ${path}`, segments, query } };
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
  readonly query: Set<string>;
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
 * Compiles a client's `routes`. Throws on an entry `parseRouteTemplate` refuses (config validation
 * refuses it first, so this is a programming error).
 *
 * - Entries with the same `METHOD /path` are one route whose allowed query names are the union
 *   (`GET /x?a` and `GET /x?b` allow both `a` and `b`).
 * - When several templates match one path, the one with a literal segment at the first position
 *   where they differ wins: `GET /v1/models/special` beats `GET /v1/models/{id}` for
 *   `/v1/models/special`, whatever the order in the file. It decides the label and the query names.
 * - Methods are exact: `GET` does not allow `HEAD`, which must be listed itself.
 */
export function compileRoutes(list: readonly string[]): RouteTable {
  const byLabel = new Map<string, Entry>();
  list.forEach((text, index) => {
    const parsed = parseRouteTemplate(text);
    if (!parsed.ok) throw new Error(`route #${index}: ${parsed.problem}`);
    const { route } = parsed;
    const existing = byLabel.get(route.label);
    if (existing) {
      for (const name of route.query) existing.query.add(name);
      return;
    }
    byLabel.set(route.label, { label: route.label, segments: route.segments, query: new Set(route.query) });
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
