import t from "tap";
import { once } from "node:events";
import { request, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { Gauge } from "prom-client";
import { createAdminServer, type AdminReadiness } from "../../src/http/admin.ts";
import { createMetrics, type Metrics } from "../../src/observe/metrics.ts";
import { createLogger } from "../../src/observe/log.ts";

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

async function start(
  t: { teardown(fn: () => unknown): void },
  options: { metrics?: Pick<Metrics, "metricsText" | "contentType">; readiness?: () => AdminReadiness } = {},
) {
  const lines: string[] = [];
  const metrics = options.metrics ?? createMetrics({ version: "0.1.0" });
  const server = createAdminServer({
    metrics,
    readiness: options.readiness ?? (() => ({ ready: true, reasons: [] })),
    logger: createLogger({ write: (line) => lines.push(line) }),
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.teardown(() => closeServer(server));
  const port = (server.address() as AddressInfo).port;
  const call = (method: string, path: string, headers: Record<string, string> = {}) =>
    new Promise<Reply>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, method, path, headers, agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on("error", reject);
      req.end();
    });
  const raw = (bytes: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1");
      let data = "";
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => (data += chunk));
      socket.on("end", () => resolve(data));
      socket.on("close", () => resolve(data));
      socket.on("error", reject);
      socket.write(bytes);
    });
  return { server, port, call, raw, lines };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

void t.test("GET /metrics serves the Prometheus text format with the registry's content type", async (t) => {
  const metrics = createMetrics({ version: "0.1.0" });
  const { call } = await start(t, { metrics });
  const res = await call("GET", "/metrics");
  t.equal(res.status, 200);
  t.equal(res.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  t.equal(res.headers["content-type"], metrics.contentType);
  t.equal(res.headers["cache-control"], "no-store");
  t.match(res.body, /^# HELP /);
  t.match(res.body, /\nmythiq_proxy_build_info\{version="0\.1\.0",node="v[\d.]+"\} 1\n/);
  t.equal(Number(res.headers["content-length"]), Buffer.byteLength(res.body));

  const withQuery = await call("GET", "/metrics?name[]=foo");
  t.equal(withQuery.status, 200, "a query string is ignored");

  const head = await call("HEAD", "/metrics");
  t.equal(head.status, 200);
  t.equal(head.body, "", "HEAD has no body");
  t.equal(head.headers["content-type"], metrics.contentType);
});

void t.test("GET and HEAD /healthz", async (t) => {
  const { call } = await start(t, { readiness: () => ({ ready: false, reasons: ["draining"] }) });
  const res = await call("GET", "/healthz");
  t.equal(res.status, 200, "liveness does not depend on readiness");
  t.same(JSON.parse(res.body), { ok: true });
  t.equal(res.headers["content-type"], "application/json; charset=utf-8");
  const head = await call("HEAD", "/healthz");
  t.equal(head.status, 200);
  t.equal(head.body, "");
});

void t.test("/readyz follows readiness as it flips", async (t) => {
  let state: AdminReadiness = { ready: false, reasons: ["key production not loaded", "config not loaded"] };
  const { call } = await start(t, { readiness: () => state });
  let res = await call("GET", "/readyz");
  t.equal(res.status, 503);
  t.same(JSON.parse(res.body), { ready: false, reasons: ["key production not loaded", "config not loaded"] });

  state = { ready: true, reasons: [] };
  res = await call("GET", "/readyz");
  t.equal(res.status, 200);
  t.same(JSON.parse(res.body), { ready: true });

  state = { ready: false, reasons: ["draining"] };
  res = await call("GET", "/readyz");
  t.equal(res.status, 503);
  t.same(JSON.parse(res.body), { ready: false, reasons: ["draining"] });

  const head = await call("HEAD", "/readyz");
  t.equal(head.status, 503);
  t.equal(head.body, "");

  state = { ready: false, reasons: Array.from({ length: 500 }, (_, i) => `reason ${i} ` + "x".repeat(1000)) };
  res = await call("GET", "/readyz");
  const body = JSON.parse(res.body) as { reasons: string[] };
  t.equal(body.reasons.length, 50, "the list of reasons is bounded");
  t.ok(body.reasons.every((r) => r.length <= 200), "and so is each reason");
});

void t.test("a readiness check that throws answers 503 and is logged", async (t) => {
  const { call, lines } = await start(t, {
    readiness: () => {
      throw new Error("keyring gone");
    },
  });
  const res = await call("GET", "/readyz");
  t.equal(res.status, 503);
  t.same(JSON.parse(res.body), { ready: false, reasons: ["readiness check failed"] });
  t.ok(lines.some((l) => l.includes("readiness check failed") && l.includes("keyring gone")));
});

void t.test("other paths: 404 JSON, never proxied", async (t) => {
  const { call } = await start(t);
  for (const path of ["/", "/v1/models", "/metrics/", "/Metrics", "/healthz/x", "//metrics", "/readyz%20"]) {
    for (const method of ["GET", "POST", "DELETE"]) {
      const res = await call(method, path);
      t.equal(res.status, 404, `${method} ${path}`);
      t.same(JSON.parse(res.body), { success: false, message: "Not found", code: "invalid_request_error", reason: "not_found" });
    }
  }
});

void t.test("other methods on the admin paths: 405 JSON with Allow", async (t) => {
  const { call } = await start(t);
  for (const path of ["/metrics", "/healthz", "/readyz"]) {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      const res = await call(method, path);
      t.equal(res.status, 405, `${method} ${path}`);
      t.equal(res.headers["allow"], "GET, HEAD");
      t.equal(JSON.parse(res.body).reason, "method_not_allowed");
      t.equal(JSON.parse(res.body).success, false);
    }
  }
});

void t.test("a failing collector answers 500 JSON, is logged, and the server keeps serving", async (t) => {
  const metrics = createMetrics({ version: "0.1.0", processMetrics: false });
  let fail = true;
  new Gauge({
    name: "test_flaky",
    help: "fails on demand",
    registers: [metrics.registry],
    collect() {
      if (fail) throw new Error("collector exploded");
      this.set(1);
    },
  });
  const { call, lines } = await start(t, { metrics });
  const res = await call("GET", "/metrics");
  t.equal(res.status, 500);
  t.same(JSON.parse(res.body), { success: false, message: "Metrics could not be collected", code: "internal_error", reason: "internal_error" });
  t.ok(lines.some((l) => l.includes("metrics collection failed") && l.includes("collector exploded")));
  t.notOk(res.body.includes("exploded"), "the error text stays in the log");

  fail = false;
  const ok = await call("GET", "/metrics");
  t.equal(ok.status, 200);
  t.match(ok.body, /\ntest_flaky 1\n/);
  t.equal((await call("GET", "/healthz")).status, 200);
});

void t.test("a metrics object that throws synchronously is answered too", async (t) => {
  const metrics = {
    contentType: "text/plain",
    metricsText: () => {
      throw new Error("sync boom");
    },
  };
  const { call, lines } = await start(t, { metrics });
  const res = await call("GET", "/metrics");
  t.equal(res.status, 500);
  t.ok(lines.some((l) => l.includes("sync boom")));
});

void t.test("framing errors and oversized headers get the JSON replies and a closed connection", async (t) => {
  const { raw, call } = await start(t);
  const big = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(10 * 1024)}\r\n\r\n`);
  t.match(big, /^HTTP\/1\.1 431 /);
  t.match(big, /"reason":"headers_too_large"/);
  t.match(big, /connection: close/i);

  const malformed = await raw("GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n");
  t.match(malformed, /^HTTP\/1\.1 400 /);
  t.match(malformed, /"reason":"malformed_request"/);

  const many = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 60 }, (_, i) => `X-H${i}: v`).join("\r\n")}\r\nConnection: close\r\n\r\n`);
  t.match(many, /^HTTP\/1\.1 431 /, "more than maxHeadersCount headers is refused as too large");
  const fewer = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 40 }, (_, i) => `X-H${i}: v`).join("\r\n")}\r\nConnection: close\r\n\r\n`);
  t.match(fewer, /^HTTP\/1\.1 200 /, "fewer are fine");

  const tunnel = await raw("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  t.match(tunnel, /^HTTP\/1\.1 405 /, "CONNECT is refused, not tunnelled");
  t.match(tunnel, /"reason":"method_not_allowed"/);

  const upgrade = await raw("GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\nUpgrade: websocket\r\n\r\n");
  t.match(upgrade, /^HTTP\/1\.1 404 /, "an upgrade is an ordinary request here, never switched");

  t.equal((await call("GET", "/healthz")).status, 200, "still serving");
});

void t.test("keep-alive works for repeated probes and the server applies its limits", async (t) => {
  const { server, raw } = await start(t);
  t.equal(server.headersTimeout, 5_000);
  t.equal(server.requestTimeout, 10_000);
  t.equal(server.keepAliveTimeout, 5_000);
  t.equal(server.maxHeadersCount, 50);
  t.equal(server.maxConnections, 256);
  t.equal(server.timeout, 30_000);
  const two = await raw("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  t.equal(two.match(/HTTP\/1\.1 200 OK/g)?.length, 2, "two answers on one connection");
});

void t.test("a body sent to the admin port is not read into an answer", async (t) => {
  const { call, port } = await start(t);
  const res = await new Promise<Reply>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method: "POST", path: "/metrics", agent: false, headers: { "content-type": "text/plain" } }, (r) => {
      let body = "";
      r.setEncoding("utf8");
      r.on("data", (c: string) => (body += c));
      r.on("end", () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body }));
    });
    req.on("error", reject);
    req.end("x".repeat(100_000));
  });
  t.equal(res.status, 405);
  t.equal((await call("GET", "/healthz")).status, 200);
});
