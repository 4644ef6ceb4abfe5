/**
 * Entry point of the short-lived process that validates a config file for a reload (see
 * `validate-isolated.ts` for why it runs apart). Like `src/main.ts`, it is an entry point: it
 * reads the file name from argv and checks secret references against its own environment, which
 * the parent sets to the proxy's. It writes one JSON document on stdout and exits 0; anything else
 * (a crash, a kill, garbage on stdout) is a rejection for the parent.
 *
 * Secret values never leave it: `checkSecretRefs` only checks that references resolve.
 */
import { checkSecretRefs, formatProblem, loadConfigFile } from "./load.ts";
import { encodeValidation, type Validation } from "./validate-isolated.ts";

async function validate(file: string): Promise<Validation> {
  const result = await loadConfigFile(file);
  const warnings = result.warnings.map(formatProblem);
  if (!result.ok) return { ok: false, problems: result.problems.map(formatProblem), warnings };
  const refs = checkSecretRefs(result, process.env);
  if (refs.length > 0) return { ok: false, problems: refs.map(formatProblem), warnings, hash: result.hash };
  return { ok: true, hash: result.hash, config: result.config, warnings };
}

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write("usage: validate-child FILE\n");
  process.exitCode = 2;
} else {
  validate(file).then(
    (validation) => process.stdout.write(encodeValidation(validation)),
    (err: unknown) => {
      process.stderr.write(`validation failed: ${err instanceof Error ? err.name : typeof err}\n`);
      process.exitCode = 1;
    },
  );
}
