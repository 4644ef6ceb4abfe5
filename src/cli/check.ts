/**
 * `mythiq-proxy check --config FILE` (SPEC §2): validates the config and nothing else. No network,
 * no secret resolution, no environment: the same file gives the same answer on a laptop and in CI.
 */
import { loadConfigFile } from "../config/load.ts";
import { formatProblem } from "../config/problems.ts";
import type { Problem } from "../config/problems.ts";

/** Where `runCheck` writes; each call gets whole lines ending in "\n". */
export interface CheckOutput {
  stdout(s: string): void;
  stderr(s: string): void;
}

/** Exit status for a config that is not valid (EX_CONFIG from sysexits.h), as in SPEC §2. */
export const EXIT_BAD_CONFIG = 78;

/** `FILE:LINE:COL: warning: message`: the warning marker after the position, as compilers print it. */
export function formatWarning(p: Problem): string {
  return formatProblem({ ...p, message: `warning: ${p.message}` });
}

/**
 * Prints every error, then every warning, to stderr, one `FILE:LINE:COL: ...` line each and nothing
 * else (so CI annotators can parse every line); prints `FILE: ok` to stdout when the file is valid.
 * Returns 0 when valid (warnings do not fail the check), 78 when not.
 */
export async function runCheck(file: string, out: CheckOutput): Promise<number> {
  const result = await loadConfigFile(file);
  if (!result.ok) {
    for (const p of result.problems) out.stderr(`${formatProblem(p)}\n`);
    for (const w of result.warnings) out.stderr(`${formatWarning(w)}\n`);
    return EXIT_BAD_CONFIG;
  }
  for (const w of result.warnings) out.stderr(`${formatWarning(w)}\n`);
  out.stdout(`${file}: ok\n`);
  return 0;
}
