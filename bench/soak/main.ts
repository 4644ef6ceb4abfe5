/**
 * `npm run soak -- --duration 10m`: the real built proxy (dist/main.js) under mixed traffic and
 * faults, then a SIGTERM drain; a report; exit 1 when anything was unexpected, lost or growing.
 *
 * Runs: a local stand-in for MythIQ (upstream.ts) and a real redis-server for the shared limits,
 * both started here; the proxy as a child process with the container image's Node flags, its key
 * in a file (rotated by rewriting it), its config in a file (reloaded by rewrite and SIGHUP).
 * Traffic (traffic.ts) and faults (faults.ts) run side by side; every response is classified
 * (classify.ts); memory, fds and event-loop delay are sampled (sampler.ts) and judged over the
 * second half (growth.ts); report.ts prints it all.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, noiseMonitor } from "../proc.ts";
import { parseArgs, USAGE } from "./args.ts";
import { classify, overloadWindows, type Expectation } from "./classify.ts";
import { send } from "./client.ts";
import { invalidConfig, newCredentials, newKey, soakConfig } from "./config.ts";
import { buildSchedule, startSchedule } from "./faults.ts";
import { growth, secondHalf } from "./growth.ts";
import { startSoakProxy } from "./proxy.ts";
import { startRedisServer } from "../../test/helpers/redis-server.ts";
import { renderReport, type SoakResult } from "./report.ts";
import { createRng } from "./rng.ts";
import { parseMetrics, startSampler } from "./sampler.ts";
import { createCallers, KINDS, OPENING_BURST, runLoops, runPaced, SHORT_MAX_IN_FLIGHT, type Kind, type PoolName } from "./traffic.ts";
import { createTally } from "./tally.ts";
import { startSoakUpstream } from "./upstream.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN_JS = path.join(ROOT, "dist", "main.js");
/** RSS "flat" (issue 15): within 10 MB over the second half; growing when the trend also rises 5 MB. */
const RSS_SPREAD_LIMIT = 10e6;
const RSS_RISE_LIMIT = 5e6;
/**
 * RSS is judged only when the second half lasts two minutes or more. V8 sizes its old generation
 * from the full collections it has made, and the first ones come tens of seconds apart under this
 * load: in a one-minute run the heap's first climb to its working size can fall in the second half
 * and look like growth. File descriptors settle at once and are judged in every run.
 */
const RSS_JUDGED_FROM_MS = 240_000;
/**
 * fds other than open connections (the number of those follows the load): growing when they spread
 * over 10 and the trend rises over 5 in the second half.
 */
const FD_SPREAD_LIMIT = 10;
const FD_RISE_LIMIT = 5;

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** The Node flags of the Dockerfile's ENTRYPOINT (as bench/run.ts reads them). */
function shippedNodeFlags(): string[] {
  const dockerfile = readFileSync(path.join(ROOT, "Dockerfile"), "utf8");
  const entry = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
  const argv = entry === undefined ? [] : (JSON.parse(entry) as string[]);
  return argv.slice(1, argv.indexOf("dist/main.js"));
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${randomBytes(4).toString("hex")}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if ("error" in args) {
    process.stderr.write(`soak: ${args.error}\n${USAGE}`);
    return 2;
  }
  if (!existsSync(MAIN_JS)) {
    process.stderr.write("soak: dist/main.js is missing: run `npm run build` (npm run soak does)\n");
    return 2;
  }
  const nodeFlags = args.nodeFlags ?? shippedNodeFlags();
  const rng = createRng(args.seed);
  const upstreamRng = createRng(args.seed ^ 0x5eed);
  const dir = mkdtempSync(path.join(os.tmpdir(), "mythiq-soak-"));
  const keyFile = path.join(dir, "mythiq-key");
  const configFile = path.join(dir, "proxy.yaml");
  const monitor = noiseMonitor();

  const redis = await startRedisServer();
  const upstream = await startSoakUpstream(() => upstreamRng.next());
  const creds = newCredentials();
  let key = newKey();
  upstream.issue(key);
  writeAtomic(keyFile, key);
  const ports = { listen: await freePort(), admin: await freePort(), upstream: upstream.port };
  let generation = 0;
  const validConfig = (): string => soakConfig(ports, keyFile, creds, generation);
  writeAtomic(configFile, validConfig());

  // Only what the proxy needs: no NODE_OPTIONS or coverage hooks from the caller's environment.
  const env: NodeJS.ProcessEnv = {
    PATH: process.env["PATH"],
    SOAK_SESSION_SECRET: creds.sessionSecret,
    REDIS_URL: redis.url,
    ...args.env,
  };
  const proxy = startSoakProxy({
    root: ROOT,
    configFile,
    stdoutFile: path.join(dir, "proxy-stdout.jsonl"),
    listenPort: ports.listen,
    adminPort: ports.admin,
    nodeFlags,
    env,
    secrets: [key, creds.app, creds.bulk, creds.sessionSecret],
  });
  monitor.track(proxy.pid);
  const cleanup = async (): Promise<void> => {
    proxy.kill();
    await upstream.close();
    await redis.close();
    rmSync(dir, { recursive: true, force: true });
  };
  // Ctrl-C (or a CI timeout's SIGTERM) must not leave a proxy, a redis-server or the temp dir behind.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      process.stderr.write(`soak: ${signal}, stopping\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  const ready = await until(async () => (await proxy.admin("/readyz").catch(() => ({ status: 0 }))).status === 200, 20_000);
  if (!ready) {
    process.stderr.write(`soak: the proxy did not become ready\n${proxy.stderrTail()}\n`);
    await cleanup();
    return 1;
  }

  const ownCpuAtStart = process.cpuUsage();
  const started = performance.now();
  const wallAtStart = Date.now();
  const now = (): number => performance.now() - started;
  out(`soak: ${(args.durationMs / 1000).toFixed(0)} s of traffic at ${args.rate} req/s (+ streams), seed ${args.seed}, proxy pid ${proxy.pid}, node ${nodeFlags.join(" ") || "(no flags)"}${Object.keys(args.env).length > 0 ? `, env ${Object.entries(args.env).map(([k, v]) => `${k}=${v}`).join(" ")}` : ""}`);

  // ---- bookkeeping of every request
  let nextId = 0;
  const tally = createTally(
    (kind, id, outcome, problem) => classify(kind.expect, outcome, upstream.facts(id), schedule.log.windows, problem),
    () => [key, ...upstreamKeys],
  );
  const { record } = tally;
  /** Every key issued so far (for the response scan). */
  const upstreamKeys: string[] = [];

  const callers = createCallers({
    port: ports.listen,
    creds,
    rng,
    now,
    onSessionToken: (token) => proxy.addSecret(token),
  });
  const kindsOf = (pool: PoolName): Kind[] => KINDS.filter((k) => k.pool === pool);
  const one = (pool: PoolName) => async (): Promise<void> => {
    const kind = rng.pick(kindsOf(pool), (k) => k.weight);
    const id = ++nextId;
    record(kind, id, await callers.run(kind, id));
  };

  const sampler = startSampler(proxy.pid, async () => (await proxy.admin("/metrics", 10_000)).body, now);
  let stopping = false;
  const schedule = startSchedule(
    buildSchedule(args.durationMs),
    {
      rotateKey() {
        const next = newKey();
        proxy.addSecret(next);
        upstreamKeys.push(key);
        upstream.issue(next);
        // The store holds the new key before MythIQ refuses the old one (the documented order);
        // "at once": no waiting for the proxy to pick the new one up.
        writeAtomic(keyFile, next);
        upstream.revoke(key);
        key = next;
      },
      writeConfig(valid) {
        if (valid) generation += 1;
        writeAtomic(configFile, valid ? validConfig() : invalidConfig(soakConfig(ports, keyFile, creds, generation + 1000)));
      },
      sighup: () => proxy.signal("SIGHUP"),
      logged: (msg) => proxy.logged(msg),
      setRates(rates) {
        Object.assign(upstream.rates, rates);
      },
      redisKill: () => redis.kill(),
      redisStart: () => redis.start(),
      log: (line) => out(`  ${line}`),
    },
    now,
    () => stopping,
  );
  const faultLog = schedule.log;

  const pools = {
    short: runPaced(args.rate, SHORT_MAX_IN_FLIGHT, one("short")),
    bulk: runLoops(2, 100, one("bulk")),
    events: runLoops(4, 0, one("events")),
    slow: runLoops(2, 100, one("slow")),
  };
  // Spread over a second: the point is the load held at once, not a storm of new connections.
  const burst = Object.entries(OPENING_BURST).flatMap(([name, count]) => Array.from({ length: count }, () => KINDS.find((k) => k.name === name)!));
  const opening = sleep(1_000).then(() =>
    Promise.all(
      burst.map(async (kind, i) => {
        await sleep((i * 1_000) / burst.length);
        const id = ++nextId;
        record(kind, id, await callers.run(kind, id));
      }),
    ),
  );
  const progress = setInterval(() => {
    const last = sampler.proc.at(-1);
    const m = sampler.metrics.at(-1);
    out(
      `  ${(now() / 1000).toFixed(0)}s sent ${tally.sent()} unexpected ${tally.unexpectedCount()} rss ${last === undefined ? "?" : (last.rss / 1e6).toFixed(1)} MB fds ${last?.fds ?? "?"} heap ${m === undefined ? "?" : (m.heapUsed / 1e6).toFixed(1)} MB lag p99 ${m === undefined ? "?" : (m.lagP99 * 1000).toFixed(1)} ms`,
    );
  }, 30_000);

  await sleep(args.durationMs);
  const loadEnd = now();
  const ownCpu = process.cpuUsage(ownCpuAtStart);
  stopping = true;
  await Promise.all([pools.short.stop(), pools.bulk.stop(), pools.events.stop(), pools.slow.stop(), opening]);
  await schedule.done;
  clearInterval(progress);

  // ---- quiet point: everything sent so far is in the audit log and in requests_total
  // (a request the soak gave up on unanswered may or may not have reached the proxy; such a
  // request is an unexpected outcome anyway)
  const accounted = (count: number): boolean => count <= tally.sent() && count >= tally.sent() - tally.abandoned();
  let quietRequests = NaN;
  const quiet = await until(async () => {
    const text = await proxy.admin("/metrics").then((r) => r.body, () => "");
    quietRequests = text === "" ? NaN : parseMetrics(now(), text).requests;
    return accounted(proxy.audit.lines) && accounted(quietRequests);
  }, 15_000, 250);
  const quietAudit = proxy.audit.lines;
  const quietSent = tally.sent();
  const metricsAtQuiet = await proxy.admin("/metrics").then((r) => (r.status === 200 ? r.body : ""), () => "");
  const finalMetrics = parseMetrics(now(), metricsAtQuiet);

  // ---- drain: long requests in flight, SIGTERM, they finish, new connections are refused
  const drainKinds = KINDS.filter((k) => ["SSE token", "SSE session", "slow upload 256 KiB", "slow reader 4 MiB"].includes(k.name));
  const drainRuns = drainKinds.flatMap((kind) => [0, 1].map(() => {
    const id = ++nextId;
    return callers.run(kind, id).then((outcome) => record(kind, id, outcome));
  }));
  await sleep(500);
  const sigtermAt = now();
  proxy.signal("SIGTERM");
  const readyz503 = await until(async () => (await proxy.admin("/readyz", 1_000).catch(() => ({ status: 0 }))).status === 503, 5_000, 20);
  const probeKind = { name: "new request while draining", expect: { type: "refuse", answers: ["503 draining"] } as Expectation };
  const probeId = ++nextId;
  const probe = await send(ports.listen, { method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${creds.app}`, "x-soak-id": String(probeId) }, agent: false, timeoutMs: 10_000 }, now);
  record(probeKind, probeId, probe, !probe.sent && probe.error === "ECONNREFUSED" ? "drain: connection refused" : undefined);
  await Promise.all(drainRuns);
  const exitCode = await proxy.exited;
  const drainMs = now() - sigtermAt;
  sampler.stop();
  callers.close();
  const noise = monitor.stop();

  // ---- judge
  schedule.log.windows.push(...overloadWindows(proxy.log.shedding.map((c) => ({ on: c.on, at: c.at - wallAtStart })), sampler.metrics));
  tally.judgeShed();
  const requests = tally.summary();
  const procHalf = secondHalf(sampler.proc, 0, loadEnd);
  const metricsHalf = secondHalf(sampler.metrics, 0, loadEnd);
  const rss = growth(procHalf.map((s) => ({ t: s.t, v: s.rss })), RSS_SPREAD_LIMIT, RSS_RISE_LIMIT);
  const fds = growth(procHalf.map((s) => ({ t: s.t, v: s.otherFds })), FD_SPREAD_LIMIT, FD_RISE_LIMIT);
  const allFds = growth(procHalf.map((s) => ({ t: s.t, v: s.fds })), Infinity, Infinity);
  const heap = growth(metricsHalf.map((s) => ({ t: s.t, v: s.heapUsed })), RSS_SPREAD_LIMIT, RSS_RISE_LIMIT);
  const auditIds = proxy.audit.ids;
  const missingIds = tally.requestIds().filter((id) => !auditIds.has(id)).length;

  const failures: string[] = [];
  if (requests.unexpectedCount > 0) failures.push(`${requests.unexpectedCount} unexpected response(s)`);
  if (!quiet) failures.push(`before the drain: ${quietSent} requests sent, ${quietAudit} audit lines, requests_total ${quietRequests}`);
  if (!accounted(proxy.audit.lines)) failures.push(`${requests.sent} requests sent${requests.abandoned > 0 ? ` (${requests.abandoned} given up unanswered)` : ""} but ${proxy.audit.lines} audit lines`);
  if (missingIds > 0) failures.push(`${missingIds} response request ids not in the audit log`);
  if (proxy.audit.duplicateIds > 0) failures.push(`${proxy.audit.duplicateIds} request ids audited twice`);
  const rssJudged = loadEnd >= RSS_JUDGED_FROM_MS;
  if (rssJudged && rss.growing) failures.push(`RSS still growing over the second half (spread ${(rss.spread / 1e6).toFixed(1)} MB, trend +${(rss.rise / 1e6).toFixed(1)} MB)`);
  if (fds.growing) failures.push(`fds (other than open connections) still growing over the second half (spread ${fds.spread}, trend +${fds.rise.toFixed(1)})`);
  if (exitCode !== 0) failures.push(`the proxy exited ${exitCode} after SIGTERM`);
  if (!readyz503) failures.push("/readyz did not turn 503 during the drain");
  if (proxy.leaks.length > 0) failures.push(`${proxy.leaks.length} log line(s) carry a secret`);
  if (upstream.violations.length > 0) failures.push(`${upstream.violations.length} thing(s) reached MythIQ that must not`);
  if (proxy.log.notJson > 0) failures.push(`${proxy.log.notJson} stdout line(s) that are not JSON log or audit lines`);
  if (finalMetrics.reloadsApplied !== faultLog.counts.reloadsValid || finalMetrics.reloadsRejected !== faultLog.counts.reloadsInvalid) {
    failures.push(`config_reloads_total applied ${finalMetrics.reloadsApplied} rejected ${finalMetrics.reloadsRejected}, expected ${faultLog.counts.reloadsValid} and ${faultLog.counts.reloadsInvalid}`);
  }
  if (finalMetrics.rotations !== faultLog.counts.rotations) failures.push(`key_rotations_total ${finalMetrics.rotations}, expected ${faultLog.counts.rotations}`);
  if (faultLog.errors.length > 0) failures.push(`the fault schedule failed: ${faultLog.errors.join("; ")}`);
  if (sampler.scrapeErrors.length > 0) failures.push(`${sampler.scrapeErrors.length} /metrics scrape(s) failed`);

  const result: SoakResult = {
    command: `npm run soak -- ${process.argv.slice(2).join(" ")}`.trim(),
    date: new Date().toISOString(),
    machine: {
      cpus: os.availableParallelism(),
      node: process.version,
      otherLoad: noise,
      proxyCores: cpuShare(sampler.proc, loadEnd),
      soakCores: (ownCpu.user + ownCpu.system) / 1e3 / loadEnd,
    },
    durationMs: args.durationMs,
    rate: args.rate,
    seed: args.seed,
    nodeFlags,
    env: args.env,
    requests: { ...requests, skipped: pools.short.skipped() },
    accounting: {
      quietSent,
      quietAudit,
      quietRequestsTotal: quietRequests,
      sent: requests.sent,
      abandoned: requests.abandoned,
      auditLines: proxy.audit.lines,
      missingIds,
      duplicateIds: proxy.audit.duplicateIds,
      auditByStatusReason: Object.fromEntries([...proxy.audit.byStatusReason].sort((a, b) => b[1] - a[1])),
    },
    faults: {
      ...faultLog.counts,
      windows: faultLog.windows.length,
      upstream: upstream.totals,
      rotationsSeen: finalMetrics.rotations,
      reloadsApplied: finalMetrics.reloadsApplied,
      reloadsRejected: finalMetrics.reloadsRejected,
      refreshesRequested: proxy.log.events.get("info key refresh requested") ?? 0,
      storeDownSamples: sampler.metrics.filter((m) => m.storeUp === 0).length,
      errors: faultLog.errors,
    },
    samples: { proc: sampler.proc, metrics: sampler.metrics },
    growth: { rss, rssJudged, fds, allFds, heap, window: [loadEnd / 2, loadEnd] },
    drain: { exitCode, ms: drainMs, readyz503, inFlight: drainRuns.length },
    log: { events: Object.fromEntries([...proxy.log.events].sort((a, b) => b[1] - a[1])), errors: proxy.log.errors, notJson: proxy.log.notJson },
    leaks: proxy.leaks,
    violations: upstream.violations,
    scrapeErrors: sampler.scrapeErrors,
    failures,
  };
  out(renderReport(result));
  if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify(result, null, 1)}\n`);
  await cleanup();
  return failures.length === 0 ? 0 : 1;
}

/** CPU of the proxy over the traffic phase, in cores. */
function cpuShare(samples: readonly { t: number; cpu: number }[], end: number): number {
  const during = samples.filter((p) => p.t <= end);
  const first = during[0];
  const last = during.at(-1);
  return first === undefined || last === undefined || last.t === first.t ? NaN : (last.cpu - first.cpu) / ((last.t - first.t) / 1000);
}


main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
