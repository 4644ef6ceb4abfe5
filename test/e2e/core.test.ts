// The whole proxy over real sockets, in front of a fake MythIQ that records what it received:
// the key injected exactly once, the caller's credentials never forwarded, every refusal answered
// with SPEC's JSON while the upstream receives nothing, and no key byte in any response or log line.
import t from "tap";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { send } from "../helpers/forward-harness.ts";
import { configYaml, startTestProxy, TEST_KEY, TOKEN, waitReady, type TestProxy } from "../helpers/proxy-harness.ts";
import { sendRaw } from "../helpers/raw-http.ts";

let upstream: FakeUpstream;
let proxy: TestProxy;

t.before(async () => {
  upstream = await startFakeUpstream();
  proxy = await startTestProxy({ yaml: configYaml(upstream.url), env: { MYTHIQ_API_KEY: TEST_KEY } });
  await waitReady(proxy);
});
t.teardown(async () => {
  await proxy.close();
  await upstream.close();
});

const auth = { authorization: `Bearer ${TOKEN}` };

t.test("an allowed request reaches MythIQ with the key injected exactly once and no caller credential", async (t) => {
  const before = upstream.requests.length;
  const res = await send(proxy.port, {
    path: "/v1/models",
    headers: {
      ...auth,
      cookie: "session=abc",
      "x-api-key": "caller-key",
      "proxy-authorization": "Basic Zm9vOmJhcg==",
      connection: "keep-alive",
      "x-forwarded-for": "203.0.113.9",
      "x-real-ip": "203.0.113.9",
      forwarded: "for=203.0.113.9",
      "x-http-method-override": "DELETE",
      "x-original-url": "/admin",
    },
  });
  t.equal(res.status, 200);
  t.equal(upstream.requests.length, before + 1);
  const got = upstream.requests[before]!;
  t.equal(got.requestLine, "GET /v1/models HTTP/1.1");
  t.equal(got.count("authorization"), 1, "one authorization header");
  t.equal(got.headers["authorization"], `Bearer ${TEST_KEY}`);
  for (const name of ["cookie", "x-api-key", "proxy-authorization", "x-forwarded-for", "x-real-ip", "forwarded", "x-http-method-override", "x-original-url"]) {
    t.equal(got.count(name), 0, `${name} not forwarded`);
  }
  t.equal(got.headers["x-request-id"], res.headers["x-request-id"], "the same request id both ways");
  t.notOk(res.raw.includes(TEST_KEY), "no key byte came back");
});

t.test("Expect: 100-continue with a body: headers rebuilt, body byte-exact", async (t) => {
  const before = upstream.requests.length;
  const body = JSON.stringify({ model: "stability/sdxl", prompt: "a lighthouse" });
  const res = await send(proxy.port, {
    method: "POST",
    path: "/v1/images/generations",
    headers: { ...auth, "content-type": "application/json", expect: "100-continue", cookie: "a=b", "content-length": Buffer.byteLength(body) },
    body,
  });
  t.equal(res.status, 200);
  const got = upstream.requests[before]!;
  await got.ended;
  t.equal(got.body.toString(), body);
  t.equal(got.headers["authorization"], `Bearer ${TEST_KEY}`);
  t.equal(got.count("expect"), 0);
  t.equal(got.count("cookie"), 0);
});

t.test("headers named in Connection are refused, never forwarded", async (t) => {
  const before = upstream.requests.length;
  const res = await sendRaw(
    proxy.port,
    `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: keep-alive, authorization\r\n\r\n`,
  );
  t.equal(res.responses[0]?.status, 400);
  t.equal(JSON.parse(res.responses[0]!.body).reason, "invalid_header");
  t.equal(upstream.requests.length, before);
});

const refusals: Array<{ name: string; raw: string; status: number; reason: string }> = [
  { name: "dot-dot segment", raw: `GET /v1/models/../admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`, status: 400, reason: "invalid_path" },
  { name: "encoded dots", raw: `GET /v1/models/%2e%2e/admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`, status: 400, reason: "invalid_path" },
  { name: "backslash", raw: `GET /v1/models\\..\\admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`, status: 400, reason: "invalid_path" },
  { name: "double slash", raw: `GET //v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`, status: 400, reason: "invalid_path" },
  { name: "absolute-form target", raw: `GET http://evil.example/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`, status: 400, reason: "invalid_path" },
  { name: "transfer-encoding ,chunked", raw: `POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n`, status: 400, reason: "invalid_header" },
  { name: "websocket upgrade", raw: `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, status: 405, reason: "method_not_allowed" },
  { name: "TRACE", raw: `TRACE /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`, status: 405, reason: "method_not_allowed" },
  { name: "underscore header", raw: `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nX_Api_Key: k\r\n\r\n`, status: 400, reason: "invalid_header" },
  { name: "route not listed", raw: `DELETE /v1/models/stability HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`, status: 403, reason: "route_not_allowed" },
  { name: "trailing slash is another path", raw: `GET /v1/models/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`, status: 403, reason: "route_not_allowed" },
  { name: "admin path on the listen port", raw: `GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`, status: 403, reason: "route_not_allowed" },
  { name: "query parameter not listed", raw: `GET /v1/generations?limit=1&debug=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`, status: 400, reason: "query_not_allowed" },
  { name: "declared body over max_body", raw: `POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n`, status: 413, reason: "body_too_large" },
  { name: "no credential from a foreign origin", raw: `GET /v1/models HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n`, status: 401, reason: "missing_credentials" },
  { name: "wrong token", raw: `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-wrong-0000000000\r\n\r\n`, status: 401, reason: "invalid_credentials" },
  { name: "basic auth", raw: `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n`, status: 401, reason: "invalid_credentials" },
  { name: "anonymous client outside its routes", raw: `GET /v1/models/x HTTP/1.1\r\nHost: x\r\n\r\n`, status: 403, reason: "route_not_allowed" },
  { name: "GET with a body", raw: `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 2\r\n\r\n{}`, status: 400, reason: "body_not_allowed" },
];

for (const refusal of refusals) {
  t.test(`refused: ${refusal.name}`, async (t) => {
    const before = upstream.requests.length;
    const res = await sendRaw(proxy.port, refusal.raw, { finals: 1 });
    const response = res.responses.find((r) => r.status >= 200);
    t.equal(response?.status, refusal.status);
    const body = JSON.parse(response?.body ?? "{}") as Record<string, unknown>;
    t.equal(body["reason"], refusal.reason);
    t.equal(body["success"], false);
    if (refusal.status === 401) t.equal(response?.headers["www-authenticate"], "Bearer");
    t.equal(upstream.requests.length, before, "the upstream received nothing");
    t.notOk(res.raw.includes(TEST_KEY), "no key byte came back");
  });
}

t.test("a chunked body past max_body is cut off with 413 and never completes upstream", async (t) => {
  const before = upstream.requests.length;
  const chunk = "x".repeat(600);
  const res = await sendRaw(
    proxy.port,
    `POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n` +
      `258\r\n${chunk}\r\n258\r\n${chunk}\r\n0\r\n\r\n`,
  );
  t.equal(res.responses[0]?.status, 413);
  t.equal(JSON.parse(res.responses[0]!.body).reason, "body_too_large");
  const arrived = upstream.requests.slice(before);
  t.ok(arrived.every((r) => !r.complete), "no complete request reached the upstream");
});

t.test("a CORS preflight is answered by the proxy and never forwarded", async (t) => {
  const before = upstream.requests.length;
  const ok = await send(proxy.port, {
    method: "OPTIONS",
    path: "/v1/models",
    headers: { origin: "http://localhost:3000", "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
  });
  t.equal(ok.status, 204);
  t.equal(ok.headers["access-control-allow-origin"], "http://localhost:3000");
  t.match(ok.headers["vary"], /Origin/);
  const refused = await send(proxy.port, {
    method: "OPTIONS",
    path: "/v1/models",
    headers: { origin: "https://evil.example", "access-control-request-method": "GET" },
  });
  t.equal(refused.status, 403);
  t.equal(JSON.parse(refused.body.toString()).reason, "origin_not_allowed");
  t.equal(refused.headers["access-control-allow-origin"], undefined);
  t.equal(upstream.requests.length, before);
});

t.test("an upstream 401 becomes 502 upstream_auth_failed and its body is never passed on", async (t) => {
  upstream.reply({ type: "unauthorized", reveal: true });
  const res = await send(proxy.port, { path: "/v1/models", headers: auth });
  t.equal(res.status, 502);
  t.equal(JSON.parse(res.body.toString()).reason, "upstream_auth_failed");
  t.notOk(res.raw.includes(TEST_KEY));
  const audit = await proxy.waitForLog((line) => line["request_id"] === res.headers["x-request-id"] && "status" in line);
  t.equal(audit["bytes_out"], res.body.length, "the proxy's own reply counts as bytes sent");
});

t.test("an upstream error body echoing the key is withheld", async (t) => {
  upstream.reply({ type: "echo", status: 500 });
  const res = await send(proxy.port, { path: "/v1/models", headers: auth });
  t.equal(res.status, 502);
  t.equal(JSON.parse(res.body.toString()).reason, "upstream_leak");
  t.notOk(res.raw.includes(TEST_KEY));
});

t.test("the admin port answers health, readiness and metrics; the listen port does not", async (t) => {
  t.equal((await proxy.admin("/healthz")).status, 200);
  const ready = await proxy.admin("/readyz");
  t.equal(ready.status, 200);
  t.same(JSON.parse(ready.body), { ready: true });
  const metrics = await proxy.admin("/metrics");
  t.equal(metrics.status, 200);
  t.match(metrics.body, /mythiq_proxy_requests_total\{client="web",route="GET \/v1\/models",model="other",status="200"\} \d+/);
  t.match(metrics.body, /mythiq_proxy_denied_total\{client="web",reason="route_not_allowed"\} \d+/);
  t.match(metrics.body, /mythiq_proxy_build_info\{version="[^"]+",node="v\d+/);
  t.match(metrics.body, /process_cpu_user_seconds_total/);
  t.notOk(metrics.body.includes(TEST_KEY));
});

t.test("every request left one audit line, and no log line holds the key or a client token", async (t) => {
  const audits = proxy.logs.filter((line) => "request_id" in line && "status" in line);
  t.ok(audits.length >= refusals.length + 5, "audit lines written");
  const log = proxy.rawLog();
  t.notOk(log.includes(TEST_KEY), "no key in the log");
  t.notOk(log.includes(TOKEN), "no client token in the log");
  t.notOk(log.includes("session=abc"), "no cookie in the log");
});

t.test("without the key, requests get 503 key_unavailable and readiness says why", async (t) => {
  const empty = await startFakeUpstream();
  const keyless = await startTestProxy({ yaml: configYaml(empty.url), env: {} });
  t.teardown(async () => {
    await keyless.close();
    await empty.close();
  });
  const ready = await keyless.admin("/readyz");
  t.equal(ready.status, 503);
  t.same(JSON.parse(ready.body), { ready: false, reasons: ["key default not loaded"] });
  const res = await send(keyless.port, { path: "/v1/models", headers: auth });
  t.equal(res.status, 503);
  t.equal(JSON.parse(res.body.toString()).reason, "key_unavailable");
  t.ok(Number(res.headers["retry-after"]) >= 1, "Retry-After set");
  t.equal(empty.requests.length, 0);
});

t.test("a request Node's parser refuses is answered with a request id, counted and audited", async (t) => {
  const before = upstream.requests.length;
  const res = await sendRaw(proxy.port, "GET /v1/models HTTP/1.1\nHost: x\n\n");
  const response = res.responses[0];
  t.equal(response?.status, 400);
  t.equal(JSON.parse(response?.body ?? "{}").reason, "malformed_request");
  const id = response?.headers["x-request-id"];
  t.match(id, /^[0-9a-f-]{36}$/);
  const audit = proxy.logs.find((line) => line["request_id"] === id);
  t.equal(audit?.["status"], 400);
  t.equal(audit?.["reason"], "malformed_request");
  t.equal(audit?.["ip"], "127.0.0.1");
  const metrics = await proxy.admin("/metrics");
  t.match(metrics.body, /mythiq_proxy_requests_total\{client="unknown",route="other",model="other",status="400"\} [1-9]/);
  t.equal(upstream.requests.length, before);
});
