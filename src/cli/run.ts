/**
 * The proxy's lifecycle (SPEC §8): load and validate the config, build the runtime, listen on the
 * listen and admin ports, fetch keys in the background; reload on demand; drain and stop.
 * Everything from outside (environment, logger, key source factories) is passed in, so tests run
 * the whole proxy in-process on port 0.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { checkSecretRefs, formatProblem, loadConfigFile, type LoadResult } from "../config/load.ts";
import type { ProxyConfig } from "../config/types.ts";
import { createAdminServer } from "../http/admin.ts";
import { createListener } from "../http/listener.ts";
import type { Environment } from "../keys/env-source.ts";
import type { SourceDeps, SourceRegistry } from "../keys/sources.ts";
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
}

export type ReloadResult = "applied" | "rejected" | "unchanged";

export interface RunningProxy {
  readonly listenAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  readonly metrics: Metrics;
  /** The runtime in force now. */
  runtime(): Runtime;
  /** Re-reads the config file; applies it atomically when valid and changed. */
  reload(trigger: string): Promise<ReloadResult>;
  /** Drains (SPEC §8 Stop) and closes everything. */
  stop(signal?: string): Promise<void>;
}

async function loadValidated(file: string, env: Environment): Promise<LoadResult & { ok: true }> {
  const result = await loadConfigFile(file);
  if (!result.ok) throw new ConfigError(result.problems.map(formatProblem));
  const refProblems = checkSecretRefs(result, env);
  if (refProblems.length > 0) throw new ConfigError(refProblems.map(formatProblem));
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

export async function startProxy(options: StartOptions): Promise<RunningProxy> {
  const { logger, env } = options;
  const loaded = await loadValidated(options.configFile, env);
  for (const warning of loaded.warnings) logger.warn("config warning", { problem: formatProblem(warning) });

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
  let current = buildRuntime(loaded.config, loaded.hash, runtimeDeps);
  let draining = false;
  let inflight = 0;
  let drained: (() => void) | undefined;

  const handle = createRequestHandler({ runtime: () => current, metrics, logger, draining: () => draining });
  const listener = createListener(
    loaded.config.server,
    (req, res, expectsContinue) => {
      inflight += 1;
      res.once("close", () => {
        inflight -= 1;
        if (inflight === 0) drained?.();
      });
      handle(req, res, expectsContinue);
    },
    {
      onClientError: (reason) => metrics.denied(undefined, reason),
      onHandlerError: (err) => logger.error("request handler failed", errorFields(err)),
    },
  );
  const admin = createAdminServer({
    metrics,
    logger,
    readiness: () => {
      if (draining) return { ready: false, reasons: ["draining"] };
      return current.keyring.readiness(usedKeyNames(current.config));
    },
  });

  let listenAddress: AddressInfo;
  let adminAddress: AddressInfo;
  try {
    listenAddress = await listen(listener, loaded.config.listen.host, options.ports?.listen ?? loaded.config.listen.port);
    adminAddress = await listen(admin, loaded.config.admin.host, options.ports?.admin ?? loaded.config.admin.port);
  } catch (err) {
    current.keyring.close();
    current.forwarder.close();
    await closeServer(listener);
    await closeServer(admin);
    throw err;
  }
  current.keyring.start();
  logger.info("started", {
    version: VERSION,
    node: process.version,
    config: options.configFile,
    config_hash: loaded.hash,
    listen: `${listenAddress.address}:${listenAddress.port}`,
    admin: `${adminAddress.address}:${adminAddress.port}`,
  });

  async function reload(trigger: string): Promise<ReloadResult> {
    let next;
    try {
      next = await loadValidated(options.configFile, env);
    } catch (err) {
      metrics.configReloaded("rejected");
      const problems = err instanceof ConfigError ? err.lines : [errorFields(err).error];
      logger.error("config reload rejected, keeping the running config", { trigger, problems });
      return "rejected";
    }
    if (next.hash === current.hash) return "unchanged";
    const previous = current;
    const runtime = buildRuntime(next.config, next.hash, { ...runtimeDeps, previous });
    metrics.setLabelSets(labelSetsFromConfig(next.config));
    current = runtime;
    runtime.keyring.start();
    previous.keyring.close();
    metrics.configLoaded(next.hash);
    metrics.configReloaded("applied");
    for (const warning of next.warnings) logger.warn("config warning", { problem: formatProblem(warning) });
    logger.info("config reloaded", { trigger, config_hash: next.hash });
    return "applied";
  }

  async function stop(signal?: string): Promise<void> {
    if (draining) return;
    draining = true;
    const timeout = current.config.server.drain_timeout;
    logger.info("draining", { signal: signal ?? "stop", in_flight: inflight, drain_timeout_ms: timeout });
    const closed = closeServer(listener);
    listener.closeIdleConnections();
    if (inflight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeout);
        timer.unref();
        drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    listener.closeAllConnections();
    await closed;
    await closeServer(admin);
    current.keyring.close();
    current.forwarder.close();
    logger.info("stopped", { in_flight: inflight });
  }

  return {
    listenAddress,
    adminAddress,
    metrics,
    runtime: () => current,
    reload,
    stop,
  };
}
