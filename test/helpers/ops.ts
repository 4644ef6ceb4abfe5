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
import { startTestProxy, type LogLine, type TestProxy, type TestProxyOptions } from "./proxy-harness.ts";

export type { LogLine };

/** The in-process proxy of proxy-harness.ts, with the file watch and lag shedding off unless asked for. */
export type OpsProxy = TestProxy;
export type OpsProxyOptions = TestProxyOptions;

export interface Reply {
  readonly status: number;
  readonly body: string;
  readonly headers: http.IncomingHttpHeaders;
}

export function startOpsProxy(options: OpsProxyOptions): Promise<OpsProxy> {
  return startTestProxy({ watch: false, overload: false, ...options });
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
