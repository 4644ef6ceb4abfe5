/**
 * `source: env` — the key comes from an environment variable (SPEC §3).
 *
 * The variable is read once, when the source is created at start-up, and then deleted from the
 * environment object it came from (`process.env` in production). Keeping it there would let it
 * leak into every child process, into Node diagnostic reports (which include `process.env` unless
 * `--report-exclude-env`) and into anything that dumps the environment. The value then lives only in
 * memory. What deletion cannot scrub: `/proc/<pid>/environ`, which is the kernel's copy of the
 * environment the process was started with — use `source: file` or a secret store where that
 * matters.
 */
import type { KeySource, SourceValue } from "./types.ts";

/** The environment to read from: `process.env` in production, a plain object in tests. */
export type Environment = Record<string, string | undefined>;

// Values already taken from each environment object, by variable name. A second source for the same
// variable (two keys sharing it, or a config reload that rebuilds the source) must still find the
// value after the first one scrubbed it: the environment cannot change under a running process, so
// the first reading is the only one there will ever be.
const taken = new WeakMap<Environment, Map<string, string>>();

/**
 * Reads `name` from `env` and deletes it there, remembering the value for later callers with the
 * same `env` object. Returns undefined when the variable is unset or empty. Also meant for other
 * secrets given as `{env: NAME}` (Vault tokens, AppRole ids) so that they leave the environment too.
 */
export function takeFromEnv(env: Environment, name: string): string | undefined {
  let names = taken.get(env);
  if (names === undefined) {
    names = new Map();
    taken.set(env, names);
  }
  const remembered = names.get(name);
  if (remembered !== undefined) return remembered;
  const value = env[name];
  if (value === undefined) return undefined;
  delete env[name];
  if (value === "") return undefined;
  names.set(name, value);
  return value;
}

export interface EnvSourceOptions {
  /** Environment to read and scrub; default `process.env`. */
  readonly env?: Environment;
}

/** Creates an env source; reads (and scrubs) the variable now, not at the first fetch. */
export function createEnvSource(config: { readonly env: string }, options: EnvSourceOptions = {}): KeySource {
  const name = config.env;
  const value = takeFromEnv(options.env ?? process.env, name);
  return {
    kind: "env",
    fetch(signal: AbortSignal): Promise<SourceValue> {
      if (signal.aborted) return Promise.reject(new Error("fetch aborted"));
      if (value === undefined) return Promise.reject(new Error(`environment variable ${name} is not set`));
      return Promise.resolve({ value, version: "" });
    },
  };
}
