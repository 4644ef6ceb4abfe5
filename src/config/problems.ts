/**
 * Problems found in a config file, each tied to a place in it (SPEC §3: "every problem is reported at
 * once with file, line and column").
 */

/** One error or warning; `line` and `col` are 1-based, `col` counts UTF-16 code units like editors do. */
export interface Problem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly message: string;
}

/** A path into the YAML tree: map keys and sequence indices, e.g. `["clients", 0, "routes", 2]`. */
export type ConfigPath = readonly (string | number)[];

/**
 * A problem before it has a position: where it is (`path`) and whether it points at the map key
 * itself (unknown keys) or at the value under it.
 */
export interface PathIssue {
  readonly path: ConfigPath;
  readonly at: "key" | "value";
  /** Text after the `path: ` prefix. */
  readonly message: string;
  /** Append the value's source text as a quoting hint (YAML read `1.10` as the number 1.1). */
  readonly quote?: boolean;
}

/** `FILE:LINE:COL: message`, the shape editors and CI annotators understand. */
export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.message}`;
}

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `clients[0].rate_limit.per`; keys that are not identifiers are quoted: `pricing["stability/sdxl"]`.
 * The empty path (the document itself) is `(top level)`.
 */
export function formatPath(path: ConfigPath): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (PLAIN_KEY.test(seg)) out += out === "" ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out === "" ? "(top level)" : out;
}

/** Sorts by position, keeping the original order for problems at the same place. */
export function sortProblems(problems: readonly Problem[]): Problem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => a.p.line - b.p.line || a.p.col - b.p.col || a.i - b.i)
    .map(({ p }) => p);
}
