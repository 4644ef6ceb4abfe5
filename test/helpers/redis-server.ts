/**
 * A real `redis-server` for tests: started on a free 127.0.0.1 port, no persistence (no RDB, no
 * AOF, its working directory a temp dir removed at stop), killed if the test process dies.
 *
 * ```ts
 * const redis = await startRedisServer();
 * redis.url                 "redis://127.0.0.1:PORT"
 * await redis.command("DBSIZE")   one command over a fresh connection (raw RESP reply as text)
 * await redis.stop();       SIGTERM, waits for the exit (the port stays reserved for `start`)
 * await redis.start();      starts again on the same port (empty: nothing was persisted)
 * redis.pause(); redis.resume();  SIGSTOP / SIGCONT: a Redis that hangs without closing connections
 * await redis.kill();       SIGKILL, waits for the exit: a primary that dies mid-run
 * await redis.close();      stops it for good and removes the temp dir (teardown)
 * ```
 *
 * Options: `args` are added to the command line (`--replicaof`, `--cluster-enabled yes`, …);
 * `sentinel` runs it as a Redis Sentinel (`redis-server FILE --sentinel`, the same binary Debian's
 * redis-sentinel links to) with that text as its config file, which Sentinel rewrites as it learns;
 * `tls` serves TLS only (no plain port), `url` is then `rediss://` and `command` speaks TLS too.
 *
 * `REDIS_SERVER` overrides the binary (default `redis-server` on PATH, else /usr/bin/redis-server).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./free-port.ts";

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Whether the server process is running (it may be paused). */
  readonly running: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  pause(): void;
  resume(): void;
  /** SIGKILL: no shutdown, connections reset. The port stays reserved for `start`. */
  kill(): Promise<void>;
  /** Sends one command (arguments as strings) on a new connection; resolves with the raw reply text. */
  command(...args: string[]): Promise<string>;
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


function encode(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`;
}

/** One command over a raw socket, for test set-up and inspection without a client library. */
function rawCommand(port: number, args: readonly string[], timeoutMs = 2000, ca?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = ca === undefined ? net.connect(port, "127.0.0.1") : tls.connect({ port, host: "127.0.0.1", ca: readFileSync(ca) });
    let reply = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis ${args[0] ?? ""} timed out`));
    }, timeoutMs);
    socket.on(ca === undefined ? "connect" : "secureConnect", () => socket.write(encode(args)));
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString("utf8");
      if (complete(reply)) {
        clearTimeout(timer);
        socket.end();
        resolve(reply);
      }
    });
    socket.on("error", (err: Error) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Whether a RESP reply is complete (enough for the simple replies tests read). */
function complete(reply: string): boolean {
  if (!reply.endsWith("\r\n")) return false;
  const kind = reply[0];
  if (kind === "+" || kind === "-" || kind === ":") return true;
  if (kind === "$") {
    const length = Number(reply.slice(1, reply.indexOf("\r\n")));
    return length < 0 || reply.length >= reply.indexOf("\r\n") + 2 + length + 2;
  }
  if (kind === "*") {
    const count = Number(reply.slice(1, reply.indexOf("\r\n")));
    if (count <= 0) return true;
    // Arrays of bulk strings or integers: count the elements' header lines.
    const lines = reply.split("\r\n").slice(1, -1);
    let elements = 0;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] ?? "";
      if (line.startsWith("$")) {
        elements += 1;
        if (Number(line.slice(1)) >= 0) i += 1;
      } else if (line.startsWith(":") || line.startsWith("+") || line.startsWith("-")) {
        elements += 1;
      }
    }
    return elements >= count;
  }
  return true;
}

export interface RedisServerOptions {
  /** Added after the default arguments. */
  readonly args?: readonly string[];
  /** Run as a sentinel with this config text (port, bind and dir are added). */
  readonly sentinel?: string;
  /** PEM files: serve TLS only, with this certificate; clients are not asked for one. */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca: string };
}

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-redis-"));
  const bin = binary();
  let port = 0;
  let child: ChildProcess | undefined;
  let paused = false;

  const killOnExit = (): void => {
    child?.kill("SIGKILL");
  };
  process.once("exit", killOnExit);

  async function waitForPing(deadline: number): Promise<void> {
    for (;;) {
      try {
        // A server that asks for a password answers too: it is up.
        if (/^(\+PONG|-NOAUTH)/.test(await rawCommand(port, ["PING"], 500, options.tls?.ca))) return;
      } catch {
        // not listening yet
      }
      if (child === undefined || child.exitCode !== null) throw new Error(`redis-server exited during start (port ${port})`);
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  function argv(): string[] {
    const t = options.tls;
    const listen =
      t === undefined
        ? ["--port", String(port)]
        : ["--port", "0", "--tls-port", String(port), "--tls-cert-file", t.cert, "--tls-key-file", t.key, "--tls-ca-cert-file", t.ca, "--tls-auth-clients", "no"];
    const common = [...listen, "--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no", "--loglevel", "warning"];
    if (options.sentinel === undefined) return [...common, "--save", "", "--appendonly", "no", ...(options.args ?? [])];
    const file = join(dir, "sentinel.conf");
    // Written at the first start only: a restarted sentinel keeps what it learnt.
    if (!existsSync(file)) writeFileSync(file, options.sentinel);
    return [file, "--sentinel", ...common, ...(options.args ?? [])];
  }

  async function launch(): Promise<void> {
    const proc = spawn(bin, argv(), { stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    let stderr = "";
    // Redis writes its fatal errors to stdout; keep the tail of both for the error message.
    const keep = (d: Buffer): void => void (stderr = (stderr + d.toString()).slice(-2000));
    proc.stdout?.on("data", keep);
    proc.stderr?.on("data", keep);
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    try {
      await waitForPing(Date.now() + 5000);
    } catch (err) {
      proc.kill("SIGKILL");
      await exited;
      child = undefined;
      throw new Error(`${(err as Error).message}${stderr === "" ? "" : `: ${stderr.trim()}`}`, { cause: err });
    }
  }

  // A free port can be taken between the probe and the bind: try a few.
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 4) {
        rmSync(dir, { recursive: true, force: true });
        process.removeListener("exit", killOnExit);
        throw err;
      }
    }
  }

  async function stop(): Promise<void> {
    const proc = child;
    if (proc === undefined) return;
    child = undefined;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    if (paused) {
      proc.kill("SIGCONT");
      paused = false;
    }
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }

  return {
    get port() {
      return port;
    },
    get url() {
      return `${options.tls === undefined ? "redis" : "rediss"}://127.0.0.1:${port}`;
    },
    get running() {
      return child !== undefined;
    },
    async start() {
      if (child !== undefined) return;
      await launch();
    },
    stop,
    pause() {
      if (child === undefined || paused) return;
      child.kill("SIGSTOP");
      paused = true;
    },
    resume() {
      if (child === undefined || !paused) return;
      child.kill("SIGCONT");
      paused = false;
    },
    async kill() {
      const proc = child;
      if (proc === undefined) return;
      child = undefined;
      paused = false;
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
      proc.kill("SIGKILL");
      await exited;
    },
    command: (...args) => rawCommand(port, args, 2000, options.tls?.ca),
    async close() {
      await stop();
      process.removeListener("exit", killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
