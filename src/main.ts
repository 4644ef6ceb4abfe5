#!/usr/bin/env node
/**
 * The entry point: the only place that reads argv and the environment, handles signals and exits.
 * Exit codes (SPEC §2): 0 clean stop, 78 bad config, 1 any other fatal error at start.
 */
import { parseCommand, USAGE } from "./cli/args.ts";
import { ConfigError } from "./lifecycle/config-error.ts";
import { startProxy } from "./lifecycle/start.ts";
import { createLogger, errorFields } from "./observe/log.ts";
import { VERSION } from "./version.ts";

const EXIT_CONFIG = 78;

const out = {
  stdout: (text: string) => process.stdout.write(text),
  stderr: (text: string) => process.stderr.write(text),
};

async function main(): Promise<number | undefined> {
  const command = parseCommand(process.argv.slice(2), process.env);
  switch (command.kind) {
    case "help":
      out.stdout(USAGE);
      return 0;
    case "version":
      out.stdout(`${VERSION}\n`);
      return 0;
    case "usage-error":
      out.stderr(`mythiq-proxy: ${command.message}\n\n${USAGE}`);
      return 2;
    // The tools load on demand: the serving process should not hold the YAML parser and the schema
    // library it never uses.
    case "check":
      return (await import("./cli/check.ts")).runCheck(command.config, out);
    case "hash-token":
      return (await import("./cli/hash-token.ts")).runHashToken(process.stdin, out);
    case "test-policy":
      return (await import("./cli/test-policy.ts")).runTestPolicy(command.config, command.cases, out);
    case "run":
      return run(command.config);
  }
}

const logger = createLogger();

/** Runs the proxy until a signal stops it. Resolves only for start-up failures. */
async function run(configFile: string): Promise<number | undefined> {
  let proxy;
  try {
    proxy = await startProxy({ configFile, env: process.env, logger });
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const line of err.lines) out.stderr(`${line}\n`);
      logger.error("invalid config, not starting", { config: configFile, problems: err.lines.length });
      return EXIT_CONFIG;
    }
    logger.error("start failed", errorFields(err));
    return 1;
  }

  // SPEC §8 Stop. The drain itself (readiness, refusing connections, waiting for requests and
  // streams up to server.drain_timeout, cutting the rest) is proxy.stop(); this only maps signals.
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // A second signal means "now" (an operator's second Ctrl-C; Kubernetes would SIGKILL anyway).
      logger.warn("second signal, exiting without waiting for the drain", { signal, in_flight: proxy.inflight() });
      process.exit(0);
    }
    stopping = true;
    // Last resort should the drain itself hang (a bug): it cuts every request at drain_timeout.
    const grace = proxy.compiled().config.server.drain_timeout + 10_000;
    setTimeout(() => {
      logger.error("stop did not finish in time, exiting", { after_ms: grace });
      process.exit(1);
    }, grace).unref();
    proxy
      .stop(signal)
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        logger.error("stop failed", errorFields(err));
        process.exit(1);
      });
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  // SIGHUP re-reads the config (so does a change of the file); a file identical to the one in
  // force is a no-op, so SIGHUP and the file watch never apply or count one change twice.
  process.on("SIGHUP", () => {
    proxy.reload("SIGHUP").catch((err: unknown) => logger.error("reload failed", errorFields(err)));
  });
  return undefined;
}

// Last line of defence: nothing a caller sends may crash the proxy, so a stray exception is logged
// (through the redacting logger, without its stack) and serving goes on.
process.on("uncaughtException", (err) => logger.error("uncaught exception", errorFields(err)));
process.on("unhandledRejection", (err) => logger.error("unhandled rejection", errorFields(err)));

main().then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`mythiq-proxy: ${errorFields(err).error}\n`);
    process.exitCode = 1;
  },
);
