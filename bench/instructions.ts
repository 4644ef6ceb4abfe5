/**
 * `npm run bench:instructions`: instructions per request, counted by valgrind's callgrind, for
 * mythiq-proxy, for each removal experiment (bench/experiments/removals.ts) and for the bare
 * http-proxy-3 pass-through. Instruction counts do not depend on what else the machine is doing,
 * so they price a component of a few µs where CPU time per request (bench/components.ts) drifts by
 * more than that between runs on a shared machine. They count user space only: kernel time (the
 * writes and wake-ups) is not in them.
 *
 * For each system: the process starts under valgrind with instrumentation off, is warmed up with
 * WARMUP requests of each kind (so V8 has optimised the hot path), then instrumentation is turned
 * on (`callgrind_control -i on`) for exactly MEASURED requests of one kind at a time, counters
 * zeroed before and dumped after each. Every system is measured twice, in rotating order.
 *
 *   npm run bench:instructions [-- --only=audit,metrics] [-- --requests=1000] [-- --repeats=1]
 *
 * Writes bench/results/instructions.json and prints a Markdown table.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { APP_MODELS, KEY_ENV, mainConfig, newToken } from "./config.ts";
import { connect, encodeRequest, sleep, type Connection } from "./load.ts";
import { freePort } from "./proc.ts";
import { getModels, postImage } from "./requests.ts";
import { NOT_COMPONENTS, REMOVALS } from "./experiments/removals.ts";
import { startUpstream } from "./upstream.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS = path.join(ROOT, "bench", "results");
const argv = process.argv.slice(2);
const option = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
// `--only=` (empty): the unmodified proxy and bare only.
const ONLY = option("only")?.split(",").filter((name) => name !== "");
const MEASURED = Number(option("requests") ?? 1000);
const WARMUP = 3000;
const CONNECTIONS = 4;
const REPEATS = Number(option("repeats") ?? 1);
for (const name of ONLY ?? []) if (REMOVALS[name] === undefined) throw new Error(`unknown removal ${name}`);

const removals = ONLY ?? Object.keys(REMOVALS).filter((r) => !NOT_COMPONENTS.has(r));
// "all": every component at once (the forwarder replacement includes the header rebuild and the
// relay); what it leaves is the pipeline's glue, the listener and Node's server side.
const ALL = removals.filter((r) => r !== "header-rebuild" && r !== "relay").join(",");
const systems = ["mythiq", ...removals.map((r) => `mythiq-${r}`), ...(ONLY === undefined ? ["mythiq-all"] : []), "bare"];

const key = `mq-bench-${Math.random().toString(36).slice(2)}`;
const app = newToken();
const bulk = newToken();
const upstream = await startUpstream(key);
const dir = mkdtempSync(path.join(os.tmpdir(), "mythiq-instr-"));
const requests = {
  get: getModels(app.token),
  post: postImage(app.token, APP_MODELS[0]!),
};

interface Running {
  readonly proc: ChildProcess;
  readonly port: number;
  readonly outFile: string;
}

async function start(system: string, round: number): Promise<Running> {
  const port = await freePort();
  const outFile = path.join(dir, `${system}.${round}.cg`);
  const valgrind = ["--tool=callgrind", "--instr-atstart=no", `--callgrind-out-file=${outFile}`];
  let args: string[];
  const env: NodeJS.ProcessEnv = { ...process.env, [KEY_ENV]: key, BENCH_KEY: key };
  if (system === "bare") {
    args = [...valgrind, process.execPath, "--max-semi-space-size=8", path.join(ROOT, "bench", "peers", "bare-proxy.ts"), String(port), String(upstream.port)];
  } else {
    const admin = await freePort();
    const file = path.join(dir, `${system}.yaml`);
    writeFileSync(file, mainConfig({ listen: port, admin, upstream: upstream.port }, { app: app.hash, bulk: bulk.hash }));
    args = [...valgrind, process.execPath, "--max-semi-space-size=8", path.join(ROOT, "dist", "main.js"), "--config", file];
    // Every mythiq-proxy variant, the unmodified one included, runs without load shedding (it
    // would answer 503 to a process slowed 50-fold by valgrind) and with the module hooks loaded.
    const removal = system.slice("mythiq-".length);
    env["BENCH_REMOVE"] = system === "mythiq" ? "shedding" : `shedding,${removal === "all" ? ALL : removal}`;
    env["NODE_OPTIONS"] = `--import=${path.join(ROOT, "bench", "experiments", "register.ts")}`;
  }
  const proc = spawn("valgrind", args, { cwd: ROOT, env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr?.setEncoding("utf8").on("data", (s: string) => (stderr = (stderr + s).slice(-4000)));
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      const conn = await connect(port);
      conn.close();
      break;
    } catch {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`${system} did not start under valgrind:\n${stderr}`);
      await sleep(200);
    }
  }
  return { proc, port, outFile };
}

/** Sends exactly `count` requests over CONNECTIONS keep-alive connections; all must be 200. */
async function send(port: number, kind: "get" | "post", count: number, warmup = false): Promise<void> {
  const bytes = encodeRequest(requests[kind], port);
  let left = count;
  const conns: Connection[] = await Promise.all(Array.from({ length: CONNECTIONS }, () => connect(port)));
  await Promise.all(
    conns.map(async (conn) => {
      while (left > 0) {
        left -= 1;
        const response = await conn.request(bytes);
        if (response.status === 200) continue;
        // Under valgrind the proxy may shed load (503 overloaded) while V8 compiles: not counted.
        if (warmup && response.status === 503) {
          left += 1;
          await sleep(50);
          continue;
        }
        throw new Error(`${system(port)} ${kind}: status ${response.status}`);
      }
    }),
  );
  for (const conn of conns) conn.close();
}

const names = new Map<number, string>();
const system = (port: number): string => names.get(port) ?? String(port);

function control(pid: number, ...args: string[]): void {
  execFileSync("callgrind_control", [...args, String(pid)], { stdio: "ignore" });
}

/** Total instructions (Ir) in the newest dump of `outFile`. */
function lastDumpTotal(outFile: string, before: ReadonlySet<string>): number {
  const base = path.basename(outFile);
  const dumps = readdirSync(dir).filter((f) => f.startsWith(base) && !before.has(f));
  if (dumps.length !== 1) throw new Error(`expected one new dump of ${base}, found ${dumps.join(", ") || "none"}`);
  const text = readFileSync(path.join(dir, dumps[0]!), "utf8");
  const line = /^(?:summary|totals): (\d+)/m.exec(text);
  if (line === null) throw new Error(`no totals in ${dumps[0]}`);
  return Number(line[1]);
}

async function measure(system: string, round: number): Promise<{ get: number; post: number }> {
  const running = await start(system, round);
  names.set(running.port, system);
  const pid = running.proc.pid!;
  try {
    await send(running.port, "get", WARMUP, true);
    await send(running.port, "post", WARMUP, true);
    const result = { get: 0, post: 0 };
    for (const kind of ["get", "post"] as const) {
      const before = new Set(readdirSync(dir));
      control(pid, "-i", "on");
      control(pid, "-z");
      await send(running.port, kind, MEASURED);
      control(pid, "-d");
      control(pid, "-i", "off");
      result[kind] = lastDumpTotal(running.outFile, before) / MEASURED;
    }
    return result;
  } finally {
    running.proc.kill("SIGKILL");
    await new Promise((r) => running.proc.once("exit", r));
  }
}

execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
const results: Record<string, { get: number[]; post: number[] }> = {};
try {
  for (let round = 0; round < REPEATS; round++) {
    const order = round % 2 === 0 ? systems : [...systems].reverse();
    for (const system of order) {
      const r = await measure(system, round);
      process.stderr.write(`${system} round ${round + 1}: GET ${(r.get / 1000).toFixed(0)}k, POST ${(r.post / 1000).toFixed(0)}k instructions per request\n`);
      const entry = (results[system] ??= { get: [], post: [] });
      entry.get.push(r.get);
      entry.post.push(r.post);
    }
  }
} finally {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const k = (n: number): string => `${(n / 1000).toFixed(1)}k`;
const full = results["mythiq"]!;
const bare = results["bare"]!;
const lines = [
  `Instructions per request (callgrind, user space, mean of ${REPEATS} runs of ${MEASURED} requests after ${WARMUP} warm-up requests of each kind):`,
  `mythiq-proxy GET ${k(mean(full.get))}, POST ${k(mean(full.post))}; bare http-proxy-3 GET ${k(mean(bare.get))}, POST ${k(mean(bare.post))}.`,
  "",
  "| removed | GET instructions saved | POST instructions saved | runs (GET) |",
  "| --- | ---: | ---: | --- |",
  ...removals.map((r) => {
    const x = results[`mythiq-${r}`]!;
    return `| ${r} | ${k(mean(full.get) - mean(x.get))} | ${k(mean(full.post) - mean(x.post))} | ${x.get.map(k).join(", ")} |`;
  }),
  ...(results["mythiq-all"] === undefined
    ? []
    : [`| all of the above at once | ${k(mean(full.get) - mean(results["mythiq-all"].get))} | ${k(mean(full.post) - mean(results["mythiq-all"].post))} | ${results["mythiq-all"].get.map(k).join(", ")} |`]),
  `| (bare http-proxy-3: everything) | ${k(mean(full.get) - mean(bare.get))} | ${k(mean(full.post) - mean(bare.post))} | ${bare.get.map(k).join(", ")} |`,
];
mkdirSync(RESULTS, { recursive: true });
writeFileSync(path.join(RESULTS, "instructions.json"), JSON.stringify({ date: new Date().toISOString(), measured: MEASURED, warmup: WARMUP, results }, null, 2) + "\n");
process.stdout.write(`${lines.join("\n")}\n`);
process.exit(0);
