// Tracing end to end (SPEC §11), over real sockets: the proxy with `tracing` configured, the fake
// MythIQ recording what it received, and a test OTLP/HTTP collector decoding what the exporter sent.
// - a trusted caller's traceparent is continued: MythIQ gets the same trace id with a new parent
//   span id (the client span's), the collector gets the server and client spans with the expected
//   attributes, and the audit line carries the trace id;
// - an untrusted caller's traceparent is replaced, not continued, and never reaches MythIQ;
// - a 401 refresh-and-retry is two client spans; a refusal is a server span alone;
// - no key, client token, cookie, JWT or query value is in any span;
// - with the collector down, requests still succeed and the dropped spans are counted.
import * as net from "node:net";
import t, { type Test } from "tap";
import { hashToken } from "../../src/cli/hash-token.ts";
import { builtinSources } from "../../src/keys/sources.ts";
import { fingerprint } from "../../src/keys/validate-key.ts";
import { createOtelTracer } from "../../src/observe/tracing/otel-tracer.ts";
import type { TracerFactory } from "../../src/observe/tracing/tracing.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { send } from "../helpers/forward-harness.ts";
import { freePort } from "../helpers/free-port.ts";
import { createScriptedSource, value } from "../helpers/keys-fakes.ts";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../helpers/otlp-receiver.ts";
import { configHead, startTestProxy, TEST_KEY, TOKEN, TOKEN_HASH, waitReady, type LogLine, type TestProxy } from "../helpers/proxy-harness.ts";

const SERVER = 2;
const CLIENT = 3;
const COLLECTOR_KEY = "otlp-collector-key-3a7c9e1b5d";
const ROTATED_KEY = "mq-rotated-after-401-0f1e2d3c4b5a69788796";
const BATCH_TOKEN = "tok-batch-traced-aabbccddeeff0011";
const COOKIE = "session-cookie-do-not-trace-5151";
const QUERY_SECRET = "cursor-do-not-trace-2718";
const CALLER_API_KEY = "caller-api-key-do-not-trace-99";

/** A tracer that exports every 50 ms, so tests do not wait a second per batch. */
const fastTracer =
  (batch: Partial<Parameters<typeof createOtelTracer>[0]["batch"]> = {}): TracerFactory =>
  (settings) =>
    createOtelTracer({ ...settings, batch: { maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 50, exportTimeoutMillis: 2_000, ...batch } });

function traceparent(traceId: string, spanId: string, flags = "01"): string {
  return `00-${traceId}-${spanId}-${flags}`;
}

/** The traceparent parts MythIQ received on the n-th request (0-based). */
function receivedParent(upstream: FakeUpstream, n: number): { traceId: string; parentId: string; flags: string } {
  const header = upstream.requests[n]?.headers["traceparent"];
  if (typeof header !== "string") throw new Error(`request ${n} carried no traceparent`);
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(header);
  if (m === null) throw new Error(`malformed traceparent ${header}`);
  return { traceId: m[1]!, parentId: m[2]!, flags: m[3]! };
}

function auditOf(proxy: TestProxy, requestId: string | undefined): LogLine {
  const line = proxy.logs.find((l) => l["request_id"] === requestId && "status" in l && !("msg" in l));
  if (line === undefined) throw new Error(`no audit line for ${requestId}`);
  return line;
}

function spansOfTrace(receiver: OtlpReceiver, traceId: string): ReceivedSpan[] {
  return receiver.spans.filter((s) => s.traceId === traceId);
}

void t.test("tracing on", async (t) => {
  const upstream = await startFakeUpstream();
  const receiver = await startOtlpReceiver();
  const batchSource = createScriptedSource("vault", value(TEST_KEY, "1"));
  const proxy = await startTestProxy({
    yaml: `${configHead(upstream.url)}  vaulted:
    source: vault
    vault: { address: http://127.0.0.1:8200, auth: { method: token, token: { env: VAULT_TOKEN } }, path: p, field: f }
clients:
  - id: web
    auth: { tokens: ["${TOKEN_HASH}"] }
    routes: [GET /v1/models, "GET /v1/generations?limit&after", POST /v1/images/generations]
    models: [stability/sdxl]
  - id: batch
    key: vaulted
    auth: { tokens: ["${hashToken(BATCH_TOKEN)}"] }
    routes: [GET /v1/models]
  - id: local
    auth: { anonymous: true }
    networks: [127.0.0.0/8]
    routes: [GET /v1/models]
tracing:
  endpoint: ${receiver.url}
  headers: { x-collector-key: { env: OTLP_KEY } }
  service_name: proxy-under-test
  trust_incoming: [web, batch]
`,
    env: { MYTHIQ_API_KEY: TEST_KEY, VAULT_TOKEN: "hvs.test", OTLP_KEY: COLLECTOR_KEY },
    sources: { ...builtinSources, vault: () => batchSource },
    tracer: fastTracer(),
  });
  t.teardown(async () => {
    await proxy.close();
    await upstream.close();
    await receiver.close();
  });
  await waitReady(proxy);

  const sent: Array<{ label: string; id: string | undefined }> = [];

  await t.test("a trusted traceparent is continued to MythIQ through a new span", async (t) => {
    const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const callerSpan = "00f067aa0ba902b7";
    const res = await send(proxy.port, {
      path: "/v1/models",
      headers: { authorization: `Bearer ${TOKEN}`, traceparent: traceparent(callerTrace, callerSpan), tracestate: "vendor=opaque", "user-agent": "tracing-test/1.0" },
    });
    t.equal(res.status, 200, res.body.toString());
    const id = res.headers["x-request-id"] as string | undefined;
    sent.push({ label: "trusted", id });

    const upstreamSaw = receivedParent(upstream, upstream.requests.length - 1);
    t.equal(upstreamSaw.traceId, callerTrace, "MythIQ got the caller's trace id");
    t.not(upstreamSaw.parentId, callerSpan, "with a new parent span id");
    t.equal(upstreamSaw.flags, "01", "sampled, as the caller decided");
    t.equal(upstream.requests.at(-1)?.headers["tracestate"], "vendor=opaque", "the trusted caller's tracestate goes along");

    const spans = await receiver.waitForSpans((all) => spansOfTrace(receiver, callerTrace).length >= 2 && all.length >= 2);
    const mine = spansOfTrace(receiver, callerTrace);
    const server = mine.find((s) => s.kind === SERVER);
    const client = mine.find((s) => s.kind === CLIENT);
    if (server === undefined || client === undefined) return t.fail(`server and client spans expected, got ${JSON.stringify(spans.map((s) => s.name))}`);
    t.equal(server.parentSpanId, callerSpan, "the server span's parent is the caller's span");
    t.equal(client.parentSpanId, server.spanId, "the client span is the server span's child");
    t.equal(client.spanId, upstreamSaw.parentId, "MythIQ's parent is the client span");
    t.equal(server.name, "GET /v1/models");
    t.equal(client.name, "GET");
    t.match(server.attributes, {
      "http.request.method": "GET",
      "url.scheme": "http",
      "url.path": "/v1/models",
      "http.route": "/v1/models",
      "http.response.status_code": 200,
      "client.address": "127.0.0.1",
      "network.peer.address": "127.0.0.1",
      "network.protocol.version": "1.1",
      "user_agent.original": "tracing-test/1.0",
      "mythiq_proxy.request_id": id,
      "mythiq_proxy.client": "web",
      "mythiq_proxy.key": "default",
      "mythiq_proxy.key_fingerprint": fingerprint(TEST_KEY),
    });
    t.notOk("error.type" in server.attributes, "a 200 is not an error");
    t.notOk("mythiq_proxy.reason" in server.attributes);
    t.match(client.attributes, {
      "http.request.method": "GET",
      "url.full": `${upstream.url}/v1/models`,
      "server.address": "127.0.0.1",
      "server.port": upstream.port,
      "http.response.status_code": 200,
      "mythiq_proxy.key": "default",
      "mythiq_proxy.key_fingerprint": fingerprint(TEST_KEY),
    });
    t.notOk("http.request.resend_count" in client.attributes, "a first attempt is not a resend");
    t.equal(server.statusCode, 0);
    t.equal(client.statusCode, 0);
    t.ok(server.startTimeUnixNano <= client.startTimeUnixNano && client.endTimeUnixNano <= server.endTimeUnixNano, "the client span lies within the server span");
    t.equal(server.resource["service.name"], "proxy-under-test");
    t.equal(server.scope, "mythiq-proxy");
    t.equal(server.traceState, "vendor=opaque");

    t.equal(auditOf(proxy, id)["trace_id"], callerTrace, "the audit line carries the trace id");
    t.ok(receiver.exports.every((e) => e.headers["x-collector-key"] === COLLECTOR_KEY), "the configured header reached the collector");
    t.ok(receiver.exports.every((e) => e.headers["content-type"] === "application/json"), "OTLP/HTTP, JSON encoding");
  });

  await t.test("an untrusted traceparent is replaced, not continued", async (t) => {
    const callerTrace = "11111111111111111111111111111111";
    const res = await send(proxy.port, {
      path: "/v1/models",
      // The anonymous `local` client is not in trust_incoming.
      headers: { traceparent: traceparent(callerTrace, "2222222222222222"), tracestate: "evil=1" },
    });
    t.equal(res.status, 200);
    const id = res.headers["x-request-id"] as string | undefined;
    sent.push({ label: "untrusted", id });
    const upstreamSaw = receivedParent(upstream, upstream.requests.length - 1);
    t.not(upstreamSaw.traceId, callerTrace, "MythIQ never sees the caller's trace id");
    t.equal(upstream.requests.at(-1)?.headers["tracestate"], undefined, "nor its tracestate");
    const audit = auditOf(proxy, id);
    t.equal(audit["trace_id"], upstreamSaw.traceId, "the audit line names the new trace");
    const spans = await receiver.waitForSpans(() => spansOfTrace(receiver, upstreamSaw.traceId).length >= 2);
    const server = spans.find((s) => s.traceId === upstreamSaw.traceId && s.kind === SERVER);
    t.equal(server?.parentSpanId, "", "the server span starts a new trace (no parent)");
    t.equal(server?.attributes["mythiq_proxy.client"], "local");
    t.equal(spansOfTrace(receiver, callerTrace).length, 0, "nothing was filed under the caller's trace");
  });

  await t.test("without a traceparent every request starts its own trace", async (t) => {
    const res = await send(proxy.port, { path: "/v1/models", headers: { authorization: `Bearer ${TOKEN}` } });
    t.equal(res.status, 200);
    const upstreamSaw = receivedParent(upstream, upstream.requests.length - 1);
    t.equal(auditOf(proxy, res.headers["x-request-id"] as string)["trace_id"], upstreamSaw.traceId);
    t.match(upstreamSaw.traceId, /^(?!0{32})[0-9a-f]{32}$/);
  });

  await t.test("a 401 refresh-and-retry is a second client span with the new key", async (t) => {
    batchSource.script(value(ROTATED_KEY, "2"));
    upstream.reply({ type: "unauthorized" });
    const before = upstream.requests.length;
    const res = await send(proxy.port, { path: "/v1/models", headers: { authorization: `Bearer ${BATCH_TOKEN}` } });
    t.equal(res.status, 200, "the retry with the rotated key succeeded");
    t.equal(upstream.requests.length, before + 2, "two attempts reached MythIQ");
    const first = receivedParent(upstream, before);
    const second = receivedParent(upstream, before + 1);
    t.equal(first.traceId, second.traceId, "both attempts belong to one trace");
    t.not(first.parentId, second.parentId, "each attempt has its own span");
    const spans = await receiver.waitForSpans(() => spansOfTrace(receiver, first.traceId).length >= 3);
    const clients = spansOfTrace(receiver, first.traceId).filter((s) => s.kind === CLIENT);
    const server = spansOfTrace(receiver, first.traceId).find((s) => s.kind === SERVER);
    t.equal(clients.length, 2, `two client spans (${spans.length} spans received)`);
    const refused = clients.find((s) => s.spanId === first.parentId);
    const retried = clients.find((s) => s.spanId === second.parentId);
    t.match(refused?.attributes, { "http.response.status_code": 401, "error.type": "401", "mythiq_proxy.key_fingerprint": fingerprint(TEST_KEY) });
    t.equal(refused?.statusCode, 2, "the refused attempt is an error");
    t.match(retried?.attributes, { "http.response.status_code": 200, "http.request.resend_count": 1, "mythiq_proxy.key_fingerprint": fingerprint(ROTATED_KEY) });
    t.equal(retried?.statusCode, 0);
    for (const c of clients) t.equal(c.parentSpanId, server?.spanId, "both are children of the server span");
    t.match(server?.attributes, { "http.response.status_code": 200, "mythiq_proxy.client": "batch", "mythiq_proxy.key": "vaulted", "mythiq_proxy.key_fingerprint": fingerprint(ROTATED_KEY) });
  });

  await t.test("a refusal is a server span alone, naming the reason, the check and the model asked for", async (t) => {
    const before = upstream.requests.length;
    const asked = `openai/${"x".repeat(300)}`;
    const res = await send(proxy.port, {
      method: "POST",
      path: "/v1/images/generations",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", traceparent: traceparent("33333333333333333333333333333333", "4444444444444444") },
      body: JSON.stringify({ model: asked, prompt: "p" }),
    });
    t.equal(res.status, 403);
    t.equal(upstream.requests.length, before, "MythIQ received nothing");
    t.notOk(res.raw.includes(TEST_KEY), "no byte of the key came back");
    const audit = auditOf(proxy, res.headers["x-request-id"] as string);
    t.equal(audit["trace_id"], "33333333333333333333333333333333", "trusted client: the refusal continues the caller's trace");
    t.equal(audit["check"], "body");
    t.equal((audit["model"] as string).length, 128, "the model asked for, cut to 128 characters");
    t.ok((audit["model"] as string).startsWith("openai/xxx"));
    const spans = await receiver.waitForSpans(() => spansOfTrace(receiver, "33333333333333333333333333333333").length >= 1);
    const mine = spansOfTrace(receiver, "33333333333333333333333333333333");
    t.equal(mine.length, 1, `one span (${spans.length} received)`);
    t.match(mine[0]?.attributes, {
      "http.response.status_code": 403,
      "mythiq_proxy.reason": "model_not_allowed",
      "mythiq_proxy.check": "body",
      "mythiq_proxy.client": "web",
      "http.route": "/v1/images/generations",
    });
    t.equal((mine[0]?.attributes["mythiq_proxy.model"] as string).length, 128);
    t.notOk("error.type" in (mine[0]?.attributes ?? {}), "a 4xx is not a server error");
    t.notOk("mythiq_proxy.key_fingerprint" in (mine[0]?.attributes ?? {}), "no key was sent");
  });

  await t.test("no key, token, cookie, JWT or query value is in any span", async (t) => {
    const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLXRyYWNl";
    const calls = [
      send(proxy.port, { path: `/v1/generations?limit=${QUERY_SECRET}`, headers: { authorization: `Bearer ${TOKEN}`, cookie: `session=${COOKIE}`, "x-api-key": CALLER_API_KEY } }),
      send(proxy.port, { path: `/v1/generations?limit=2&after=${QUERY_SECRET}`, headers: { authorization: `Bearer ${jwt}` } }),
      send(proxy.port, { path: `/v1/models?secret=${QUERY_SECRET}`, headers: { authorization: `Bearer ${TOKEN}` } }),
      send(proxy.port, { path: `/v1/nope?x=${QUERY_SECRET}`, headers: { cookie: `session=${COOKIE}` } }),
      send(proxy.port, { path: `/v1/../x?q=${QUERY_SECRET}` }),
    ];
    const results = await Promise.all(calls);
    t.same(results.map((r) => r.status), [200, 401, 400, 403, 400]);
    const ids = new Set(results.map((r) => r.headers["x-request-id"]));
    await receiver.waitForSpans((all) => [...ids].every((id) => all.some((s) => s.attributes["mythiq_proxy.request_id"] === id)));
    const secrets = [TEST_KEY, ROTATED_KEY, TOKEN, BATCH_TOKEN, COOKIE, QUERY_SECRET, CALLER_API_KEY, jwt, ...jwt.split("."), COLLECTOR_KEY];
    const everything = JSON.stringify(receiver.spans.map((s) => ({ name: s.name, attributes: s.attributes, resource: s.resource, traceState: s.traceState })));
    for (const secret of secrets) t.notOk(everything.includes(secret), `no span holds ${secret.slice(0, 10)}…`);
    const generationsServer = receiver.spans.find((s) => s.attributes["mythiq_proxy.request_id"] === results[0]?.headers["x-request-id"]);
    const generations = receiver.spans.find((s) => s.kind === CLIENT && s.parentSpanId === generationsServer?.spanId);
    t.equal(generations?.attributes["url.full"], `${upstream.url}/v1/generations`, "the client span's URL has no query");
    const server = receiver.spans.find((s) => s.attributes["mythiq_proxy.request_id"] === results[4]?.headers["x-request-id"]);
    t.equal(server?.attributes["url.path"], "/v1/../x", "a refused target is recorded without its query");
    t.equal(server?.attributes["mythiq_proxy.check"], "target");
  });

  await t.test("every audit line has a trace id, and the spans match them", async (t) => {
    const audits = proxy.logs.filter((l) => "status" in l && !("msg" in l));
    t.ok(audits.length >= 10);
    for (const a of audits) t.match(a["trace_id"], /^[0-9a-f]{32}$/, `${String(a["request_id"])} has a trace id`);
    for (const { label, id } of sent) {
      const audit = auditOf(proxy, id);
      t.ok(receiver.spans.some((s) => s.traceId === audit["trace_id"] && s.attributes["mythiq_proxy.request_id"] === id), `${label}: the span of the audit line's trace`);
    }
  });
});

/** The proxy with tracing pointed at `endpoint` and a small batch processor (a queue of 4 spans; 10 requests make 20). */
async function proxyTracingTo(t: Test, endpoint: string, exportTimeoutMillis: number): Promise<{ proxy: TestProxy; upstream: FakeUpstream }> {
  const upstream = await startFakeUpstream();
  const proxy = await startTestProxy({
    yaml: `${configHead(upstream.url)}clients:
  - id: web
    auth: { tokens: ["${TOKEN_HASH}"] }
    routes: [GET /v1/models]
tracing:
  endpoint: ${endpoint}
`,
    env: { MYTHIQ_API_KEY: TEST_KEY },
    tracer: fastTracer({ maxQueueSize: 4, maxExportBatchSize: 4, exportTimeoutMillis }),
  });
  t.teardown(async () => {
    await proxy.close();
    await upstream.close();
  });
  await waitReady(proxy);
  return { proxy, upstream };
}

/** Sends 10 requests at once; all must succeed. */
async function tenRequests(t: Test, proxy: TestProxy, upstream: FakeUpstream): Promise<void> {
  const results = await Promise.all(Array.from({ length: 10 }, () => send(proxy.port, { path: "/v1/models", headers: { authorization: `Bearer ${TOKEN}` } })));
  t.same(results.map((r) => r.status), Array(10).fill(200), "every request succeeded");
  t.equal(upstream.requests.length, 10);
  for (const r of upstream.requests) t.match(r.headers["traceparent"], /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, "MythIQ still gets a traceparent");
}

/** Polls the dropped-spans counter until `reason` counts something (or 10 s pass). */
async function droppedSpans(proxy: TestProxy, reason: "queue_full" | "export_failed"): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const n = (await proxy.metric("mythiq_proxy_trace_spans_dropped_total", { reason })) ?? 0;
    if (n > 0 || Date.now() > deadline) return n;
    await new Promise((r) => setTimeout(r, 50));
  }
}

void t.test("the collector down: requests still succeed and the dropped spans are counted", async (t) => {
  const { proxy, upstream } = await proxyTracingTo(t, `http://127.0.0.1:${await freePort()}/v1/traces`, 500);
  t.equal(await proxy.metric("mythiq_proxy_trace_spans_dropped_total", { reason: "export_failed" }), 0, "the series exists at 0");
  await tenRequests(t, proxy, upstream);
  const failed = await droppedSpans(proxy, "export_failed");
  t.ok(failed > 0 && failed <= 20, `spans of failed exports counted (${failed} of 20)`);
  t.equal((await send(proxy.port, { path: "/v1/models", headers: { authorization: `Bearer ${TOKEN}` } })).status, 200, "the proxy still serves");
});

void t.test("a collector that stalls: the queue stays bounded, overflowing spans are counted", async (t) => {
  // Accepts connections and never answers: every export waits for the exporter's timeout.
  const sockets = new Set<net.Socket>();
  const stalled = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => stalled.listen(0, "127.0.0.1", () => resolve()));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    stalled.close();
  });
  // Exports wait 3 s before they time out: the requests must all be answered within that time.
  const { proxy, upstream } = await proxyTracingTo(t, `http://127.0.0.1:${(stalled.address() as net.AddressInfo).port}/v1/traces`, 3_000);
  await tenRequests(t, proxy, upstream);
  t.equal(await proxy.metric("mythiq_proxy_trace_spans_dropped_total", { reason: "export_failed" }), 0, "answered while the first export still hangs: no request waited for it");
  t.ok(sockets.size >= 1, "an export is waiting on the collector");
  const full = await droppedSpans(proxy, "queue_full");
  t.ok(full > 0, `spans that found the queue full counted (${full})`);
  const failed = await droppedSpans(proxy, "export_failed");
  t.ok(failed > 0, `and the exports that timed out (${failed})`);
  t.ok(full + failed <= 20, "never more than were made");
});
