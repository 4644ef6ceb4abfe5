/**
 * Child processes for the benchmark: pinned to a core with `taskset`, their RSS and CPU time read
 * from `/proc`, and their stdout sent to a line-counting sink (`wc -l`) that never blocks them.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const CLOCK_TICKS = 100;

let tasksetChecked: boolean | undefined;

/** True when `taskset` exists and the machine has at least two cores to split. */
export function canPin(): boolean {
  if (tasksetChecked === undefined) {
    try {
      execFileSync("taskset", ["-p", String(process.pid)], { stdio: "ignore" });
      tasksetChecked = os.availableParallelism() >= 2;
    } catch {
      tasksetChecked = false;
    }
  }
  return tasksetChecked;
}

/** Pins the current process to `core`; false when it cannot. */
export function pinSelf(core: number): boolean {
  if (!canPin()) return false;
  execFileSync("taskset", ["-cp", String(core), String(process.pid)], { stdio: "ignore" });
  return true;
}

/** A free TCP port on 127.0.0.1 (bound and released: the child binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}

export interface Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** The last lines the child wrote on stderr (for error messages). */
  stderrTail(): string;
  /** Lines the child wrote on stdout, once it has exited (`wc -l`); undefined when stdout was not counted. */
  stdoutLines(): Promise<number | undefined>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

export interface SpawnOptions {
  core: number | undefined;
  env?: NodeJS.ProcessEnv;
  countStdout?: boolean;
  cwd?: string;
  /** Told when the child starts and once it has been reaped (CPU accounting). */
  monitor?: { track(pid: number): void; forget(pid: number): void };
}

/**
 * Starts `process.execPath args…` pinned to `core` (when pinning is possible). `countStdout`: the
 * child's stdout goes straight into a `wc -l` process (its audit log), else to /dev/null.
 */
export function spawnNode(args: readonly string[], options: SpawnOptions): Child {
  return spawnPinned(process.execPath, args, options);
}

/** Starts `command args…` pinned to `core` (when pinning is possible); see spawnNode. */
export function spawnPinned(command: string, args: readonly string[], options: SpawnOptions): Child {
  let counter: ChildProcess | undefined;
  let counted: Promise<number | undefined> = Promise.resolve(undefined);
  if (options.countStdout === true) {
    counter = spawn("wc", ["-l"], { stdio: ["pipe", "pipe", "ignore"] });
    let text = "";
    counter.stdout?.setEncoding("utf8").on("data", (s: string) => (text += s));
    counted = new Promise((resolve) => counter?.once("close", () => resolve(Number.parseInt(text.trim(), 10))));
  }
  const pin = options.core !== undefined && canPin();
  const argv = pin ? ["-c", String(options.core), command, ...args] : [...args];
  // taskset execs the command, so the pid is the command's own.
  const proc = spawn(pin ? "taskset" : command, argv, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", counter?.stdin ?? "ignore", "pipe"],
  });
  // The child holds its own copy of the pipe: ours must close for `wc` to see the end.
  counter?.stdin?.destroy();
  let tail = "";
  proc.stderr?.setEncoding("utf8").on("data", (s: string) => {
    tail = (tail + s).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  if (proc.pid === undefined) throw new Error(`could not start ${command}`);
  const pid = proc.pid;
  options.monitor?.track(pid);
  void exited.then(() => options.monitor?.forget(pid));
  return {
    proc,
    pid,
    stderrTail: () => tail,
    stdoutLines: () => counted,
    exited,
    async stop(graceMs = 5000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** The pids whose parent is `pid` (from `/proc/<pid>/stat`). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) out.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

/** The absolute path of `name` on the PATH, or undefined. */
export function onPath(name: string): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(path.delimiter)) {
    if (dir === "") continue;
    const file = path.join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** Resident set size of `pid`, in bytes (`VmRSS`). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return match === null ? NaN : Number(match[1]) * 1024;
}

/** `VmRSS` split into anonymous memory (heap, buffers) and file-backed pages (the node binary's code, shared). */
export function rssParts(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
}

/**
 * rssParts summed over several processes (nginx's master and worker). Pages the processes share
 * are counted once per process, as `ps` and `top` would: an upper bound of what they hold together.
 */
export function rssPartsOf(pids: readonly number[]): { rss: number; anon: number; file: number } {
  const sum = { rss: 0, anon: 0, file: 0 };
  for (const pid of pids) {
    const p = rssParts(pid);
    sum.rss += p.rss;
    sum.anon += p.anon;
    sum.file += p.file;
  }
  return sum;
}

/** User + system CPU seconds `pid` has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may contain spaces) start at ") ".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Samples `pid`'s RSS every `everyMs` until stopped; reports the highest value seen. */
export function sampleRss(pid: number, everyMs = 20): { stop(): { maxBytes: number; samples: number } } {
  let maxBytes = 0;
  let samples = 0;
  const take = (): void => {
    try {
      maxBytes = Math.max(maxBytes, rssBytes(pid));
      samples += 1;
    } catch {
      // The process is gone; the highest value so far stands.
    }
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return { maxBytes, samples };
    },
  };
}

/** CPU seconds of `pid` and of this process over a window, as utilisation of one core. */
export function cpuWindow(pid: number): { stop(): { proxyCpuSeconds: number; proxyUtil: number; benchUtil: number } } {
  const wall = performance.now();
  const proxy = cpuSeconds(pid);
  const self = process.cpuUsage();
  return {
    stop() {
      const seconds = (performance.now() - wall) / 1000;
      const proxyCpuSeconds = cpuSeconds(pid) - proxy;
      const own = process.cpuUsage(self);
      return {
        proxyCpuSeconds,
        proxyUtil: proxyCpuSeconds / seconds,
        benchUtil: (own.user + own.system) / 1e6 / seconds,
      };
    },
  };
}

/**
 * Share of all cores used by processes other than this one and `pids` over a window: how much
 * someone else's work could have disturbed a measurement taken in it.
 */
export function otherShareWindow(pids: readonly number[]): { stop(): number } {
  const read = (): { busy: number; total: number; ours: number } => {
    const m = machineJiffies();
    let ours = ownJiffies();
    for (const pid of pids) {
      try {
        ours += cpuSeconds(pid) * CLOCK_TICKS;
      } catch {
        // Gone; counted in cutime once reaped.
      }
    }
    return { ...m, ours };
  };
  const start = read();
  return {
    stop() {
      const end = read();
      const total = end.total - start.total;
      return total > 0 ? Math.max(0, end.busy - start.busy - (end.ours - start.ours)) / total : 0;
    },
  };
}

/** Busy and total jiffies of the whole machine (`/proc/stat`). */
function machineJiffies(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = user! + nice! + system! + irq! + softirq! + steal!;
  return { busy, total: busy + idle! + iowait! };
}

/** This process's own CPU plus that of the children it has waited for, in jiffies. */
function ownJiffies(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
}

/**
 * How busy the machine was with processes other than the benchmark and its children: the share of
 * all cores, on average and in the worst `everyMs` window. A shared machine makes every number
 * noisy; this says how much. `track(pid)` adds a child whose CPU is not yet in `cutime`.
 */
export function noiseMonitor(everyMs = 1000) {
  const live = new Map<number, { start: number; last: number }>();
  let deadJiffies = 0;
  const children = (): number => {
    let sum = deadJiffies;
    for (const [pid, entry] of live) {
      try {
        entry.last = cpuSeconds(pid) * CLOCK_TICKS;
      } catch {
        // Gone: its time is now in cutime (once reaped) or lost; keep the last reading.
      }
      sum += entry.last - entry.start;
    }
    return sum;
  };
  let prev = { ...machineJiffies(), own: ownJiffies(), kids: 0 };
  const first = prev;
  let worst = 0;
  const timer = setInterval(() => {
    const now = { ...machineJiffies(), own: ownJiffies(), kids: children() };
    const other = now.busy - prev.busy - (now.own - prev.own) - (now.kids - prev.kids);
    const total = now.total - prev.total;
    if (total > 0) worst = Math.max(worst, Math.max(0, other) / total);
    prev = now;
  }, everyMs);
  timer.unref();
  return {
    /** Counts `pid`'s CPU time from now until `forget(pid)`. */
    track(pid: number): void {
      try {
        const at = cpuSeconds(pid) * CLOCK_TICKS;
        live.set(pid, { start: at, last: at });
      } catch {
        // Already gone.
      }
    },
    /** The child was stopped and reaped: its time is in `cutime` from now on. */
    forget(pid: number): void {
      const entry = live.get(pid);
      if (entry === undefined) return;
      // cutime now holds its whole life; `children()` must stop counting the part it counted.
      deadJiffies -= entry.start;
      live.delete(pid);
    },
    stop(): { averageOtherShare: number; worstOtherShare: number } {
      clearInterval(timer);
      const now = { ...machineJiffies(), own: ownJiffies(), kids: children() };
      const other = now.busy - first.busy - (now.own - first.own) - (now.kids - first.kids);
      return { averageOtherShare: Math.max(0, other) / Math.max(1, now.total - first.total), worstOtherShare: worst };
    },
  };
}

/** Share of all cores that processes other than this one used over `ms`. */
export async function otherLoad(ms: number): Promise<number> {
  const before = { ...machineJiffies(), own: ownJiffies() };
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = { ...machineJiffies(), own: ownJiffies() };
  const total = after.total - before.total;
  return total > 0 ? Math.max(0, after.busy - before.busy - (after.own - before.own)) / total : 0;
}
