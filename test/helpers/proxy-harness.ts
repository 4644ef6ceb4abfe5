/**
 * The whole proxy, in-process, for end-to-end tests: a config written to a temp file, `startProxy`
 * on port 0 for both ports, and every log line captured unredacted-by-default-checks so tests can
 * assert that no secret ever reached the log.
 *
 * ```ts
 * const upstream = await startFakeUpstream();
 * const proxy = await startTestProxy({ yaml: configYaml(upstream.url), env: { MYTHIQ_API_KEY: TEST_KEY } });
 * const res = await send(proxy.port, { path: "/v1/models", headers: { authorization: `Bearer ${TOKEN}` } });
 * proxy.logs            every JSON line written, parsed
 * proxy.rawLog()        the same lines as one string (scan it for secrets)
 * await proxy.waitForLog((l) => l["msg"] === "config reloaded")
 * await proxy.admin("/metrics"); await proxy.metric("mythiq_proxy_requests_total", { status: "200" })
 * await proxy.close();  // stops the proxy and removes the temp dir
 * ```
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashToken } from "../../src/cli/hash-token.ts";
import { startProxy, type RunningProxy, type StartOptions } from "../../src/lifecycle/start.ts";
import { createLogger } from "../../src/observe/log.ts";
import { parseScrape, valueOf } from "./prom-text.ts";

/** The MythIQ key the tests hand the proxy; no response or log line may ever contain it. */
export const TEST_KEY = "mq-test-4c1f7a9e2b6d8f0a3c5e7b9d1f3a5c7e";
/** A client token for the `web` client of `configYaml`. */
export const TOKEN = "tok-web-0123456789abcdef";
export const TOKEN_HASH = hashToken(TOKEN);

/**
 * The listen, admin and upstream lines every test config starts with (an http:// fake upstream,
 * short timeouts), then the env key `default`: append `clients:` and anything else.
 */
export function configHead(upstreamUrl: string): string {
  return `
listen: { host: 127.0.0.1, port: 8080 }
admin: { host: 127.0.0.1, port: 9090 }
upstream: { url: ${upstreamUrl}, allow_insecure_upstream: true, connect_timeout: 2s, response_timeout: 5s, idle_timeout: 5s }
keys:
  default: { source: env, env: MYTHIQ_API_KEY }
`;
}

/**
 * A small valid config: client `web` (token `TOKEN`, a few routes, 1 KiB bodies) and client
 * `local` (anonymous, loopback networks, origin http://localhost:3000, GET /v1/models only).
 * `extra` is appended verbatim (top-level keys).
 */
export function configYaml(upstreamUrl: string, extra = ""): string {
  return `
listen: { host: 127.0.0.1, port: 8080 }
admin: { host: 127.0.0.1, port: 9090 }
upstream:
  url: ${upstreamUrl}
  allow_insecure_upstream: ${upstreamUrl.startsWith("http:") ? "true" : "false"}
  connect_timeout: 2s
  response_timeout: 5s
  idle_timeout: 5s
keys:
  default: { source: env, env: MYTHIQ_API_KEY }
clients:
  - id: web
    auth: { tokens: ["${TOKEN_HASH}"] }
    routes:
      - GET /v1/models
      - GET /v1/models/{id}
      - POST /v1/images/generations
      - GET /v1/generations?limit&after
    max_body: 1KiB
  - id: local
    auth: { anonymous: true }
    origins: [http://localhost:3000]
    networks: [127.0.0.0/8, ::1/128]
    routes: [GET /v1/models]
${extra}`;
}

export type LogLine = Record<string, unknown>;

export interface TestProxy {
  readonly proxy: RunningProxy;
  readonly port: number;
  readonly adminPort: number;
  readonly configFile: string;
  /** Every line the proxy logged, parsed (audit records included). */
  readonly logs: LogLine[];
  rawLog(): string;
  /** Resolves with the first line (already logged or still to come) that `match` accepts. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Replaces the config file's content (for reload tests). */
  writeConfig(yaml: string): void;
  /** GET on the admin port. */
  admin(path: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>;
  /** A sample of the admin port's /metrics. */
  metric(name: string, labels?: Readonly<Record<string, string>>): Promise<number | undefined>;
  close(): Promise<void>;
}

export interface TestProxyOptions {
  /** Config text, written to `<temp>/proxy.yaml`; or give `configFile`. */
  readonly yaml?: string;
  readonly configFile?: string;
  readonly env?: Record<string, string | undefined>;
  readonly sources?: StartOptions["sources"];
  readonly fileSources?: StartOptions["fileSources"];
  /** The lifecycle options of `startProxy` (default: as in production, both on). */
  readonly watch?: StartOptions["watch"];
  readonly overload?: StartOptions["overload"];
  readonly validateTimeoutMs?: number;
  /** The tracer factory (tests shorten the OpenTelemetry tracer's batching). */
  readonly tracer?: StartOptions["tracer"];
}

export async function startTestProxy(options: TestProxyOptions): Promise<TestProxy> {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-test-"));
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
      ...(options.sources === undefined ? {} : { sources: options.sources }),
      ...(options.fileSources === undefined ? {} : { fileSources: options.fileSources }),
      ...(options.watch === undefined ? {} : { watch: options.watch }),
      ...(options.overload === undefined ? {} : { overload: options.overload }),
      ...(options.validateTimeoutMs === undefined ? {} : { validateTimeoutMs: options.validateTimeoutMs }),
      ...(options.tracer === undefined ? {} : { tracer: options.tracer }),
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const adminPort = proxy.adminAddress.port;
  const admin = (path: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> =>
    new Promise((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port: adminPort, path, agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), headers: res.headers }));
        })
        .on("error", reject);
    });
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
    writeConfig: (yaml) => writeFileSync(configFile, yaml),
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

/** Resolves once `/readyz` says ready (keys are fetched in the background), or rejects after `timeoutMs`. */
export async function waitReady(proxy: TestProxy, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await proxy.admin("/readyz");
    if (res.status === 200) return;
    if (Date.now() > deadline) throw new Error(`proxy not ready: ${res.body}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
