// Hostile input, part 1: path encodings, request framing and smuggling shapes, hop-by-hop and
// Connection tricks — over raw sockets against the whole proxy. Each case asserts the status and
// reason, that the fake MythIQ received nothing (or, for the requests that must pass, exactly the
// checked request), and that no byte of the key came back.
import t from "tap";
import { auth, req, runCases, startHostileEnv, TEST_KEY, type HostileCase, type HostileEnv } from "../helpers/hostile.ts";

let env: HostileEnv;
t.before(async () => {
  env = await startHostileEnv();
});
t.teardown(() => env.close());

const get = (target: string, headers: readonly string[] = [auth]) => req("GET", target, headers);

const paths: HostileCase[] = [
  { name: "dot-dot segment", raw: get("/v1/models/../admin"), status: 400, reason: "invalid_path" },
  { name: "encoded dot-dot", raw: get("/v1/models/%2e%2e/admin"), status: 400, reason: "invalid_path" },
  { name: "mixed-case encoded dot", raw: get("/v1/models/.%2E/admin"), status: 400, reason: "invalid_path" },
  { name: "encoded slash", raw: get("/v1/models/x%2f..%2fadmin"), status: 400, reason: "invalid_path" },
  { name: "double-encoded dot", raw: get("/v1/models/%252e%252e/admin"), status: 400, reason: "invalid_path" },
  { name: "backslash traversal", raw: get("/v1/models\\..\\admin"), status: 400, reason: "invalid_path" },
  { name: "double slash", raw: get("//v1/models"), status: 400, reason: "invalid_path" },
  { name: "single dot segment", raw: get("/v1/./models"), status: 400, reason: "invalid_path" },
  { name: "matrix parameter", raw: get("/v1/models;x=1"), status: 400, reason: "invalid_path" },
  { name: "fragment", raw: get("/v1/models#/../admin"), status: 400, reason: "invalid_path" },
  { name: "encoded letters", raw: get("/v1/%6dodels"), status: 400, reason: "invalid_path" },
  { name: "encoded NUL", raw: get("/v1/models%00"), status: 400, reason: "invalid_path" },
  { name: "trailing dot segment", raw: get("/v1/models."), status: 400, reason: "invalid_path" },
  { name: "placeholder as dot-dot", raw: get("/v1/models/.."), status: 400, reason: "invalid_path" },
  { name: "absolute-form target", raw: get("http://api.mythiq.ai/v1/models"), status: 400, reason: "invalid_path" },
  { name: "asterisk-form", raw: req("OPTIONS", "*", [auth]), status: 400, reason: "invalid_path" },
  { name: "raw non-ASCII byte", raw: get("/v1/mod\xe9ls"), status: 400, reason: "malformed_request" },
  { name: "upper-case path is another path", raw: get("/V1/MODELS"), status: 403, reason: "route_not_allowed" },
  { name: "trailing slash is another path", raw: get("/v1/models/"), status: 403, reason: "route_not_allowed" },
  { name: "query parameter not listed", raw: get("/v1/generations?limit=1&x=/../../admin"), status: 400, reason: "query_not_allowed" },
  { name: "query on a route without any", raw: get("/v1/models?access_token=abc"), status: 400, reason: "query_not_allowed" },
];

const framing: HostileCase[] = [
  { name: "Content-Length and Transfer-Encoding", raw: req("POST", "/v1/images/generations", [auth, "Content-Type: application/json", "Content-Length: 4", "Transfer-Encoding: chunked"], "0\r\n\r\n"), status: 400, reason: "malformed_request" },
  { name: "two different Content-Lengths", raw: req("POST", "/v1/images/generations", [auth, "Content-Length: 2", "Content-Length: 3"], "{}x"), status: 400, reason: "malformed_request" },
  { name: "Content-Length with a sign", raw: req("POST", "/v1/images/generations", [auth, "Content-Length: +2"], "{}"), status: 400, reason: "malformed_request" },
  { name: "Transfer-Encoding: chunked, identity", raw: req("POST", "/v1/images/generations", [auth, "Transfer-Encoding: chunked, identity"], "0\r\n\r\n"), status: 400, reason: "malformed_request" },
  { name: "Transfer-Encoding: identity, chunked", raw: req("POST", "/v1/images/generations", [auth, "Transfer-Encoding: identity, chunked"], "0\r\n\r\n"), status: 400, reason: "invalid_header" },
  { name: "Transfer-Encoding: ,chunked", raw: req("POST", "/v1/images/generations", [auth, "Transfer-Encoding: ,chunked"], "0\r\n\r\n"), status: 400, reason: "invalid_header" },
  // Node hands this head over before its parser fails on the body: step 1 refuses it first.
  { name: "Transfer-Encoding: xchunked", raw: req("POST", "/v1/images/generations", [auth, "Transfer-Encoding: xchunked"], "0\r\n\r\n"), status: 400, reason: "invalid_header" },
  { name: "two Transfer-Encoding headers", raw: req("POST", "/v1/images/generations", [auth, "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], "0\r\n\r\n"), status: 400 },
  { name: "chunked on HTTP/1.0", raw: `POST /v1/images/generations HTTP/1.0\r\n${auth}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, status: 400, reason: "invalid_header" },
  { name: "folded header line", raw: req("GET", "/v1/models", [auth, "X-Folded: a", " b"]), status: 400, reason: "malformed_request" },
  { name: "bare LF line ends", raw: `GET /v1/models HTTP/1.1\nHost: x\n${auth}\n\n`, status: 400, reason: "malformed_request" },
  { name: "space before the colon", raw: req("GET", "/v1/models", [auth, "Host : evil"]), status: 400, reason: "malformed_request" },
  { name: "NUL in a header value", raw: req("GET", "/v1/models", [auth, "X-A: a\x00b"]), status: 400, reason: "malformed_request" },
  { name: "HTTP/2.0 on an HTTP/1 request line", raw: `GET /v1/models HTTP/2.0\r\nHost: x\r\n${auth}\r\n\r\n`, status: 400, reason: "malformed_request" },
  { name: "duplicate Host", raw: req("GET", "/v1/models", [auth, "Host: evil.example"]), status: 400, reason: "invalid_header" },
  { name: "no Host on HTTP/1.1", raw: `GET /v1/models HTTP/1.1\r\n${auth}\r\n\r\n`, status: 400, reason: "malformed_request" },
  { name: "underscore header name", raw: req("GET", "/v1/models", [auth, "X_Forwarded_For: 10.0.0.1"]), status: 400, reason: "invalid_header" },
  { name: "lower-case method is an unknown method", raw: `get /v1/models HTTP/1.1\r\nHost: x\r\n${auth}\r\n\r\n`, status: 405, reason: "method_not_allowed" },
  { name: "TRACE", raw: req("TRACE", "/v1/models", [auth]), status: 405, reason: "method_not_allowed" },
  { name: "CONNECT", raw: `CONNECT api.mythiq.ai:443 HTTP/1.1\r\nHost: api.mythiq.ai:443\r\n${auth}\r\n\r\n`, status: 405, reason: "method_not_allowed" },
  { name: "WebDAV method", raw: req("PROPFIND", "/v1/models", [auth]), status: 405, reason: "method_not_allowed" },
  { name: "Expect other than 100-continue", raw: req("GET", "/v1/models", [auth, "Expect: 200-ok"]), status: 417, reason: "expectation_failed" },
  {
    name: "Expect: 100-continue without a credential gets no 100",
    raw: req("POST", "/v1/images/generations", ["Expect: 100-continue", "Content-Type: application/json", "Content-Length: 2"]),
    status: 401,
    reason: "missing_credentials",
    check: (t, _got, _res, raw) => t.notMatch(raw, /100 Continue/),
  },
  { name: "GET with a body", raw: req("GET", "/v1/models", [auth, "Content-Length: 2"], "{}"), status: 400, reason: "body_not_allowed" },
  { name: "header block over 16 KiB", raw: req("GET", "/v1/models", [auth, `X-Big: ${"a".repeat(17 * 1024)}`]), status: 431, reason: "headers_too_large" },
  { name: "more than max_header_count headers", raw: req("GET", "/v1/models", [auth, ...Array.from({ length: 101 }, (_, i) => `X-H${i}: v`)]), status: 431, reason: "headers_too_large" },
  {
    name: "a refused request pipelined behind an allowed one never reaches MythIQ",
    raw: get("/v1/models") + get("/v1/models/../../admin"),
    finals: 2,
    status: 400,
    reason: "invalid_path",
    forwarded: true,
    check: (t, got) => t.equal(got?.target, "/v1/models"),
  },
  {
    name: "CL.0: the bytes after a Content-Length: 0 body are a new request, checked as such",
    raw: req("POST", "/v1/images/generations", [auth, "Content-Type: application/json", "Content-Length: 0"]) + req("GET", "/admin/keys", [auth]),
    finals: 2,
    status: 403,
    reason: "route_not_allowed",
    check: (t, _got, _res, raw) => t.match(raw, /"reason":"model_required"/, "the empty POST itself: no model"),
  },
  {
    name: "chunk size overflow",
    raw: req("POST", "/v1/images/generations", [auth, "Content-Type: application/json", "Transfer-Encoding: chunked"], "fffffffffffffffff\r\nx\r\n0\r\n\r\n"),
    status: 400,
  },
];

const hopByHop: HostileCase[] = [
  { name: "Connection names authorization", raw: get("/v1/models", [auth, "Connection: keep-alive, authorization"]), status: 400, reason: "invalid_header" },
  { name: "Connection names x-forwarded-for", raw: get("/v1/models", [auth, "Connection: close, X-Forwarded-For"]), status: 400, reason: "invalid_header" },
  { name: "empty Connection token", raw: get("/v1/models", [auth, "Connection: keep-alive,,"]), status: 400, reason: "invalid_header" },
  { name: "WebSocket upgrade", raw: get("/v1/models", [auth, "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]), status: 405, reason: "method_not_allowed" },
  { name: "h2c upgrade", raw: get("/v1/models", [auth, "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA"]), status: 405, reason: "method_not_allowed" },
  { name: "Upgrade without Connection", raw: get("/v1/models", [auth, "Upgrade: websocket"]), status: 405, reason: "method_not_allowed" },
  {
    name: "hop-by-hop and override headers are dropped, the key is set once",
    raw: get("/v1/models", [
      auth,
      "Connection: close",
      "Keep-Alive: timeout=600",
      "TE: trailers",
      "Proxy-Authorization: Basic YTpi",
      "Proxy-Connection: keep-alive",
      "X-Api-Key: caller-key",
      "X-HTTP-Method-Override: DELETE",
      "X-Original-URL: /admin",
      "X-Rewrite-URL: /admin",
      "Cookie: theme=dark",
    ]),
    status: 200,
    forwarded: true,
    check: (t, got) => {
      t.not(got?.headers["connection"], "close", "the caller's Connection is not forwarded (the pool sets its own)");
      for (const name of ["keep-alive", "te", "proxy-authorization", "proxy-connection", "x-api-key", "x-http-method-override", "x-original-url", "x-rewrite-url", "cookie"]) {
        t.equal(got?.count(name), 0, `${name} not forwarded`);
      }
      t.equal(got?.requestLine, "GET /v1/models HTTP/1.1");
    },
  },
  {
    name: "trailers are never forwarded (a trailer cannot add credentials)",
    raw: req("POST", "/v1/images/generations", [auth, "Content-Type: application/json", "Transfer-Encoding: chunked", "Trailer: Authorization"], `1a\r\n{"model":"stability/sdxl"}\r\n0\r\nAuthorization: Bearer caller\r\nX-Api-Key: k\r\n\r\n`),
    status: 200,
    forwarded: true,
    check: (t, got) => {
      t.equal(got?.count("trailer"), 0);
      t.equal(got?.count("transfer-encoding"), 0, "a held body goes out with a length");
      t.equal(got?.headers["content-length"], "26");
      t.equal(got?.body.toString(), '{"model":"stability/sdxl"}');
    },
  },
];

void t.test("path encodings", (t) => runCases(t, env, paths));
void t.test("framing and smuggling shapes", (t) => runCases(t, env, framing));
void t.test("hop-by-hop and Connection tricks", (t) => runCases(t, env, hopByHop));

void t.test("no refusal above wrote the key or a client token to the log", async (t) => {
  const log = env.proxy.rawLog();
  t.notOk(log.includes(TEST_KEY));
  t.notOk(log.includes("tok-web-0123456789abcdef"));
});
