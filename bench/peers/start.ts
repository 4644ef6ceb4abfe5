/**
 * Starting the peers mythiq-proxy is compared with, each pinned to the proxy's core:
 *
 * - bare:    bench/peers/bare-proxy.ts, http-proxy-3 injecting the key and nothing else;
 * - express: bench/peers/express-proxy.ts, the Express + http-proxy-middleware "backend proxy";
 * - nginx:   bench/peers/nginx.conf, only when `nginx` is on the PATH.
 *
 * The Node peers run on the benchmark's own Node binary and flags, as plain JavaScript (see
 * strippedScript). Each resolves once its port accepts connections, without a request through it,
 * so the idle RSS read afterwards is that of a process that has served nothing.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { stripTypeScriptTypes } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { sleep } from "../load.ts";
import { childPids, freePort, onPath, spawnNode, spawnPinned, type Child, type SpawnOptions } from "../proc.ts";
import type { ProxyUnderTest } from "../scenarios.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));

export interface PeerContext {
  /** Where the stripped scripts go; removed by the caller. */
  readonly dir: string;
  readonly upstreamPort: number;
  readonly key: string;
  /** Node flags, the same as mythiq-proxy's (bench/run.ts). */
  readonly nodeFlags: readonly string[];
  readonly core: number;
  readonly cwd: string;
  readonly monitor: NonNullable<SpawnOptions["monitor"]>;
}

export type RunningPeer = ProxyUnderTest & { readonly child: Child };

/** The client the Express peer admits: its `sha256:<hex>` token hash and model allowlist. */
export interface ExpressClient {
  readonly tokenHash: string;
  readonly models: readonly string[];
}

const written = new Set<string>();

/**
 * bench/peers/`name`.ts as plain JavaScript in `dir`. Run as .ts, Node would load its type stripper
 * into the peer's process (about 17 MB of RSS that mythiq-proxy, built to dist/, does not carry),
 * which would flatter mythiq-proxy in every memory comparison.
 */
function strippedScript(dir: string, name: string): string {
  const file = path.join(dir, `${name}.mjs`);
  if (written.has(file)) return file;
  const source = readFileSync(path.join(HERE, `${name}.ts`), "utf8");
  // The copy lives outside the project, so packages are imported by their resolved location.
  const js = stripTypes(source).replace(/from "((?!node:)[^"./][^"]*)"/g, (_, specifier: string) => `from ${JSON.stringify(import.meta.resolve(specifier))}`);
  writeFileSync(file, js);
  written.add(file);
  return file;
}

/** `module.stripTypeScriptTypes` without its one-time ExperimentalWarning on our stderr. */
function stripTypes(source: string): string {
  const emitWarning = process.emitWarning.bind(process);
  process.emitWarning = () => undefined;
  try {
    return stripTypeScriptTypes(source);
  } finally {
    process.emitWarning = emitWarning;
  }
}

/** True once something accepts a TCP connection on 127.0.0.1:`port`. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

async function waitListening(port: number, child: Child, what: string): Promise<void> {
  const startedAt = performance.now();
  while (!(await accepts(port))) {
    if (performance.now() - startedAt > 10_000 || child.proc.exitCode !== null) {
      await child.stop(1000);
      throw new Error(`${what} did not start:\n${child.stderrTail()}`);
    }
    await sleep(10);
  }
}

async function startNodePeer(ctx: PeerContext, name: "bare" | "express", env: NodeJS.ProcessEnv, extraNodeArgs: readonly string[]): Promise<RunningPeer> {
  const port = await freePort();
  const script = strippedScript(ctx.dir, `${name}-proxy`);
  const child = spawnNode([...ctx.nodeFlags, ...extraNodeArgs, script, String(port), String(ctx.upstreamPort)], {
    core: ctx.core,
    cwd: ctx.cwd,
    env: { ...process.env, BENCH_KEY: ctx.key, ...env },
    monitor: ctx.monitor,
  });
  await waitListening(port, child, `${name} peer`);
  return { name, port, pid: child.pid, pids: [child.pid], child };
}

/** The bare http-proxy-3 pass-through. */
export function startBare(ctx: PeerContext, extraNodeArgs: readonly string[] = []): Promise<RunningPeer> {
  return startNodePeer(ctx, "bare", {}, extraNodeArgs);
}

/** The Express + http-proxy-middleware proxy, admitting `client`. */
export function startExpress(ctx: PeerContext, client: ExpressClient, extraNodeArgs: readonly string[] = []): Promise<RunningPeer> {
  return startNodePeer(ctx, "express", { BENCH_TOKEN_SHA256: client.tokenHash, BENCH_MODELS: client.models.join(",") }, extraNodeArgs);
}

/** The nginx binary on the PATH, or undefined (the nginx peer is then left out). */
export function nginxBinary(): string | undefined {
  return onPath("nginx");
}

/**
 * nginx with bench/peers/nginx.conf, admitting the client `token` (plain: `map` compares strings).
 * Its files live in a directory of their own, readable by the worker's user when nginx starts as
 * root (it then runs its worker as `nobody`); removed when it stops.
 */
export async function startNginx(ctx: PeerContext, binary: string, token: string): Promise<RunningPeer> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "mythiq-bench-nginx-"));
  chmodSync(dir, 0o755);
  const conf = readFileSync(path.join(HERE, "nginx.conf"), "utf8")
    .replaceAll("@DIR@", dir)
    .replaceAll("@PORT@", String(port))
    .replaceAll("@UPSTREAM_PORT@", String(ctx.upstreamPort))
    .replaceAll("@TOKEN@", token)
    .replaceAll("@KEY@", ctx.key);
  const file = path.join(dir, "nginx.conf");
  writeFileSync(file, conf, { mode: 0o600 });
  const child = spawnPinned(binary, ["-p", dir, "-c", file, "-e", "stderr"], { core: ctx.core, cwd: dir, monitor: ctx.monitor });
  void child.exited.then(() => rmSync(dir, { recursive: true, force: true }));
  await waitListening(port, child, "nginx");
  // The master binds the port, then forks the worker that serves.
  const startedAt = performance.now();
  let workers = childPids(child.pid);
  while (workers.length === 0) {
    if (performance.now() - startedAt > 10_000) {
      await child.stop(1000);
      throw new Error(`nginx started no worker:\n${child.stderrTail()}`);
    }
    await sleep(10);
    workers = childPids(child.pid);
  }
  const worker = workers[0]!;
  // The worker is reaped by the master, whose CPU time (with the worker's) reaches ours when it exits.
  ctx.monitor.track(worker);
  void child.exited.then(() => ctx.monitor.forget(worker));
  return { name: "nginx", port, pid: worker, pids: [child.pid, worker], child };
}
