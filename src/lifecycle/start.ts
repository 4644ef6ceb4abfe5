/**
 * The proxy's lifecycle (SPEC §8), in order: validate the config, compile it, listen on the listen
 * and admin ports, fetch keys in the background; reload on SIGHUP or a file change (reload.ts);
 * shed load when the event loop lags; drain and stop (drain.ts).
 * Everything from outside (environment, logger, key source factories) is passed in, so tests run
 * the whole proxy in-process on port 0. Only `src/main.ts` maps signals and exit codes onto it.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { validateIsolated, type Validation } from "../config/validate-isolated.ts";
import type { ProxyConfig } from "../config/types.ts";
import { watchConfigFile, type ConfigWatcher, type ConfigWatchOptions } from "../config/watch.ts";
import { createAdminServer } from "../http/admin.ts";
import { applyServerSettings, createListener } from "../http/listener.ts";
import { createLagMonitor, type LagMonitor, type LagMonitorOptions } from "../http/overload.ts";
import type { Environment } from "../keys/env-source.ts";
import type { SourceDeps, SourceRegistry } from "../keys/sources.ts";
import { labelSetsFromConfig } from "../observe/labels.ts";
import { errorFields, type Logger } from "../observe/log.ts";
import { createMetrics, type Metrics } from "../observe/metrics.ts";
import { createTracing, type TracerFactory } from "../observe/tracing/tracing.ts";
import { compileConfig, type CompileDeps, type CompiledConfig } from "../pipeline/compile.ts";
import { serveListenerRefusal } from "../pipeline/listen-handler.ts";
import { VERSION } from "../version.ts";
import { ConfigError } from "./config-error.ts";
import { createDrain } from "./drain.ts";
import { createGenerations } from "./generations.ts";
import { createReloader, type ReloadResult } from "./reload.ts";

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
  /** Builds the tracer when `tracing` is configured; default the OpenTelemetry one (tests shorten its batching). */
  readonly tracer?: TracerFactory;
}

export type { ReloadResult };

export interface RunningProxy {
  readonly listenAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  readonly metrics: Metrics;
  /** The compiled config in force now. */
  compiled(): CompiledConfig;
  /** See `Reloader.reload` (reload.ts). */
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
  return new Promise((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
}

/** Names of the keys that clients use: readiness waits for these, not for unused keys. */
function usedKeyNames(config: ProxyConfig): string[] {
  return [...new Set(config.clients.map((client) => client.key))];
}

export async function startProxy(options: StartOptions): Promise<RunningProxy> {
  const { logger, env } = options;
  const loaded = await loadValidated(options.configFile, env);
  for (const warning of loaded.warnings) logger.warn("config warning", { problem: warning });

  const metrics = createMetrics({ version: VERSION });
  metrics.setLabelSets(labelSetsFromConfig(loaded.config));
  metrics.configLoaded(loaded.hash);

  const compileDeps: CompileDeps = {
    logger,
    metrics,
    env,
    ...(options.sources === undefined ? {} : { sources: options.sources }),
    ...(options.fileSources === undefined ? {} : { fileSources: options.fileSources }),
  };

  // SPEC §11: the tracer follows the config; while `tracing` is absent there is none and
  // OpenTelemetry is never loaded. Built before listening (so the first request is traced)
  // and before the lag monitor starts (loading the library takes the event loop for a moment).
  const tracing = createTracing({
    logger,
    env,
    onDropped: (reason, count) => metrics.traceSpansDropped(reason, count),
    ...(options.tracer === undefined ? {} : { create: options.tracer }),
  });
  await tracing.apply(loaded.config.tracing);

  let draining = false;
  let stopping: Promise<void> | undefined;

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

  const serveDeps = { metrics, logger, now: () => performance.now(), tracer: tracing.current };
  const generations = createGenerations(compileConfig(loaded.config, loaded.hash, compileDeps), {
    ...serveDeps,
    draining: () => draining,
    ...(monitor === undefined ? {} : { overloaded: () => monitor.shedSeconds() }),
    closeConnections: () => draining || monitor?.shedding() === true,
    onResponseClosed: () => drain.responseClosed(),
  });

  const listener = createListener(loaded.config.server, (req, res, expectsContinue) => generations.dispatch(req, res, expectsContinue), {
    // Refusals the listener answers itself go through the pipeline too (step 1), so they are
    // counted and audited like every other request.
    onRefusal: (refusal) => void serveListenerRefusal(generations.current(), refusal, serveDeps),
    onClientError: (reason) => metrics.denied(undefined, reason),
    onHandlerError: (err) => logger.error("request handler failed", errorFields(err)),
  });
  const drain = createDrain(listener, generations.open, logger);
  const admin = createAdminServer({
    metrics,
    logger,
    readiness: () => {
      if (draining) return { ready: false, reasons: ["draining"] };
      const compiled = generations.current();
      return compiled.keyring.readiness(usedKeyNames(compiled.config));
    },
  });

  let listenAddress: AddressInfo;
  let adminAddress: AddressInfo;
  try {
    listenAddress = await listen(listener, loaded.config.listen.host, options.ports?.listen ?? loaded.config.listen.port);
    adminAddress = await listen(admin, loaded.config.admin.host, options.ports?.admin ?? loaded.config.admin.port);
  } catch (err) {
    monitor?.close();
    generations.closeCurrent();
    await generations.current().limits.close().catch(() => undefined);
    await closeServer(listener);
    await closeServer(admin);
    await tracing.shutdown().catch(() => undefined);
    throw err;
  }
  generations.current().keyring.start();
  logger.info("started", {
    version: VERSION,
    node: process.version,
    config: options.configFile,
    config_hash: loaded.hash,
    listen: `${listenAddress.address}:${listenAddress.port}`,
    admin: `${adminAddress.address}:${adminAddress.port}`,
  });

  const reloader = createReloader({
    configFile: options.configFile,
    env,
    logger,
    metrics,
    validateTimeoutMs: options.validateTimeoutMs,
    current: () => generations.current(),
    draining: () => draining,
    compile: (next, previous) => compileConfig(next.config, next.hash, { ...compileDeps, previous }),
    install(compiled) {
      metrics.setLabelSets(labelSetsFromConfig(compiled.config));
      applyServerSettings(listener, compiled.config.server);
      // A tracer is built asynchronously (header secrets, the library); until it is, the previous
      // one serves. trust_incoming needs nothing here: it is compiled with the config.
      tracing.apply(compiled.config.tracing).catch((err: unknown) => logger.error("tracing settings not applied, keeping the previous ones", errorFields(err)));
      return generations.replace(compiled);
    },
  });
  const safeReload = (trigger: string): void => {
    reloader.reload(trigger).catch((err: unknown) => logger.error("config reload failed", errorFields(err)));
  };

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

  async function drainAndClose(signal: string | undefined): Promise<void> {
    draining = true;
    const timeout = generations.current().config.server.drain_timeout;
    const started = performance.now();
    logger.info("draining", { signal: signal ?? "stop", in_flight: generations.open.size, drain_timeout_ms: timeout });
    watcher?.close();
    const reloading = reloader.stop();
    const cut = await drain.run(timeout);
    await reloading;
    admin.closeAllConnections();
    await closeServer(admin);
    monitor?.close();
    generations.closeCurrent();
    await generations
      .current()
      .limits.close()
      .catch((err: unknown) => logger.warn("limit stores did not close cleanly", errorFields(err)));
    // Spans still queued are exported, bounded (a collector that is down cannot hold the stop up).
    await tracing.shutdown().catch((err: unknown) => logger.warn("tracer did not stop cleanly", errorFields(err)));
    logger.info("stopped", { cut, drain_ms: Math.round(performance.now() - started) });
  }

  return {
    listenAddress,
    adminAddress,
    metrics,
    compiled: () => generations.current(),
    reload: (trigger) => reloader.reload(trigger),
    inflight: () => generations.open.size,
    stop(signal) {
      stopping ??= drainAndClose(signal);
      return stopping;
    },
  };
}
