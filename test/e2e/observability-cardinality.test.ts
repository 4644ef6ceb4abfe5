// Whatever callers send, the number of series stays flat (SPEC §7: label values come only from the
// config). 1,000 warm-up requests, then 10,000 more with random paths, query names, models, tokens,
// Origins and X-Forwarded-For hops go through the whole proxy, against an upstream that answers with
// assorted statuses; the series are counted after every 1,000. The generator is seeded, so a failure
// reproduces.
import t from "tap";
import http from "node:http";
import { fingerprint } from "../../src/keys/validate-key.ts";
import { VERSION } from "../../src/version.ts";
import { startFakeUpstream, type FakeUpstream, type RecordedRequest } from "../helpers/fake-upstream.ts";
import { allowedFromConfig, seriesCount, unboundedLabels } from "../helpers/observe-checks.ts";
import { parseScrape, type Scrape } from "../helpers/prom-text.ts";
import { configYaml, startTestProxy, TEST_KEY, TOKEN, waitReady, type TestProxy } from "../helpers/proxy-harness.ts";

const WARM_UP = 1_000;
const MEASURED = 10_000;
const CHECKPOINT = 1_000;
const CONCURRENCY = 64;

/** mulberry32: a small seeded PRNG, so every run sends the same requests. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const rng = seeded(0x6d797468);
const between = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
/** Every random value sent; none may show up in the scrape. Kept at 6+ characters so a hit means a leak. */
const sentValues = new Set<string>();
function word(min = 6, max = 24): string {
  let s = "";
  const n = between(min, max);
  while (s.length < n) s += Math.floor(rng() * 2 ** 32).toString(36);
  s = s.slice(0, n);
  if (s.length >= 6) sentValues.add(s);
  return s;
}

interface Outgoing {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

function randomRequest(): Outgoing {
  const headers: Record<string, string> = {};
  const token = rng();
  if (token < 0.35) headers["authorization"] = `Bearer ${TOKEN}`;
  else if (token < 0.6) headers["authorization"] = `Bearer tok-${word()}`;
  else if (token < 0.7) headers["authorization"] = `Bearer eyJ${word()}.eyJ${word()}.${word()}`;
  else if (token < 0.8) headers["authorization"] = `Basic ${Buffer.from(`${word()}:${word()}`).toString("base64")}`;
  const hop = rng();
  if (hop < 0.7) headers["x-forwarded-for"] = `${between(1, 223)}.${between(0, 255)}.${between(0, 255)}.${between(1, 254)}`;
  else if (hop < 0.8) headers["x-forwarded-for"] = `2001:db8:${between(0, 0xffff).toString(16)}::${between(1, 0xffff).toString(16)}`;
  else if (hop < 0.9) headers["x-forwarded-for"] = `${word()}, 10.${between(0, 255)}.0.1`;
  const origin = rng();
  if (origin < 0.3) headers["origin"] = "http://localhost:3000";
  else if (origin < 0.7) headers["origin"] = `https://${word()}.example`;

  const kind = rng();
  if (kind < 0.2) return { method: "GET", path: "/v1/models", headers };
  if (kind < 0.35) return { method: "GET", path: `/v1/models/${word(1, 40)}`, headers };
  if (kind < 0.55) {
    const model = rng() < 0.4 ? "stability/sdxl" : `${word()}/${word()}`;
    const body = JSON.stringify({ model, prompt: rng() < 0.05 ? "x".repeat(2000) : word() });
    return { method: "POST", path: "/v1/images/generations", headers: { ...headers, "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) }, body };
  }
  if (kind < 0.65) return { method: "GET", path: `/v1/generations?limit=${between(1, 100)}&after=${word()}`, headers };
  if (kind < 0.75) return { method: "GET", path: `/v1/generations?${word()}=${word()}`, headers };
  if (kind < 0.9) return { method: pick(["GET", "POST", "HEAD"]), path: `/${word(1, 30)}/${word(1, 30)}`, headers };
  if (kind < 0.95) return { method: "GET", path: `/v1/models/%2e%2e%2f${word()}`, headers };
  return { method: pick(["PUT", "DELETE", "PATCH"]), path: `/v1/models/${word()}`, headers };
}

/** The upstream's status is a function of the request target, so the mix does not depend on timing. */
function upstreamReply(req: RecordedRequest) {
  let h = 0;
  for (let i = 0; i < req.target.length; i++) h = (h * 31 + req.target.charCodeAt(i)) >>> 0;
  const status = [200, 200, 200, 200, 400, 404, 429, 500, 503][h % 9]!;
  return { type: "json" as const, status, body: { success: status < 400, object: "list", data: [] } };
}

function request(agent: http.Agent, port: number, out: Outgoing): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request({ host: "127.0.0.1", port, method: out.method, path: out.path, headers: out.headers, agent }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", () => resolve(0));
    req.end(out.body);
  });
}

async function traffic(agent: http.Agent, port: number, n: number, statuses: Map<number, number>): Promise<void> {
  const queue = Array.from({ length: n }, randomRequest);
  const worker = async () => {
    for (let out = queue.shift(); out !== undefined; out = queue.shift()) {
      const status = await request(agent, port, out);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

let upstream: FakeUpstream;
let proxy: TestProxy;

t.before(async () => {
  upstream = await startFakeUpstream();
  upstream.fallback = upstreamReply;
  proxy = await startTestProxy({
    yaml: configYaml(upstream.url, "trusted_proxies: [127.0.0.0/8]\npricing: { stability/sdxl: 0.004, default: 0.01 }\n"),
    env: { MYTHIQ_API_KEY: TEST_KEY },
  });
  await waitReady(proxy);
});
t.teardown(async () => {
  await proxy.close();
  await upstream.close();
});

async function scrape(): Promise<{ text: string; scrape: Scrape }> {
  const res = await proxy.admin("/metrics");
  return { text: res.body, scrape: parseScrape(res.body) };
}

void t.test(`${MEASURED} random requests leave the number of series flat`, async (t) => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  t.teardown(() => agent.destroy());
  const statuses = new Map<number, number>();
  const started = performance.now();

  await traffic(agent, proxy.port, WARM_UP, statuses);
  const afterWarmUp = await scrape();
  const baseline = seriesCount(afterWarmUp.scrape);
  const baselineAll = afterWarmUp.scrape.samples.length;

  const counts: number[] = [];
  const allCounts: number[] = [];
  for (let done = 0; done < MEASURED; done += CHECKPOINT) {
    await traffic(agent, proxy.port, CHECKPOINT, statuses);
    const { scrape: s } = await scrape();
    counts.push(seriesCount(s));
    allCounts.push(s.samples.length);
  }
  const seconds = (performance.now() - started) / 1000;
  t.comment(`${WARM_UP + MEASURED} requests in ${seconds.toFixed(1)} s; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
  t.comment(`mythiq_proxy_* series after warm-up: ${baseline}; after each 1,000: ${counts.join(", ")}`);
  t.comment(`all series (process metrics included) after warm-up: ${baselineAll}; after each 1,000: ${allCounts.join(", ")}`);

  t.equal([...statuses.values()].reduce((a, b) => a + b, 0), WARM_UP + MEASURED, "every request was answered");
  t.notOk(statuses.has(0), "no connection error");
  t.ok(statuses.size >= 8, "a mix of statuses: allowed, refused, upstream errors");
  t.same(counts, Array.from({ length: counts.length }, () => baseline), `mythiq_proxy_* series stay at ${baseline}`);
  t.ok(baseline < 1000, "and that number is small");

  const { scrape: s, text } = await scrape();
  const config = proxy.proxy.compiled().config;
  const allowed = allowedFromConfig(config, { fingerprints: [fingerprint(TEST_KEY)], versions: [""], hashes: [proxy.proxy.compiled().hash], build: [VERSION, process.version] });
  t.same(unboundedLabels(s, allowed), [], "every label value comes from the config or a fixed set");
  const leaked = [...sentValues].filter((v) => text.includes(v));
  t.same(leaked, [], `none of the ${sentValues.size} random values sent is in the scrape`);
  const audits = proxy.logs.filter((l) => !("msg" in l)).length;
  t.ok(audits >= WARM_UP + MEASURED - 200 && audits <= WARM_UP + MEASURED, `${audits} audit lines (parser-level refusals have none)`);
});
