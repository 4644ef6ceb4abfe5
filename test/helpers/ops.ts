/**
 * Helpers for the operations tests (test/ops): the whole proxy in-process with the lifecycle
 * options (file watch, lag shedding, validation timeout) exposed, log lines that can be awaited,
 * a keep-alive load generator, and a Kubernetes-style ConfigMap directory.
 *
 * ```ts
 * const proxy = await startOpsProxy({ yaml, env: { MYTHIQ_API_KEY: TEST_KEY } });
 * await proxy.waitForLog((l) => l.msg === "config reloaded");
 * const load = startLoad(proxy.port, { concurrency: 8, headers: { authorization: `Bearer ${TOKEN}` } });
 * const results = await load.stop();
 * ```
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startProxy, type RunningProxy, type StartOptions } from "../../src/cli/run.ts";
import { createLogger } from "../../src/observe/log.ts";
import { parseScrape, valueOf } from "./prom-text.ts";

export type LogLine = Record<string, unknown>;

export interface OpsProxy {
  readonly proxy: RunningProxy;
  readonly port: number;
  readonly adminPort: number;
  readonly configFile: string;
  readonly logs: LogLine[];
  rawLog(): string;
  /** Resolves with the first line (already logged or still to come) that `match` accepts. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** GET on the admin port. */
  admin(path: string): Promise<Reply>;
  /** A sample of the admin port's /metrics. */
  metric(name: string, labels?: Readonly<Record<string, string>>): Promise<number | undefined>;
  close(): Promise<void>;
}

export interface OpsProxyOptions {
  /** Config text, written to `<temp>/proxy.yaml`; or give `configFile`. */
  readonly yaml?: string;
  readonly configFile?: string;
  readonly env?: Record<string, string | undefined>;
  readonly watch?: StartOptions["watch"];
  readonly overload?: StartOptions["overload"];
  readonly validateTimeoutMs?: number;
}

export interface Reply {
  readonly status: number;
  readonly body: string;
  readonly headers: http.IncomingHttpHeaders;
}

export async function startOpsProxy(options: OpsProxyOptions): Promise<OpsProxy> {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-ops-"));
  const configFile = options.configFile ?? join(dir, "proxy.yaml");
  if (options.yaml !== undefined) writeFileSync(configFile, options.yaml);
  const lines: string[] = [];
  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  const logger = createLogger({
    level: "debug",
    redact: false,
    write: (line) => {
      lines.push(line);
      logs.push(JSON.parse(line) as LogLine);
      for (const wake of [...waiters]) wake();
    },
  });
  let proxy: RunningProxy;
  try {
    proxy = await startProxy({
      configFile,
      env: { ...options.env },
      logger,
      ports: { listen: 0, admin: 0 },
      watch: options.watch ?? false,
      overload: options.overload ?? false,
      ...(options.validateTimeoutMs === undefined ? {} : { validateTimeoutMs: options.validateTimeoutMs }),
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const adminPort = proxy.adminAddress.port;
  const admin = (path: string): Promise<Reply> => request(adminPort, { path, agent: false });
  return {
    proxy,
    port: proxy.listenAddress.port,
    adminPort,
    configFile,
    logs,
    rawLog: () => lines.join(""),
    waitForLog(match, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const found = logs.find(match);
        if (found !== undefined) return resolve(found);
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching log line within ${timeoutMs} ms`));
        }, timeoutMs);
        const check = (): void => {
          const line = logs.find(match);
          if (line === undefined) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(line);
        };
        waiters.add(check);
      });
    },
    admin,
    async metric(name, labels = {}) {
      return valueOf(parseScrape((await admin("/metrics")).body), name, labels);
    },
    close: async () => {
      await proxy.stop("test");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One request; resolves with the whole response, rejects on a connection error. */
export function request(
  port: number,
  options: { path: string; method?: string; headers?: http.OutgoingHttpHeaders; agent?: http.Agent | false; body?: string },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path: options.path, method: options.method ?? "GET", headers: options.headers, agent: options.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), headers: res.headers }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

export interface LoadResult {
  readonly status: number;
  /** Set when the request failed at the connection level. */
  readonly error?: string;
  readonly ms: number;
}

export interface Load {
  readonly results: LoadResult[];
  /** Stops issuing requests, waits for those in flight, and returns every result. */
  stop(): Promise<LoadResult[]>;
}

/**
 * Steady load: `concurrency` loops, each sending one request after the other over a shared
 * keep-alive agent, until `stop()`.
 */
export function startLoad(port: number, options: { concurrency: number; path?: string; headers?: http.OutgoingHttpHeaders }): Load {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const results: LoadResult[] = [];
  let stopped = false;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const started = performance.now();
      try {
        const res = await request(port, { path: options.path ?? "/v1/models", ...(options.headers ? { headers: options.headers } : {}), agent });
        results.push({ status: res.status, ms: performance.now() - started });
      } catch (err) {
        results.push({ status: 0, error: (err as Error).message, ms: performance.now() - started });
      }
    }
  };
  const loops = Array.from({ length: options.concurrency }, loop);
  return {
    results,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      agent.destroy();
      return results;
    },
  };
}

/**
 * A directory laid out as the kubelet lays out a ConfigMap volume: `<dir>/proxy.yaml` →
 * `..data/proxy.yaml`, `..data` → `..<version>`. `update` writes a new version directory and
 * swaps `..data` with one atomic rename, then removes the old version, as the kubelet does.
 */
export function configMapDir(yaml: string): { dir: string; file: string; update(yaml: string): void; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-configmap-"));
  let version = 0;
  let currentVersion = "";
  const writeVersion = (text: string): string => {
    version += 1;
    const name = `..2026_01_01_00_00_0${version}.${1000 + version}`;
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, "proxy.yaml"), text);
    return name;
  };
  currentVersion = writeVersion(yaml);
  symlinkSync(currentVersion, join(dir, "..data"));
  symlinkSync(join("..data", "proxy.yaml"), join(dir, "proxy.yaml"));
  return {
    dir,
    file: join(dir, "proxy.yaml"),
    update(text: string) {
      const next = writeVersion(text);
      symlinkSync(next, join(dir, "..data_tmp"));
      renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
      rmSync(join(dir, currentVersion), { recursive: true, force: true });
      currentVersion = next;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Resolves once `upstream` has received `n` request heads. */
export async function upstreamRequests(upstream: { waitForRequests(n: number): Promise<unknown> }, n: number): Promise<void> {
  await upstream.waitForRequests(n);
}
