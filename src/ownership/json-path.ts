/**
 * The simple paths of `ownership` (README "Ownership"): where an id sits in a create route's JSON
 * response (`id`, `result.id`, `data[].id`), where a list route's items and count sit
 * (`result.medias`, `result.total`) and where an item's id sits (`id`).
 *
 * A path is member names joined by `.`; a name followed by `[]` steps into every element of the
 * array found there. There is nothing else (no indexes, no wildcards, no quoting), so one grammar
 * serves config validation and evaluation alike. Lookups read own members only: a missing
 * `constructor` or `__proto__` member is missing, never `Object.prototype`'s.
 */

/** One step of a path: a member name, and whether its value is an array to step into. */
export interface PathStep {
  readonly name: string;
  readonly each: boolean;
}

export type ParsedPath = { readonly ok: true; readonly value: readonly PathStep[] } | { readonly ok: false; readonly message: string };

/** Deepest path accepted: response shapes are shallow, and a bound keeps evaluation cheap. */
const MAX_STEPS = 8;

const STEP = /^([A-Za-z0-9_-]{1,64})(\[\])?$/;

/**
 * Parses a path. `arrays: false` refuses `[]` (a path naming one value: a list's items or count,
 * an item's id). Messages quote the path: it comes from the config and is never a secret.
 */
export function parseJsonPath(text: string, options: { readonly arrays: boolean }): ParsedPath {
  const quoted = JSON.stringify(text);
  const parts = text.split(".");
  if (parts.length > MAX_STEPS) return { ok: false, message: `${quoted} has more than ${MAX_STEPS} steps` };
  const steps: PathStep[] = [];
  for (const part of parts) {
    const m = STEP.exec(part);
    if (m === null) {
      return {
        ok: false,
        message: `${quoted} is not a path: write member names (letters, digits, "_", "-") joined by ".", e.g. ${options.arrays ? "id, result.id or data[].id" : "result.medias or id"}`,
      };
    }
    // Assigning to `__proto__` (the count) would set a prototype unless the member is an own one.
    if (m[1] === "__proto__") return { ok: false, message: `${quoted}: "__proto__" is not allowed as a member name` };
    const each = m[2] !== undefined;
    if (each && !options.arrays) return { ok: false, message: `${quoted}: "[]" is not allowed here, this path names one value (e.g. result.medias)` };
    steps.push({ name: m[1] ?? "", each });
  }
  return { ok: true, value: steps };
}

/** Parses a path the config validation has accepted; throws otherwise (a programming error). */
export function compileJsonPath(text: string, arrays: boolean): readonly PathStep[] {
  const parsed = parseJsonPath(text, { arrays });
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function member(value: unknown, name: string): unknown {
  return isObject(value) && Object.hasOwn(value, name) ? value[name] : undefined;
}

/** Every value the path reaches in `root` (several through `[]` steps; none when it leads nowhere). */
export function collect(root: unknown, steps: readonly PathStep[]): unknown[] {
  let current: unknown[] = [root];
  for (const step of steps) {
    const next: unknown[] = [];
    for (const value of current) {
      const found = member(value, step.name);
      if (found === undefined) continue;
      if (!step.each) next.push(found);
      // One by one: spreading a 100 000-element array into push() would overflow the stack.
      else if (Array.isArray(found)) for (const element of found as unknown[]) next.push(element);
    }
    current = next;
  }
  return current;
}

/** The one value a path without `[]` names in `root`; undefined when it leads nowhere. */
export function valueAt(root: unknown, steps: readonly PathStep[]): unknown {
  let current = root;
  for (const step of steps) {
    current = member(current, step.name);
    if (current === undefined) return undefined;
  }
  return current;
}

/** Replaces the value a path without `[]` names; false when the path leads nowhere (nothing changed). */
export function replaceAt(root: unknown, steps: readonly PathStep[], value: unknown): boolean {
  const last = steps.at(-1);
  if (last === undefined) return false;
  const parent = valueAt(root, steps.slice(0, -1));
  if (!isObject(parent) || !Object.hasOwn(parent, last.name)) return false;
  parent[last.name] = value;
  return true;
}
