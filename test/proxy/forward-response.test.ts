// What the client gets back (SPEC §4 step 9): streaming, header filtering, redirects, 401 and the key scan.
import * as zlib from "node:zlib";
import t, { type Test } from "tap";
import type { HeldKey } from "../../src/keys/types.ts";
import {
  KEY_VALUE,
  makeKey,
  NEW_KEY_VALUE,
  send,
  startHarness,
  type ClientResponse,
  type Harness,
} from "../helpers/forward-harness.ts";

/** Every check that a refusal must pass: the reason, and not one byte of the key anywhere. */
function noKey(t: Test, res: ClientResponse, h: Harness): void {
  t.notOk(res.raw.includes(KEY_VALUE), "no byte sequence of the key reached the client");
  t.notOk(res.raw.includes(NEW_KEY_VALUE), "nor of the rotated key");
  t.notOk(h.logs.join("").includes(KEY_VALUE), "the key is in no log line");
}

function json(res: ClientResponse): Record<string, unknown> {
  return JSON.parse(res.body.toString()) as Record<string, unknown>;
}

t.test("a 2xx passes through: status, body, headers minus hop-by-hop, set-cookie and origin-scoped ones", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.fake.reply({
    type: "respond",
    status: 201,
    headers: {
      "content-type": "application/json",
      "x-ratelimit-remaining": "41",
      "set-cookie": ["a=1; Path=/", "b=2"],
      connection: "keep-alive, x-upstream-hop",
      "x-upstream-hop": "hop",
      "keep-alive": "timeout=5",
      "strict-transport-security": "max-age=63072000; includeSubDomains",
      "alt-svc": 'h3=":443"',
      "access-control-allow-origin": "*",
      "x-request-id": "upstream-id",
      vary: "Accept-Encoding",
      link: ["<a>; rel=a", "<b>; rel=b"],
    },
    body: '{"created":1}',
  });
  const res = await send(h.port, { method: "POST", path: "/v1/images/generations", body: "{}" });
  t.equal(res.status, 201);
  t.equal(res.body.toString(), '{"created":1}');
  t.equal(res.headers["content-type"], "application/json");
  t.equal(res.headers["x-ratelimit-remaining"], "41");
  t.equal(res.headers["content-length"], "13", "the upstream's length is kept");
  for (const name of ["set-cookie", "x-upstream-hop", "keep-alive", "strict-transport-security", "alt-svc"]) {
    t.equal(res.headers[name], undefined, `${name} dropped`);
  }
  t.equal(res.headers["access-control-allow-origin"], "https://app.example.com", "CORS is ours, not the upstream's");
  t.equal(res.headers["x-request-id"], "req-1", "x-request-id is ours");
  t.equal(res.headers["vary"], "Accept-Encoding, Origin", "vary merged");
  t.equal(res.headers["link"], "<a>; rel=a, <b>; rel=b", "repeated fields kept");
  t.match(h.results[0], { status: 201, upstreamStatus: 201, forwarded: true, bytesOut: 13, clientAborted: false });
  t.equal(h.results[0]?.reason, undefined);
  t.ok((h.results[0]?.upstreamMs ?? -1) >= 0, "upstream time measured");
});

t.test("a 304 is not a redirect: it passes through", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.fake.reply({ type: "respond", status: 304, headers: { etag: '"v1"' } });
  const res = await send(h.port, { headers: { "if-none-match": '"v1"' } });
  t.equal(res.status, 304);
  t.equal(res.headers["etag"], '"v1"');
  t.equal(h.fake.requests[0]?.headers["if-none-match"], '"v1"');
});

t.test("Server-Sent Events arrive as they are produced (each event gated on the previous one's arrival)", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const gates = [0, 1, 2].map(() => {
    let open: () => void = () => {};
    const promise = new Promise<void>((resolve) => (open = resolve));
    return { promise, open };
  });
  h.fake.reply({
    type: "sse",
    events: [
      { data: '{"n":1}' },
      { data: '{"n":2}', until: gates[0]!.promise },
      { data: '{"n":3}', until: gates[1]!.promise },
      { data: "[DONE]", until: gates[2]!.promise },
    ],
  });
  // If the proxy buffered anything, event n would never reach the client, gate n would never
  // open, and this test would time out.
  let seen = "";
  const res = await send(h.port, {
    method: "POST",
    path: "/v1/chat/completions",
    body: '{"stream":true}',
    onChunk: (chunk) => {
      seen += chunk.toString();
      const events = seen.split("\n\n").length - 1;
      for (let i = 0; i < events && i < gates.length; i++) gates[i]!.open();
    },
  });
  t.equal(res.status, 200);
  t.equal(res.headers["content-type"], "text/event-stream");
  t.equal(res.body.toString(), 'data: {"n":1}\n\ndata: {"n":2}\n\ndata: {"n":3}\n\ndata: [DONE]\n\n');
  t.equal(res.complete, true);
});

t.test("Server-Sent Events with timed gaps: each event reaches the client before the next is produced", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.fake.reply({
    type: "sse",
    // Gaps of 500 ms: the fake, the proxy and the client share one event loop, and a loaded machine
    // can stall it for a good part of a shorter gap, letting two events meet in the client's buffer.
    events: [{ data: "one" }, { data: "two", delayMs: 500 }, { data: "three", delayMs: 500 }],
  });
  const arrivals: number[] = [];
  const res = await send(h.port, { onChunk: () => arrivals.push(performance.now()) });
  t.equal(res.status, 200);
  const writes = h.fake.requests[0]!.writes;
  t.equal(writes.length, 3);
  t.ok(arrivals.length >= 3, "three separate arrivals");
  t.ok(arrivals[0]! < writes[1]!, "event 1 arrived before event 2 was written");
  t.ok(arrivals[1]! < writes[2]!, "event 2 arrived before event 3 was written");
  t.ok(arrivals[2]! - arrivals[0]! >= 900, "the gaps were kept, not collapsed by buffering");
});

for (const status of [301, 302, 303, 307, 308]) {
  t.test(`an upstream ${status} becomes 502 upstream_redirect, Location and body never passed`, async (t) => {
    const h = await startHarness();
    t.teardown(() => h.close());
    h.fake.reply({ type: "redirect", status, location: `https://evil.example/steal?k=${KEY_VALUE}` });
    const res = await send(h.port, { method: "POST", path: "/v1/images/generations", body: "{}" });
    t.equal(res.status, 502);
    t.equal(json(res)["reason"], "upstream_redirect");
    t.equal(res.headers["location"], undefined);
    t.notOk(res.raw.includes("evil.example"), "nothing of the redirect reached the client");
    t.equal(res.headers["x-request-id"], "req-1", "local replies carry our headers");
    t.equal(h.fake.requests.length, 1, "the redirect was not followed");
    t.equal(h.results[0]?.reason, "upstream_redirect");
    t.equal(h.results[0]?.upstreamStatus, status);
    t.same(h.upstreamErrors, ["upstream_redirect"]);
    noKey(t, res, h);
  });
}

t.test("an upstream 401 is never passed on; without a new key it becomes 502 upstream_auth_failed", async (t) => {
  const calls: Array<[string, string]> = [];
  const h = await startHarness({
    refreshKey: (name, refused) => {
      calls.push([name, refused.fingerprint]);
      return Promise.resolve(undefined);
    },
  });
  t.teardown(() => h.close());
  h.fake.reply({ type: "unauthorized", reveal: true });
  const res = await send(h.port, { method: "POST", path: "/v1/images/generations", body: '{"model":"m"}' });
  t.equal(res.status, 502);
  t.equal(json(res)["reason"], "upstream_auth_failed");
  t.notOk(res.raw.includes("Invalid API key"), "the upstream's 401 body is not passed");
  t.same(calls, [["default", "0a1b2c3d"]], "the key was refreshed once");
  t.equal(h.fake.requests.length, 1);
  t.equal(h.results[0]?.upstreamStatus, 401);
  t.same(h.upstreamErrors, ["upstream_auth_failed"]);
  noKey(t, res, h);
});

t.test("an upstream 401 with a masked key, refresh returns the same key: 502, no retry", async (t) => {
  const h = await startHarness({ refreshKey: (_name, refused) => Promise.resolve(refused) });
  t.teardown(() => h.close());
  h.fake.reply({ type: "unauthorized" });
  const res = await send(h.port);
  t.equal(res.status, 502);
  t.notOk(res.raw.includes(KEY_VALUE.slice(-4)), "not even the masked key's tail");
  t.equal(h.fake.requests.length, 1, "no retry with the same key");
  noKey(t, res, h);
});

t.test("an upstream 401 with a held body is retried once with the new key", async (t) => {
  let fresh: HeldKey | undefined;
  const h = await startHarness({
    refreshKey: () => {
      fresh = makeKey(NEW_KEY_VALUE);
      return Promise.resolve(fresh);
    },
  });
  t.teardown(() => h.close());
  h.fake.reply({ type: "unauthorized" }, { type: "json", status: 200, body: { data: [{ url: "https://img" }] } });
  const payload = '{"model":"stability/sdxl","prompt":"x"}';
  const res = await send(h.port, { method: "POST", path: "/v1/images/generations", headers: { "content-type": "application/json" }, body: payload });
  t.equal(res.status, 200);
  t.same(json(res), { data: [{ url: "https://img" }] });
  const [first, second] = h.fake.requests;
  t.equal(first?.headers["authorization"], `Bearer ${KEY_VALUE}`);
  t.equal(second?.headers["authorization"], `Bearer ${NEW_KEY_VALUE}`, "the retry carries the new key");
  t.equal(second?.count("authorization"), 1);
  t.equal(second?.body.toString(), payload, "the same body was replayed");
  t.equal(second?.headers["content-length"], String(payload.length));
  t.equal(h.results[0]?.key, fresh, "the result names the key finally used");
  t.equal(h.results[0]?.status, 200);
  t.same(h.upstreamErrors, []);
  noKey(t, res, h);
});

t.test("a retry that gets 401 again ends in 502 upstream_auth_failed (one retry only)", async (t) => {
  let refreshes = 0;
  const h = await startHarness({
    refreshKey: () => {
      refreshes++;
      return Promise.resolve(makeKey(NEW_KEY_VALUE));
    },
  });
  t.teardown(() => h.close());
  h.fake.reply({ type: "unauthorized", reveal: true }, { type: "unauthorized", reveal: true });
  const res = await send(h.port);
  t.equal(res.status, 502);
  t.equal(json(res)["reason"], "upstream_auth_failed");
  t.equal(h.fake.requests.length, 2);
  t.equal(refreshes, 1);
  noKey(t, res, h);
});

t.test("an upstream 401 on a streamed body refreshes the key but is not retried", async (t) => {
  let refreshes = 0;
  const h = await startHarness({
    refreshKey: () => {
      refreshes++;
      return Promise.resolve(makeKey(NEW_KEY_VALUE));
    },
  });
  t.teardown(() => h.close());
  h.body = "stream";
  h.fake.reply({ type: "unauthorized", reveal: true });
  const res = await send(h.port, { method: "POST", path: "/v1/uploads", headers: { "transfer-encoding": "chunked" }, body: ["part1", "part2"] });
  t.equal(res.status, 502);
  t.equal(json(res)["reason"], "upstream_auth_failed");
  t.equal(refreshes, 1, "refreshed");
  t.equal(h.fake.requests.length, 1, "not retried: the body cannot be replayed");
  noKey(t, res, h);
});

t.test("error bodies that contain the key are withheld: 502 upstream_leak", async (t) => {
  const gzip = (s: string): Buffer => zlib.gzipSync(s);
  const cases: Array<{ name: string; status: number; headers: Record<string, string>; body: Buffer }> = [
    { name: "plain JSON echo", status: 400, headers: { "content-type": "application/json" }, body: Buffer.from(`{"error":"bad header Authorization: Bearer ${KEY_VALUE}"}`) },
    { name: "gzip", status: 500, headers: { "content-encoding": "gzip" }, body: gzip(`trace: key=${KEY_VALUE}`) },
    { name: "x-gzip", status: 503, headers: { "content-encoding": "x-gzip" }, body: gzip(`key=${KEY_VALUE}`) },
    { name: "deflate", status: 502, headers: { "content-encoding": "deflate" }, body: zlib.deflateSync(`key=${KEY_VALUE}`) },
    { name: "raw deflate", status: 502, headers: { "content-encoding": "deflate" }, body: zlib.deflateRawSync(`key=${KEY_VALUE}`) },
    { name: "br", status: 429, headers: { "content-encoding": "br" }, body: zlib.brotliCompressSync(`key=${KEY_VALUE}`) },
    { name: "gzip then br", status: 418, headers: { "content-encoding": "gzip, br" }, body: zlib.brotliCompressSync(gzip(`key=${KEY_VALUE}`)) },
    { name: "an unknown coding (cannot be scanned)", status: 400, headers: { "content-encoding": "compress" }, body: Buffer.from("opaque") },
    { name: "corrupt gzip (cannot be scanned)", status: 400, headers: { "content-encoding": "gzip" }, body: Buffer.from(`not gzip ${KEY_VALUE}`) },
    { name: "gzip over the hold limit (cannot be held)", status: 500, headers: { "content-encoding": "gzip" }, body: zlib.gzipSync(Buffer.from(Array.from({ length: 30_000 }, (_, i) => String(i * 7919)).join(",")), { level: 0 }) },
  ];
  const h = await startHarness();
  t.teardown(() => h.close());
  for (const c of cases) {
    h.fake.reply({ type: "respond", status: c.status, headers: c.headers, body: c.body });
    const res = await send(h.port, { headers: { "accept-encoding": "gzip, deflate, br" } });
    t.equal(res.status, 502, `${c.name}: 502`);
    t.equal(json(res)["reason"], "upstream_leak", `${c.name}: upstream_leak`);
    t.equal(res.headers["content-encoding"], undefined, `${c.name}: our own JSON`);
    noKey(t, res, h);
  }
  t.equal(h.upstreamErrors.length, cases.length);
  t.ok(h.results.every((r) => r.upstreamStatus !== undefined && r.upstreamStatus >= 400 && r.reason === "upstream_leak"));
});

t.test("the echo of the request headers in an error body is withheld", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.fake.reply({ type: "echo", status: 400 });
  const res = await send(h.port);
  t.equal(res.status, 502);
  t.equal(json(res)["reason"], "upstream_leak");
  noKey(t, res, h);
});

t.test("a response header carrying the key is withheld, whatever the status", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  for (const status of [200, 404]) {
    h.fake.reply({ type: "respond", status, headers: { "x-debug-auth": `Bearer ${KEY_VALUE}` }, body: "ok" });
    const res = await send(h.port);
    t.equal(res.status, 502, `${status}: 502`);
    t.equal(json(res)["reason"], "upstream_leak");
    noKey(t, res, h);
  }
});

t.test("error bodies without the key pass through unchanged", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const forbidden = '{"success":false,"message":"API key does not have permission to access this resource","code":"permission_error"}';
  h.fake.reply({ type: "respond", status: 403, headers: { "content-type": "application/json" }, body: forbidden });
  const res = await send(h.port);
  t.equal(res.status, 403);
  t.equal(res.body.toString(), forbidden);
  t.equal(res.headers["content-type"], "application/json");
  t.equal(h.results[0]?.reason, undefined);

  const limited = zlib.gzipSync('{"success":false,"message":"slow down","code":"rate_limit_error"}');
  h.fake.reply({ type: "respond", status: 429, headers: { "content-encoding": "gzip", "retry-after": "7" }, body: limited, framing: "chunked" });
  const res2 = await send(h.port, { headers: { "accept-encoding": "gzip" } });
  t.equal(res2.status, 429);
  t.equal(res2.headers["retry-after"], "7");
  t.equal(res2.headers["content-encoding"], "gzip");
  t.ok(res2.body.equals(limited), "the encoded bytes are passed as they came");
  t.same(h.upstreamErrors, [], "a passed-through upstream error is not a proxy upstream error");
});

t.test("error bodies over 64 KiB: the held part is sent, the rest scanned as it streams", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const big = Buffer.alloc(200 * 1024, "e");
  h.fake.reply({ type: "respond", status: 500, body: [big.subarray(0, 70_000), { delayMs: 10 }, big.subarray(70_000)] });
  const clean = await send(h.port);
  t.equal(clean.status, 500);
  t.equal(clean.complete, true);
  t.ok(clean.body.equals(big), "a long clean error body arrives whole");
  t.equal(h.results[0]?.bytesOut, big.length);

  // The key straddles two chunks that arrive apart, after the hold limit: not even its first
  // half may go out while the second half is awaited.
  const head = Buffer.alloc(100_000, "a");
  const split = 12;
  h.fake.reply({
    type: "respond",
    status: 502,
    headers: { "content-length": "300000" },
    body: [
      head,
      { delayMs: 30 },
      Buffer.from(KEY_VALUE.slice(0, split)),
      { delayMs: 30 },
      Buffer.from(KEY_VALUE.slice(split)),
      Buffer.alloc(200_000 - KEY_VALUE.length, "b"),
    ],
  });
  const leaky = await send(h.port);
  t.equal(leaky.status, 502, "the upstream's status had gone out");
  t.equal(leaky.complete, false, "the response was cut");
  t.ok(leaky.body.length >= 64 * 1024, "the held part was sent");
  t.notOk(leaky.raw.includes(KEY_VALUE.slice(0, split)), "not even the first half of the key reached the client");
  t.equal(h.results[1]?.reason, "upstream_leak");
  noKey(t, leaky, h);
});
