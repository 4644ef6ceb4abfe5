/**
 * Reload (SPEC §8, §11): on SIGHUP and when the config file changes, the new file is validated in a
 * child process; a valid file that differs from the one in force is compiled and applied
 * atomically, `server` settings included. Only a change of the `listen` or `admin` address needs a
 * restart: the rest is applied and the log says which addresses still wait for one. An invalid file
 * keeps the old config and counts `config_reloads_total{result="rejected"}` once per distinct file,
 * so SIGHUP and the file watch never count one change twice.
 */
import { configHash, MAX_CONFIG_BYTES } from "../config/file-facts.ts";
import type { ProxyConfig } from "../config/types.ts";
import { validateIsolated, type Validation } from "../config/validate-isolated.ts";
import { readCapped } from "../fs/read-capped.ts";
import type { Environment } from "../keys/env-source.ts";
import { errorFields, type Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { CompiledConfig } from "../pipeline/compile.ts";

export type ReloadResult = "applied" | "rejected" | "unchanged";

/** Sections bound into sockets at start: a change is logged as waiting for a restart. */
const RESTART_ONLY = ["listen", "admin"] as const;

/** At most this many problem lines go into one log line; the count says how many there were. */
const MAX_LOGGED_PROBLEMS = 50;

export interface ReloaderDeps {
  readonly configFile: string;
  /** The validator's environment (secret references are checked against it). */
  readonly env: Environment;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Ms before a validator is killed; default validate-isolated's. */
  readonly validateTimeoutMs?: number | undefined;
  /** The compiled config in force. */
  current(): CompiledConfig;
  /** True once the proxy drains: nothing is reloaded any more. */
  draining(): boolean;
  /** Compiles `next` against the config in force (adopting its keys and stores); throws when it cannot. */
  compile(next: Validation & { ok: true }, previous: CompiledConfig): CompiledConfig;
  /** Puts a compiled config in force; returns the requests still in flight on the previous one. */
  install(compiled: CompiledConfig): number;
}

export interface Reloader {
  /**
   * Re-reads the config file and applies it when it is valid and its content differs from the
   * config in force. Never rejects. Concurrent calls are serialised; calls made while one is
   * waiting share its result.
   */
  reload(trigger: string): Promise<ReloadResult>;
  /** Kills a validation under way and waits for the reload in progress (at stop). */
  stop(): Promise<void>;
}

/**
 * Hash of the file's first `MAX_CONFIG_BYTES + 1` bytes (the same hash the loader computes for a
 * file it accepts), or undefined when it cannot be read.
 */
async function quickHash(file: string): Promise<string | undefined> {
  const read = await readCapped(file, MAX_CONFIG_BYTES + 1, { truncate: true });
  return read.ok ? configHash(read.bytes) : undefined;
}

/** `listen.port changed (8080 → 8081)` lines for the restart-only sections that differ. */
export function restartOnlyChanges(running: ProxyConfig, next: ProxyConfig): string[] {
  const lines: string[] = [];
  for (const section of RESTART_ONLY) {
    const a = running[section] as unknown as Record<string, unknown>;
    const b = next[section] as unknown as Record<string, unknown>;
    for (const field of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (a[field] !== b[field]) lines.push(`${section}.${field} changed (${String(a[field])} → ${String(b[field])})`);
    }
  }
  return lines;
}

export function createReloader(deps: ReloaderDeps): Reloader {
  const { logger, metrics, configFile } = deps;
  /** Hash of the last file refused, so that SIGHUP and the watcher seeing one change count it once. */
  let lastRejected: string | undefined;
  /** Restart-only changes already logged, so a later reload does not repeat them. */
  let pendingRestart = "";
  let running: Promise<ReloadResult> | undefined;
  let queued: Promise<ReloadResult> | undefined;
  const abort = new AbortController();

  function reject(trigger: string, hash: string | undefined, problems: readonly string[]): ReloadResult {
    const repeated = hash !== undefined && hash === lastRejected;
    lastRejected = hash;
    const fields = { trigger, config: configFile, problem_count: problems.length, problems: problems.slice(0, MAX_LOGGED_PROBLEMS) };
    if (repeated) {
      // The same bytes were refused before: said again, not counted again.
      logger.warn("config reload rejected again (file unchanged since), keeping the running config", fields);
    } else {
      metrics.configReloaded("rejected");
      logger.error("config reload rejected, keeping the running config", fields);
    }
    return "rejected";
  }

  function apply(trigger: string, next: Validation & { ok: true }): ReloadResult {
    const previous = deps.current();
    let compiled: CompiledConfig;
    try {
      compiled = deps.compile(next, previous);
    } catch (err) {
      return reject(trigger, next.hash, [`${configFile}:1:1: the config could not be applied (${errorFields(err).error})`]);
    }
    const inflightOnPrevious = deps.install(compiled);
    lastRejected = undefined;
    metrics.configLoaded(next.hash);
    metrics.configReloaded("applied");
    for (const warning of next.warnings) logger.warn("config warning", { problem: warning });
    logger.info("config reloaded", { trigger, config_hash: next.hash, previous_hash: previous.hash, in_flight_on_previous: inflightOnPrevious });
    // The sockets stay bound where the proxy started: compare with what it started with, not the
    // previous file, so the warning stands until a restart.
    const restart = restartOnlyChanges(initial, next.config);
    const key = restart.join("\n");
    if (restart.length > 0 && key !== pendingRestart) {
      logger.warn("config reloaded, but these changes take effect only after a restart", { changes: restart });
    }
    pendingRestart = key;
    return "applied";
  }

  async function reloadOnce(trigger: string): Promise<ReloadResult> {
    if (deps.draining()) return "unchanged";
    // Cheap first: the same bytes as the config in force need no validation at all.
    const quick = await quickHash(configFile);
    if (quick !== undefined && quick === deps.current().hash) {
      logger.debug("config unchanged", { trigger, config_hash: quick });
      return "unchanged";
    }
    logger.info("config change detected, validating", { trigger, config: configFile });
    const next = await validateIsolated(configFile, {
      env: deps.env,
      signal: abort.signal,
      ...(deps.validateTimeoutMs === undefined ? {} : { timeoutMs: deps.validateTimeoutMs }),
    });
    if (deps.draining()) return "unchanged";
    if (!next.ok) return reject(trigger, next.hash ?? quick, next.problems);
    if (next.hash === deps.current().hash) {
      logger.debug("config unchanged", { trigger, config_hash: next.hash });
      return "unchanged";
    }
    return apply(trigger, next);
  }

  const initial = deps.current().config;

  function reload(trigger: string): Promise<ReloadResult> {
    if (queued !== undefined) return queued;
    if (running === undefined) {
      running = reloadOnce(trigger).finally(() => {
        running = undefined;
      });
      return running;
    }
    // One is running: the change that triggered this call may have come after it read the file.
    const next = running.then(() => {
      queued = undefined;
      running = reloadOnce(trigger).finally(() => {
        running = undefined;
      });
      return running;
    });
    queued = next;
    return next;
  }

  return {
    reload,
    async stop() {
      abort.abort();
      if (running !== undefined) await running.catch(() => undefined);
    },
  };
}
