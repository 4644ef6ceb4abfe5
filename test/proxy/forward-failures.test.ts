// Upstream failures before and after the response headers, client aborts, and TLS (SPEC §4 step 9).
import { readFileSync } from "node:fs";
import * as net from "node:net";
import t, { type Test } from "tap";
import { KEY_VALUE, makeKey, NEW_KEY_VALUE, send, startHarness, type ClientResponse, type Harness } from "../helpers/forward-harness.ts";

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/tls/${name}`, import.meta.url), "utf8");

function json(res: ClientResponse): Record<string, unknown> {
  return JSON.parse(res.body.toString()) as Record<string, unknown>;
}

function refused(t: Test, h: Harness, res: ClientResponse, status: number, reason: string): void {
  t.equal(res.status, status, `status ${status}`);
  t.equal(json(res)["reason"], reason, reason);
  t.equal(res.headers["x-request-id"], "req-1");
  t.notOk(res.raw.includes(KEY_VALUE), "no byte of the key reached the client");
  t.notOk(h.logs.join("").includes(KEY_VALUE), "the key is in no log line");
  t.equal(h.results[0]?.reason, reason);
  t.same(h.upstreamErrors, [reason], "counted once as an upstream error");
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

t.test("connection refused: 502 upstream_unreachable", async (t) => {
  const h = await startHarness({ fake: false, upstream: { url: `http://127.0.0.1:${await closedPort()}` } });
  t.teardown(() => h.close());
  const res = await send(h.port);
  refused(t, h, res, 502, "upstream_unreachable");
  t.equal(h.results[0]?.forwarded, false);
  t.match(h.logs.join(""), /"code":"ECONNREFUSED"/, "the error code is logged");
});

t.test("DNS failure: 502 upstream_unreachable", async (t) => {
  const h = await startHarness({
    fake: false,
    upstream: { url: "http://api.mythiq.test:8080" },
    lookup: (hostname, _options, callback) => {
      const err = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
      process.nextTick(() => callback(err, "", 4));
    },
  });
  t.teardown(() => h.close());
  refused(t, h, await send(h.port), 502, "upstream_unreachable");
});

t.test("connect_timeout: 504 upstream_timeout", async (t) => {
  // A resolver that never answers keeps the socket connecting, like a black-holed SYN.
  const h = await startHarness({
    fake: false,
    upstream: { url: "http://api.mythiq.test:8080", connect_timeout: 150, response_timeout: 5_000 },
    lookup: () => {},
  });
  t.teardown(() => h.close());
  const started = performance.now();
  const res = await send(h.port);
  refused(t, h, res, 504, "upstream_timeout");
  t.ok(performance.now() - started < 2_000, "well before response_timeout");
  t.match(h.logs.join(""), /"code":"ECONNECT_TIMEOUT"/);
});

t.test("no response headers within response_timeout: 504, upstream request aborted", async (t) => {
  const h = await startHarness({ upstream: { response_timeout: 200 } });
  t.teardown(() => h.close());
  h.fake.reply({ type: "stall" });
  const res = await send(h.port, { method: "POST", path: "/v1/images/generations", body: '{"model":"m"}' });
  refused(t, h, res, 504, "upstream_timeout");
  await h.fake.connections[0]!.closed;
  t.pass("the upstream connection was closed");
  t.equal(h.results[0]?.forwarded, true, "the request had reached the upstream");
});

t.test("reset before headers: 502 upstream_reset", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.fake.reply({ type: "reset" });
  refused(t, h, await send(h.port), 502, "upstream_reset");
});

t.test("socket hang up before headers: 502 upstream_reset", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.fake.reply({ type: "hangup" });
  refused(t, h, await send(h.port), 502, "upstream_reset");
});

t.test("the upstream dies mid-body: the client sees a truncated response, never a fake success", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const cases: Array<{ name: string; headers: Record<string, string>; end: "destroy" | "reset" }> = [
    { name: "content-length, FIN", headers: { "content-length": "1000" }, end: "destroy" },
    { name: "content-length, RST", headers: { "content-length": "1000" }, end: "reset" },
    { name: "chunked, FIN", headers: { "transfer-encoding": "chunked" }, end: "destroy" },
  ];
  for (const [i, c] of cases.entries()) {
    h.fake.reply({ type: "respond", status: 200, headers: c.headers, body: ["partial body"], end: c.end });
    const res = await send(h.port);
    t.equal(res.status, 200, `${c.name}: the upstream's status had gone out`);
    t.equal(res.complete, false, `${c.name}: truncated`);
    t.equal(res.body.toString(), "partial body", `${c.name}: what was received is passed`);
    t.equal(h.results[i]?.reason, "upstream_reset", `${c.name}: upstream_reset`);
  }
});

t.test("an error body cut before it was held whole: an honest 502 upstream_reset", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.fake.reply({ type: "respond", status: 500, headers: { "content-length": "1000" }, body: ["oops"], end: "destroy" });
  refused(t, h, await send(h.port), 502, "upstream_reset");
});

t.test("an upstream idle past idle_timeout mid-body: the client connection is cut", async (t) => {
  const h = await startHarness({ upstream: { idle_timeout: 200 } });
  t.teardown(() => h.close());
  h.fake.reply({
    type: "sse",
    events: [{ data: "one" }, { data: "two", delayMs: 50 }],
    end: "stall",
  });
  const started = performance.now();
  const res = await send(h.port);
  t.equal(res.status, 200);
  t.equal(res.complete, false, "truncated");
  t.equal(res.body.toString(), "data: one\n\ndata: two\n\n");
  t.ok(performance.now() - started >= 200, "not before idle_timeout");
  t.equal(h.results[0]?.reason, "upstream_timeout");
  await h.fake.connections[0]!.closed;
  t.pass("the upstream connection was closed");
});

t.test("the idle timer is reset by traffic: a slow but steady stream is not cut", async (t) => {
  const h = await startHarness({ upstream: { idle_timeout: 150 } });
  t.teardown(() => h.close());
  h.fake.reply({ type: "sse", events: [1, 2, 3, 4, 5].map((n) => ({ data: String(n), delayMs: 80 })) });
  const res = await send(h.port);
  t.equal(res.complete, true, "complete although it took longer than idle_timeout");
  t.equal(h.results[0]?.reason, undefined);
});

t.test("a client that goes away aborts the upstream request", async (t) => {
  await t.test("while waiting for the response headers", async (t) => {
    const h = await startHarness();
    t.teardown(() => h.close());
    h.fake.reply({ type: "stall" });
    const res = await send(h.port, { abortWhen: h.fake.waitForRequests(1) });
    t.equal(res.status, 0, "the client got nothing");
    await h.fake.connections[0]!.closed;
    t.pass("the upstream connection was closed");
    const result = await h.result(1);
    t.equal(result.status, 499);
    t.equal(result.clientAborted, true);
    t.equal(result.reason, undefined);
  });

  await t.test("while the response streams", async (t) => {
    const h = await startHarness();
    t.teardown(() => h.close());
    let firstChunk: () => void = () => {};
    const gotFirst = new Promise<void>((resolve) => (firstChunk = resolve));
    h.fake.reply({ type: "sse", events: [{ data: "one" }], end: "stall" });
    const res = await send(h.port, { onChunk: () => firstChunk(), abortWhen: gotFirst });
    t.equal(res.complete, false);
    await h.fake.connections[0]!.closed;
    t.pass("the upstream connection was closed");
    const result = await h.result(1);
    t.equal(result.status, 200);
    t.equal(result.clientAborted, true);
  });

  await t.test("while a streamed body is being uploaded", async (t) => {
    const h = await startHarness();
    t.teardown(() => h.close());
    h.body = "stream";
    const socket = net.connect(h.port, "127.0.0.1");
    socket.on("error", () => {});
    socket.write("POST /v1/uploads HTTP/1.1\r\nHost: proxy\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    const [upstream] = await h.fake.waitForRequests(1);
    socket.destroy();
    await upstream!.connection.closed;
    t.equal(upstream!.complete, false, "the upstream never saw a complete body");
    const result = await h.result(1);
    t.equal(result.status, 499);
    t.equal(result.forwarded, false);
  });
});

t.test("TLS upstream", async (t) => {
  const tls = { key: fixture("upstream.key"), cert: fixture("upstream.crt") };

  await t.test("an untrusted self-signed certificate: 502 upstream_unreachable, nothing sent", async (t) => {
    const h = await startHarness({ fake: { tls } });
    t.teardown(() => h.close());
    const res = await send(h.port, { method: "POST", path: "/v1/images/generations", body: '{"model":"m"}' });
    refused(t, h, res, 502, "upstream_unreachable");
    t.equal(h.fake.requests.length, 0, "the upstream received no request");
    t.equal(h.fake.connectionCount, 1, "a TCP connection was attempted");
    t.match(h.logs.join(""), /"code":"DEPTH_ZERO_SELF_SIGNED_CERT"/);
  });

  await t.test("a trusted certificate: forwarded, with the key, over one pooled connection", async (t) => {
    const h = await startHarness({ fake: { tls }, ca: tls.cert });
    t.teardown(() => h.close());
    for (let i = 0; i < 3; i++) t.equal((await send(h.port)).status, 200);
    t.equal(h.fake.requests[0]?.headers["authorization"], `Bearer ${KEY_VALUE}`);
    t.equal(h.fake.requests[0]?.headers["host"], `127.0.0.1:${h.fake.port}`);
    t.equal(h.fake.connectionCount, 1);
  });

  await t.test("a certificate for another name: 502 upstream_unreachable", async (t) => {
    const h = await startHarness({ fake: { tls }, ca: tls.cert });
    t.teardown(() => h.close());
    const h2 = await startHarness({
      fake: false,
      ca: tls.cert,
      upstream: { url: `https://api.mythiq.test:${h.fake.port}` },
      lookup: (_hostname, options, callback) => {
        if ((options as { all?: boolean }).all) callback(null, [{ address: "127.0.0.1", family: 4 }]);
        else callback(null, "127.0.0.1", 4);
      },
    });
    t.teardown(() => h2.close());
    const res = await send(h2.port);
    refused(t, h2, res, 502, "upstream_unreachable");
    t.equal(h.fake.requests.length, 0);
  });
});

t.test("an error body that stalls before it is held whole: 504 upstream_timeout, nothing of it sent", async (t) => {
  const h = await startHarness({ upstream: { idle_timeout: 150 } });
  t.teardown(() => h.close());
  h.fake.reply({ type: "respond", status: 500, headers: { "content-length": "1000" }, body: [`partial ${KEY_VALUE}`], end: "stall" });
  const res = await send(h.port);
  refused(t, h, res, 504, "upstream_timeout");
});

t.test("a request target that cannot go on a request line is refused before anything is sent", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.context = { query: "q=a b" };
  const res = await send(h.port);
  t.equal(res.status, 400);
  t.equal(json(res)["reason"], "invalid_path");
  t.equal(h.fake.requests.length, 0, "the upstream received nothing");
  t.equal(h.fake.connectionCount, 0);
});

t.test("a header value http.request refuses: a clean 502, no crash, nothing sent", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.context = { headers: { "x-bad": "a\r\nb" } };
  const res = await send(h.port);
  refused(t, h, res, 502, "upstream_unreachable");
  t.match(h.logs.join(""), /"code":"ERR_INVALID_CHAR"/);
  t.notOk(h.logs.join("").includes("x-bad"), "the log carries the code, not Node's message");
  t.equal(h.fake.requests.length, 0);
});

t.test("a client already gone when forward is called: nothing is sent upstream", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.beforeForward = async (_req, res) => {
    res.destroy();
    await new Promise((resolve) => res.once("close", resolve));
  };
  const res = await send(h.port);
  t.equal(res.status, 0);
  const result = await h.result(1);
  t.equal(result.status, 499);
  t.equal(result.clientAborted, true);
  t.equal(h.fake.connectionCount, 0, "the upstream was not contacted");
});

t.test("a key refresh that fails after a 401: 502 upstream_auth_failed", async (t) => {
  const h = await startHarness({ refreshKey: () => Promise.reject(new Error(`vault said no for ${KEY_VALUE}`)) });
  t.teardown(() => h.close());
  h.fake.reply({ type: "unauthorized" });
  refused(t, h, await send(h.port), 502, "upstream_auth_failed");
});

t.test("a client that leaves while the key is refreshed after a 401: no retry", async (t) => {
  let refreshing: () => void = () => {};
  const refreshStarted = new Promise<void>((resolve) => (refreshing = resolve));
  const h = await startHarness({
    refreshKey: async () => {
      refreshing();
      await new Promise((resolve) => setTimeout(resolve, 100));
      return makeKey(NEW_KEY_VALUE);
    },
  });
  t.teardown(() => h.close());
  h.fake.reply({ type: "unauthorized" });
  const res = await send(h.port, { abortWhen: refreshStarted });
  t.equal(res.status, 0);
  const result = await h.result(1);
  t.equal(result.status, 499);
  t.equal(result.clientAborted, true);
  t.equal(result.upstreamStatus, 401);
  t.equal(h.fake.requests.length, 1, "not retried for a client that is gone");
});

t.test("max_sockets bounds the pool; a queued request whose client left is never sent", async (t) => {
  const h = await startHarness({ upstream: { max_sockets: 1, response_timeout: 400 } });
  t.teardown(() => h.close());
  h.fake.reply({ type: "stall" });
  const first = send(h.port, { path: "/v1/first" });
  await h.fake.waitForRequests(1);
  // The only socket is busy: this request waits in the agent's queue, then its client leaves.
  // `forward` queues it synchronously once called; the client leaves right after that.
  const reachedForward = new Promise<void>((resolve) => {
    h.beforeForward = (req) => {
      if (req.url === "/v1/queued") resolve();
      return Promise.resolve();
    };
  });
  const queued = send(h.port, { path: "/v1/queued", abortWhen: reachedForward });
  t.equal((await queued).status, 0);
  t.equal((await h.result(1)).status, 499, "the queued request ended as a client abort");
  t.equal((await first).status, 504);
  const last = await send(h.port, { path: "/v1/last" });
  t.equal(last.status, 200);
  t.same(
    h.fake.requests.map((r) => r.target),
    ["/v1/first", "/v1/last"],
    "the abandoned request never reached the upstream",
  );
});

t.test("a key refresh that never answers is bounded by response_timeout", async (t) => {
  const h = await startHarness({ upstream: { response_timeout: 150 }, refreshKey: () => new Promise(() => {}) });
  t.teardown(() => h.close());
  h.fake.reply({ type: "unauthorized" });
  refused(t, h, await send(h.port), 502, "upstream_auth_failed");
});
