/**
 * Config file → validated, defaulted, deeply frozen `ProxyConfig`, or every problem in it with
 * `FILE:LINE:COL` (SPEC §3). Used at start-up, on reload and by `mythiq-proxy check`.
 */
import type { ProxyConfig } from "./types.ts";
import { parseBoundedYaml } from "./bounded-yaml.ts";
import { crossCheck } from "./cross-checks.ts";
import type { PathIssue, Problem } from "./problems.ts";
import { formatPath, sortProblems } from "./problems.ts";
import { readYamlText } from "./read-text.ts";
import { configSchema } from "./schema.ts";
import { errorMap, placeIssue, toPathIssues } from "./zod-issues.ts";

export type { Problem } from "./problems.ts";
export { formatProblem } from "./problems.ts";
export { checkSecretRefs, readSecret } from "./secret-ref.ts";
export { configHash, deepFreeze } from "./file-facts.ts";
import { configHash, deepFreeze } from "./file-facts.ts";

export type LoadResult =
  | {
      readonly ok: true;
      /** The file name as given, for problems found later (e.g. by `checkSecretRefs`). */
      readonly file: string;
      readonly config: ProxyConfig;
      /** First 12 hex digits of sha256 of the file's bytes (the `config_info{hash}` label). */
      readonly hash: string;
      readonly warnings: Problem[];
      /** Position of the value at `path` in the file, or undefined when the file does not set it. */
      locate(path: (string | number)[]): { line: number; col: number } | undefined;
    }
  | { readonly ok: false; readonly problems: Problem[]; readonly warnings: Problem[] };

/**
 * Validates config text. Pure: no I/O, no environment, no secret resolution. `file` is only used
 * in the problems. Errors and warnings are each sorted by position.
 */
export function parseConfig(text: string, file: string): LoadResult {
  try {
    return validate(text, file);
  } catch (err) {
    // A bug in a check must reject this file, not take down a running proxy on reload.
    const name = err instanceof Error ? err.name : typeof err;
    const message = `internal error while validating the config (${name}); please report this as a bug`;
    return { ok: false, problems: [{ file, line: 1, col: 1, message }], warnings: [] };
  }
}

function validate(text: string, file: string): LoadResult {
  const parsed = parseBoundedYaml(text);
  if (!parsed.ok) {
    return { ok: false, problems: sortProblems(parsed.problems.map((p) => ({ file, ...p }))), warnings: [] };
  }
  const tree = parsed.tree;
  const result = configSchema.safeParse(tree.data, { error: errorMap });
  const schemaIssues = result.success ? [] : result.error.issues.flatMap(toPathIssues);
  const cross = crossCheck(tree.data);

  // A value the schema already refuses is not also blamed by a cross-field rule.
  const blamed = new Set(schemaIssues.map((i) => formatPath(i.path)));
  const errors = [...schemaIssues, ...cross.errors.filter((i) => !blamed.has(formatPath(i.path)))];

  const place = (issue: PathIssue): Problem => placeIssue(file, tree, issue);
  const problems = sortProblems([...tree.problems.map((p) => ({ file, ...p })), ...errors.map(place)]);
  const warnings = sortProblems(cross.warnings.map(place));

  if (problems.length > 0 || !result.success) return { ok: false, problems, warnings };
  return {
    ok: true,
    file,
    config: deepFreeze(result.data),
    hash: configHash(text),
    warnings,
    locate: (path) => tree.locate(path),
  };
}


/** Reads (bounded, UTF-8 checked: see read-text.ts) and validates a config file. */
export async function loadConfigFile(file: string): Promise<LoadResult> {
  const read = await readYamlText(file);
  if (!read.ok) return { ok: false, problems: [read.problem], warnings: [] };
  return parseConfig(read.text, file);
}

