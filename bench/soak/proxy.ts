/**
 * The proxy under soak: the real built binary (`node dist/main.js --config FILE`) as a child
 * process. Its stdout goes to a file, as a container runtime's log driver would take it: a pipe
 * read by this (busy) process could fill, and a write to a full pipe blocks Node's event loop on
 * Linux, which would measure the soak's reader instead of the proxy. The file is read here line by
 * line as it grows:
 * audit records are counted by status and reason and their request ids kept (to match the
 * responses the traffic saw); log events are counted by level and message; every line is scanned
 * for the secrets of the run (keys, client tokens, the session secret).
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, readSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { StringDecoder } from "node:string_decoder";

export interface AuditTally {
  lines: number;
  byStatus: Map<number, number>;
  /** "status reason", e.g. "502 upstream_reset". */
  byStatusReason: Map<string, number>;
  /** Request ids seen, and how many were seen more than once. */
  ids: Set<string>;
  duplicateIds: number;
}

export interface LogTally {
  /** "level msg" → count (audit records excluded). */
  events: Map<string, number>;
  /** Load-shedding changes, with their wall-clock time (ms since the epoch). */
  shedding: { readonly on: boolean; readonly at: number }[];
  /** The first error lines, as written (already redacted by the proxy). */
  errors: string[];
  /** Lines that are not JSON: the proxy promises JSON lines only. */
  notJson: number;
}

export interface SoakProxy {
  readonly pid: number;
  readonly listenPort: number;
  readonly adminPort: number;
  readonly audit: AuditTally;
  readonly log: LogTally;
  /** Lines carrying one of the run's secrets (each cut to its first 200 characters, secret masked). */
  readonly leaks: string[];
  /** Adds a value that must never appear on stdout. */
  addSecret(value: string): void;
  /** How many log lines with this `msg` were read so far. */
  logged(msg: string): number;
  signal(name: NodeJS.Signals): void;
  /** GET on the admin port; rejects after `timeoutMs`. */
  admin(path: string, timeoutMs?: number): Promise<{ status: number; body: string }>;
  /** Resolves with the exit code (or the signal name) once the process has exited and stdout is read. */
  readonly exited: Promise<number | string>;
  stderrTail(): string;
  /** SIGKILL, for a soak that is failing anyway. */
  kill(): void;
}

export interface ProxyStart {
  readonly root: string;
  readonly configFile: string;
  /** Where the proxy's stdout is written (and read back from). */
  readonly stdoutFile: string;
  readonly listenPort: number;
  readonly adminPort: number;
  readonly nodeFlags: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly secrets: readonly string[];
}

function get(port: number, urlPath: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: urlPath, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`admin ${urlPath} timed out`)));
    req.on("error", reject);
  });
}

const bump = <K>(map: Map<K, number>, key: K): void => {
  map.set(key, (map.get(key) ?? 0) + 1);
};

export function startSoakProxy(options: ProxyStart): SoakProxy {
  const main = path.join(options.root, "dist", "main.js");
  const stdoutFd = openSync(options.stdoutFile, "a");
  const child = spawn(process.execPath, [...options.nodeFlags, main, "--config", options.configFile], {
    cwd: options.root,
    env: options.env,
    stdio: ["ignore", stdoutFd, "pipe"],
  });
  closeSync(stdoutFd);
  if (child.pid === undefined) throw new Error("could not start the proxy");
  const secrets = [...options.secrets];
  const audit: AuditTally = { lines: 0, byStatus: new Map(), byStatusReason: new Map(), ids: new Set(), duplicateIds: 0 };
  const log: LogTally = { events: new Map(), shedding: [], errors: [], notJson: 0 };
  const byMsg = new Map<string, number>();
  const leaks: string[] = [];

  const onLine = (line: string): void => {
    if (line === "") return;
    for (const secret of secrets) {
      if (line.includes(secret) && leaks.length < 20) leaks.push(line.slice(0, 200).split(secret).join("<SECRET>"));
    }
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      log.notJson += 1;
      return;
    }
    if (typeof record["msg"] === "string") {
      bump(log.events, `${String(record["level"])} ${record["msg"]}`);
      bump(byMsg, record["msg"]);
      if (record["level"] === "error" && log.errors.length < 20) log.errors.push(line.slice(0, 600));
      if (record["msg"].startsWith("event loop lagging") || record["msg"].startsWith("event loop caught up")) {
        log.shedding.push({ on: record["msg"].startsWith("event loop lagging"), at: Date.parse(String(record["time"])) });
      }
      return;
    }
    if (typeof record["request_id"] !== "string" || typeof record["status"] !== "number") {
      log.notJson += 1;
      return;
    }
    audit.lines += 1;
    const status = record["status"];
    bump(audit.byStatus, status);
    bump(audit.byStatusReason, `${status} ${typeof record["reason"] === "string" ? record["reason"] : "-"}`);
    if (audit.ids.has(record["request_id"])) audit.duplicateIds += 1;
    else audit.ids.add(record["request_id"]);
  };

  // Reads what the proxy appended since the last look; whole lines only.
  const readFd = openSync(options.stdoutFile, "r");
  const decoder = new StringDecoder("utf8");
  const chunk = Buffer.alloc(1 << 20);
  let position = 0;
  let rest = "";
  const drain = (): void => {
    for (;;) {
      const n = readSync(readFd, chunk, 0, chunk.length, position);
      if (n === 0) return;
      position += n;
      const lines = (rest + decoder.write(chunk.subarray(0, n))).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) onLine(line);
    }
  };
  const reader = setInterval(drain, 100);
  let tail = "";
  child.stderr?.setEncoding("utf8").on("data", (text: string) => {
    tail = (tail + text).slice(-4000);
  });
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1))).then((code) => {
    clearInterval(reader);
    drain();
    onLine(rest + decoder.end());
    rest = "";
    closeSync(readFd);
    return code;
  });
  const killOnExit = (): void => {
    child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);
  void exited.then(() => process.removeListener("exit", killOnExit));

  return {
    pid: child.pid,
    listenPort: options.listenPort,
    adminPort: options.adminPort,
    audit,
    log,
    leaks,
    addSecret(value) {
      secrets.push(value);
    },
    logged: (msg) => byMsg.get(msg) ?? 0,
    signal(name) {
      child.kill(name);
    },
    admin: (urlPath, timeoutMs = 5_000) => get(options.adminPort, urlPath, timeoutMs),
    exited,
    stderrTail: () => tail,
    kill: killOnExit,
  };
}
