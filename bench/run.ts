/**
 * `npm run bench`: mythiq-proxy against its peers (bench/peers/), side by side, in one run: a bare
 * http-proxy-3 pass-through, the Express + http-proxy-middleware proxy users write themselves, and
 * nginx when it is on the PATH.
 *
 *   npm run bench                     full run (about 5 minutes), writes BENCHMARKS.md and bench/results/latest.json
 *   npm run bench -- --quick          shorter run, writes bench/results/quick.json only
 *   npm run bench -- --only=throughput
 *                                     only the GET and POST throughput comparisons and idle RSS, writes
 *                                     bench/results/throughput.json (with --quick: throughput-quick.json)
 *   npm run bench -- --profile        CPU profiles (node --cpu-prof) of mythiq-proxy and the bare pass-through
 *                                     under load, summarised into bench/results/profile.md
 *
 * Options for experiments (all recorded in the results' `command`):
 *   --env=NAME=VALUE       an environment variable for every mythiq-proxy process (repeatable)
 *   --systems=a,b,...      with --only=throughput: the systems to compare (mythiq and bare always; express, nginx)
 *   --node-flag=FLAG       Node flags for mythiq-proxy and the Node peers instead of the Dockerfile's (repeatable)
 *   --remove=NAME,...      a removal experiment: mythiq-proxy with those components taken out of its
 *                          built code (bench/experiments/removals.ts; bench/components.ts runs them all)
 *
 * Run from an exported tree (no .git), set BENCH_COMMIT=<sha> to name the commit in the report.
 *
 * Layout on a machine with two or more cores: this process (load generator and upstream) on core 0,
 * the system under test on core 1; all systems run all along and take turns, several rounds in
 * rotating order, and the medians are reported. With one core nothing is pinned (and the report says so).
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { APP_MODELS, KEY_ENV, mainConfig, newToken, WIDE, wideConfig, type Ports } from "./config.ts";
import { encodeRequest, sleep, type RequestSpec } from "./load.ts";
import { benchmarksMarkdown, SHORT_NAME, sideBySide } from "./markdown.ts";
import { nginxBinary, startBare, startExpress, startNginx, type PeerContext } from "./peers/start.ts";
import { freePort, noiseMonitor, otherLoad, pinSelf, rssPartsOf, spawnNode, type Child } from "./proc.ts";
import { compareMarkdown, profileMarkdown, summarizeProfile } from "./profile-summary.ts";
import { atLeast, atMost, consoleTable, fmt, keptNotes, markdownTable, median, type Target } from "./report.ts";
import { getModels, postImage } from "./requests.ts";
import { alternate, latencySummary, throughputSummary, versus, type Pair, type PerSystem } from "./rounds.ts";
import { removalsFromEnv } from "./experiments/removals.ts";
import { answerProblems } from "./sanity.ts";
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
  type ProxyUnderTest,
  type SseResult,
  type SystemName,
} from "./scenarios.ts";
import { BULK_BYTES, startUpstream, type Upstream } from "./upstream.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS = path.join(ROOT, "bench", "results");
const MAIN_JS = path.join(ROOT, "dist", "main.js");

const USAGE =
  "usage: npm run bench [-- --quick | --profile | --only=throughput [--systems=mythiq,bare,express,nginx]] [--env=NAME=VALUE ...] [--remove=NAME,...] [--node-flag=FLAG ...]\n";
const argv = process.argv.slice(2);
const valuesOf = (prefix: string): string[] => argv.filter((a) => a.startsWith(prefix)).map((a) => a.slice(prefix.length));
const QUICK = argv.includes("--quick");
const PROFILE = argv.includes("--profile");
const ONLY = valuesOf("--only=");
const THROUGHPUT_ONLY = ONLY.includes("throughput");
/**
 * Node flags for mythiq-proxy and the Node peers (so they stay comparable): the ones the
 * Dockerfile's ENTRYPOINT ships with, unless `--node-flag=FLAG` (repeatable) names others.
 */
const GIVEN_FLAGS = valuesOf("--node-flag=");
const NODE_FLAGS = GIVEN_FLAGS.length > 0 ? GIVEN_FLAGS : shippedNodeFlags();
/** Extra environment for every mythiq-proxy process, for experiments (`--env=NAME=VALUE`). */
const REMOVE = valuesOf("--remove=").join(",");
const MYTHIQ_ENV: Record<string, string> = {
  ...Object.fromEntries(valuesOf("--env=").map((pair) => [pair.slice(0, Math.max(0, pair.indexOf("="))), pair.slice(pair.indexOf("=") + 1)])),
  ...(REMOVE === ""
    ? {}
    : { BENCH_REMOVE: REMOVE, NODE_OPTIONS: `--import=${path.join(ROOT, "bench", "experiments", "register.ts")}` }),
};
const ALL_SYSTEMS: readonly SystemName[] = ["bare", "mythiq", "express", "nginx"];
const GIVEN_SYSTEMS = valuesOf("--systems=").flatMap((list) => list.split(","));
{
  const problems: string[] = [];
  const known = (a: string): boolean =>
    a === "--quick" || a === "--profile" || ["--only=", "--node-flag=", "--env=", "--systems=", "--remove="].some((prefix) => a.startsWith(prefix));
  const unknown = argv.filter((a) => !known(a));
  if (unknown.length > 0) problems.push(`unknown argument ${unknown.join(" ")}`);
  if (ONLY.some((o) => o !== "throughput")) problems.push(`--only takes "throughput"`);
  if (Object.keys(MYTHIQ_ENV).some((name) => name === "")) problems.push("--env takes NAME=VALUE");
  if (GIVEN_SYSTEMS.length > 0 && !THROUGHPUT_ONLY) problems.push("--systems goes with --only=throughput (the full run measures every system)");
  const unknownSystems = GIVEN_SYSTEMS.filter((s) => !(ALL_SYSTEMS as readonly string[]).includes(s));
  if (unknownSystems.length > 0) problems.push(`unknown system ${unknownSystems.join(", ")} (known: ${ALL_SYSTEMS.join(", ")})`);
  try {
    removalsFromEnv(REMOVE);
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (PROFILE && THROUGHPUT_ONLY) problems.push("--profile and --only=throughput are separate runs");
  if (problems.length > 0) {
    process.stderr.write(`bench: ${problems.join("; ")}\n${USAGE}`);
    process.exit(2);
  }
}
/** The systems asked for; mythiq-proxy and the bare pass-through always take part (every ratio is against bare). */
const WANTED: ReadonlySet<SystemName> = new Set(
  GIVEN_SYSTEMS.length === 0 ? ALL_SYSTEMS : ALL_SYSTEMS.filter((s) => s === "mythiq" || s === "bare" || GIVEN_SYSTEMS.includes(s)),
);

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
/** Share of all cores others may use during a round before it is run again (10 % = a fifth of one core on two). */
const NOISY = 0.1;

const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** CPU used by processes other than the benchmark's, for the whole run. */
const monitor = noiseMonitor();

/** Every process started and not yet stopped: stopped when the run ends, however it ends. */
const running = new Set<Child>();
function adopt<T extends { child: Child }>(system: T): T {
  running.add(system.child);
  void system.child.exited.then(() => running.delete(system.child));
  return system;
}

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
    env: { ...process.env, ...MYTHIQ_ENV, [KEY_ENV]: key },
    countStdout: true,
    monitor,
  });
  running.add(child);
  void child.exited.then(() => running.delete(child));
  const readyMs = await Promise.race([waitReady(admin, startedAt), child.exited.then(() => undefined)]);
  if (readyMs === undefined) {
    await child.stop(1000);
    throw new Error(`mythiq-proxy (${name}) did not become ready:\n${child.stderrTail()}`);
  }
  return { name: "mythiq", port: listen, pid: child.pid, pids: [child.pid], child, adminPort: admin, readyMs };
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

/** Whether a client with `models` can send a body (the model check answers 200), else why not. */
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
  for (let i = 0; i < PLAN.starts; i++) {
    const proxy = await startMythiq(config, dir, `start-${i}`, key);
    ready.push(proxy.readyMs);
    await proxy.child.stop();
  }
  return { readyMs: median(ready), readyAll: ready };
}

async function profileRun(peers: PeerContext, dir: string, key: string, config: string, tokens: { app: string; bulk: string }): Promise<void> {
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
    const proxy = c.bare ? adopt(await startBare(peers, nodeArgs)) : await startMythiq(config, dir, c.id, key, nodeArgs);
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

/**
 * What each system must refuse (bench/sanity.ts): the bare pass-through checks nothing, nginx no
 * bodies; mythiq-proxy admits a GET /v1/models without a token (bench/config.ts's anonymous client).
 */
const CHECKS: Record<SystemName, { checksToken: boolean; needsToken: boolean; checksModel: boolean }> = {
  mythiq: { checksToken: true, needsToken: false, checksModel: true },
  bare: { checksToken: false, needsToken: false, checksModel: false },
  express: { checksToken: true, needsToken: true, checksModel: true },
  nginx: { checksToken: true, needsToken: true, checksModel: false },
};

async function main(): Promise<number> {
  if (!existsSync(MAIN_JS)) throw new Error("dist/main.js is missing: run `npm run build` (npm run bench does)");
  // Before pinning: afterwards the process sees only its own core.
  const meta = machine();
  const pinned = pinSelf(BENCH_CORE);
  const mode = [QUICK ? "quick" : "", PROFILE ? "profile" : "", THROUGHPUT_ONLY ? "throughput only" : ""].filter((m) => m !== "");
  log(`mythiq-proxy bench${mode.length === 0 ? "" : ` (${mode.join(", ")})`}: ${meta.cpu}, ${meta.cores} cores, Node ${process.version}`);
  log(pinned ? `pinned: load generator + upstream on core ${BENCH_CORE}, system under test on core ${PROXY_CORE}` : "not pinned (needs taskset and 2 cores)");
  if (Object.keys(MYTHIQ_ENV).length > 0) log(`mythiq-proxy environment: ${Object.entries(MYTHIQ_ENV).map(([k, v]) => `${k}=${v}`).join(" ")}`);

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
  const peers: PeerContext = { dir, upstreamPort: upstream.port, key, nodeFlags: NODE_FLAGS, core: PROXY_CORE, cwd: ROOT, monitor };
  const nginx = WANTED.has("nginx") ? nginxBinary() : undefined;
  const notes: string[] = [];
  if (WANTED.has("nginx") && nginx === undefined) notes.push("nginx is not on the PATH: it was not measured.");

  try {
    if (PROFILE) {
      await profileRun(peers, dir, key, config, { app: app.token, bulk: bulk.token });
      return 0;
    }

    let startup: Awaited<ReturnType<typeof startupRun>> | undefined;
    if (!THROUGHPUT_ONLY) {
      log("\nstart to ready (env key)");
      startup = await startupRun(dir, key, config);
      log(`  ready in ${startup.readyAll.map((v) => v.toFixed(0)).join(", ")} ms`);
    }

    log(`\nstarting ${[...WANTED].filter((s) => s !== "nginx" || nginx !== undefined).map((s) => SHORT_NAME[s]).join(", ")}`);
    const mythiq = await startMythiq(config, dir, "main", key);
    const bare = adopt(await startBare(peers));
    const express = WANTED.has("express") ? adopt(await startExpress(peers, { tokenHash: app.hash, models: APP_MODELS })) : undefined;
    const nginxPeer = nginx === undefined ? undefined : adopt(await startNginx(peers, nginx, app.token));
    const systems = [bare, mythiq, express, nginxPeer].filter((s) => s !== undefined);
    const names = systems.map((s) => s.name);

    // Every system 1 s after it was up, before it has served anything.
    await sleep(1000);
    const idle: PerSystem<ReturnType<typeof rssPartsOf>> = {};
    for (const s of systems) idle[s.name] = rssPartsOf(s.pids);
    log(`  idle RSS: ${systems.map((s) => `${s.name} ${fmt.mb(idle[s.name]!.rss)}`).join(", ")}`);

    log("\nchecking every system's answers");
    const problems: string[] = [];
    for (const s of systems) {
      const found = await answerProblems(s, upstream, key, { token: app.token, model: APP_MODELS[0]!, ...CHECKS[s.name] });
      problems.push(...found.map((p) => `${s.name}: ${p}`));
    }
    if (problems.length > 0) throw new Error(`a system answers wrongly, nothing was measured:\n  ${problems.join("\n  ")}`);
    log(
      `  all answer as expected: key injected, ${systems.filter((s) => CHECKS[s.name].checksToken).map((s) => s.name).join(", ")} refuse a wrong token, ${systems.filter((s) => CHECKS[s.name].checksModel).map((s) => s.name).join(", ")} an unlisted model`,
    );

    const get = getModels(app.token);
    const post = postImage(app.token, APP_MODELS[0]!);
    const missingBefore = upstream.counts.withoutKey;

    // Warm every process (JIT, pools) before anything is counted.
    for (const s of systems) {
      await throughput(s, get, { connections: PLAN.connections, warmupMs: 0, durationMs: 1000 });
      await throughput(s, post, { connections: PLAN.connections, warmupMs: 0, durationMs: 500 });
    }

    const tput = { connections: PLAN.connections, warmupMs: PLAN.warmupMs, durationMs: PLAN.durationMs };
    const rounds = (label: string) => ({ label, noisy: NOISY, log });
    const logRates = (t: ReturnType<typeof throughputSummary>): void =>
      log(`  ${names.map((n) => `${n} ${fmt.int(t.systems[n]?.rps ?? NaN)} req/s (p99 ${fmt.ms(t.systems[n]?.p99 ?? NaN)})`).join(", ")}`);
    log(`\nthroughput GET /v1/models: ${PLAN.rounds} rounds × ${names.length} systems × ${PLAN.durationMs / 1000} s, ${PLAN.connections} connections`);
    const getT = throughputSummary(await alternate(PLAN.rounds, systems, (p) => throughput(p, get, tput), rounds("GET")), names);
    logRates(getT);

    log(`\nthroughput POST /v1/images/generations (${post.body?.length} B JSON, listed model)`);
    const postT = throughputSummary(await alternate(PLAN.rounds, systems, (p) => throughput(p, post, tput), rounds("POST")), names);
    logRates(postT);

    let lat: ReturnType<typeof latencySummary> | undefined;
    let sse: Pair<SseResult> | undefined;
    if (!THROUGHPUT_ONLY) {
      log(`\nlatency at ${PLAN.rate} req/s, GET /v1/models: ${PLAN.rounds} rounds × ${PLAN.latencyMs / 1000} s`);
      lat = latencySummary(
        await alternate(PLAN.rounds, [bare, mythiq], (p) => fixedRate(p, get, { rate: PLAN.rate, warmupMs: PLAN.warmupMs, durationMs: PLAN.latencyMs }), rounds("latency")),
      );
      log(`  p50 bare ${fmt.ms(lat.bare.p50)} mythiq ${fmt.ms(lat.mythiq.p50)}; p99 bare ${fmt.ms(lat.bare.p99)} mythiq ${fmt.ms(lat.mythiq.p99)}`);

      log(`\nServer-Sent Events: ${PLAN.sseEvents} events, 20 ms apart`);
      const sseSpec: RequestSpec = { method: "GET", path: "/v1/events", headers: { authorization: `Bearer ${bulk.token}`, accept: "text/event-stream" } };
      sse = {
        bare: await serverSentEvents(bare, upstream, sseSpec, { count: PLAN.sseEvents, intervalMs: 20 }),
        mythiq: await serverSentEvents(mythiq, upstream, sseSpec, { count: PLAN.sseEvents, intervalMs: 20 }),
      };
      log(`  mythiq: ${sse.mythiq.events}/${sse.mythiq.expected} events, delay p50 ${fmt.ms(sse.mythiq.p50)} max ${fmt.ms(sse.mythiq.max)} (bare max ${fmt.ms(sse.bare.max)})`);
    }

    const missingKey = upstream.counts.withoutKey - missingBefore;
    for (const s of systems) await s.child.stop();
    const auditLines = await mythiq.child.stdoutLines();

    const memory = THROUGHPUT_ONLY ? undefined : await memoryRuns(upstream, peers, dir, key, config, bulk.token);
    let scr: Awaited<ReturnType<typeof scrapeRun>> | undefined;
    if (!THROUGHPUT_ONLY) {
      log("\n/metrics scrape, 50 clients × 10 routes × 20 models");
      scr = await scrapeRun(upstream, dir, key, notes);
      log(`  ${scr.source}: p50 ${fmt.ms(scr.p50)}, max ${fmt.ms(scr.max)}, ${fmt.int(scr.bytes)} bytes, ${fmt.int(scr.series)} samples (${fmt.int(scr.requestSeries)} requests_total)`);
    }

    const noise = monitor.stop();
    const repeated = getT.repeated + postT.repeated + (lat?.repeated ?? 0);
    if (repeated > 0) notes.push(`${repeated} comparison round(s) were run again because other processes used more than ${fmt.pct(NOISY)} of the machine during them.`);
    if (noise.averageOtherShare > 0.05) {
      notes.push(
        `Other processes used ${fmt.pct(noise.averageOtherShare)} of this machine's CPU on average during the run (worst second ${fmt.pct(noise.worstOtherShare)}): the numbers are noisier than on a quiet machine.`,
      );
    }
    if (missingKey !== 0) notes.push(`The upstream received ${missingKey} requests without the injected key: a system is broken.`);
    const sanity: string[] = [];
    for (const [name, t] of [["GET", getT], ["POST", postT]] as const) {
      for (const s of names) {
        const side = t.systems[s]!;
        if (side.non2xx > 0 || side.errors > 0) sanity.push(`${name} ${s}: ${side.non2xx} non-2xx, ${side.errors} connection errors`);
      }
    }
    if (lat !== undefined && lat.mythiq.non2xx + lat.mythiq.errors + lat.bare.non2xx + lat.bare.errors > 0) sanity.push("latency run had non-2xx answers or errors");
    if (memory !== undefined) {
      for (const side of ["bare", "mythiq"] as const) {
        const u = memory.upload[side];
        const d = memory.download[side];
        if (u.status !== 200 || u.bytes !== BULK_BYTES) sanity.push(`upload ${side}: status ${u.status}, upstream got ${u.bytes} bytes`);
        if (d.status !== 200 || d.bytes !== BULK_BYTES) sanity.push(`download ${side}: status ${d.status}, client got ${d.bytes} bytes`);
      }
    }
    notes.push(...sanity.map((s) => `Sanity check failed: ${s}.`));
    for (const s of names) {
      const busy = getT.systems[s]!.benchUtil;
      if (busy > 0.9) {
        notes.push(
          `The load generator's core was ${fmt.pct(busy)} busy during the ${SHORT_NAME[s]} GET rounds: that rate may be limited by the generator; compare CPU µs per request.`,
        );
      }
    }

    const targets = [
      ...throughputTargets(getT, postT, idle),
      ...(lat === undefined || sse === undefined || memory === undefined || scr === undefined || startup === undefined
        ? []
        : otherTargets(lat, sse, memory, scr, startup)),
    ];

    const command = `npm run bench${argv.length === 0 ? "" : ` -- ${argv.join(" ")}`}`;
    const result = {
      date: new Date().toISOString(),
      command,
      machine: meta,
      pinned,
      node_flags: NODE_FLAGS,
      mythiq_env: MYTHIQ_ENV,
      noise,
      plan: PLAN,
      layout: { benchCore: BENCH_CORE, proxyCore: PROXY_CORE, noisy: NOISY },
      systems: names,
      nginx: nginx ?? null,
      targets,
      measurements: {
        idle_rss: idle,
        throughput_get: { ...getT, versus: versusTable(getT, names) },
        throughput_post: { ...postT, versus: versusTable(postT, names) },
        ...(lat === undefined ? {} : { latency: lat }),
        ...(sse === undefined ? {} : { sse }),
        ...(memory ?? {}),
        ...(scr === undefined ? {} : { scrape: scr }),
        ...(startup === undefined ? {} : { startup }),
        audit_lines: auditLines,
      },
      notes,
    };

    const table = sideBySide(names, getT, postT, idle, SHORT_NAME);
    log(`\n${markdownTable(table.head, table.rows, table.align)}`);
    log(`\n${consoleTable(targets)}`);
    for (const note of notes) log(`note: ${note}`);
    log(`audit lines written by the main mythiq-proxy process: ${auditLines ?? "?"}`);

    mkdirSync(RESULTS, { recursive: true });
    const base = THROUGHPUT_ONLY ? "throughput" : QUICK ? "quick" : "latest";
    const jsonFile = path.join(RESULTS, `${base}${THROUGHPUT_ONLY && QUICK ? "-quick" : ""}.json`);
    writeFileSync(jsonFile, JSON.stringify(result, null, 2) + "\n");
    log(`\nwrote ${path.relative(ROOT, jsonFile)}`);
    if (!QUICK && !THROUGHPUT_ONLY && lat !== undefined && sse !== undefined && memory !== undefined && scr !== undefined && startup !== undefined) {
      const file = path.join(ROOT, "BENCHMARKS.md");
      const measurements = { ...result.measurements, latency: lat, sse, ...memory, scrape: scr, startup };
      writeFileSync(file, benchmarksMarkdown({ ...result, measurements }, keptNotes(file)));
      log("wrote BENCHMARKS.md");
    }
    return targets.every((t) => t.pass) ? 0 : 1;
  } finally {
    await Promise.all([...running].map((child) => child.stop(1000)));
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every system against every other in one throughput comparison (rows: a, columns: b). */
function versusTable(t: ReturnType<typeof throughputSummary>, names: readonly SystemName[]) {
  const out: PerSystem<PerSystem<ReturnType<typeof versus>>> = {};
  for (const a of names) {
    const row: PerSystem<ReturnType<typeof versus>> = {};
    for (const b of names) if (a !== b) row[b] = versus(t, a, b);
    out[a] = row;
  }
  return out;
}

/** Issue 14's throughput, tail and idle-memory targets. The Express ratios only when it took part. */
function throughputTargets(
  getT: ReturnType<typeof throughputSummary>,
  postT: ReturnType<typeof throughputSummary>,
  idle: PerSystem<ReturnType<typeof rssPartsOf>>,
): Target[] {
  const rate = (t: ReturnType<typeof throughputSummary>, peer: SystemName): string => {
    const v = versus(t, "mythiq", peer);
    return ` (${fmt.int(t.systems.mythiq!.rps)} vs ${fmt.int(t.systems[peer]!.rps)} req/s; CPU per request ${fmt.ratio(v.cpuRatio)})`;
  };
  const targets: Target[] = [
    atLeast("throughput_get", "Throughput GET /v1/models (client token), vs bare", versus(getT, "mythiq", "bare").ratio, 0.9, fmt.ratio, rate(getT, "bare")),
  ];
  if (getT.systems.express !== undefined) {
    targets.push(atLeast("throughput_get_express", "Throughput GET /v1/models, vs the Express proxy", versus(getT, "mythiq", "express").ratio, 1.3, fmt.ratio, rate(getT, "express")));
  }
  targets.push(
    atLeast("throughput_post", "Throughput POST /v1/images/generations 200 B JSON + model check, vs bare", versus(postT, "mythiq", "bare").ratio, 0.8, fmt.ratio, rate(postT, "bare")),
  );
  if (postT.systems.express !== undefined) {
    targets.push(
      atLeast("throughput_post_express", "Throughput POST /v1/images/generations + model check, vs the Express proxy", versus(postT, "mythiq", "express").ratio, 1.3, fmt.ratio, rate(postT, "express")),
    );
  }
  const p99 = { mythiq: getT.systems.mythiq!.p99, bare: getT.systems.bare!.p99 };
  targets.push(
    atMost("p99_saturation", `GET p99 at saturation (${PLAN.connections} connections, closed loop), vs bare`, p99.mythiq / p99.bare, 1.5, fmt.ratio, ` (${fmt.ms(p99.mythiq)} vs ${fmt.ms(p99.bare)})`),
  );
  const rss = idle.mythiq!;
  targets.push(atMost("idle_rss", "Idle RSS", rss.rss, 70e6, fmt.mb, ` (anonymous ${fmt.mb(rss.anon)}, file-backed ${fmt.mb(rss.file)}; bare ${fmt.mb(idle.bare?.rss ?? NaN)})`));
  return targets;
}

/** The targets of the scenarios the throughput-only run leaves out. */
function otherTargets(
  lat: ReturnType<typeof latencySummary>,
  sse: Pair<SseResult>,
  memory: { upload: Pair<BulkResult>; download: Pair<BulkResult>; hold: Pair<HoldResult> },
  scr: Awaited<ReturnType<typeof scrapeRun>>,
  startup: Awaited<ReturnType<typeof startupRun>>,
): Target[] {
  const up = memory.upload;
  const hold = memory.hold.mythiq;
  const holdRss = atMost(
    "hold_rss",
    `${PLAN.holdCount} concurrent requests held ${PLAN.holdMs / 1000} s, all answered: proxy RSS`,
    hold.rssMax,
    200e6,
    fmt.mb,
    ` (${hold.ok}/${hold.requests} ok, ${hold.errors} connection errors, ${hold.heldAtOnce} held at once; bare ${fmt.mb(memory.hold.bare.rssMax)})`,
  );
  return [
    atMost(
      "upload_rss",
      "100 MiB upload: RSS growth beyond bare's",
      up.mythiq.rssGrowth - up.bare.rssGrowth,
      5e6,
      fmt.mb,
      ` (${fmt.mb(up.mythiq.rssGrowth)} vs ${fmt.mb(up.bare.rssGrowth)}; ${up.mythiq.mibPerSecond.toFixed(0)} MiB/s)`,
    ),
    // The RSS of a run in which requests failed says nothing about holding them all.
    { ...holdRss, pass: holdRss.pass && hold.ok === hold.requests },
    atMost("latency_p99", `Added latency p99 at ${PLAN.rate} req/s`, lat.addedP99, 2, fmt.ms, ` (${fmt.ms(lat.mythiq.p99)} vs ${fmt.ms(lat.bare.p99)})`),
    atMost("sse_delay", "SSE: slowest event, upstream write to client", sse.mythiq.events === sse.mythiq.expected ? sse.mythiq.max : Infinity, 5, fmt.ms, ` (p50 ${fmt.ms(sse.mythiq.p50)}, ${sse.mythiq.events}/${sse.mythiq.expected} events)`),
    atMost("scrape", "/metrics scrape, 50 clients × 20 models × 10 routes", scr.p50, 50, fmt.ms, ` (max ${fmt.ms(scr.max)}, ${fmt.int(scr.requestSeries)} requests_total series)`),
    atMost("start_to_ready", "Start to ready, env key", startup.readyMs, 1000, fmt.ms),
  ];
}

/** Upload, download and the held requests, on a fresh process per system and scenario, so no run inherits another's heap. */
async function memoryRuns(upstream: Upstream, peers: PeerContext, dir: string, key: string, config: string, token: string) {
  const fresh = (name: "bare" | "mythiq", tag: string): Promise<ProxyUnderTest & { child: Child }> =>
    name === "bare" ? startBare(peers).then(adopt) : startMythiq(config, dir, tag, key);
  const up: { bare?: BulkResult; mythiq?: BulkResult } = {};
  const down: { bare?: BulkResult; mythiq?: BulkResult } = {};
  const hold: { bare?: HoldResult; mythiq?: HoldResult } = {};
  log("\n100 MiB upload and download, each proxy fresh");
  for (const name of ["bare", "mythiq"] as const) {
    const proxy = await fresh(name, "bulk");
    const u = await upload(proxy, upstream, token);
    const d = await download(proxy, token);
    up[name] = u;
    down[name] = d;
    await proxy.child.stop();
    log(`  ${name}: upload ${u.status} at ${u.mibPerSecond.toFixed(0)} MiB/s, RSS +${fmt.mb(u.rssGrowth)}; download ${d.status} at ${d.mibPerSecond.toFixed(0)} MiB/s, RSS +${fmt.mb(d.rssGrowth)}`);
  }
  log(`\n${PLAN.holdCount} concurrent requests held ${PLAN.holdMs / 1000} s by the upstream, each proxy fresh`);
  upstream.slowMs = PLAN.holdMs;
  for (const name of ["bare", "mythiq"] as const) {
    const proxy = await fresh(name, "hold");
    const result = await concurrentHold(proxy, upstream, token, PLAN.holdCount);
    hold[name] = result;
    await proxy.child.stop();
    log(`  ${name}: ${result.ok}/${result.requests} ok, ${result.errors} errors, ${result.heldAtOnce} held at once, RSS ${fmt.mb(result.rssBefore)} → ${fmt.mb(result.rssMax)}`);
  }
  return { upload: up as Pair<BulkResult>, download: down as Pair<BulkResult>, hold: hold as Pair<HoldResult> };
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
