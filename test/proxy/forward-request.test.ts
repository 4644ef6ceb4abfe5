// What MythIQ receives (SPEC §4 step 8), recorded byte for byte by the fake upstream.
import { randomBytes } from "node:crypto";
import * as http from "node:http";
import t, { type Test } from "tap";
import { KEY_VALUE, rawExchange, send, startHarness, type Harness } from "../helpers/forward-harness.ts";

/** Headers the caller sends that must never reach MythIQ. */
const HOSTILE_HEADERS: Record<string, string> = {
  authorization: "Bearer client-token-abc",
  cookie: "session=client-session",
  "proxy-authorization": "Basic cHJveHk6c2VjcmV0",
  "x-api-key": "client-api-key",
  "keep-alive": "timeout=99",
  te: "trailers",
  upgrade: "h2c",
  "proxy-connection": "keep-alive",
  "x-hop-named": "named-in-connection",
  forwarded: "for=10.0.0.1",
  "x-forwarded-for": "10.0.0.1",
  "x-forwarded-host": "evil.example",
  "x-forwarded-proto": "spoofed-proto",
  "x-real-ip": "10.0.0.2",
  "x-http-method-override": "DELETE",
  "x-original-url": "/v1/admin",
  "x-rewrite-url": "/v1/admin",
  "x-request-id": "caller-chosen-id",
  host: "client.example",
};

const KEPT_HEADERS: Record<string, string> = {
  accept: "application/json",
  "user-agent": "openai-node/4.0",
  "x-custom": "kept",
  origin: "https://app.example.com",
};

function checkUpstreamHeaders(t: Test, fake: Harness["fake"], index: number, requestId: string): void {
  const got = fake.requests[index]!;
  t.equal(got.count("authorization"), 1, "exactly one authorization header upstream");
  t.equal(got.headers["authorization"], `Bearer ${KEY_VALUE}`, "the key is injected");
  for (const name of Object.keys(HOSTILE_HEADERS)) {
    // These three are ours upstream; their caller values are checked through the head below.
    if (name === "authorization" || name === "host" || name === "x-request-id") continue;
    t.equal(got.headers[name], undefined, `${name} is not forwarded`);
  }
  const head = got.head.toString("latin1");
  for (const value of Object.values(HOSTILE_HEADERS)) {
    if (value === "keep-alive") continue;
    t.notOk(head.includes(value), `no trace of "${value}" in the upstream request head`);
  }
  t.notOk(/x-hop-named|upgrade|te:/i.test(got.headers["connection"] ?? ""), "no caller Connection tokens upstream");
  t.equal(got.headers["host"], `127.0.0.1:${fake.port}`, "Host is the upstream's");
  t.equal(got.headers["x-request-id"], requestId, "x-request-id is ours");
  for (const [name, value] of Object.entries(KEPT_HEADERS)) t.equal(got.headers[name], value, `${name} is kept`);
}

t.test("the key is injected once; caller credentials, hop-by-hop and Connection-named headers never arrive", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const res = await send(h.port, {
    headers: { ...HOSTILE_HEADERS, ...KEPT_HEADERS, connection: "keep-alive, X-Hop-Named" },
  });
  t.equal(res.status, 200);
  t.equal(res.headers["x-request-id"], "req-1", "the client gets our request id");
  t.equal(h.fake.requests.length, 1);
  t.equal(h.fake.requests[0]!.requestLine, "GET /v1/models HTTP/1.1");
  checkUpstreamHeaders(t, h.fake, 0, "req-1");
  t.notOk(h.logs.join("").includes(KEY_VALUE), "the key is in no log line");
});

for (const body of ["held", "stream"] as const) {
  t.test(`Expect: 100-continue (${body} body) gets the same treatment`, async (t) => {
    const h = await startHarness();
    t.teardown(() => h.close());
    h.body = body;
    const payload = JSON.stringify({ model: "stability/sdxl", prompt: "a lighthouse" });
    const res = await send(h.port, {
      method: "POST",
      path: "/v1/images/generations",
      headers: {
        ...HOSTILE_HEADERS,
        ...KEPT_HEADERS,
        connection: "keep-alive, X-Hop-Named",
        expect: "100-continue",
        "content-type": "application/json",
        "content-length": Buffer.byteLength(payload),
      },
      body: payload,
    });
    t.equal(res.status, 200);
    const got = h.fake.requests[0]!;
    t.equal(got.headers["expect"], undefined, "expect is not forwarded");
    t.equal(got.body.toString(), payload, "the body arrived");
    t.equal(got.headers["content-type"], "application/json");
    checkUpstreamHeaders(t, h.fake, 0, "req-1");
  });
}

t.test("the path and query are sent exactly as checked, never re-resolved", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  // WHATWG URL parsing (http-proxy-3's getPath) would resolve `..`, encode `{}` and `'`, and drop `#`-less oddities.
  const targets = [
    "/v1/generations?limit=10&after=gen_123",
    "/v1/models/a{b}|c?q='x'^`&z=%2F",
    "/v1/images/generations/../../admin",
    "/v1/models?after=a?b",
  ];
  for (const target of targets) {
    await send(h.port, { path: target });
  }
  t.same(
    h.fake.requests.map((r) => r.requestLine),
    targets.map((target) => `GET ${target} HTTP/1.1`),
    "the upstream request lines carry the targets byte for byte",
  );
});

t.test("an upstream url with a base path prefixes it", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const h2 = await startHarness({ fake: false, upstream: { url: `${h.fake.url}/mythiq/` } });
  t.teardown(() => h2.close());
  await send(h2.port, { path: "/v1/models?limit=5" });
  t.equal(h.fake.requests[0]?.requestLine, "GET /mythiq/v1/models?limit=5 HTTP/1.1");
});

t.test("held bodies are sent byte-exact with an exact content-length", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const payload = randomBytes(200 * 1024);
  const res = await send(h.port, { method: "POST", path: "/v1/uploads", headers: { "content-type": "application/octet-stream" }, body: [payload.subarray(0, 1000), payload.subarray(1000)] });
  t.equal(res.status, 200);
  const got = h.fake.requests[0]!;
  t.ok(got.body.equals(payload), "body identical");
  t.equal(got.headers["content-length"], String(payload.length));
  t.equal(got.headers["transfer-encoding"], undefined, "not chunked");
  t.equal(h.results[0]?.bytesIn, payload.length);
  t.equal(h.results[0]?.forwarded, true);
});

t.test("empty held bodies: no content-length on GET/DELETE, content-length: 0 on POST", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  await send(h.port, { method: "GET", path: "/v1/models" });
  await send(h.port, { method: "DELETE", path: "/v1/files/f1" });
  await send(h.port, { method: "POST", path: "/v1/batches/b1/cancel" });
  const [get, del, post] = h.fake.requests;
  t.equal(get?.headers["content-length"], undefined, "GET");
  t.equal(del?.headers["content-length"], undefined, "DELETE (http-proxy-3's deleteLength undone)");
  t.equal(del?.headers["transfer-encoding"], undefined, "DELETE not chunked");
  t.equal(post?.headers["content-length"], "0", "POST");
  t.equal(post?.headers["transfer-encoding"], undefined, "POST not chunked");
});

t.test("streamed bodies: content-length kept when sent, byte-exact", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.body = "stream";
  const payload = randomBytes(300 * 1024);
  const res = await send(h.port, {
    method: "POST",
    path: "/v1/uploads",
    headers: { "content-length": payload.length, "content-type": "application/octet-stream" },
    body: [payload.subarray(0, 100_000), { delayMs: 20 }, payload.subarray(100_000)],
  });
  t.equal(res.status, 200);
  const got = h.fake.requests[0]!;
  t.ok(got.body.equals(payload), "body identical");
  t.equal(got.headers["content-length"], String(payload.length));
  t.equal(got.chunked, false);
  t.equal(h.results[0]?.bytesIn, payload.length, "bytes counted");
});

t.test("chunked uploads stream through chunked", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.body = "stream";
  const parts = [randomBytes(5000), randomBytes(70_000), randomBytes(3)];
  const res = await send(h.port, {
    method: "POST",
    path: "/v1/uploads",
    headers: { "transfer-encoding": "chunked" },
    body: [parts[0]!, { delayMs: 20 }, parts[1]!, { delayMs: 20 }, parts[2]!],
  });
  t.equal(res.status, 200);
  const got = h.fake.requests[0]!;
  t.equal(got.chunked, true, "chunked upstream");
  t.equal(got.headers["content-length"], undefined);
  t.ok(got.body.equals(Buffer.concat(parts)), "body identical");
  t.equal(got.complete, true);
});

t.test("a streamed body past maxBytes is cut: 413 with connection: close, upstream request aborted", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.body = "stream";
  h.maxBytes = 1000;
  const chunk = (n: number): string => `${n.toString(16)}\r\n${"x".repeat(n)}\r\n`;
  const { raw, closed } = await rawExchange(h.port, [
    "POST /v1/uploads HTTP/1.1\r\nHost: proxy\r\nTransfer-Encoding: chunked\r\n\r\n",
    chunk(600),
    { delayMs: 50 },
    chunk(600),
  ]);
  const text = raw.toString("latin1");
  t.match(text, /^HTTP\/1\.1 413 /, "413");
  t.match(text, /\r\nconnection: close\r\n/i, "connection: close");
  t.match(text, /"reason":"body_too_large"/);
  t.ok(closed, "the proxy closed the connection");
  const got = await h.fake.waitForRequests(1);
  await got[0]!.connection.closed;
  t.equal(got[0]!.complete, false, "the upstream never saw a complete body");
  t.ok(got[0]!.body.length <= 1000, "no byte past the limit was sent upstream");
  const result = await h.result(1);
  t.equal(result.status, 413);
  t.equal(result.reason, "body_too_large");
  t.equal(result.forwarded, false);
});

t.test("keep-alive: N requests use one upstream connection, even when callers send Connection: close", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  for (let i = 0; i < 5; i++) {
    const res = await send(h.port, { headers: i % 2 === 0 ? { connection: "close" } : {} });
    t.equal(res.status, 200);
  }
  // Bodies of different kinds on the same pooled connection.
  h.body = "stream";
  await send(h.port, { method: "POST", path: "/v1/x", headers: { "transfer-encoding": "chunked", connection: "close" }, body: ["abc", "def"] });
  const agent = new http.Agent({ keepAlive: true });
  t.teardown(() => agent.destroy());
  await send(h.port, { agent });
  await send(h.port, { agent });
  t.equal(h.fake.requests.length, 8);
  t.equal(h.fake.connectionCount, 1, "one upstream TCP connection");
  t.notOk(h.fake.requests.some((r) => /close/i.test(r.headers["connection"] ?? "")), "never Connection: close upstream");
});
