// Limits through the whole proxy (memory store) over real sockets, in front of a fake MythIQ:
// every refusal is SPEC's 429 JSON with the right reason and a Retry-After, MythIQ receives nothing
// for it and no key byte comes back; streams hold their concurrency slot until they end and aborted
// requests give it back once; concurrent requests cannot spend past the daily budget; failed
// upstream answers give their reservation back; estimated_cost_usd_total counts what was kept.
import t, { type Test } from "tap";
import { hashToken } from "../../src/cli/hash-token.ts";
import { msUntilUtcMidnight } from "../../src/limits/utc-day.ts";
import { startFakeUpstream, type FakeUpstream, type Reply } from "../helpers/fake-upstream.ts";
import { send, type ClientResponse } from "../helpers/forward-harness.ts";
import { parseScrape, valueOf } from "../helpers/prom-text.ts";
import { configHead, startTestProxy, TEST_KEY, waitReady, type TestProxy } from "../helpers/proxy-harness.ts";

const TOKENS = {
  rated: "tok-rated-0123456789abcdef",
  streams: "tok-streams-0123456789abcdef",
  spender: "tok-spender-0123456789abcdef",
  failing: "tok-failing-0123456789abcdef",
} as const;

function yaml(upstreamUrl: string): string {
  return `${configHead(upstreamUrl)}clients:
  - id: rated
    auth: { tokens: ["${hashToken(TOKENS.rated)}"] }
    routes: [GET /v1/models]
    rate_limit: { requests: 3, per: 1h }
  - id: streams
    auth: { tokens: ["${hashToken(TOKENS.streams)}"] }
    routes: [GET /v1/models]
    concurrency: 2
  - id: spender
    auth: { tokens: ["${hashToken(TOKENS.spender)}"] }
    routes: [POST /v1/images/generations]
    budget: { daily_usd: 0.05 }
  - id: failing
    auth: { tokens: ["${hashToken(TOKENS.failing)}"] }
    routes: [POST /v1/images/generations]
    budget: { daily_usd: 0.02 }
pricing: { default: 0.01 }
`;
}

let upstream: FakeUpstream;
let proxy: TestProxy;
const defaultFallback: Reply = { type: "json", status: 200, body: { object: "list", data: [] } };

t.before(async () => {
  upstream = await startFakeUpstream();
  upstream.fallback = defaultFallback;
  proxy = await startTestProxy({ yaml: yaml(upstream.url), env: { MYTHIQ_API_KEY: TEST_KEY } });
  await waitReady(proxy);
});
t.teardown(async () => {
  await proxy.close();
  await proxy.proxy.compiled().limits.close();
  await upstream.close();
});

const get = (token: string, extra: Parameters<typeof send>[1] = {}) =>
  send(proxy.port, { path: "/v1/models", headers: { authorization: `Bearer ${token}` }, ...extra });

const generate = (token: string) => {
  const body = JSON.stringify({ model: "stability/sdxl", prompt: "a lighthouse" });
  return send(proxy.port, {
    method: "POST",
    path: "/v1/images/generations",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    body,
  });
};

/** SPEC §5's 429: JSON in MythIQ's shape with `reason`, a Retry-After, no key byte. */
function isRefusal(t: Test, res: ClientResponse, reason: string): number {
  t.equal(res.status, 429, `${reason}: 429`);
  t.match(JSON.parse(res.body.toString()), { success: false, code: "rate_limit_error", reason, message: String });
  t.match(res.headers["retry-after"], /^[1-9]\d*$/, "Retry-After in whole seconds");
  t.ok(typeof res.headers["x-request-id"] === "string");
  t.notOk(res.raw.includes(TEST_KEY), "no key byte came back");
  return Number(res.headers["retry-after"]);
}

async function scrape() {
  return parseScrape((await proxy.admin("/metrics")).body);
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test("rate limit: the burst passes, then 429 rate_limited with Retry-After until the next token", async (t) => {
  const before = upstream.requests.length;
  for (let i = 0; i < 3; i++) t.equal((await get(TOKENS.rated)).status, 200, `request ${i + 1}`);
  for (let i = 0; i < 2; i++) {
    const wait = isRefusal(t, await get(TOKENS.rated), "rate_limited");
    // 3 per hour: one token every 1 200 s; a few seconds of the test may already have refilled.
    t.ok(wait > 1_190 && wait <= 1_200, `Retry-After ${wait} s ≈ 1200 s`);
  }
  t.equal(upstream.requests.length, before + 3, "MythIQ received only the allowed requests");
  t.equal(valueOf(await scrape(), "mythiq_proxy_denied_total", { client: "rated", reason: "rate_limited" }), 2);
});

t.test("concurrency: streams hold their slot until they end; an aborted request gives its slot back once", async (t) => {
  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  upstream.fallback = { type: "sse", events: [{ data: "first" }, { data: "last", until: gate }] };
  t.teardown(() => {
    open();
    upstream.fallback = defaultFallback;
  });
  const before = upstream.requests.length;

  let abort: () => void = () => {};
  const aborted = new Promise<void>((resolve) => (abort = resolve));
  const firstChunk: Array<Promise<void>> = [];
  const stream = (abortWhen?: Promise<void>) => {
    let seen: () => void = () => {};
    firstChunk.push(new Promise<void>((resolve) => (seen = resolve)));
    return get(TOKENS.streams, { onChunk: () => seen(), ...(abortWhen === undefined ? {} : { abortWhen }) });
  };
  const a = stream(aborted);
  const b = stream();
  await Promise.all(firstChunk);
  t.equal(upstream.requests.length, before + 2, "two streams in flight");

  isRefusal(t, await get(TOKENS.streams), "concurrency_limited");
  const third = await get(TOKENS.streams);
  t.equal(Number(third.headers["retry-after"]), 1);
  t.equal(upstream.requests.length, before + 2, "MythIQ received nothing for the refusals");

  abort();
  t.equal((await a).complete, false, "the first stream was aborted");
  await until("the aborted request to end", async () => valueOf(await scrape(), "mythiq_proxy_inflight_requests", { client: "streams" }) === 1);
  const c = stream();
  await firstChunk[2];
  t.equal(upstream.requests.length, before + 3, "the freed slot was used");
  isRefusal(t, await get(TOKENS.streams), "concurrency_limited");

  open();
  t.equal((await b).status, 200);
  t.ok((await b).body.toString().includes("data: last"), "the stream ran to its end");
  await c;
  await until("streams to end", async () => valueOf(await scrape(), "mythiq_proxy_inflight_requests", { client: "streams" }) === 0);

  // Every slot came back exactly once: two fit again, the third does not.
  let finish: () => void = () => {};
  const held = new Promise<void>((r) => (finish = r));
  upstream.fallback = { type: "sse", events: [{ data: "x" }, { data: "y", until: held }] };
  const pair = [get(TOKENS.streams), get(TOKENS.streams)];
  await until("two more streams", () => upstream.requests.length === before + 5);
  isRefusal(t, await get(TOKENS.streams), "concurrency_limited");
  finish();
  for (const res of await Promise.all(pair)) t.equal(res.status, 200);
});

t.test("budget: concurrent requests spend at most daily_usd; reservations are taken before forwarding", async (t) => {
  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  upstream.fallback = { type: "respond", status: 200, headers: { "content-type": "application/json" }, body: [{ until: gate }, "{}"] };
  t.teardown(() => {
    open();
    upstream.fallback = defaultFallback;
  });
  const before = upstream.requests.length;

  const all = Array.from({ length: 12 }, () => generate(TOKENS.spender));
  // 0.05 a day at 0.01 each: five are held at MythIQ, seven are refused while those are in flight.
  await until("five at MythIQ", () => upstream.requests.length === before + 5);
  const settledEarly = await Promise.race([Promise.all(all).then(() => "all"), new Promise((r) => setTimeout(() => r("waiting"), 200))]);
  t.equal(settledEarly, "waiting", "the allowed five are still in flight");
  open();
  const results = await Promise.all(all);
  const ok = results.filter((r) => r.status === 200);
  const refused = results.filter((r) => r.status !== 200);
  t.equal(ok.length, 5, "exactly the budget: 5 × 0.01 = 0.05");
  t.equal(refused.length, 7);
  const expected = Math.ceil(msUntilUtcMidnight(Date.now()) / 1000);
  for (const res of refused) {
    const wait = isRefusal(t, res, "budget_exhausted");
    t.ok(Math.abs(wait - expected) <= 5, `Retry-After ${wait} s ≈ seconds to 00:00 UTC (${expected})`);
  }
  t.equal(upstream.requests.length, before + 5, "MythIQ received only the five");
  const metrics = await scrape();
  t.equal(valueOf(metrics, "mythiq_proxy_estimated_cost_usd_total", { client: "spender" }), 0.05, "the kept spend is counted");
  t.equal(valueOf(metrics, "mythiq_proxy_denied_total", { client: "spender", reason: "budget_exhausted" }), 7);
});

t.test("budget: an upstream error gives the reservation back; only kept spend is counted", async (t) => {
  const before = upstream.requests.length;
  upstream.reply(
    { type: "json", status: 500, body: { success: false, message: "boom", code: "server_error" } },
    { type: "json", status: 400, body: { success: false, message: "bad", code: "invalid_request_error" } },
    { type: "json", status: 503, body: { success: false, message: "busy", code: "service_unavailable" } },
  );
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await generate(TOKENS.failing)).status);
  t.same(statuses, [500, 400, 503, 200, 200, 429], "three failures cost nothing; 0.02 buys two successes");
  t.equal(upstream.requests.length, before + 5);
  t.equal(valueOf(await scrape(), "mythiq_proxy_estimated_cost_usd_total", { client: "failing" }), 0.02);
});
