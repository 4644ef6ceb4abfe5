/**
 * Builds the `KeySource` of each configured key from a registry of factories, one per `source:`
 * kind. `builtinSources` has all four (env, file, vault, aws); tests pass their own registry to
 * tune a source (shorter timers) or to replace one:
 *
 * ```ts
 * const registry = { ...builtinSources, vault: (config, deps) => createVaultSource(config, { ...deps, timers }) };
 * const sources = createSources(config.keys, deps, registry);
 * ```
 *
 * The Vault and AWS client libraries are imported by their sources at the first fetch, never here:
 * a proxy with only env or file keys does not load node-vault or the AWS SDK.
 *
 * A kind without a factory, or a factory that throws, never crashes the proxy: the key gets a source
 * whose every fetch fails with the reason, so the keyring never holds that key, its clients get
 * 503 `key_unavailable` and `/readyz` says which key is missing.
 */
import type { KeyConfig, KeySourceKind } from "../config/types.ts";
import type { Logger } from "../observe/log.ts";
import { createEnvSource, type Environment } from "./env-source.ts";
import { createAwsSource } from "./aws-source.ts";
import { createFileSource, type FileSourceOptions } from "./file-source.ts";
import { createVaultSource } from "./vault-source.ts";
import type { KeySource } from "./types.ts";

/** What a source factory may use. */
export interface SourceDeps {
  /**
   * Environment for `source: env` (scrubbed once read) and for the `{env: NAME}` references of Vault
   * auth (read at each login, not scrubbed: a reload re-checks them); `process.env` in production.
   */
  readonly env: Environment;
  readonly logger: Logger;
  /** Tuning for file sources (tests shorten the poll); the defaults suit production. */
  readonly file?: Omit<FileSourceOptions, "logger">;
}

export type SourceFactory<K extends KeySourceKind = KeySourceKind> = (
  config: Extract<KeyConfig, { readonly source: K }>,
  deps: SourceDeps,
) => KeySource;

/** One factory per kind; a kind left out is "not available in this build". */
export type SourceRegistry = { readonly [K in KeySourceKind]?: SourceFactory<K> };

/** The sources this module provides itself. */
export const builtinSources: SourceRegistry = Object.freeze({
  env: (config, deps) => createEnvSource(config, { env: deps.env }),
  file: (config, deps) => createFileSource(config, { ...deps.file, logger: deps.logger }),
  vault: (config, deps) => createVaultSource(config, { env: deps.env, logger: deps.logger }),
  aws: (config, deps) => createAwsSource(config, { logger: deps.logger }),
} satisfies SourceRegistry);

/** A source whose every fetch fails with `message` (which must not contain a secret). */
export function failingSource(kind: KeySourceKind, message: string): KeySource {
  return {
    kind,
    fetch: () => Promise.reject(new Error(message)),
  };
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Builds the source for one key; never throws. */
export function createSource(config: KeyConfig, deps: SourceDeps, registry: SourceRegistry = builtinSources): KeySource {
  const factory = registry[config.source] as SourceFactory | undefined;
  if (factory === undefined) {
    return failingSource(config.source, `key source "${config.source}" is not available in this build`);
  }
  try {
    return factory(config, deps);
  } catch (err) {
    return failingSource(config.source, `key source "${config.source}" could not be created: ${describe(err)}`);
  }
}

/** Builds a source for every configured key, by name; never throws. */
export function createSources(
  keys: Readonly<Record<string, KeyConfig>>,
  deps: SourceDeps,
  registry: SourceRegistry = builtinSources,
): Record<string, KeySource> {
  const sources: Record<string, KeySource> = {};
  for (const [name, config] of Object.entries(keys)) sources[name] = createSource(config, deps, registry);
  return sources;
}
