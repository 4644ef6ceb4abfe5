/**
 * A proxy replica as production runs it: a real `node src/main.ts --config FILE` child process,
 * its JSON log lines parsed, its admin port scraped. For tests where several replicas share one
 * limits store.
 *
 * ```ts
 * const a = await startReplica({ name: "a", dir, yaml: (ports) => configText, env: { REDIS_URL } });
 * await a.metric("mythiq_proxy_limits_store_up")      one sample from /metrics
 * a.logs                                             every JSON line so far
 * await a.stop();                                    SIGTERM, then SIGKILL after 5 s
 * ```
 */
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { send } from "./forward-harness.ts";
import { freePort } from "./free-port.ts";
import { parseScrape, valueOf, type Scrape } from "./prom-text.ts";
import { TEST_KEY } from "./proxy-harness.ts";

const MAIN = fileURLToPath(new URL("../../src/main.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface Replica {
  readonly name: string;
  readonly port: number;
  readonly adminPort: number;
  readonly configFile: string;
  /** Parsed JSON log lines so far. */
  readonly logs: Array<Record<string, unknown>>;
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
  scrape(): Promise<Scrape>;
  signal(sig: NodeJS.Signals): void;
  stop(): Promise<void>;
}

export interface ReplicaOptions {
  readonly name: string;
  /** Where the config file is written. */
  readonly dir: string;
  /** The config text for the replica's listen and admin ports. */
  readonly yaml: (ports: { listen: number; admin: number }) => string;
  /** Environment beyond PATH and MYTHIQ_API_KEY (TEST_KEY). */
  readonly env?: Record<string, string>;
}

/** Polls `check` every 20 ms until it holds, or throws after `timeoutMs`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function adminGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return send(port, { path }).then((res) => ({ status: res.status, body: res.body.toString() }));
}

/** Starts the replica and waits until it logged "started" and /readyz answers 200. */
export async function startReplica(options: ReplicaOptions): Promise<Replica> {
  const { name } = options;
  const ports = { listen: await freePort(), admin: await freePort() };
  const configFile = join(options.dir, `${name}.yaml`);
  writeFileSync(configFile, options.yaml(ports));
  const child: ChildProcess = spawn(process.execPath, [MAIN, "--config", configFile], {
    cwd: ROOT,
    env: { PATH: process.env["PATH"], MYTHIQ_API_KEY: TEST_KEY, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const killOnExit = (): void => void child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const logs: Array<Record<string, unknown>> = [];
  let partial = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    partial += d.toString();
    const lines = partial.split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) if (line !== "") logs.push(JSON.parse(line) as Record<string, unknown>);
  });
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }
    process.removeListener("exit", killOnExit);
  };
  try {
    // Generous: a loaded CI machine takes a while to start a Node process that strips types.
    await until(
      `${name} to start`,
      () => {
        if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode}: ${stderr}`);
        return logs.some((l) => l["msg"] === "started");
      },
      30_000,
    );
    await until(`${name} to be ready`, async () => (await adminGet(ports.admin, "/readyz")).status === 200, 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  const scrape = async (): Promise<Scrape> => parseScrape((await adminGet(ports.admin, "/metrics")).body);
  return {
    name,
    port: ports.listen,
    adminPort: ports.admin,
    configFile,
    logs,
    scrape,
    async metric(metric, labels = {}) {
      return valueOf(await scrape(), metric, labels);
    },
    signal: (sig) => void child.kill(sig),
    stop,
  };
}
