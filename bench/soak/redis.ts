/**
 * A real redis-server for the soak's shared limits, which the fault schedule kills (SIGKILL, as a
 * crashed or evicted pod would go) and starts again on the same port, empty. No persistence; the
 * working directory is a temp dir removed at `close`. Follows test/helpers/redis-server.ts.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../proc.ts";

export interface SoakRedis {
  readonly url: string;
  readonly running: boolean;
  /** SIGKILL: connections drop at once, nothing is said. */
  kill(): Promise<void>;
  /** Starts again on the same port; resolves once it answers PING. */
  start(): Promise<void>;
  close(): Promise<void>;
}

function binary(): string {
  const configured = process.env["REDIS_SERVER"];
  if (configured !== undefined && configured !== "") return configured;
  for (const dir of (process.env["PATH"] ?? "").split(":")) {
    if (dir !== "" && existsSync(join(dir, "redis-server"))) return join(dir, "redis-server");
  }
  return "/usr/bin/redis-server";
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on("connect", () => socket.write("*1\r\n$4\r\nPING\r\n"));
    socket.on("data", (d: Buffer) => done(d.toString().startsWith("+PONG")));
    socket.on("error", () => done(false));
  });
}

export async function startSoakRedis(): Promise<SoakRedis> {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-soak-redis-"));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const killOnExit = (): void => {
    child?.kill("SIGKILL");
  };
  process.once("exit", killOnExit);

  async function start(): Promise<void> {
    if (child !== undefined) return;
    const proc = spawn(
      binary(),
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning"],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child = proc;
    const deadline = Date.now() + 10_000;
    while (!(await ping(port))) {
      if (proc.exitCode !== null) {
        child = undefined;
        throw new Error(`redis-server exited at start (port ${port}): ${stderr.trim()}`);
      }
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function kill(): Promise<void> {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGKILL");
    await exited;
  }

  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return child !== undefined;
    },
    kill,
    start,
    async close() {
      await kill();
      process.removeListener("exit", killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
