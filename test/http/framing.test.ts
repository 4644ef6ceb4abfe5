import type { IncomingMessage } from "node:http";
import t from "tap";
import { checkFraming } from "../../src/http/framing.ts";

// Unit rows build the parsed message directly, so combinations Node's parser would refuse earlier
// (CL+TE, duplicate Transfer-Encoding) still prove checkFraming's own defence and its order.
function message(method: string, version: string, headers: readonly string[]): IncomingMessage {
  const [major, minor] = version.split(".").map(Number);
  return { method, httpVersionMajor: major, httpVersionMinor: minor, rawHeaders: [...headers] } as unknown as IncomingMessage;
}

const limits = { maxHeaderCount: 6 };
const H = ["Host", "api"];

type Row = readonly [name: string, method: string, version: string, headers: readonly string[], expected: string];

const rows: readonly Row[] = [
  ["plain GET", "GET", "1.1", H, "ok"],
  ["HTTP/1.0 without Host", "GET", "1.0", [], "ok"],
  ["POST chunked", "POST", "1.1", [...H, "Transfer-Encoding", "chunked"], "ok"],
  ["POST CHUNKED", "POST", "1.1", [...H, "Transfer-Encoding", "CHUNKED"], "ok"],
  ["Connection keep-alive, close (any case)", "GET", "1.1", [...H, "Connection", "Keep-Alive, CLOSE"], "ok"],
  ["Expect 100-continue any case", "POST", "1.1", [...H, "Expect", "100-Continue"], "ok"],
  ["GET Content-Length 0", "GET", "1.1", [...H, "Content-Length", "0"], "ok"],
  ["DELETE with body", "DELETE", "1.1", [...H, "Content-Length", "3"], "ok"],
  ["exactly max headers", "GET", "1.1", [...H, "a", "1", "b", "1", "c", "1", "d", "1", "e", "1"], "ok"],
  ["HTTP/2.0", "GET", "2.0", H, "malformed_request"],
  ["HTTP/0.9", "GET", "0.9", [], "malformed_request"],
  ["HTTP/1.2", "GET", "1.2", H, "malformed_request"],
  ["TRACE", "TRACE", "1.1", H, "method_not_allowed"],
  ["CONNECT", "CONNECT", "1.1", H, "method_not_allowed"],
  ["PROPFIND", "PROPFIND", "1.1", H, "method_not_allowed"],
  ["QUERY", "QUERY", "1.1", H, "method_not_allowed"],
  ["lowercase get", "get", "1.1", H, "method_not_allowed"],
  ["too many headers", "GET", "1.1", [...H, "a", "1", "b", "1", "c", "1", "d", "1", "e", "1", "f", "1"], "headers_too_large"],
  ["HTTP/1.1 without Host", "GET", "1.1", [], "malformed_request"],
  ["Upgrade header", "GET", "1.1", [...H, "Upgrade", "h2c"], "method_not_allowed"],
  ["Connection: upgrade", "GET", "1.1", [...H, "Connection", "keep-alive, Upgrade"], "method_not_allowed"],
  ["underscore name", "GET", "1.1", [...H, "X_Api_Key", "k"], "invalid_header"],
  ["duplicate Host", "GET", "1.1", [...H, "host", "evil"], "invalid_header"],
  ["duplicate Authorization", "GET", "1.1", [...H, "Authorization", "Bearer a", "AUTHORIZATION", "Bearer b"], "invalid_header"],
  ["duplicate Content-Type", "POST", "1.1", [...H, "Content-Type", "application/json", "content-type", "text/plain"], "invalid_header"],
  ["duplicate Content-Length", "POST", "1.1", [...H, "Content-Length", "1", "Content-Length", "1"], "invalid_header"],
  ["duplicate Transfer-Encoding", "POST", "1.1", [...H, "Transfer-Encoding", "chunked", "Transfer-Encoding", "chunked"], "invalid_header"],
  ["TE ,chunked", "POST", "1.1", [...H, "Transfer-Encoding", ",chunked"], "invalid_header"],
  ["TE identity, chunked", "POST", "1.1", [...H, "Transfer-Encoding", "identity, chunked"], "invalid_header"],
  ["TE chunked, identity", "POST", "1.1", [...H, "Transfer-Encoding", "chunked, identity"], "invalid_header"],
  ["TE gzip", "POST", "1.1", [...H, "Transfer-Encoding", "gzip"], "invalid_header"],
  ["TE chunked on HTTP/1.0", "POST", "1.0", ["Transfer-Encoding", "chunked"], "invalid_header"],
  ["TE with CL", "POST", "1.1", [...H, "Transfer-Encoding", "chunked", "Content-Length", "3"], "invalid_header"],
  ["Connection naming authorization", "GET", "1.1", [...H, "Connection", "keep-alive, authorization"], "invalid_header"],
  ["Connection naming x-forwarded-for", "GET", "1.1", [...H, "Connection", "x-forwarded-for"], "invalid_header"],
  ["Connection empty token", "GET", "1.1", [...H, "Connection", "close,"], "invalid_header"],
  ["second Connection line", "GET", "1.1", [...H, "Connection", "close", "Connection", "te"], "invalid_header"],
  ["Expect foo", "POST", "1.1", [...H, "Expect", "foo"], "expectation_failed"],
  ["Expect foo, 100-continue", "POST", "1.1", [...H, "Expect", "foo, 100-continue"], "expectation_failed"],
  ["Expect twice", "POST", "1.1", [...H, "Expect", "100-continue", "Expect", "100-continue"], "expectation_failed"],
  ["Expect foo on HTTP/1.0", "POST", "1.0", ["Expect", "foo"], "expectation_failed"],
  ["GET with Content-Length", "GET", "1.1", [...H, "Content-Length", "5"], "body_not_allowed"],
  ["HEAD with chunked", "HEAD", "1.1", [...H, "Transfer-Encoding", "chunked"], "body_not_allowed"],
  // order: the earlier check wins
  ["TRACE over HTTP/2.0 → version first", "TRACE", "2.0", H, "malformed_request"],
  ["TRACE with too many headers → method first", "TRACE", "1.1", [...H, "a", "1", "b", "1", "c", "1", "d", "1", "e", "1", "f", "1"], "method_not_allowed"],
  ["too many headers with underscores → 431 first", "GET", "1.1", [...H, "a_", "1", "b", "1", "c", "1", "d", "1", "e", "1", "f", "1"], "headers_too_large"],
  ["upgrade with underscore header → upgrade first", "GET", "1.1", [...H, "x_y", "1", "Upgrade", "websocket"], "method_not_allowed"],
  ["underscore with duplicate Host → underscore first", "GET", "1.1", [...H, "Host", "b", "x_y", "1"], "invalid_header"],
  ["bad TE with Expect foo → header first", "POST", "1.1", [...H, "Transfer-Encoding", ",chunked", "Expect", "foo"], "invalid_header"],
  ["Expect foo on GET with body → 417 first", "GET", "1.1", [...H, "Content-Length", "5", "Expect", "foo"], "expectation_failed"],
  ["GET with ,chunked → invalid_header, not body_not_allowed", "GET", "1.1", [...H, "Transfer-Encoding", ",chunked"], "invalid_header"],
];

t.test("checkFraming table and order", async (t) => {
  for (const [name, method, version, headers, expected] of rows) {
    const verdict = checkFraming(message(method, version, headers), limits);
    if (expected === "ok") t.same(verdict, { ok: true }, name);
    else t.match(verdict, { ok: false, reason: expected }, `${name} → ${expected}`);
  }
});

t.test("refusal details never quote header values", async (t) => {
  const secret = "Bearer sk-live-0123456789abcdef";
  const cases = [
    [...H, "Authorization", secret, "Authorization", secret],
    [...H, "X_Token", secret],
    [...H, "Connection", secret],
    [...H, "Expect", secret],
    [...H, "Transfer-Encoding", secret],
  ];
  for (const headers of cases) {
    const verdict = checkFraming(message("POST", "1.1", headers), limits);
    t.equal(verdict.ok, false);
    t.notMatch(JSON.stringify(verdict), "sk-live");
  }
});
