/**
 * Where the id of a `use` route sits: the `{placeholder}` segment of its template (README
 * "Ownership"). Route templates are parsed by src/rules/routes.ts, which keeps placeholders but not
 * their names; this reads the names from the template text, which that grammar has already accepted.
 */

/** One `{name}` segment: its name and its index among the path's segments (the first after `/` is 0). */
export interface Placeholder {
  readonly name: string;
  readonly index: number;
}

/** The `{name}` segments of a route entry (`METHOD /path[?query]`). */
export function placeholders(route: string): Placeholder[] {
  const space = route.indexOf(" ");
  const target = route.slice(space + 1);
  const q = target.indexOf("?");
  const path = q === -1 ? target : target.slice(0, q);
  const out: Placeholder[] = [];
  path
    .slice(1)
    .split("/")
    .forEach((segment, index) => {
      const m = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(segment);
      if (m !== null) out.push({ name: m[1] ?? "", index });
    });
  return out;
}

/**
 * The placeholder holding a use route's id: the one named `param`, or the only one when `param` is
 * not given; undefined when there is no such placeholder (config validation reports it).
 */
export function idPlaceholder(route: string, param: string | undefined): Placeholder | undefined {
  const all = placeholders(route);
  if (param !== undefined) return all.find((p) => p.name === param);
  return all.length === 1 ? all[0] : undefined;
}
