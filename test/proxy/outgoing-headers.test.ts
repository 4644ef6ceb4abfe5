// The outgoing header set and request target, table-driven (SPEC §4 step 8).
import t from "tap";
import { buildOutgoingHeaders, isSendableTarget, upstreamTarget } from "../../src/proxy/outgoing-headers.ts";

const base = { method: "POST", requestId: "req-1", host: "api.mythiq.ai", key: "sk-key" } as const;

t.test("credentials, hop-by-hop, Connection-named, forwarding and override headers are dropped", async (t) => {
  const out = buildOutgoingHeaders({
    ...base,
    body: { kind: "held", length: 2 },
    headers: {
      authorization: "Bearer client",
      cookie: "a=b",
      "proxy-authorization": "x",
      "proxy-foo": "x",
      "x-api-key": "x",
      connection: "keep-alive, X-Named, content-type",
      "x-named": "x",
      "keep-alive": "x",
      te: "trailers",
      trailer: "x-t",
      upgrade: "h2c",
      "http2-settings": "x",
      expect: "100-continue",
      "content-length": "999",
      "transfer-encoding": "chunked",
      host: "client.example",
      forwarded: "for=1.2.3.4",
      "x-forwarded-for": "1.2.3.4",
      "x-forwarded-prefix": "/x",
      "x-real-ip": "1.2.3.4",
      "x-http-method-override": "DELETE",
      "x-original-url": "/admin",
      "x-rewrite-url": "/admin",
      "x-request-id": "theirs",
      accept: "application/json",
      "user-agent": "ua",
    },
  });
  t.same(out, {
    accept: "application/json",
    "user-agent": "ua",
    "content-length": "2",
    host: "api.mythiq.ai",
    authorization: "Bearer sk-key",
    "x-request-id": "req-1",
  }, "a header named in Connection (content-type) goes too: it is hop-by-hop for this request");
});

t.test("a Connection token naming our own headers cannot remove them", async (t) => {
  const out = buildOutgoingHeaders({
    ...base,
    body: { kind: "held", length: 0 },
    headers: { connection: "authorization, host, x-request-id, content-length" },
  });
  t.equal(out["authorization"], "Bearer sk-key");
  t.equal(out["host"], "api.mythiq.ai");
  t.equal(out["x-request-id"], "req-1");
  t.equal(out["content-length"], "0");
});

t.test("body framing", async (t) => {
  const cases: Array<[string, Parameters<typeof buildOutgoingHeaders>[0], Record<string, string | undefined>]> = [
    ["held, empty GET", { ...base, method: "GET", headers: {}, body: { kind: "held", length: 0 } }, { "content-length": undefined, "transfer-encoding": undefined }],
    ["held, empty HEAD", { ...base, method: "HEAD", headers: {}, body: { kind: "held", length: 0 } }, { "content-length": undefined }],
    ["held, empty DELETE", { ...base, method: "DELETE", headers: {}, body: { kind: "held", length: 0 } }, { "content-length": undefined }],
    ["held, empty POST", { ...base, headers: {}, body: { kind: "held", length: 0 } }, { "content-length": "0" }],
    ["held, 17 bytes, caller said chunked", { ...base, headers: { "transfer-encoding": "chunked" }, body: { kind: "held", length: 17 } }, { "content-length": "17", "transfer-encoding": undefined }],
    ["stream with content-length", { ...base, headers: { "content-length": "42" }, body: { kind: "stream" } }, { "content-length": "42", "transfer-encoding": undefined }],
    ["stream without content-length", { ...base, headers: { "transfer-encoding": "chunked" }, body: { kind: "stream" } }, { "content-length": undefined, "transfer-encoding": "chunked" }],
  ];
  for (const [name, input, expected] of cases) {
    const out = buildOutgoingHeaders(input);
    for (const [header, value] of Object.entries(expected)) t.equal(out[header], value, `${name}: ${header}`);
  }
});

t.test("request target", async (t) => {
  t.equal(upstreamTarget("", "/v1/models", ""), "/v1/models");
  t.equal(upstreamTarget("", "/v1/models", "limit=1&after=x"), "/v1/models?limit=1&after=x");
  t.equal(upstreamTarget("/base", "/v1/models", "a"), "/base/v1/models?a");
  t.ok(isSendableTarget("/v1/models?q='x'{}"));
  t.notOk(isSendableTarget("/v1/models?q=a b"), "space");
  t.notOk(isSendableTarget("/v1/models?q=\u00e9"), "non-ASCII");
  t.notOk(isSendableTarget("http://evil/v1"), "absolute form");
  t.notOk(isSendableTarget("/v1\r\nX: y"), "CR LF");
});
