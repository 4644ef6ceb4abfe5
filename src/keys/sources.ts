/**
 * Builds the `KeySource` of each configured key from a registry of factories, one per `source:`
 * kind. Vault and AWS plug in by adding their factory to a registry:
 *
 * ```ts
 * const registry = { ...builtinSources, vault: createVaultSource, aws: createAwsSource };
 * const sources = createSources(config.keys, deps, registry);
 * ```
 *
 * A kind without a factory, or a factory that throws, never crashes the proxy: the key gets a source
 * whose every fetch fails with the reason, so the keyring never holds that key, its clients get
 * 503 `key_unavailable` and `/readyz` says which key is missing.
 */
import type { KeyConfig, KeySourceKind } from "../config/types.ts";
import type { Logger } from "../observe/log.ts";
import { createEnvSource, type Environment } from "./env-source.ts";
import { createFileSource, type FileSourceOptions } from "./file-source.ts";
import type { KeySource } from "./types.ts";

/** What a source factory may use. Vault/AWS factories may need more: extend this interface. */
export interface SourceDeps {
  /** Environment for `source: env` (and `{env: NAME}` references); `process.env` in production. It is scrubbed. */
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
