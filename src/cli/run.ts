/**
 * The proxy's lifecycle (SPEC §8): load and validate the config, build the runtime, listen on the
 * listen and admin ports, fetch keys in the background; reload on SIGHUP or file change; shed load
 * when the event loop lags; drain and stop.
 * Everything from outside (environment, logger, key source factories) is passed in, so tests run
 * the whole proxy in-process on port 0.
 *
 * Runtimes as generations: each config version in force gets its own runtime and request handler.
 * A request stays with the generation it started under until its response closes; a reload only
 * changes which generation new requests get. A replaced generation's keyring stops refreshing at
 * once (keys it shares with the new config were handed over), and its upstream pool is closed when
 * its last request ends, never under a request still streaming.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { open } from "node:fs/promises";
import { constants } from "node:fs";
import { configHash, MAX_CONFIG_BYTES } from "../config/file-facts.ts";
import type { ProxyConfig } from "../config/types.ts";
import { validateIsolated, type Validation } from "../config/validate-isolated.ts";
import { watchConfigFile, type ConfigWatcher, type ConfigWatchOptions } from "../config/watch.ts";
import { createAdminServer } from "../http/admin.ts";
import { createListener } from "../http/listener.ts";
import { OpenResponses } from "../http/open-responses.ts";
import { createLagMonitor, type LagMonitor, type LagMonitorOptions } from "../http/overload.ts";
import type { Environment } from "../keys/env-source.ts";
import type { SourceDeps, SourceRegistry } from "../keys/sources.ts";
import { ERRORS, errorBody } from "../errors.ts";
import { writeAudit } from "../observe/audit.ts";
import { normalizeIp } from "../rules/ip.ts";
import { labelSetsFromConfig } from "../observe/labels.ts";
import { errorFields, type Logger } from "../observe/log.ts";
import { createMetrics, type Metrics } from "../observe/metrics.ts";
import { createRequestHandler } from "../proxy/handler.ts";
import { buildRuntime, type Runtime } from "../runtime.ts";
import { VERSION } from "../version.ts";

/** The config cannot be used; `lines` are `FILE:LINE:COL: message` lines for the operator. */
export class ConfigError extends Error {
  readonly lines: readonly string[];
  constructor(lines: readonly string[]) {
    super(`invalid config (${lines.length} problem${lines.length === 1 ? "" : "s"})`);
    this.name = "ConfigError";
    this.lines = lines;
  }
}

export interface StartOptions {
  readonly configFile: string;
  /** `process.env` in production; `source: env` keys are removed from it once read. */
  readonly env: Environment;
  readonly logger: Logger;
  /** Key source factories beyond env/file (vault, aws). */
  readonly sources?: SourceRegistry;
  /** Tuning for file key sources (tests). */
  readonly fileSources?: SourceDeps["file"];
  /** Overrides the config's listen/admin ports (tests pass 0). */
  readonly ports?: { readonly listen?: number; readonly admin?: number };
  /**
   * Reload when the config file changes (directory watch plus a `stat` poll every 2 s); default on.
   * `false` leaves only SIGHUP (`reload()`); an object tunes the watcher (tests).
   */
  readonly watch?: boolean | Omit<ConfigWatchOptions, "onChange" | "logger">;
  /** Shed new requests while the event loop lags (`src/http/overload.ts`); default on. `false` turns it off. */
  readonly overload?: boolean | Omit<LagMonitorOptions, "onChange">;
  /** Reload validation in a child process: ms before it is killed (default 10 000; start-up always uses the default). */
  readonly validateTimeoutMs?: number;
}

export type ReloadResult = "applied" | "rejected" | "unchanged";

export interface RunningProxy {
  readonly listenAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  readonly metrics: Metrics;
  /** The runtime in force now. */
  runtime(): Runtime;
  /**
   * Re-reads the config file; validates it in a child process and applies it atomically when it
   * is valid and its content differs from the config in force. Never rejects. Concurrent calls
   * are serialised; calls made while one is waiting share its result.
   */
  reload(trigger: string): Promise<ReloadResult>;
  /** Requests in flight now, over every generation. */
  inflight(): number;
  /**
   * Drains (SPEC §8 Stop) and closes everything: `/readyz` 503 at once, no new connections, idle
   * keep-alive connections closed, requests and streams in flight finish up to
   * `server.drain_timeout`, then the rest are cut. Resolves once everything is closed; a second
   * call returns the same promise.
   */
  stop(signal?: string): Promise<void>;
}

/** Sections bound into sockets and server settings at start: a reload that changes them is refused. */
const RESTART_ONLY = ["listen", "admin", "server"] as const;

/**
 * Validates the config at start-up the way a reload does: in a short-lived child process, so the
 * serving process never loads the YAML parser or the schema library (about 25 MB resident) and a
 * hostile file cannot stall or crash it. Secret references are checked against `env` there.
 */
async function loadValidated(file: string, env: Environment): Promise<Validation & { ok: true }> {
  const result = await validateIsolated(file, { env });
  if (!result.ok) throw new ConfigError(result.problems);
  return result;
}

function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
  });
}

/** Names of the keys that clients use: readiness waits for these, not for unused keys. */
function usedKeyNames(config: ProxyConfig): string[] {
  return [...new Set(config.clients.map((client) => client.key))];
}

/**
 * Hash of the file's first `MAX_CONFIG_BYTES + 1` bytes (the same hash the loader computes for a
 * file it accepts), or undefined when it cannot be read. Non-blocking open: a FIFO at the path
 * must not hold a libuv thread.
 */
async function quickHash(file: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch {
    return undefined;
  }
  try {
    if (!(await handle.stat()).isFile()) return undefined;
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let used = 0;
    while (used < buf.length) {
      const { bytesRead } = await handle.read(buf, used, buf.length - used, used);
      if (bytesRead === 0) break;
      used += bytesRead;
    }
    return configHash(buf.subarray(0, used));
  } catch {
    return undefined;
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** `listen.port changed (8080 → 8081)` lines for the restart-only sections that differ. */
function restartOnlyChanges(running: ProxyConfig, next: ProxyConfig): string[] {
  const lines: string[] = [];
  for (const section of RESTART_ONLY) {
    const a = running[section] as unknown as Record<string, unknown>;
    const b = next[section] as unknown as Record<string, unknown>;
    for (const field of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (a[field] !== b[field]) {
        lines.push(`${section}.${field} changed (${String(a[field])} → ${String(b[field])}): only a restart applies it`);
      }
    }
  }
  return lines;
}

/** At most this many problem lines go into one log line; the count says how many there were. */
const MAX_LOGGED_PROBLEMS = 50;

interface Generation {
  readonly runtime: Runtime;
  readonly handle: ReturnType<typeof createRequestHandler>;
  inflight: number;
  retired: boolean;
  /** The upstream pool was closed (retired and idle, or at stop). */
  closed: boolean;
}

export async function startProxy(options: StartOptions): Promise<RunningProxy> {
  const { logger, env } = options;
  const loaded = await loadValidated(options.configFile, env);
  for (const warning of loaded.warnings) logger.warn("config warning", { problem: warning });

  const metrics = createMetrics({ version: VERSION });
  metrics.setLabelSets(labelSetsFromConfig(loaded.config));
  metrics.configLoaded(loaded.hash);

  const runtimeDeps = {
    logger,
    metrics,
    env,
    ...(options.sources === undefined ? {} : { sources: options.sources }),
    ...(options.fileSources === undefined ? {} : { fileSources: options.fileSources }),
  };

  let draining = false;
  let stopping: Promise<void> | undefined;
  /** Responses not yet closed, over every generation. */
  const open = new OpenResponses();
  const firstRuntime = buildRuntime(loaded.config, loaded.hash, runtimeDeps);

  const monitor: LagMonitor | undefined =
    options.overload === false
      ? undefined
      : createLagMonitor({
          ...(typeof options.overload === "object" ? options.overload : {}),
          onChange: (shedding, lagMs) => {
            if (shedding) logger.warn("event loop lagging: shedding new requests (503 overloaded)", { lag_ms: lagMs });
            else logger.info("event loop caught up: accepting requests again", { lag_ms: lagMs });
          },
        });

  function generation(runtime: Runtime): Generation {
    const handle = createRequestHandler({
      runtime: () => runtime,
      metrics,
      logger,
      draining: () => draining,
      ...(monitor === undefined ? {} : { overloaded: () => monitor.shedSeconds() }),
    });
    return { runtime, handle, inflight: 0, retired: false, closed: false };
  }

  /** Closes what a generation holds once nothing uses it. The keyring was closed when it was replaced. */
  function closeGeneration(gen: Generation): void {
    if (gen.closed) return;
    gen.closed = true;
    gen.runtime.forwarder.close();
  }

  let current = generation(firstRuntime);

  const listener = createListener(
    loaded.config.server,
    (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean) => {
      const gen = current;
      gen.inflight += 1;
      const entry = open.add(res);
      // While draining or shedding, a connection is not kept for another request: closing it
      // sends the client elsewhere and lightens the load (Node adds `Connection: close`).
      if (draining || monitor?.shedding() === true) res.shouldKeepAlive = false;
      res.once("close", () => {
        gen.inflight -= 1;
        open.remove(entry);
        if (gen.retired && gen.inflight === 0) closeGeneration(gen);
        if (draining) onDrainProgress();
      });
      gen.handle(req, res, expectsContinue);
    },
    {
      onClientError: (reason, detail, reply) => {
        metrics.denied(undefined, reason);
        if (reply === undefined) return;
        // Answered by the listener itself (parser refusals, upgrades, CONNECT): still one request
        // in requests_total and one audit line, under the x-request-id the reply carried.
        const status = ERRORS[reason].status;
        const bytesOut = Buffer.byteLength(errorBody(reason));
        metrics.requestFinished({ status, durationSeconds: 0, bytesIn: 0, bytesOut });
        writeAudit(logger, current.runtime.config.audit, {
          ctx: undefined,
          fallback: () => ({ id: reply.id, method: "", path: "", ip: normalizeIp(reply.ip) ?? reply.ip }),
          status,
          reason,
          durationMs: 0,
          bytesIn: 0,
          bytesOut,
        });
        logger.debug("request refused by the listener", { request_id: reply.id, reason, detail });
      },
      onHandlerError: (err) => logger.error("request handler failed", errorFields(err)),
    },
  );
  const admin = createAdminServer({
    metrics,
    logger,
    readiness: () => {
      if (draining) return { ready: false, reasons: ["draining"] };
      return current.runtime.keyring.readiness(usedKeyNames(current.runtime.config));
    },
  });

  let listenAddress: AddressInfo;
  let adminAddress: AddressInfo;
  try {
    listenAddress = await listen(listener, loaded.config.listen.host, options.ports?.listen ?? loaded.config.listen.port);
    adminAddress = await listen(admin, loaded.config.admin.host, options.ports?.admin ?? loaded.config.admin.port);
  } catch (err) {
    monitor?.close();
    current.runtime.keyring.close();
    closeGeneration(current);
    await current.runtime.limits.close().catch(() => undefined);
    await closeServer(listener);
    await closeServer(admin);
    throw err;
  }
  current.runtime.keyring.start();
  logger.info("started", {
    version: VERSION,
    node: process.version,
    config: options.configFile,
    config_hash: loaded.hash,
    listen: `${listenAddress.address}:${listenAddress.port}`,
    admin: `${adminAddress.address}:${adminAddress.port}`,
  });

  // ---------------------------------------------------------------------------------------------
  // Reload

  /** Hash of the last file refused, so that SIGHUP and the watcher seeing one change count it once. */
  let lastRejected: string | undefined;
  let running: Promise<ReloadResult> | undefined;
  let queued: Promise<ReloadResult> | undefined;
  const reloadAbort = new AbortController();

  function reject(trigger: string, hash: string | undefined, problems: readonly string[]): ReloadResult {
    const repeated = hash !== undefined && hash === lastRejected;
    lastRejected = hash;
    const fields = {
      trigger,
      config: options.configFile,
      problem_count: problems.length,
      problems: problems.slice(0, MAX_LOGGED_PROBLEMS),
    };
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
    const previous = current;
    let runtime: Runtime;
    try {
      runtime = buildRuntime(next.config, next.hash, { ...runtimeDeps, previous: previous.runtime });
    } catch (err) {
      return reject(trigger, next.hash, [`${options.configFile}:1:1: the config could not be applied (${errorFields(err).error})`]);
    }
    metrics.setLabelSets(labelSetsFromConfig(next.config));
    current = generation(runtime);
    runtime.keyring.start();
    previous.runtime.keyring.close();
    previous.retired = true;
    if (previous.inflight === 0) closeGeneration(previous);
    lastRejected = undefined;
    metrics.configLoaded(next.hash);
    metrics.configReloaded("applied");
    for (const warning of next.warnings) logger.warn("config warning", { problem: warning });
    logger.info("config reloaded", {
      trigger,
      config_hash: next.hash,
      previous_hash: previous.runtime.hash,
      in_flight_on_previous: previous.inflight,
    });
    return "applied";
  }

  async function reloadOnce(trigger: string): Promise<ReloadResult> {
    if (draining) return "unchanged";
    // Cheap first: the same bytes as the config in force need no validation at all.
    const quick = await quickHash(options.configFile);
    if (quick !== undefined && quick === current.runtime.hash) {
      logger.debug("config unchanged", { trigger, config_hash: quick });
      return "unchanged";
    }
    logger.info("config change detected, validating", { trigger, config: options.configFile });
    const next = await validateIsolated(options.configFile, {
      env,
      signal: reloadAbort.signal,
      ...(options.validateTimeoutMs === undefined ? {} : { timeoutMs: options.validateTimeoutMs }),
    });
    if (draining) return "unchanged";
    if (!next.ok) return reject(trigger, next.hash ?? quick, next.problems);
    if (next.hash === current.runtime.hash) {
      logger.debug("config unchanged", { trigger, config_hash: next.hash });
      return "unchanged";
    }
    const restart = restartOnlyChanges(current.runtime.config, next.config);
    if (restart.length > 0) return reject(trigger, next.hash, restart.map((line) => `${options.configFile}: ${line}`));
    return apply(trigger, next);
  }

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

  function safeReload(trigger: string): void {
    reload(trigger).catch((err: unknown) => logger.error("config reload failed", errorFields(err)));
  }

  let watcher: ConfigWatcher | undefined;
  if (options.watch !== false) {
    watcher = watchConfigFile(options.configFile, {
      ...(typeof options.watch === "object" ? options.watch : {}),
      logger,
      onChange: () => safeReload("file change"),
    });
    // A change between the load above and the watcher's first look would otherwise go unseen.
    void watcher.ready.then(() => safeReload("start"));
  }

  // ---------------------------------------------------------------------------------------------
  // Drain and stop

  let drained: (() => void) | undefined;

  function inflight(): number {
    return open.size;
  }

  function onDrainProgress(): void {
    // A response that just finished left its keep-alive connection idle: close it now rather
    // than wait for the client's next request (which would only get 503 draining).
    setImmediate(() => listener.closeIdleConnections());
    if (open.size === 0) drained?.();
  }

  async function drainAndClose(signal: string | undefined): Promise<void> {
    draining = true;
    const timeout = current.runtime.config.server.drain_timeout;
    const started = performance.now();
    logger.info("draining", { signal: signal ?? "stop", in_flight: open.size, drain_timeout_ms: timeout });
    watcher?.close();
    reloadAbort.abort();
    const closed = closeServer(listener);
    listener.closeIdleConnections();
    // Responses not started yet say `Connection: close`, so their connections end with them.
    for (const res of open) if (!res.headersSent) res.shouldKeepAlive = false;
    let cut = 0;
    if (open.size > 0) {
      const finished = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), timeout);
        drained = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
      drained = undefined;
      if (!finished) {
        cut = open.size;
        logger.warn("drain_timeout reached, cutting the requests still in flight", { in_flight: cut, drain_timeout_ms: timeout });
      }
    }
    listener.closeAllConnections();
    await closed;
    // The cut responses report their end a tick after their sockets: wait for it (briefly), so the
    // in-flight bookkeeping and the retired upstream pools are settled when stop() resolves.
    if (open.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1_000);
        drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      drained = undefined;
    }
    if (running !== undefined) await running.catch(() => undefined);
    admin.closeAllConnections();
    await closeServer(admin);
    monitor?.close();
    current.runtime.keyring.close();
    closeGeneration(current);
    await current.runtime.limits.close().catch((err: unknown) => logger.warn("limit stores did not close cleanly", errorFields(err)));
    logger.info("stopped", { cut, drain_ms: Math.round(performance.now() - started) });
  }

  function stop(signal?: string): Promise<void> {
    stopping ??= drainAndClose(signal);
    return stopping;
  }

  return {
    listenAddress,
    adminAddress,
    metrics,
    runtime: () => current.runtime,
    reload,
    inflight,
    stop,
  };
}
