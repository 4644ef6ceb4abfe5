/**
 * `mythiq-proxy test-policy --config FILE CASES.yaml` (SPEC §2, §9): runs policy cases through the
 * proxy's own decisions without network, prints one line per case (a diff under each failure) and
 * a summary. Exit 0 when every case passes, 1 when one fails or the cases file is invalid, 78 when
 * the config is invalid.
 */
import { formatProblem, loadConfigFile } from "../config/load.ts";
import { loadCasesFile } from "../policy/cases.ts";
import { compare, createPolicyRunner, type Outcome } from "../policy/run.ts";
import { EXIT_BAD_CONFIG } from "./check.ts";

export interface TestPolicyOutput {
  stdout(s: string): void;
  stderr(s: string): void;
}

function describe(outcome: Outcome): string {
  return outcome.allow
    ? `allowed (client ${outcome.client}, key ${outcome.key})`
    : `refused ${outcome.status} ${outcome.reason}${outcome.client === undefined ? "" : ` (client ${outcome.client})`}`;
}

export async function runTestPolicy(
  configFile: string,
  casesFile: string,
  out: TestPolicyOutput,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const loaded = await loadConfigFile(configFile);
  if (!loaded.ok) {
    for (const problem of loaded.problems) out.stderr(`${formatProblem(problem)}\n`);
    return EXIT_BAD_CONFIG;
  }
  const cases = await loadCasesFile(casesFile);
  if (!cases.ok) {
    for (const problem of cases.problems) out.stderr(`${formatProblem(problem)}\n`);
    return 1;
  }

  let runner;
  try {
    runner = await createPolicyRunner(loaded.config, loaded.hash, env);
  } catch (err) {
    out.stderr(`${configFile}: cannot prepare the policy run: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }

  let passed = 0;
  let failed = 0;
  for (const [index, located] of cases.cases.entries()) {
    const number = index + 1;
    const where = `${casesFile}:${located.line}:${located.col}`;
    let outcome: Outcome;
    try {
      outcome = await runner.run(located.case);
    } catch (err) {
      failed += 1;
      out.stdout(`not ok ${number} - ${located.case.name}\n    ${where}: error: ${err instanceof Error ? err.message : String(err)}\n`);
      continue;
    }
    const mismatches = compare(located.case.expect, outcome);
    if (mismatches.length === 0) {
      passed += 1;
      out.stdout(`ok ${number} - ${located.case.name}\n`);
      continue;
    }
    failed += 1;
    out.stdout(`not ok ${number} - ${located.case.name}\n    ${where}: the proxy ${describe(outcome)}\n`);
    for (const m of mismatches) out.stdout(`    - ${m.field}: ${m.expected}\n    + ${m.field}: ${m.actual}\n`);
  }
  out.stdout(`${passed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}
