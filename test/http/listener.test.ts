import { EventEmitter } from "node:events";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import t, { type Test } from "tap";
import type { ServerConfig } from "../../src/config/types.ts";
import { ERRORS, type Reason } from "../../src/errors.ts";
import { checkFraming } from "../../src/http/framing.ts";
import { createListener, MAX_HEADER_SIZE, type RequestHandler } from "../../src/http/listener.ts";
import { sendDeny } from "../../src/http/reply.ts";
import { parseTarget } from "../../src/http/target.ts";
import { deny } from "../../src/pipeline/types.ts";
import { connectRaw, finalResponses, parseResponses, sendRaw, type RawResponse } from "../helpers/raw-http.ts";

const MAX_HEADERS = 20;

const CONFIG: ServerConfig = {
  headers_timeout: 10_000,
  request_timeout: 60_000,
  keep_alive_timeout: 5_000,
  max_connections: 1000,
  max_header_count: MAX_HEADERS,
  drain_timeout: 1_000,
};

interface Call {
  readonly url: string;
  readonly expectsContinue: boolean;
  passed: boolean;
}

interface Harness {
  readonly port: number;
  readonly server: Server;
  readonly calls: Call[];
  readonly clientErrors: Array<readonly [Reason, string]>;
  readonly handlerErrors: unknown[];
  /** Emits "handlerError" with each error the listener reports. */
  readonly events: EventEmitter;
  reset(): void;
}

/**
 * The tiny handler of the brief: checkFraming + parseTarget, then 200 with the parsed target once
 * the body has been read. A few paths drive special behaviour after the checks pass.
 */
function probeHandler(calls: Call[], slowMs: number): RequestHandler {
  return (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean) => {
    const call: Call = { url: req.url ?? "", expectsContinue, passed: false };
    calls.push(call);
    const framing = checkFraming(req, { maxHeaderCount: MAX_HEADERS });
    if (!framing.ok) {
      sendDeny(res, framing, { close: true });
      return;
    }
    const target = parseTarget(req.url ?? "");
    if (!target.ok) {
      sendDeny(res, target, { close: true });
      return;
    }
    call.passed = true;
    const answer = (bodyBytes: number): void => {
      const body = JSON.stringify({ path: target.path, query: target.query, queryNames: target.queryNames, expectsContinue, bodyBytes });
      res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) });
      res.end(body);
    };
    switch (target.path) {
      case "/v1/deny":
        sendDeny(res, deny("route_not_allowed"), { close: true });
        return;
      case "/v1/early":
        answer(0);
        return;
      case "/v1/throw":
        throw new Error("handler bug");
      case "/v1/reject":
        return Promise.reject(new Error("async handler bug"));
      case "/v1/write-after-end":
        answer(0);
        res.write("more");
        return;
    }
    if (expectsContinue) res.writeContinue();
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on("end", () => {
      if (target.path === "/v1/slow") setTimeout(() => answer(bytes), slowMs);
      else answer(bytes);
    });
  };
}

async function start(t: Test, config: ServerConfig = CONFIG, slowMs = 0): Promise<Harness> {
  const calls: Call[] = [];
  const clientErrors: Array<readonly [Reason, string]> = [];
  const handlerErrors: unknown[] = [];
  const events = new EventEmitter();
  const server = createListener(config, probeHandler(calls, slowMs), {
    // Refusals the listener answers itself and refusals it only reports land in one list.
    onRefusal: (refusal) => {
      clientErrors.push([refusal.reason, refusal.detail]);
      refusal.reply(deny(refusal.reason, refusal.detail));
    },
    onClientError: (reason, detail) => clientErrors.push([reason, detail]),
    onHandlerError: (err) => {
      handlerErrors.push(err);
      events.emit("handlerError", err);
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return {
    port: (server.address() as AddressInfo).port,
    server,
    calls,
    clientErrors,
    handlerErrors,
    events,
    reset() {
      calls.length = 0;
      clientErrors.length = 0;
      handlerErrors.length = 0;
    },
  };
}

/** Builds a raw request; `headers` are written as given (no Host added unless listed). */
function raw(requestLine: string, headers: readonly string[] = ["Host: proxy"], body = ""): string {
  return `${requestLine}\r\n${headers.map((h) => `${h}\r\n`).join("")}\r\n${body}`;
}

const get = (target: string, extra: readonly string[] = []): string => raw(`GET ${target} HTTP/1.1`, ["Host: proxy", ...extra]);
const headerLines = (n: number): string[] => Array.from({ length: n }, (_, i) => `X-H${i}: ${i}`);

/** Asserts a local JSON refusal in SPEC §5's shape. */
function assertRefusal(t: Test, response: RawResponse | undefined, reason: Reason, head = false): void {
  const entry = ERRORS[reason];
  t.equal(response?.status, entry.status, `status ${entry.status}`);
  t.match(response?.headers["content-type"], /^application\/json/, "JSON content type");
  t.equal(response?.headers["connection"], "close", "connection: close");
  // A HEAD response carries the headers of the JSON body but not the body itself.
  if (head) return;
  let body: unknown;
  try {
    body = JSON.parse(response?.body ?? "");
  } catch {
    body = response?.body;
  }
  t.same(body, { success: false, message: entry.message, code: entry.code, reason }, `body reason ${reason}`);
}

interface Row {
  readonly name: string;
  readonly raw: string;
  readonly status: number;
  /** For refusals. */
  readonly reason?: Reason;
  /** Whether the handler ran; undefined where Node versions ≥22 differ (noted at the row). */
  readonly reached: boolean | undefined;
  /** Accepted rows: what the handler parsed. */
  readonly target?: { path: string; query?: string; queryNames?: string[]; bodyBytes?: number; expectsContinue?: boolean };
  readonly interim?: number[];
  readonly head?: boolean;
}

const ok = (name: string, request: string, target: Row["target"], interim?: number[]): Row => ({
  name,
  raw: request,
  status: 200,
  reached: true,
  target,
  ...(interim === undefined ? {} : { interim }),
});
const refused = (name: string, request: string, reason: Reason, reached: boolean | undefined, head = false): Row => ({
  name,
  raw: request,
  status: ERRORS[reason].status,
  reason,
  reached,
  head,
});

const bigHeader = "X-Big: " + "a".repeat(MAX_HEADER_SIZE + 100);

const rows: readonly Row[] = [
  // accepted, forwarded byte for byte
  ok("plain GET", get("/v1/models"), { path: "/v1/models" }),
  ok("query names in order", get("/v1/generations?limit=10&after=abc"), { path: "/v1/generations", query: "limit=10&after=abc", queryNames: ["limit", "after"] }),
  ok("duplicate query names kept", get("/v1/generations?a=1&a=2"), { path: "/v1/generations", query: "a=1&a=2", queryNames: ["a", "a"] }),
  ok("query values are opaque", get("/v1/m?x=%2e%2e%2f%5c"), { path: "/v1/m", query: "x=%2e%2e%2f%5c", queryNames: ["x"] }),
  ok("case kept, not normalised", get("/V1/MODELS"), { path: "/V1/MODELS" }),
  ok("trailing slash kept", get("/v1/models/"), { path: "/v1/models/" }),
  ok("POST with Content-Length", raw("POST /v1/images/generations HTTP/1.1", ["Host: proxy", "Content-Length: 5"], "hello"), { path: "/v1/images/generations", bodyBytes: 5 }),
  ok("POST chunked", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Transfer-Encoding: chunked"], "5\r\nhello\r\n0\r\n\r\n"), { path: "/v1/x", bodyBytes: 5 }),
  ok("Transfer-Encoding: CHUNKED", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Transfer-Encoding: CHUNKED"], "3\r\nabc\r\n0\r\n\r\n"), { path: "/v1/x", bodyBytes: 3 }),
  ok("Connection: keep-alive", get("/v1/models", ["Connection: keep-alive"]), { path: "/v1/models" }),
  ok("Connection: Keep-Alive, CLOSE", get("/v1/models", ["Connection: Keep-Alive, CLOSE"]), { path: "/v1/models" }),
  ok("HTTP/1.0 without Host", raw("GET /v1/models HTTP/1.0", []), { path: "/v1/models" }),
  ok("GET with Content-Length: 0", get("/v1/models", ["Content-Length: 0"]), { path: "/v1/models" }),
  ok("exactly max_header_count headers", get("/v1/models", headerLines(MAX_HEADERS - 1)), { path: "/v1/models" }),
  ok("OPTIONS", raw("OPTIONS /v1/models HTTP/1.1"), { path: "/v1/models" }),
  ok("DELETE with a body", raw("DELETE /v1/files/f1 HTTP/1.1", ["Host: proxy", "Content-Length: 2"], "{}"), { path: "/v1/files/f1", bodyBytes: 2 }),
  ok(
    "Expect: 100-continue",
    raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Content-Length: 5", "Expect: 100-continue"], "hello"),
    { path: "/v1/x", bodyBytes: 5, expectsContinue: true },
    [100],
  ),
  ok(
    "Expect: 100-Continue (any case)",
    raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Content-Length: 1", "Expect: 100-Continue"], "a"),
    { path: "/v1/x", bodyBytes: 1, expectsContinue: true },
    [100],
  ),
  ok(
    "Expect: 100-continue on HTTP/1.0 is ignored",
    raw("POST /v1/x HTTP/1.0", ["Content-Length: 1", "Expect: 100-continue"], "a"),
    { path: "/v1/x", bodyBytes: 1, expectsContinue: false },
    [],
  ),

  // path encodings and bypasses (docs/security.md §1)
  refused("dot-dot segments", get("/v1/images/generations/../../admin/keys"), "invalid_path", true),
  refused("single dot segment", get("/v1/./models"), "invalid_path", true),
  refused("%2e%2e", get("/v1/models/%2e%2e/%2e%2e/admin"), "invalid_path", true),
  refused(".%2e", get("/v1/models/.%2e/.%2e/admin"), "invalid_path", true),
  refused("%2E%2e", get("/v1/models/%2E%2e/admin"), "invalid_path", true),
  refused("..%2f", get("/v1/models/..%2f..%2fadmin"), "invalid_path", true),
  refused("double-encoded %252e", get("/v1/models/%252e%252e/admin"), "invalid_path", true),
  refused("encoded letters %6d%6f", get("/v1/%6d%6fdels"), "invalid_path", true),
  refused("%00", get("/v1/models%00"), "invalid_path", true),
  refused("backslash", get("/v1/models\\..\\..\\admin"), "invalid_path", true),
  refused("leading //", get("//evil.example/v1/models"), "invalid_path", true),
  refused("inner //", get("/v1//models"), "invalid_path", true),
  refused("; path parameter", get("/v1/models;x=1"), "invalid_path", true),
  refused("..;/", get("/v1/models/..;/admin"), "invalid_path", true),
  refused("#fragment", get("/v1/models#frag"), "invalid_path", true),
  refused("# after query", get("/v1/models?a=1#/../../admin"), "invalid_path", true),
  refused("absolute-form", get("http://evil.example/v1/admin"), "invalid_path", true),
  refused("absolute-form to the upstream", get("https://api.mythiq.ai/v1/models"), "invalid_path", true),
  refused("OPTIONS *", raw("OPTIONS * HTTP/1.1"), "invalid_path", true),
  refused("GET *", get("*"), "invalid_path", true),
  refused("trailing dot", get("/v1/models."), "invalid_path", true),
  refused("brace", get("/v1/models/{id}"), "invalid_path", true),
  refused("; in query", get("/v1/models?limit=1;admin=1"), "invalid_path", true),
  refused("quote in query", get("/v1/models?a='1'"), "invalid_path", true),
  refused("bare ?", get("/v1/models?"), "query_not_allowed", true),
  refused("empty query name", get("/v1/models?=1"), "query_not_allowed", true),
  refused("escaped query name", get("/v1/models?a%62=1"), "query_not_allowed", true),
  refused("empty query parameter", get("/v1/models?a=1&&b=2"), "query_not_allowed", true),

  // Node's parser refuses these before any request exists
  refused("authority-form", get("api.mythiq.ai:443"), "malformed_request", false),
  refused("non-ASCII byte in path", get("/v1/mod\xe9ls"), "malformed_request", false),
  refused("NUL in path", get("/v1/models\x00"), "malformed_request", false),
  refused("DEL in path", get("/v1/models\x7f"), "malformed_request", false),
  refused("space in path", get("/v1/mod els"), "malformed_request", false),
  refused("CL + TE", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Content-Length: 5", "Transfer-Encoding: chunked"], "0\r\n\r\n"), "malformed_request", false),
  refused("TE + CL", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Transfer-Encoding: chunked", "Content-Length: 5"], "0\r\n\r\n"), "malformed_request", false),
  refused("TE chunked, identity", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Transfer-Encoding: chunked, identity"], "0\r\n\r\n"), "malformed_request", false),
  refused("TE twice", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], "0\r\n\r\n"), "malformed_request", false),
  refused("CL twice", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Content-Length: 1", "Content-Length: 1"], "a"), "malformed_request", false),
  refused("empty CL", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Content-Length:"]), "malformed_request", false),
  refused("CL with sign", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Content-Length: +1"], "a"), "malformed_request", false),
  refused("bare LF", "GET /v1/models HTTP/1.1\nHost: proxy\n\n", "malformed_request", false),
  refused("obs-fold", get("/v1/models", ["X-A: 1", " 2"]), "malformed_request", false),
  refused("space before colon", get("/v1/models", ["Authorization : Bearer x"]), "malformed_request", false),
  refused("CR in header value", get("/v1/models", ["X-A: a\rb"]), "malformed_request", false),
  refused("NUL in header value", get("/v1/models", ["X-A: a\x00b"]), "malformed_request", false),
  refused("lowercase method", raw("get /v1/models HTTP/1.1"), "method_not_allowed", false),
  refused("unknown method", raw("FOO /v1/models HTTP/1.1"), "method_not_allowed", false),
  refused("HTTP/1.2", raw("GET /v1/models HTTP/1.2"), "malformed_request", false),
  refused("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "malformed_request", false),
  refused("header block over 16 KiB", get("/v1/models", [bigHeader]), "headers_too_large", false),
  refused("request line over 16 KiB", get("/v1/" + "a".repeat(MAX_HEADER_SIZE)), "headers_too_large", false),
  // Node 24 refuses more than maxHeadersCount (= max_header_count + 1) itself; older Node drops the
  // excess silently and checkFraming sees max_header_count + 1: 431 either way.
  refused("max_header_count + 2 headers", get("/v1/models", headerLines(MAX_HEADERS + 1)), "headers_too_large", undefined),

  // checkFraming, in the handler
  refused("max_header_count + 1 headers", get("/v1/models", headerLines(MAX_HEADERS)), "headers_too_large", true),
  refused("HTTP/2.0 request line", raw("GET /v1/models HTTP/2.0"), "malformed_request", true),
  refused("HTTP/0.9 request", "GET /v1/models\r\n\r\n", "malformed_request", true),
  refused("HTTP/1.1 without Host", raw("GET /v1/models HTTP/1.1", []), "malformed_request", true),
  refused("duplicate Host", get("/v1/models", ["Host: evil"]), "invalid_header", true),
  refused("duplicate Host, other case", get("/v1/models", ["HOST: evil"]), "invalid_header", true),
  refused("duplicate Authorization", get("/v1/models", ["Authorization: Bearer a", "authorization: Bearer b"]), "invalid_header", true),
  refused("underscore header", get("/v1/models", ["X_Api_Key: k"]), "invalid_header", true),
  refused("TE ,chunked", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Transfer-Encoding: ,chunked"], "0\r\n\r\n"), "invalid_header", true),
  refused("TE identity, chunked", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Transfer-Encoding: identity, chunked"], "0\r\n\r\n"), "invalid_header", true),
  refused("TE gzip, chunked", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Transfer-Encoding: gzip, chunked"], "0\r\n\r\n"), "invalid_header", true),
  refused("TE on HTTP/1.0", raw("POST /v1/x HTTP/1.0", ["Transfer-Encoding: chunked"], "0\r\n\r\n"), "invalid_header", true),
  refused("Connection: keep-alive, authorization", get("/v1/models", ["Connection: keep-alive, authorization"]), "invalid_header", true),
  refused("Connection: x-forwarded-for", get("/v1/models", ["Connection: x-forwarded-for"]), "invalid_header", true),
  refused("Connection: te", get("/v1/models", ["Connection: close, te"]), "invalid_header", true),
  refused("Connection: upgrade without Upgrade", get("/v1/models", ["Connection: upgrade"]), "method_not_allowed", true),
  refused("Upgrade: h2c without Connection", get("/v1/models", ["Upgrade: h2c"]), "method_not_allowed", true),
  refused("TRACE", raw("TRACE /v1/models HTTP/1.1"), "method_not_allowed", true),
  refused("PROPFIND", raw("PROPFIND /v1/models HTTP/1.1"), "method_not_allowed", true),
  refused("QUERY", raw("QUERY /v1/models HTTP/1.1"), "method_not_allowed", true),
  refused("Expect: foo, 100-continue", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Content-Length: 1", "Expect: foo, 100-continue"], "a"), "expectation_failed", true),
  refused("Expect: 100-continue twice", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Content-Length: 1", "Expect: 100-continue", "Expect: 100-continue"], "a"), "expectation_failed", true),
  refused("Expect: foo on HTTP/1.0", raw("POST /v1/x HTTP/1.0", ["Content-Length: 1", "Expect: foo"], "a"), "expectation_failed", true),
  refused("GET with a body", get("/v1/models", ["Content-Length: 5"]) + "hello", "body_not_allowed", true),
  refused("GET chunked", raw("GET /v1/models HTTP/1.1", ["Host: proxy", "Transfer-Encoding: chunked"], "0\r\n\r\n"), "body_not_allowed", true),
  refused("HEAD with a body", raw("HEAD /v1/models HTTP/1.1", ["Host: proxy", "Content-Length: 1"], "a"), "body_not_allowed", true, true),

  // the listener itself
  refused("WebSocket upgrade", get("/v1/models", ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]), "method_not_allowed", false),
  refused(
    "WebSocket upgrade with frame bytes behind it",
    get("/v1/models", ["Connection: Upgrade", "Upgrade: websocket"]) + "\x81\x85" + "x".repeat(4000),
    "method_not_allowed",
    false,
  ),
  refused("h2c upgrade", get("/v1/models", ["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"]), "method_not_allowed", false),
  refused("CONNECT", raw("CONNECT api.mythiq.ai:443 HTTP/1.1", ["Host: api.mythiq.ai:443"]), "method_not_allowed", false),
  refused("Expect: foo", raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Content-Length: 1", "Expect: foo"], "a"), "expectation_failed", false),
];

t.test("raw request table", async (t) => {
  const h = await start(t);
  t.ok(rows.length >= 60, `${rows.length} rows`);
  for (const row of rows) {
    await t.test(row.name, async (t) => {
      h.reset();
      const finals = row.status === 200 ? 1 : undefined;
      const result = await sendRaw(h.port, row.raw, { head: row.head === true, ...(finals === undefined ? {} : { finals }) });
      const all = result.responses;
      const final = all.filter((r) => r.status >= 200);
      t.equal(final.length, 1, "exactly one final response");
      const response = final[0];
      if (row.reason === undefined) {
        t.equal(response?.status, 200, "status 200");
        const body = JSON.parse(response?.body ?? "null") as Record<string, unknown>;
        t.match(body, { path: row.target?.path, query: row.target?.query ?? "", queryNames: row.target?.queryNames ?? [] }, "parsed target");
        if (row.target?.bodyBytes !== undefined) t.equal(body["bodyBytes"], row.target.bodyBytes, "body read");
        if (row.target?.expectsContinue !== undefined) t.equal(body["expectsContinue"], row.target.expectsContinue, "expectsContinue");
        t.same(h.calls.map((c) => c.passed), [true], "handler reached, checks passed");
      } else {
        assertRefusal(t, response, row.reason, row.head === true);
        t.ok(result.serverClosed, "server closed the connection");
        t.notOk(h.calls.some((c) => c.passed), "nothing passed the checks");
        if (row.reached === true) {
          t.equal(h.calls.length, 1, "handler reached");
          t.same(h.clientErrors, [], "no listener-level refusal");
        } else if (row.reached === false) {
          t.equal(h.calls.length, 0, "handler not reached");
          t.same(h.clientErrors.map(([reason]) => reason), [row.reason], "listener reported the refusal");
        }
      }
      const interim = all.filter((r) => r.status < 200).map((r) => r.status);
      t.same(interim, row.interim ?? [], "interim responses");
      t.same(h.handlerErrors, [], "no handler error");
    });
  }
});

t.test("Expect: 100-continue gets no 100 before the handler decides", async (t) => {
  const h = await start(t);

  await t.test("a refused request never sees 100 Continue", async (t) => {
    h.reset();
    // The body is never sent: a client that waits for 100 must get the refusal instead.
    const result = await sendRaw(h.port, raw("POST /v1/deny HTTP/1.1", ["Host: proxy", "Content-Length: 5", "Expect: 100-continue"]));
    t.equal(result.raw.startsWith("HTTP/1.1 403 "), true, "the first bytes are the final refusal");
    t.same(result.responses.map((r) => r.status), [403]);
    assertRefusal(t, result.responses[0], "route_not_allowed");
    t.same(h.calls.map((c) => c.expectsContinue), [true], "handler was told the client waits");
  });

  await t.test("an accepted request gets 100 from the handler, then sends its body", async (t) => {
    h.reset();
    const conn = await connectRaw(h.port);
    t.teardown(() => conn.destroy());
    conn.write(raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Content-Length: 5", "Expect: 100-continue"]));
    const interim = await conn.until((r) => r.includes("\r\n\r\n"));
    t.equal(interim, "HTTP/1.1 100 Continue\r\n\r\n", "only 100 Continue so far");
    t.same(h.calls.map((c) => [c.expectsContinue, c.passed]), [[true, true]], "the handler ran its checks before the 100");
    conn.write("hello");
    const all = await conn.until((r) => finalResponses(r).length === 1);
    const body = JSON.parse(finalResponses(all)[0]?.body ?? "null") as Record<string, unknown>;
    t.match(body, { path: "/v1/x", bodyBytes: 5, expectsContinue: true });
  });
});

t.test("timeouts", async (t) => {
  const config: ServerConfig = { ...CONFIG, headers_timeout: 300, request_timeout: 600 };
  const h = await start(t, config, 1000);

  await t.test("slow headers → 408 from the listener", async (t) => {
    h.reset();
    const conn = await connectRaw(h.port);
    conn.write("GET /v1/models HTTP/1.1\r\nHost: proxy\r\n");
    const received = await conn.closed;
    const responses = parseResponses(received).responses;
    t.equal(responses.length, 1);
    assertRefusal(t, responses[0], "request_timeout");
    t.equal(h.calls.length, 0, "handler not reached");
    t.same(h.clientErrors, [["request_timeout", "ERR_HTTP_REQUEST_TIMEOUT"]]);
  });

  await t.test("slow body → 408 through the handler's response", async (t) => {
    h.reset();
    const conn = await connectRaw(h.port);
    conn.write(raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Content-Length: 10"], "ab"));
    const received = await conn.closed;
    const responses = parseResponses(received).responses;
    t.equal(responses.length, 1);
    assertRefusal(t, responses[0], "request_timeout");
    t.same(h.calls.map((c) => c.passed), [true], "handler held the request");
    t.same(h.clientErrors.map(([reason]) => reason), ["request_timeout"]);
  });

  await t.test("a slow handler is not cut once the request has arrived", async (t) => {
    h.reset();
    // The handler answers 1000 ms after the body, well past request_timeout (600 ms): an upstream
    // that takes long must not turn into a 408.
    const result = await sendRaw(h.port, get("/v1/slow"), { finals: 1 });
    t.same(result.responses.map((r) => r.status), [200]);
    t.same(h.clientErrors, []);
  });

  await t.test("a keep-alive connection whose next request stalls → 200 then 408", async (t) => {
    h.reset();
    const conn = await connectRaw(h.port);
    conn.write(get("/v1/models"));
    await conn.until((r) => finalResponses(r).length === 1);
    conn.write("GET /v1/models HT");
    const received = await conn.closed;
    const finals = finalResponses(received);
    t.same(finals.map((r) => r.status), [200, 408]);
    assertRefusal(t, finals[1], "request_timeout");
  });
});

t.test("connection-level edge cases", async (t) => {
  const h = await start(t);

  await t.test("pipelined requests are answered in order", async (t) => {
    h.reset();
    const result = await sendRaw(h.port, get("/v1/a") + get("/v1/b"), { finals: 2 });
    t.same(
      result.responses.map((r) => (JSON.parse(r.body) as { path: string }).path),
      ["/v1/a", "/v1/b"],
    );
  });

  await t.test("garbage after a complete keep-alive exchange → 200 then 400", async (t) => {
    h.reset();
    const result = await sendRaw(h.port, get("/v1/a") + "GET /v1/b HTTP/9.9\r\n\r\n");
    t.same(result.responses.map((r) => r.status), [200, 400]);
    assertRefusal(t, result.responses[1], "malformed_request");
    t.ok(result.serverClosed);
  });

  await t.test("bytes after Connection: close get no second, unsolicited reply", async (t) => {
    h.reset();
    const result = await sendRaw(h.port, get("/v1/a", ["Connection: close"]) + get("/v1/b"));
    t.same(result.responses.map((r) => r.status), [200], "one response");
    t.equal(parseResponses(result.raw).rest, "", "no trailing bytes");
    t.same(h.calls.map((c) => c.url), ["/v1/a"]);
    t.same(h.clientErrors.map(([reason]) => reason), ["malformed_request"]);
  });

  await t.test("a broken chunk while the handler reads the body → 400 through its response", async (t) => {
    h.reset();
    const result = await sendRaw(h.port, raw("POST /v1/x HTTP/1.1", ["Host: proxy", "Transfer-Encoding: chunked"], "5\r\nhello\r\nzz\r\n"));
    t.same(result.responses.map((r) => r.status), [400]);
    assertRefusal(t, result.responses[0], "malformed_request");
    t.same(h.calls.map((c) => c.passed), [true]);
  });

  await t.test("a parse error after the response started adds nothing to it", async (t) => {
    h.reset();
    // /v1/early answers before reading the body; the body then overflows the chunk-extension limit.
    const body = `1;${"x".repeat(20_000)}\r\na\r\n0\r\n\r\n`;
    const result = await sendRaw(h.port, raw("POST /v1/early HTTP/1.1", ["Host: proxy", "Transfer-Encoding: chunked"], body));
    t.same(result.responses.map((r) => r.status), [200]);
    t.equal(parseResponses(result.raw).rest, "", "no bytes after the response");
    t.ok(result.serverClosed, "connection closed");
  });

  await t.test("a client reset mid-request is not reported and harms nothing", async (t) => {
    h.reset();
    const closedOnServer = new Promise<void>((resolve) => h.server.once("connection", (socket: Socket) => socket.once("close", () => resolve())));
    const conn = await connectRaw(h.port);
    conn.write("GET /v1/models HTTP/1.1\r\nHost: pro");
    conn.reset();
    await closedOnServer;
    t.same(h.clientErrors, [], "nothing reported");
    const after = await sendRaw(h.port, get("/v1/models"), { finals: 1 });
    t.same(after.responses.map((r) => r.status), [200], "still serving");
  });
});

t.test("handler failures never crash the process", async (t) => {
  const h = await start(t);

  for (const path of ["/v1/throw", "/v1/reject"]) {
    await t.test(path, async (t) => {
      h.reset();
      const result = await sendRaw(h.port, get(path));
      t.equal(result.raw, "", "connection reset without a response");
      t.equal(h.handlerErrors.length, 1, "reported");
      t.match(h.handlerErrors[0], { message: /handler bug/ });
      const after = await sendRaw(h.port, get("/v1/models"), { finals: 1 });
      t.same(after.responses.map((r) => r.status), [200], "still serving");
    });
  }

  await t.test("a write after end is reported, not thrown", async (t) => {
    h.reset();
    const reported = new Promise<unknown>((resolve) => h.events.once("handlerError", resolve));
    const result = await sendRaw(h.port, get("/v1/write-after-end"), { finals: 1 });
    t.same(result.responses.map((r) => r.status), [200], "the finished response went out");
    t.match(await reported, { code: "ERR_STREAM_WRITE_AFTER_END" });
    t.equal(h.handlerErrors.length, 1);
  });
});

t.test("observers that throw do not break refusals", async (t) => {
  const server = createListener(CONFIG, () => {
    throw new Error("handler bug");
  }, {
    onClientError: () => {
      throw new Error("observer bug");
    },
    onHandlerError: () => {
      throw new Error("observer bug");
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  const connect = await sendRaw(port, raw("CONNECT api.mythiq.ai:443 HTTP/1.1", ["Host: api.mythiq.ai:443"]));
  assertRefusal(t, connect.responses[0], "method_not_allowed");
  const failed = await sendRaw(port, get("/v1/models"));
  t.equal(failed.raw, "", "handler failure still resets the connection");
});

t.test("server settings", async (t) => {
  const server = createListener({ ...CONFIG, headers_timeout: 90_000, request_timeout: 30_000, keep_alive_timeout: 4_000, max_connections: 7 }, () => undefined);
  t.equal(server.requestTimeout, 30_000);
  t.equal(server.headersTimeout, 30_000, "headers_timeout capped at request_timeout (Node refuses more)");
  t.equal(server.keepAliveTimeout, 4_000);
  t.equal(server.maxConnections, 7);
  t.equal(server.maxHeadersCount, MAX_HEADERS + 1, "one more than max_header_count, so an overflow is detectable");
  t.equal((server as unknown as { maxHeaderSize: unknown }).maxHeaderSize, MAX_HEADER_SIZE);
  t.equal((server as unknown as { insecureHTTPParser: unknown }).insecureHTTPParser, false, "never the lenient parser");
  t.equal((server as unknown as { requireHostHeader: unknown }).requireHostHeader, false, "Host is checked by checkFraming, with a JSON reply");
  t.ok(server.listenerCount("checkContinue") > 0, "Node sends no 100 Continue on its own");
  server.close();
});

t.test("connections over max_connections are dropped and reported", async (t) => {
  const h = await start(t, { ...CONFIG, max_connections: 1 });
  const accepted = new Promise<void>((resolve) => h.server.once("connection", () => resolve()));
  const first = await connectRaw(h.port);
  t.teardown(() => first.destroy());
  await accepted;
  const second = await connectRaw(h.port);
  second.write(get("/v1/models"));
  const received = await second.closed;
  t.equal(received, "", "no response on the dropped connection");
  t.same(h.clientErrors, [["overloaded", "max_connections"]]);
  t.equal(h.calls.length, 0);
});
