/**
 * `node bench/soak/memory.ts [--node-flag ...] [NAME=VALUE ...]`: the proxy's memory under a fixed
 * load, to compare Node flags and allocator settings (BENCHMARKS.md, "Soak").
 *
 * A closed loop (a fixed number of requests in flight, whatever the machine's speed, so that runs
 * compare on a busy machine): 150 held JSON POSTs, 150 GETs held 2 s by MythIQ, 4 loops of 1 MiB
 * uploads and 4 of 4 MiB downloads, for 60 s, against the built proxy with the soak's config.
 * Prints the median RSS of the last 30 s and where it is (V8 pages, malloc's main arena, other
 * anonymous memory), the heap from /metrics, and the proxy's CPU per request.
 *
 *   node bench/soak/memory.ts                                      the image's flags
 *   node bench/soak/memory.ts --max-semi-space-size=4              other Node flags
 *   node bench/soak/memory.ts MALLOC_ARENA_MAX=2                   environment for the proxy
 *   node bench/soak/memory.ts LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
 */
import http from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cpuSeconds, freePort, rssParts } from "../proc.ts";
import { send, type Outcome } from "./client.ts";
import { newCredentials, newKey, soakConfig } from "./config.ts";
import { startSoakProxy } from "./proxy.ts";
import { startRedisServer } from "../../test/helpers/redis-server.ts";
import { parseMetrics } from "./sampler.ts";
import { memoryParts, type MemoryParts } from "./smaps.ts";
import { startSoakUpstream } from "./upstream.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SECONDS = 60;
const argv = process.argv.slice(2);
const env = Object.fromEntries(argv.filter((a) => !a.startsWith("-") && a.includes("=")).map((a) => [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]));
const given = argv.filter((a) => a.startsWith("--"));
const dockerfile = readFileSync(path.join(ROOT, "Dockerfile"), "utf8");
const entry = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1] ?? "[]") as string[];
const nodeFlags = given.length > 0 ? given : entry.slice(1, entry.indexOf("dist/main.js"));

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const median = (values: number[]): number => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);

const dir = mkdtempSync(path.join(os.tmpdir(), "mythiq-memory-"));
const redis = await startRedisServer();
const upstream = await startSoakUpstream(Math.random);
const creds = newCredentials();
const key = newKey();
upstream.issue(key);
writeFileSync(path.join(dir, "key"), key);
const ports = { listen: await freePort(), admin: await freePort(), upstream: upstream.port };
writeFileSync(path.join(dir, "proxy.yaml"), soakConfig(ports, path.join(dir, "key"), creds, 0));
const proxy = startSoakProxy({
  root: ROOT,
  configFile: path.join(dir, "proxy.yaml"),
  stdoutFile: path.join(dir, "stdout.jsonl"),
  listenPort: ports.listen,
  adminPort: ports.admin,
  nodeFlags,
  env: { PATH: process.env["PATH"], SOAK_SESSION_SECRET: creds.sessionSecret, REDIS_URL: redis.url, ...env },
  secrets: [key],
});
while ((await proxy.admin("/readyz").catch(() => ({ status: 0 }))).status !== 200) await sleep(50);

const started = performance.now();
const now = (): number => performance.now() - started;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1000, timeout: 10_000 });
const soakHeaders = { "x-soak-id": "0", "x-soak-kind": "memory" };
const app = { authorization: `Bearer ${creds.app}`, "content-type": "application/json", ...soakHeaders };
const bulk = { authorization: `Bearer ${creds.bulk}`, ...soakHeaders };
const body = Buffer.from(JSON.stringify({ model: "stability/sdxl", prompt: "a lighthouse at dusk ".repeat(10) }));
const chunk = Buffer.alloc(64 * 1024, 0x75);
const requests = {
  post: () => send(ports.listen, { method: "POST", path: "/v1/images/generations", headers: app, body, agent, timeoutMs: 60_000 }, now),
  held: () => send(ports.listen, { method: "GET", path: "/v1/slow", headers: bulk, agent, timeoutMs: 60_000 }, now),
  upload: () =>
    send(ports.listen, { method: "POST", path: "/v1/uploads", headers: { ...bulk, "content-type": "application/octet-stream" }, agent, timeoutMs: 60_000, body: { chunk, chunks: 16, delayMs: 0, withLength: true } }, now),
  download: () => send(ports.listen, { method: "GET", path: "/v1/files/f/content", headers: bulk, agent, timeoutMs: 60_000 }, now),
};
let stop = false;
let done = 0;
let failed = 0;
const loop = async (request: () => Promise<Outcome>): Promise<void> => {
  while (!stop) {
    const outcome = await request();
    done += 1;
    if (outcome.status !== 200) failed += 1;
  }
};
const mix: [() => Promise<Outcome>, number][] = [
  [requests.post, 150],
  [requests.held, 150],
  [requests.upload, 4],
  [requests.download, 4],
];
const loops = mix.flatMap(([request, count]) => Array.from({ length: count }, () => loop(request)));

const cpuAtStart = cpuSeconds(proxy.pid);
const samples: { rss: number; heapTotal: number; parts: MemoryParts }[] = [];
for (let second = 1; second <= SECONDS; second++) {
  await sleep(1_000);
  const metrics = parseMetrics(now(), (await proxy.admin("/metrics")).body);
  samples.push({ rss: rssParts(proxy.pid).rss, heapTotal: metrics.heapTotal, parts: memoryParts(proxy.pid) });
}
const cpu = cpuSeconds(proxy.pid) - cpuAtStart;
stop = true;
await Promise.all(loops);
agent.destroy();

const last = samples.slice(SECONDS / 2);
const part = (name: keyof MemoryParts): string => mb(median(last.map((s) => s.parts[name])));
process.stdout.write(
  `${[...nodeFlags, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(" ") || "(no flags)"}\n` +
    `  ${done} requests (${failed} not 200), proxy CPU ${((cpu / done) * 1e6).toFixed(0)} µs per request\n` +
    `  last ${SECONDS / 2} s, medians: RSS ${mb(median(last.map((s) => s.rss)))} MB = V8 pages ${part("v8Pages")} + malloc main arena ${part("mallocMainArena")} + other anonymous ${part("otherAnonymous")} + file-backed ${part("fileBacked")}; heap total ${mb(median(last.map((s) => s.heapTotal)))} MB\n`,
);
proxy.signal("SIGTERM");
await proxy.exited;
await upstream.close();
await redis.close();
rmSync(dir, { recursive: true, force: true });
