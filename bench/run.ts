/**
 * `npm run bench`: mythiq-proxy against a bare http-proxy-3 pass-through, side by side, in one run.
 *
 *   npm run bench                 full run (about 4 minutes), writes BENCHMARKS.md and bench/results/latest.json
 *   npm run bench -- --quick      shorter run, writes bench/results/quick.json only
 *   npm run bench -- --profile    CPU profiles (node --cpu-prof) of both proxies under load,
 *                                 summarised into bench/results/profile.md
 *
 * Run from an exported tree (no .git), set BENCH_COMMIT=<sha> to name the commit in the report.
 *
 * Layout on a machine with two or more cores: this process (load generator and upstream) on core 0,
 * the proxy under test on core 1; both proxies run all along and take turns, several alternating
 * rounds, and the medians are reported. With one core nothing is pinned (and the report says so).
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { stripTypeScriptTypes } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { APP_MODELS, KEY_ENV, mainConfig, newToken, WIDE, wideConfig, type Ports } from "./config.ts";
import { encodeRequest, sleep, type RequestSpec } from "./load.ts";
import { freePort, noiseMonitor, otherLoad, otherShareWindow, pinSelf, rssParts, spawnNode, type Child } from "./proc.ts";
import { compareMarkdown, profileMarkdown, summarizeProfile } from "./profile-summary.ts";
import { atLeast, atMost, consoleTable, fmt, keptNotes, markdownTable, median, type Target } from "./report.ts";
import {
  concurrentHold,
  download,
  fixedRate,
  getStatus,
  once,
  scrape,
  sendAll,
  serverSentEvents,
  throughput,
  upload,
  waitReady,
  type BulkResult,
  type HoldResult,
  type LatencyRound,
  type ProxyUnderTest,
  type ThroughputRound,
} from "./scenarios.ts";
import { BULK_BYTES, startUpstream, type Upstream } from "./upstream.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS = path.join(ROOT, "bench", "results");
const MAIN_JS = path.join(ROOT, "dist", "main.js");

const argv = process.argv.slice(2);
const args = new Set(argv);
const QUICK = args.has("--quick");
const PROFILE = args.has("--profile");
/**
 * Node flags for both proxies (so they stay comparable): the ones the Dockerfile's ENTRYPOINT ships
 * with, unless `--node-flag=FLAG` (repeatable) names others.
 */
const GIVEN_FLAGS = argv.filter((a) => a.startsWith("--node-flag=")).map((a) => a.slice("--node-flag=".length));
const NODE_FLAGS = GIVEN_FLAGS.length > 0 ? GIVEN_FLAGS : shippedNodeFlags();
const unknown = argv.filter((a) => a !== "--quick" && a !== "--profile" && !a.startsWith("--node-flag="));
if (unknown.length > 0) {
  process.stderr.write(`bench: unknown argument ${unknown.join(" ")}\nusage: npm run bench [-- --quick | --profile] [--node-flag=FLAG ...]\n`);
  process.exit(2);
}

/** The flags between `node` and `dist/main.js` in the Dockerfile's ENTRYPOINT. */
function shippedNodeFlags(): string[] {
  const dockerfile = readFileSync(new URL("../Dockerfile", import.meta.url), "utf8");
  const entry = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
  const argvOfImage = entry === undefined ? [] : (JSON.parse(entry) as string[]);
  return argvOfImage.slice(1, argvOfImage.indexOf("dist/main.js"));
}

const PLAN = QUICK
  ? { rounds: 2, warmupMs: 300, durationMs: 1500, latencyMs: 2000, connections: 32, rate: 500, sseEvents: 50, holdMs: 3000, holdCount: 2000, starts: 2, scrapes: 5 }
  : { rounds: 5, warmupMs: 500, durationMs: 3000, latencyMs: 4000, connections: 32, rate: 500, sseEvents: 100, holdMs: 10_000, holdCount: 2000, starts: 5, scrapes: 10 };

const BENCH_CORE = 0;
const PROXY_CORE = 1;

const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** CPU used by processes other than the benchmark's, for the whole run. */
const monitor = noiseMonitor();

interface Mythiq extends ProxyUnderTest {
  readonly child: Child;
  readonly adminPort: number;
}

/** Starts dist/main.js on `config` (core 1), audit lines counted; resolves once /readyz is 200. */
async function startMythiq(configText: string, dir: string, name: string, key: string, extraNodeArgs: readonly string[] = []): Promise<Mythiq & { readyMs: number }> {
  const listen = await freePort();
  const admin = await freePort();
  const text = configText
    .replace(/^listen: \{[^}]*\}/m, `listen: { host: 127.0.0.1, port: ${listen} }`)
    .replace(/^admin: \{[^}]*\}/m, `admin: { host: 127.0.0.1, port: ${admin} }`);
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, text);
  const startedAt = performance.now();
  const child = spawnNode([...NODE_FLAGS, ...extraNodeArgs, MAIN_JS, "--config", file], {
    core: PROXY_CORE,
    cwd: ROOT,
    env: { ...process.env, [KEY_ENV]: key },
    countStdout: true,
    monitor,
  });
  const readyMs = await Promise.race([waitReady(admin, startedAt), child.exited.then(() => undefined)]);
  if (readyMs === undefined) {
    await child.stop(1000);
    throw new Error(`mythiq-proxy (${name}) did not become ready:\n${child.stderrTail()}`);
  }
  return { name: "mythiq", port: listen, pid: child.pid, child, adminPort: admin, readyMs };
}

let bareScript: string | undefined;

/**
 * bench/bare-proxy.ts as plain JavaScript in `dir`. Run as .ts, Node would load its type stripper
 * into the baseline process (about 17 MB of RSS that mythiq-proxy, built to dist/, does not carry),
 * which would flatter mythiq-proxy in every memory comparison.
 */
function bareProxyScript(dir: string): string {
  if (bareScript !== undefined) return bareScript;
  const source = readFileSync(path.join(ROOT, "bench", "bare-proxy.ts"), "utf8");
  // The copy lives outside the project, so the package is imported by its resolved location.
  const js = stripTypes(source).replace(`from "http-proxy-3"`, `from ${JSON.stringify(import.meta.resolve("http-proxy-3"))}`);
  bareScript = path.join(dir, "bare-proxy.mjs");
  writeFileSync(bareScript, js);
  return bareScript;
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

/** Starts the bare http-proxy-3 pass-through (core 1). */
async function startBare(upstream: Upstream, dir: string, key: string, extraNodeArgs: readonly string[] = []): Promise<ProxyUnderTest & { child: Child }> {
  const port = await freePort();
  const child = spawnNode([...NODE_FLAGS, ...extraNodeArgs, bareProxyScript(dir), String(port), String(upstream.port)], {
    core: PROXY_CORE,
    cwd: ROOT,
    env: { ...process.env, BENCH_KEY: key },
    monitor,
  });
  const startedAt = performance.now();
  while ((await getStatus(port, "/v1/models")) === undefined) {
    if (performance.now() - startedAt > 10_000 || child.proc.exitCode !== null) throw new Error(`bare proxy did not start:\n${child.stderrTail()}`);
    await sleep(10);
  }
  return { name: "bare", port, pid: child.pid, child };
}

/** The commit measured, and whether src/ differs from it. */
function commitOf(): string {
  try {
    const git = (...argv: string[]): string => execFileSync("git", argv, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const dirty = git("status", "--porcelain", "--", "src") !== "";
    return git("rev-parse", "--short", "HEAD") + (dirty ? " + uncommitted src changes" : "");
  } catch {
    // Not a git checkout (an exported tree): BENCH_COMMIT can say which commit it was.
    return process.env["BENCH_COMMIT"] ?? "unknown";
  }
}

function machine(): Record<string, string | number> {
  const cpus = os.cpus();
  const commit = commitOf();
  return {
    cpu: cpus[0]?.model ?? "unknown",
    cores: os.availableParallelism(),
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    commit,
  };
}

interface Pair<T> {
  readonly bare: T;
  readonly mythiq: T;
}

/** Share of all cores others may use during a round before it is run again (10 % = a fifth of one core on two). */
const NOISY = 0.1;

/**
 * Alternating rounds (bare first on even rounds, mythiq first on odd ones). A round during which
 * other processes used more than NOISY of the machine is run again, at most `rounds` extra times in
 * all; `repeated` says how many were.
 */
async function alternate<T>(
  rounds: number,
  proxies: Pair<ProxyUnderTest>,
  run: (p: ProxyUnderTest) => Promise<T>,
  label: string,
): Promise<{ rounds: Pair<T>[]; repeated: number; noise: number[] }> {
  const out: Pair<T>[] = [];
  const noise: number[] = [];
  let repeated = 0;
  for (let i = 0; out.length < rounds; i++) {
    const order = i % 2 === 0 ? (["bare", "mythiq"] as const) : (["mythiq", "bare"] as const);
    const got: Partial<Record<"bare" | "mythiq", T>> = {};
    const window = otherShareWindow([proxies.bare.pid, proxies.mythiq.pid]);
    for (const name of order) got[name] = await run(proxies[name]);
    const other = window.stop();
    if (other > NOISY && repeated < rounds) {
      repeated += 1;
      log(`  ${label} round ${out.length + 1}/${rounds}: other processes used ${fmt.pct(other)} of the machine, running it again`);
      continue;
    }
    noise.push(other);
    out.push({ bare: got.bare!, mythiq: got.mythiq! });
    log(`  ${label} round ${out.length}/${rounds} done (other load ${fmt.pct(other)})`);
  }
  return { rounds: out, repeated, noise };
}

function throughputSummary({ rounds, repeated, noise }: { rounds: readonly Pair<ThroughputRound>[]; repeated: number; noise: number[] }) {
  const pick = (name: "bare" | "mythiq", f: (r: ThroughputRound) => number): number => median(rounds.map((r) => f(r[name])));
  const side = (name: "bare" | "mythiq") => ({
    rps: pick(name, (r) => r.rps),
    proxyUtil: pick(name, (r) => r.proxyUtil),
    benchUtil: pick(name, (r) => r.benchUtil),
    cpuUsPerRequest: pick(name, (r) => r.cpuUsPerRequest),
    non2xx: rounds.reduce((n, r) => n + Object.entries(r[name].statuses).filter(([s]) => !s.startsWith("2")).reduce((a, [, c]) => a + c, 0), 0),
    errors: rounds.reduce((n, r) => n + r[name].errors, 0),
  });
  return {
    bare: side("bare"),
    mythiq: side("mythiq"),
    ratio: median(rounds.map((r) => r.mythiq.rps / r.bare.rps)),
    /** What the ratio would be with both proxies CPU-bound: less sensitive to a busy machine than req/s. */
    cpuRatio: median(rounds.map((r) => r.bare.cpuUsPerRequest / r.mythiq.cpuUsPerRequest)),
    repeated,
    noise,
    rounds,
  };
}

function latencySummary({ rounds, repeated, noise }: { rounds: readonly Pair<LatencyRound>[]; repeated: number; noise: number[] }) {
  const side = (name: "bare" | "mythiq") => ({
    p50: median(rounds.map((r) => r[name].p50)),
    p99: median(rounds.map((r) => r[name].p99)),
    max: Math.max(...rounds.map((r) => r[name].max)),
    errors: rounds.reduce((n, r) => n + r[name].errors, 0),
    non2xx: rounds.reduce((n, r) => n + Object.entries(r[name].statuses).filter(([s]) => !s.startsWith("2")).reduce((a, [, c]) => a + c, 0), 0),
  });
  return {
    bare: side("bare"),
    mythiq: side("mythiq"),
    addedP50: median(rounds.map((r) => r.mythiq.p50 - r.bare.p50)),
    addedP99: median(rounds.map((r) => r.mythiq.p99 - r.bare.p99)),
    repeated,
    noise,
    rounds,
  };
}

/** A 200-byte JSON image request naming `model`. */
function imageBody(model: string): Buffer {
  const base = { model, prompt: "", n: 1, size: "1024x1024", response_format: "url" };
  const empty = Buffer.byteLength(JSON.stringify(base));
  return Buffer.from(JSON.stringify({ ...base, prompt: "a lighthouse on a cliff at dusk, oil painting ".repeat(10).slice(0, 200 - empty) }));
}

function getModels(token: string): RequestSpec {
  return { method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${token}`, accept: "application/json", "user-agent": "mythiq-bench/1" } };
}

function postImage(token: string, model: string): RequestSpec {
  return {
    method: "POST",
    path: "/v1/images/generations",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", accept: "application/json", "user-agent": "mythiq-bench/1" },
    body: imageBody(model),
  };
}

/** Whether a client with `models` can send a body yet (the model check landed), else why not. */
async function modelCheckWorks(proxy: ProxyUnderTest, token: string, model = APP_MODELS[0]!): Promise<{ works: boolean; status: number; body: string }> {
  const answer = await once(proxy.port, postImage(token, model));
  return { works: answer.status === 200, ...answer };
}

async function scrapeRun(upstream: Upstream, dir: string, key: string, notes: string[]) {
  const tokens = Array.from({ length: WIDE.clients }, () => newToken());
  // Ports here are placeholders: startMythiq picks free ones.
  const ports: Ports = { listen: 1, admin: 2, upstream: upstream.port };
  const proxy = await startMythiq(wideConfig(ports, tokens.map((t) => t.hash)), dir, "wide", key);
  let refused: string | undefined;
  try {
    const first = await modelCheckWorks(proxy, tokens[0]!.token, WIDE.models[0]);
    refused = `${first.status} ${/"reason":"([a-z_]+)"/.exec(first.body)?.[1] ?? ""}`.trim();
    if (first.works) {
      const requests: Buffer[] = [];
      tokens.forEach(({ token }) => {
        for (const route of WIDE.routes) {
          for (const model of WIDE.models) {
            const [method, target] = route.split(" ") as [string, string];
            requests.push(
              encodeRequest(
                { method, path: target, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: Buffer.from(JSON.stringify({ model, prompt: "x" })) },
                proxy.port,
              ),
            );
          }
        }
      });
      const started = performance.now();
      const statuses = await sendAll(proxy.port, requests, 32);
      log(`  scrape: ${requests.length} requests through the proxy in ${((performance.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(statuses)}`);
      const result = await scrape(proxy.adminPort, PLAN.scrapes);
      return { source: "proxy traffic", statuses, ...result };
    }
  } finally {
    await proxy.child.stop();
  }
  // The model check is not there yet: the same series, made by the proxy's own metrics module.
  notes.push(
    `/metrics scrape: a client with \`models\` cannot send bodies yet (the proxy answers ${refused ?? "?"}), so the 50 × 10 × 20 series were made by bench/metrics-fixture.ts (the proxy's metrics module and admin server from dist/, fed \`requestFinished\` directly) instead of by traffic. It switches to real traffic once model checking lands.`,
  );
  const admin = await freePort();
  const fixture = spawnNode([path.join(ROOT, "bench", "metrics-fixture.ts"), String(admin)], { core: PROXY_CORE, cwd: ROOT, monitor });
  try {
    const startedAt = performance.now();
    while ((await getStatus(admin, "/healthz")) !== 200) {
      if (performance.now() - startedAt > 20_000 || fixture.proc.exitCode !== null) throw new Error(`metrics fixture did not start:\n${fixture.stderrTail()}`);
      await sleep(20);
    }
    const result = await scrape(admin, PLAN.scrapes);
    return { source: "bench/metrics-fixture.ts (fallback)", statuses: {}, ...result };
  } finally {
    await fixture.stop();
  }
}

async function startupRun(dir: string, key: string, config: string) {
  const ready: number[] = [];
  let idle = { rss: NaN, anon: NaN, file: NaN };
  for (let i = 0; i < PLAN.starts; i++) {
    const proxy = await startMythiq(config, dir, `start-${i}`, key);
    ready.push(proxy.readyMs);
    if (i === 0) {
      await sleep(1000);
      idle = rssParts(proxy.pid);
    }
    await proxy.child.stop();
  }
  return { readyMs: median(ready), readyAll: ready, idleRss: idle.rss, idleAnon: idle.anon, idleFile: idle.file };
}

async function profileRun(upstream: Upstream, dir: string, key: string, config: string, tokens: { app: string; bulk: string }): Promise<void> {
  mkdirSync(RESULTS, { recursive: true });
  const profDir = mkdtempSync(path.join(os.tmpdir(), "mythiq-prof-"));
  const seconds = (PLAN.durationMs * 3) / 1000;
  const sections: string[] = [
    "# CPU profiles under load",
    "",
    `Generated by \`npm run bench -- --profile\` on ${new Date().toISOString()}: \`node --cpu-prof\` of each proxy process`,
    `while the load generator keeps ${PLAN.connections} keep-alive connections busy for 1 + ${seconds} s (one process per`,
    "profile; start-up is left out). µs/request divides each row by the requests served while profiled.",
    "",
  ];
  type Case = { id: string; name: string; bare: boolean; post: boolean };
  const cases: Case[] = [
    { id: "mythiq-get", name: "mythiq-proxy, GET /v1/models", bare: false, post: false },
    { id: "bare-get", name: "bare http-proxy-3, GET /v1/models", bare: true, post: false },
    { id: "mythiq-post", name: "mythiq-proxy, POST /v1/images/generations (200 B JSON)", bare: false, post: true },
    { id: "bare-post", name: "bare http-proxy-3, POST /v1/images/generations (200 B JSON)", bare: true, post: true },
  ];
  const summaries = new Map<string, ReturnType<typeof summarizeProfile>>();
  const detail: string[] = [];
  for (const c of cases) {
    const sub = path.join(profDir, c.id);
    const nodeArgs = ["--cpu-prof", "--cpu-prof-dir", sub];
    const proxy = c.bare ? await startBare(upstream, dir, key, nodeArgs) : await startMythiq(config, dir, c.id, key, nodeArgs);
    let postToken = tokens.app;
    if (c.post && !(await modelCheckWorks(proxy, tokens.app)).works) {
      postToken = tokens.bulk;
      if (!c.bare) c.name += " — client without `models` (model check not in place yet)";
    }
    const request = c.post ? postImage(postToken, APP_MODELS[0]!) : getModels(tokens.app);
    const result = await throughput(proxy, request, { connections: PLAN.connections, warmupMs: 1000, durationMs: PLAN.durationMs * 3 });
    await proxy.child.stop(10_000);
    const file = existsSync(sub) ? readdirSync(sub).find((f) => f.endsWith(".cpuprofile")) : undefined;
    log(`  profiled ${c.name}: ${fmt.int(result.rps)} req/s, ${result.cpuUsPerRequest.toFixed(0)} µs CPU/request, ${file ?? "no profile written"}`);
    if (file === undefined) continue;
    const profile = JSON.parse(readFileSync(path.join(sub, file), "utf8")) as Parameters<typeof summarizeProfile>[0];
    const summary = summarizeProfile(profile, { requests: result.total });
    summaries.set(c.id, summary);
    detail.push(profileMarkdown(summary, `${c.name}: ${fmt.int(result.rps)} req/s, ${result.cpuUsPerRequest.toFixed(0)} µs proxy CPU per request`));
  }
  for (const [what, base, other] of [
    ["GET /v1/models", "bare-get", "mythiq-get"],
    ["POST /v1/images/generations", "bare-post", "mythiq-post"],
  ] as const) {
    const a = summaries.get(base);
    const b = summaries.get(other);
    if (a !== undefined && b !== undefined) sections.push(compareMarkdown(`Where mythiq-proxy spends more than the bare pass-through: ${what}`, a, b));
  }
  sections.push(...detail);
  writeFileSync(path.join(RESULTS, "profile.md"), sections.join("\n"));
  log(`\nwrote bench/results/profile.md (raw profiles in ${profDir})`);
}

async function main(): Promise<number> {
  if (!existsSync(MAIN_JS)) throw new Error("dist/main.js is missing: run `npm run build` (npm run bench does)");
  // Before pinning: afterwards the process sees only its own core.
  const meta = machine();
  const pinned = pinSelf(BENCH_CORE);
  log(`mythiq-proxy bench${QUICK ? " (quick)" : ""}${PROFILE ? " (profile)" : ""}: ${meta.cpu}, ${meta.cores} cores, Node ${process.version}`);
  log(pinned ? `pinned: load generator + upstream on core ${BENCH_CORE}, proxy under test on core ${PROXY_CORE}` : "not pinned (needs taskset and 2 cores)");

  const before = await otherLoad(1000);
  if (before > 0.1) {
    log(`warning: other processes are using ${fmt.pct(before)} of this machine's CPU: the numbers will be noisy (the report says how noisy)`);
  }

  const key = randomBytes(32).toString("base64url");
  const dir = mkdtempSync(path.join(os.tmpdir(), "mythiq-bench-"));
  const app = newToken();
  const bulk = newToken();
  const upstream = await startUpstream(key);
  const config = mainConfig({ listen: 1, admin: 2, upstream: upstream.port }, { app: app.hash, bulk: bulk.hash });
  const notes: string[] = [];

  try {
    if (PROFILE) {
      await profileRun(upstream, dir, key, config, { app: app.token, bulk: bulk.token });
      return 0;
    }

    log("\nstart to ready (env key), idle RSS");
    const startup = await startupRun(dir, key, config);
    log(`  ready in ${startup.readyAll.map((v) => v.toFixed(0)).join(", ")} ms; idle RSS ${fmt.mb(startup.idleRss)}`);

    const mythiq = await startMythiq(config, dir, "main", key);
    const bare = await startBare(upstream, dir, key);
    const proxies = { bare, mythiq };

    for (const p of [bare, mythiq]) {
      const answer = await once(p.port, getModels(app.token));
      if (answer.status !== 200) throw new Error(`${p.name}: GET /v1/models answered ${answer.status}: ${answer.body}`);
    }
    const check = await modelCheckWorks(mythiq, app.token);
    const postToken = check.works ? app.token : bulk.token;
    const postMode = check.works ? "model check (client with `models`)" : "FALLBACK: client without `models` (no model check)";
    if (!check.works) {
      notes.push(
        `POST /v1/images/generations: a client with \`models\` gets ${check.status} (${/"reason":"([a-z_]+)"/.exec(check.body)?.[1] ?? "?"}) for bodies, so the POST runs use a client without \`models\`: the model check is not measured yet. The bench switches to the client with \`models\` by itself once it answers 200.`,
      );
      log(`  note: POST with model check answers ${check.status}; measuring POST with a client without models`);
    }
    const post = postImage(postToken, APP_MODELS[0]!);
    const missingBefore = upstream.counts.withoutKey;

    // Warm both processes (JIT, pools) before anything is counted.
    for (const p of [bare, mythiq]) {
      await throughput(p, getModels(app.token), { connections: PLAN.connections, warmupMs: 0, durationMs: 1000 });
      await throughput(p, post, { connections: PLAN.connections, warmupMs: 0, durationMs: 500 });
    }

    const tput = { connections: PLAN.connections, warmupMs: PLAN.warmupMs, durationMs: PLAN.durationMs };
    log(`\nthroughput GET /v1/models: ${PLAN.rounds} rounds × ${PLAN.durationMs / 1000} s, ${PLAN.connections} connections`);
    const getT = throughputSummary(await alternate(PLAN.rounds, proxies, (p) => throughput(p, getModels(app.token), tput), "GET"));
    log(`  bare ${fmt.int(getT.bare.rps)} req/s, mythiq ${fmt.int(getT.mythiq.rps)} req/s, ratio ${fmt.ratio(getT.ratio)}`);

    log(`\nthroughput POST /v1/images/generations (${post.body?.length} B JSON, ${postMode})`);
    const postT = throughputSummary(await alternate(PLAN.rounds, proxies, (p) => throughput(p, post, tput), "POST"));
    log(`  bare ${fmt.int(postT.bare.rps)} req/s, mythiq ${fmt.int(postT.mythiq.rps)} req/s, ratio ${fmt.ratio(postT.ratio)}`);

    log(`\nlatency at ${PLAN.rate} req/s, GET /v1/models: ${PLAN.rounds} rounds × ${PLAN.latencyMs / 1000} s`);
    const lat = latencySummary(
      await alternate(PLAN.rounds, proxies, (p) => fixedRate(p, getModels(app.token), { rate: PLAN.rate, warmupMs: PLAN.warmupMs, durationMs: PLAN.latencyMs }), "latency"),
    );
    log(`  p50 bare ${fmt.ms(lat.bare.p50)} mythiq ${fmt.ms(lat.mythiq.p50)}; p99 bare ${fmt.ms(lat.bare.p99)} mythiq ${fmt.ms(lat.mythiq.p99)}`);

    log(`\nServer-Sent Events: ${PLAN.sseEvents} events, 20 ms apart`);
    const sseSpec: RequestSpec = { method: "GET", path: "/v1/events", headers: { authorization: `Bearer ${bulk.token}`, accept: "text/event-stream" } };
    const sse = {
      bare: await serverSentEvents(bare, upstream, sseSpec, { count: PLAN.sseEvents, intervalMs: 20 }),
      mythiq: await serverSentEvents(mythiq, upstream, sseSpec, { count: PLAN.sseEvents, intervalMs: 20 }),
    };
    log(`  mythiq: ${sse.mythiq.events}/${sse.mythiq.expected} events, delay p50 ${fmt.ms(sse.mythiq.p50)} max ${fmt.ms(sse.mythiq.max)} (bare max ${fmt.ms(sse.bare.max)})`);

    const missingKey = upstream.counts.withoutKey - missingBefore;
    await bare.child.stop();
    await mythiq.child.stop();
    const auditLines = await mythiq.child.stdoutLines();

    // Memory runs on fresh processes, one scenario each, so no run inherits another's heap.
    const fresh = (name: "bare" | "mythiq", tag: string): Promise<ProxyUnderTest & { child: Child }> =>
      name === "bare" ? startBare(upstream, dir, key) : startMythiq(config, dir, `${tag}`, key);
    const up: Partial<Record<"bare" | "mythiq", BulkResult>> = {};
    const down: Partial<Record<"bare" | "mythiq", BulkResult>> = {};
    const hold: Partial<Record<"bare" | "mythiq", HoldResult>> = {};
    log("\n100 MiB upload and download, each proxy fresh");
    for (const name of ["bare", "mythiq"] as const) {
      const proxy = await fresh(name, "bulk");
      up[name] = await upload(proxy, upstream, bulk.token);
      down[name] = await download(proxy, bulk.token);
      await proxy.child.stop();
      log(
        `  ${name}: upload ${up[name].status} at ${up[name].mibPerSecond.toFixed(0)} MiB/s, RSS +${fmt.mb(up[name].rssGrowth)}; download ${down[name].status} at ${down[name].mibPerSecond.toFixed(0)} MiB/s, RSS +${fmt.mb(down[name].rssGrowth)}`,
      );
    }
    log(`\n${PLAN.holdCount} concurrent requests held ${PLAN.holdMs / 1000} s by the upstream, each proxy fresh`);
    upstream.slowMs = PLAN.holdMs;
    for (const name of ["bare", "mythiq"] as const) {
      const proxy = await fresh(name, "hold");
      const result = await concurrentHold(proxy, upstream, bulk.token, PLAN.holdCount);
      hold[name] = result;
      await proxy.child.stop();
      log(`  ${name}: ${result.ok}/${result.requests} ok, ${result.errors} errors, ${result.heldAtOnce} held at once, RSS ${fmt.mb(result.rssBefore)} → ${fmt.mb(result.rssMax)}`);
    }
    const memory = { upload: up as Pair<BulkResult>, download: down as Pair<BulkResult>, hold: hold as Pair<HoldResult> };

    log("\n/metrics scrape, 50 clients × 10 routes × 20 models");
    const scr = await scrapeRun(upstream, dir, key, notes);
    log(`  ${scr.source}: p50 ${fmt.ms(scr.p50)}, max ${fmt.ms(scr.max)}, ${fmt.int(scr.bytes)} bytes, ${fmt.int(scr.series)} samples (${fmt.int(scr.requestSeries)} requests_total)`);

    const noise = monitor.stop();
    const repeated = getT.repeated + postT.repeated + lat.repeated;
    if (repeated > 0) notes.push(`${repeated} comparison round(s) were run again because other processes used more than ${fmt.pct(NOISY)} of the machine during them.`);
    if (noise.averageOtherShare > 0.05) {
      notes.push(
        `Other processes used ${fmt.pct(noise.averageOtherShare)} of this machine's CPU on average during the run (worst second ${fmt.pct(noise.worstOtherShare)}): the numbers are noisier than on a quiet machine.`,
      );
    }
    if (missingKey !== 0) notes.push(`The upstream received ${missingKey} requests without the injected key: a proxy is broken.`);
    const sanity: string[] = [];
    for (const [name, t] of [["GET", getT], ["POST", postT]] as const) {
      for (const side of ["bare", "mythiq"] as const) {
        if (t[side].non2xx > 0 || t[side].errors > 0) sanity.push(`${name} ${side}: ${t[side].non2xx} non-2xx, ${t[side].errors} connection errors`);
      }
    }
    if (lat.mythiq.non2xx + lat.mythiq.errors + lat.bare.non2xx + lat.bare.errors > 0) sanity.push("latency run had non-2xx answers or errors");
    for (const side of ["bare", "mythiq"] as const) {
      const u = memory.upload[side];
      const d = memory.download[side];
      if (u.status !== 200 || u.bytes !== BULK_BYTES) sanity.push(`upload ${side}: status ${u.status}, upstream got ${u.bytes} bytes`);
      if (d.status !== 200 || d.bytes !== BULK_BYTES) sanity.push(`download ${side}: status ${d.status}, client got ${d.bytes} bytes`);
    }
    notes.push(...sanity.map((s) => `Sanity check failed: ${s}.`));
    if (getT.mythiq.benchUtil > 0.9) {
      notes.push(
        `The load generator's core was ${fmt.pct(getT.mythiq.benchUtil)} busy during the mythiq GET rounds: throughput may be limited by the generator; compare CPU µs per request.`,
      );
    }

    const targets: Target[] = [
      atLeast(
        "throughput_get",
        "Throughput GET /v1/models (client token), vs bare",
        getT.ratio,
        0.9,
        fmt.ratio,
        ` (${fmt.int(getT.mythiq.rps)} vs ${fmt.int(getT.bare.rps)} req/s; CPU per request ${fmt.ratio(getT.cpuRatio)})`,
      ),
      atLeast(
        "throughput_post",
        "Throughput POST /v1/images/generations 200 B JSON + model check, vs bare",
        postT.ratio,
        0.8,
        fmt.ratio,
        ` (${fmt.int(postT.mythiq.rps)} vs ${fmt.int(postT.bare.rps)} req/s; CPU per request ${fmt.ratio(postT.cpuRatio)})${check.works ? "" : " [no model check: fallback]"}`,
        check.works ? undefined : "measured with a client without `models`",
      ),
      atMost("latency_p50", `Added latency p50 at ${PLAN.rate} req/s`, lat.addedP50, 0.5, fmt.ms, ` (${fmt.ms(lat.mythiq.p50)} vs ${fmt.ms(lat.bare.p50)})`),
      atMost("latency_p99", `Added latency p99 at ${PLAN.rate} req/s`, lat.addedP99, 2, fmt.ms, ` (${fmt.ms(lat.mythiq.p99)} vs ${fmt.ms(lat.bare.p99)})`),
      atMost(
        "hold_errors",
        `${PLAN.holdCount} concurrent requests held ${PLAN.holdMs / 1000} s: failures`,
        memory.hold.mythiq.requests - memory.hold.mythiq.ok,
        0,
        fmt.int,
        ` (${memory.hold.mythiq.ok} ok, ${memory.hold.mythiq.errors} connection errors, ${memory.hold.mythiq.heldAtOnce} held at once)`,
      ),
      atMost("hold_rss", `${PLAN.holdCount} concurrent requests held: proxy RSS`, memory.hold.mythiq.rssMax, 200e6, fmt.mb, ` (bare ${fmt.mb(memory.hold.bare.rssMax)})`),
      atMost(
        "upload_rss",
        "100 MiB upload: RSS growth",
        memory.upload.mythiq.rssGrowth,
        40e6,
        fmt.mb,
        ` (bare ${fmt.mb(memory.upload.bare.rssGrowth)}; ${memory.upload.mythiq.mibPerSecond.toFixed(0)} MiB/s)`,
      ),
      atMost(
        "download_rss",
        "100 MiB download: RSS growth",
        memory.download.mythiq.rssGrowth,
        40e6,
        fmt.mb,
        ` (bare ${fmt.mb(memory.download.bare.rssGrowth)}; ${memory.download.mythiq.mibPerSecond.toFixed(0)} MiB/s)`,
      ),
      atMost("sse_delay", "SSE: slowest event, upstream write to client", sse.mythiq.events === sse.mythiq.expected ? sse.mythiq.max : Infinity, 5, fmt.ms, ` (p50 ${fmt.ms(sse.mythiq.p50)}, ${sse.mythiq.events}/${sse.mythiq.expected} events)`),
      atMost("scrape", "/metrics scrape, 50 clients × 20 models × 10 routes", scr.p50, 50, fmt.ms, ` (max ${fmt.ms(scr.max)}, ${fmt.int(scr.requestSeries)} requests_total series)`),
      atMost("start_to_ready", "Start to ready, env key", startup.readyMs, 1000, fmt.ms),
      atMost("idle_rss", "Idle RSS", startup.idleRss, 80e6, fmt.mb, ` (anonymous ${fmt.mb(startup.idleAnon)}, file-backed ${fmt.mb(startup.idleFile)})`),
    ];

    const date = new Date().toISOString();
    const result = {
      date,
      command: `npm run bench${argv.length === 0 ? "" : ` -- ${argv.join(" ")}`}`,
      machine: meta,
      pinned,
      node_flags: NODE_FLAGS,
      noise,
      plan: PLAN,
      post_mode: postMode,
      targets,
      measurements: {
        throughput_get: getT,
        throughput_post: postT,
        latency: lat,
        sse,
        ...memory,
        scrape: scr,
        startup,
        audit_lines: auditLines,
      },
      notes,
    };

    log(`\n${consoleTable(targets)}`);
    for (const note of notes) log(`note: ${note}`);
    log(`audit lines written by the main mythiq-proxy process: ${auditLines ?? "?"}`);

    mkdirSync(RESULTS, { recursive: true });
    const jsonFile = path.join(RESULTS, QUICK ? "quick.json" : "latest.json");
    writeFileSync(jsonFile, JSON.stringify(result, null, 2) + "\n");
    log(`\nwrote ${path.relative(ROOT, jsonFile)}`);
    if (!QUICK) {
      const file = path.join(ROOT, "BENCHMARKS.md");
      writeFileSync(file, benchmarksMarkdown(result, keptNotes(file)));
      log("wrote BENCHMARKS.md");
    }
    return targets.every((t) => t.pass) ? 0 : 1;
  } finally {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function benchmarksMarkdown(
  r: {
    date: string;
    command: string;
    machine: Record<string, string | number>;
    pinned: boolean;
    node_flags: readonly string[];
    noise: { averageOtherShare: number; worstOtherShare: number };
    post_mode: string;
    targets: readonly Target[];
    measurements: {
      throughput_get: ReturnType<typeof throughputSummary>;
      throughput_post: ReturnType<typeof throughputSummary>;
      latency: ReturnType<typeof latencySummary>;
      sse: Pair<{ p50: number; max: number; events: number; expected: number }>;
      upload: Pair<BulkResult>;
      download: Pair<BulkResult>;
      hold: Pair<HoldResult>;
      scrape: { source: string; p50: number; max: number; bytes: number; series: number; requestSeries: number };
      startup: { readyAll: number[]; idleRss: number; idleAnon: number; idleFile: number };
      audit_lines: number | undefined;
    };
    notes: readonly string[];
  },
  kept: string,
): string {
  const m = r.measurements;
  const t = (x: ReturnType<typeof throughputSummary>, name: string) =>
    (["bare", "mythiq"] as const).map((side) => [
      name,
      side === "bare" ? "bare http-proxy-3" : "mythiq-proxy",
      fmt.int(x[side].rps),
      fmt.pct(x[side].proxyUtil),
      x[side].cpuUsPerRequest.toFixed(0),
      fmt.pct(x[side].benchUtil),
      x.rounds.map((round) => fmt.int(round[side].rps)).join(", "),
    ]);
  const passed = r.targets.filter((x) => x.pass).length;
  return `# Benchmarks

Generated by \`${r.command}\` (bench/run.ts) on ${r.date}. Everything above the notes marker at the
end is rewritten by each run; raw numbers are in \`bench/results/latest.json\`.

${markdownTable(
  ["", ""],
  [
    ["command", `\`${r.command}\``],
    ["date", r.date],
    ["machine", `${r.machine["cpu"]}, ${r.machine["cores"]} cores, ${r.machine["memory_gib"]} GiB, ${r.machine["os"]}`],
    ["Node.js", `${String(r.machine["node"])}${r.node_flags.length === 0 ? "" : `, both proxies run with \`${r.node_flags.join(" ")}\``}`],
    ["commit", String(r.machine["commit"])],
    ["pinning", r.pinned ? `load generator + upstream on core ${BENCH_CORE}; the proxy under test on core ${PROXY_CORE} (taskset)` : "none (needs taskset and 2 cores)"],
    ["other load", `processes outside the benchmark used ${fmt.pct(r.noise.averageOtherShare)} of all cores on average (worst second ${fmt.pct(r.noise.worstOtherShare)})`],
    [
      "rounds",
      `${PLAN.rounds} alternating rounds per comparison (bare, mythiq / mythiq, bare …), ${PLAN.durationMs / 1000} s each after ${PLAN.warmupMs / 1000} s warm-up; medians. A round during which other processes used over ${fmt.pct(NOISY)} of the machine is run again (at most ${PLAN.rounds} times per comparison).`,
    ],
  ],
)}

## Targets: ${passed} of ${r.targets.length} met

Ratios and added latency are against a bare http-proxy-3 pass-through measured in the same run.
MB = 10⁶ bytes.

${markdownTable(
  ["", "target", "limit", "measured"],
  r.targets.map((x) => [x.pass ? "PASS" : "**FAIL**", x.text, x.limit, x.measured]),
)}
${r.notes.length === 0 ? "" : `\n${r.notes.map((n) => `- ${n}`).join("\n")}\n`}
## Throughput

Closed loop, ${PLAN.connections} keep-alive connections. POST mode: ${r.post_mode}. "proxy CPU" is the proxy
process's share of its core in the measured window; "µs/req" its CPU time per request (the cost that
does not depend on whether the generator or the proxy saturates, and the number to watch on a busy
machine: bare µs/req ÷ mythiq µs/req was ${fmt.ratio(m.throughput_get.cpuRatio)} for GET and ${fmt.ratio(m.throughput_post.cpuRatio)} for POST);
"generator CPU" the share of core ${BENCH_CORE} used by the load generator and the upstream together.

${markdownTable(
  ["request", "proxy", "req/s (median)", "proxy CPU", "µs/req", "generator CPU", "rounds (req/s)"],
  [...t(m.throughput_get, "GET /v1/models"), ...t(m.throughput_post, "POST /v1/images/generations")],
  ["l", "l", "r", "r", "r", "r", "l"],
)}

## Latency at ${PLAN.rate} req/s (open loop, GET /v1/models)

Measured from when each request was due, so a stall counts against every request it delayed.

${markdownTable(
  ["proxy", "p50", "p99", "max"],
  [
    ["bare http-proxy-3", fmt.ms(m.latency.bare.p50), fmt.ms(m.latency.bare.p99), fmt.ms(m.latency.bare.max)],
    ["mythiq-proxy", fmt.ms(m.latency.mythiq.p50), fmt.ms(m.latency.mythiq.p99), fmt.ms(m.latency.mythiq.max)],
    ["added (median of per-round differences)", fmt.ms(m.latency.addedP50), fmt.ms(m.latency.addedP99), ""],
  ],
  ["l", "r", "r", "r"],
)}

## Streams, memory, scrape, start-up

${markdownTable(
  ["measurement", "value"],
  [
    ["SSE delay, mythiq-proxy (p50 / max)", `${fmt.ms(m.sse.mythiq.p50)} / ${fmt.ms(m.sse.mythiq.max)} over ${m.sse.mythiq.events} events`],
    ["SSE delay, bare (p50 / max)", `${fmt.ms(m.sse.bare.p50)} / ${fmt.ms(m.sse.bare.max)}`],
    ...(["bare", "mythiq"] as const).flatMap((side) => {
      const who = side === "bare" ? "bare http-proxy-3" : "mythiq-proxy";
      const u = m.upload[side];
      const d = m.download[side];
      const h = m.hold[side];
      return [
        [`100 MiB upload, ${who}`, `${u.mibPerSecond.toFixed(0)} MiB/s, RSS ${fmt.mb(u.rssBefore)} + ${fmt.mb(u.rssGrowth)}`],
        [`100 MiB download, ${who}`, `${d.mibPerSecond.toFixed(0)} MiB/s, RSS ${fmt.mb(d.rssBefore)} + ${fmt.mb(d.rssGrowth)}`],
        [`${h.requests} held requests, ${who}`, `${h.ok} ok, ${h.heldAtOnce} held at once at the upstream, RSS ${fmt.mb(h.rssBefore)} → ${fmt.mb(h.rssMax)}`],
      ];
    }),
    ["/metrics scrape", `${fmt.ms(m.scrape.p50)} median, ${fmt.ms(m.scrape.max)} max; ${fmt.int(m.scrape.bytes)} bytes, ${fmt.int(m.scrape.series)} samples; series from ${m.scrape.source}`],
    ["start to ready (each start)", m.startup.readyAll.map((v) => fmt.ms(v)).join(", ")],
    ["idle RSS 1 s after ready", `${fmt.mb(m.startup.idleRss)} (anonymous ${fmt.mb(m.startup.idleAnon)}, file-backed ${fmt.mb(m.startup.idleFile)})`],
    ["audit lines written by the main run", fmt.int(m.audit_lines ?? NaN)],
  ],
)}

## Method

- Upstream: a Node HTTP server in the benchmark process (bench/upstream.ts) answering from prebuilt
  buffers with \`content-length\`; it counts requests that lack the injected key (there must be none).
- Baseline: bench/bare-proxy.ts, \`http-proxy-3\` with a keep-alive agent and \`headers: {authorization}\`,
  nothing else; run as plain JavaScript (types stripped into a temp file), so Node's TypeScript
  stripper does not add its ~17 MB to the baseline's RSS.
- mythiq-proxy: \`node dist/main.js --config <temp>\` (bench/config.ts): three clients, the main one with
  a token, five routes and a five-model allowlist; rate limits and concurrency set high; audit log on,
  its stdout counted by \`wc -l\`; metrics on (the admin port is not scraped during the load runs).
- Load: bench/load.ts, raw keep-alive HTTP/1.1 connections with prebuilt requests and a minimal
  response parser, so the generator's core is not what saturates first.
- RSS (\`VmRSS\`, anonymous + file-backed pages) and CPU time are read from \`/proc/<pid>\`; RSS is
  sampled every 20 ms (100 ms during the hold). Memory runs use a fresh process per scenario.
- Rounds: the noise check compares the machine's busy time (\`/proc/stat\`) with the CPU time of the
  benchmark and its children; other processes' share is reported per round in the JSON.
- Profiles: \`npm run bench -- --profile\` writes \`bench/results/profile.md\` (node --cpu-prof of each
  proxy under the same load).

${kept}`;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 2;
  },
);
