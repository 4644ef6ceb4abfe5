// Span names and attributes: the names are OpenTelemetry's stable HTTP semantic conventions (checked
// against @opentelemetry/semantic-conventions), values come from named fields only, caller-chosen
// values are bounded, and no credential or query value can get in.
import * as semconv from "@opentelemetry/semantic-conventions";
import t from "tap";
import { AUDIT_MODEL_MAX } from "../../../src/observe/audit.ts";
import { ATTR, clientEnd, clientStart, methodAttribute, serverAttributes, serverFailed, serverSpanName } from "../../../src/observe/tracing/attributes.ts";
import type { ServerSpanEnd } from "../../../src/observe/tracing/types.ts";
import type { RequestHead } from "../../../src/pipeline/types.ts";
import { makeCaller, makeClient, makeContext } from "../../helpers/context.ts";

const KEY = { name: "production", fingerprint: "0a1b2c3d" };
const TOKEN = "tok-secret-in-a-header-0123456789";
const COOKIE = "cookie-value-never-in-a-span";
const QUERY = "query-value-never-in-a-span";

function head(over: Partial<RequestHead> = {}): RequestHead {
  return {
    method: "POST",
    url: `/v1/images/generations?cursor=${QUERY}`,
    httpVersionMajor: 1,
    httpVersionMinor: 1,
    headers: { authorization: `Bearer ${TOKEN}`, cookie: `s=${COOKIE}`, "user-agent": "sdk/1.0", "x-api-key": TOKEN },
    rawHeaders: [],
    socketAddress: "::ffff:10.0.0.9",
    ...over,
  };
}

const ended = (over: Partial<ServerSpanEnd> = {}): ServerSpanEnd => ({ status: 200, reason: undefined, check: undefined, key: KEY, failed: false, ...over });

void t.test("the attribute names are the stable semantic conventions' own", (t) => {
  t.equal(ATTR.method, semconv.ATTR_HTTP_REQUEST_METHOD);
  t.equal(ATTR.status, semconv.ATTR_HTTP_RESPONSE_STATUS_CODE);
  t.equal(ATTR.route, semconv.ATTR_HTTP_ROUTE);
  t.equal(ATTR.urlPath, semconv.ATTR_URL_PATH);
  t.equal(ATTR.urlScheme, semconv.ATTR_URL_SCHEME);
  t.equal(ATTR.urlFull, semconv.ATTR_URL_FULL);
  t.equal(ATTR.clientAddress, semconv.ATTR_CLIENT_ADDRESS);
  t.equal(ATTR.peerAddress, semconv.ATTR_NETWORK_PEER_ADDRESS);
  t.equal(ATTR.protocolVersion, semconv.ATTR_NETWORK_PROTOCOL_VERSION);
  t.equal(ATTR.userAgent, semconv.ATTR_USER_AGENT_ORIGINAL);
  t.equal(ATTR.serverAddress, semconv.ATTR_SERVER_ADDRESS);
  t.equal(ATTR.serverPort, semconv.ATTR_SERVER_PORT);
  t.equal(ATTR.resendCount, semconv.ATTR_HTTP_REQUEST_RESEND_COUNT);
  t.equal(ATTR.errorType, semconv.ATTR_ERROR_TYPE);
  t.equal(methodAttribute("BREW"), semconv.HTTP_REQUEST_METHOD_VALUE_OTHER, "an unknown method is _OTHER");
  t.equal(methodAttribute(undefined), "_OTHER");
  t.equal(methodAttribute("get"), "_OTHER", "methods are case-sensitive");
  t.end();
});

void t.test("a forwarded request's server span", (t) => {
  const ctx = makeCaller({
    client: makeClient({ id: "web-app" }),
    method: "POST",
    path: "/v1/images/generations",
    query: `cursor=${QUERY}`,
    socketIp: "10.0.0.9",
    ip: "203.0.113.7",
    route: "POST /v1/images/generations",
    model: "stability/sdxl",
    headers: head().headers,
  });
  t.equal(serverSpanName(ctx, head()), "POST /v1/images/generations");
  t.strictSame(serverAttributes("req-1", head(), ctx, ended()), {
    "http.request.method": "POST",
    "url.scheme": "http",
    "url.path": "/v1/images/generations",
    "network.protocol.version": "1.1",
    "mythiq_proxy.request_id": "req-1",
    "user_agent.original": "sdk/1.0",
    "client.address": "203.0.113.7",
    "network.peer.address": "10.0.0.9",
    "http.route": "/v1/images/generations",
    "mythiq_proxy.client": "web-app",
    "mythiq_proxy.model": "stability/sdxl",
    "http.response.status_code": 200,
    "mythiq_proxy.key": "production",
    "mythiq_proxy.key_fingerprint": "0a1b2c3d",
  });
  t.end();
});

void t.test("refusals, failures and requests without a context", (t) => {
  const refused = makeContext({ route: "GET /v1/models/{id}?x", model: "m".repeat(1000) });
  const attrs = serverAttributes("req-2", head({ method: "GET" }), refused, ended({ status: 403, reason: "model_not_allowed", check: "body", key: undefined }));
  t.match(attrs, { "http.route": "/v1/models/{id}", "mythiq_proxy.reason": "model_not_allowed", "mythiq_proxy.check": "body", "http.response.status_code": 403 });
  t.equal((attrs["mythiq_proxy.model"] as string).length, AUDIT_MODEL_MAX, "the model asked for, bounded as in the audit line");
  t.notOk("error.type" in attrs, "4xx: not a server error");
  t.notOk("mythiq_proxy.key" in attrs, "no key sent, none named");
  t.notOk(serverFailed(ended({ status: 403 })));

  const early = serverAttributes("req-3", head({ method: "BREW", url: `http://user:${TOKEN}@evil/../x?q=${QUERY}#f` }), undefined, ended({ status: 400, reason: "invalid_path", check: "target", key: undefined }));
  t.equal(serverSpanName(undefined, head({ method: "BREW" })), "_OTHER");
  t.equal(early["url.path"], "http://[redacted]@evil/../x", "no query, fragment or userinfo");
  t.equal(early["http.request.method"], "_OTHER");
  t.notOk("client.address" in early, "no context, no caller address");

  const upstreamDown = serverAttributes("req-4", head(), makeContext(), ended({ status: 502, reason: "upstream_unreachable", check: "upstream" }));
  t.equal(upstreamDown["error.type"], "upstream_unreachable");
  t.ok(serverFailed(ended({ status: 502 })));
  const bug = serverAttributes("req-5", head(), makeContext(), ended({ status: 0, failed: true, key: undefined }));
  t.equal(bug["error.type"], "internal_error");
  t.notOk("http.response.status_code" in bug, "no status was sent");
  t.ok(serverFailed(ended({ status: 0, failed: true })));
  t.end();
});

void t.test("client spans: the URL without a query, resends, the upstream's answer", (t) => {
  const first = clientStart({ method: "POST", url: "https://api.mythiq.ai/v1/images/generations", key: KEY }, 0);
  t.equal(first.name, "POST");
  t.strictSame(first.attributes, {
    "http.request.method": "POST",
    "url.full": "https://api.mythiq.ai/v1/images/generations",
    "network.protocol.version": "1.1",
    "server.address": "api.mythiq.ai",
    "server.port": 443,
    "mythiq_proxy.key": "production",
    "mythiq_proxy.key_fingerprint": "0a1b2c3d",
  });
  const retry = clientStart({ method: "GET", url: "http://[::1]:4010/base/v1/models", key: { name: "k", fingerprint: "not-hex-and-far-too-long" } }, 1);
  t.match(retry.attributes, { "server.address": "::1", "server.port": 4010, "http.request.resend_count": 1, "mythiq_proxy.key_fingerprint": "invalid" });

  t.strictSame(clientEnd({ upstreamStatus: 200, reason: undefined }), { attributes: { "http.response.status_code": 200 }, failed: false });
  t.strictSame(clientEnd({ upstreamStatus: 401, reason: undefined }), { attributes: { "http.response.status_code": 401, "error.type": "401" }, failed: true });
  t.strictSame(clientEnd({ upstreamStatus: undefined, reason: "upstream_timeout" }), {
    attributes: { "mythiq_proxy.reason": "upstream_timeout", "error.type": "upstream_timeout" },
    failed: true,
  });
  t.strictSame(clientEnd({ upstreamStatus: 500, reason: "upstream_leak" }).attributes["error.type"], "upstream_leak");
  t.end();
});

void t.test("no credential, cookie or query value reaches any attribute", (t) => {
  const ctx = makeCaller({ client: makeClient({ id: "web" }), headers: head().headers, query: `cursor=${QUERY}`, route: "POST /v1/images/generations" });
  const all = JSON.stringify([
    serverAttributes("r", head(), ctx, ended()),
    serverAttributes("r", head(), undefined, ended({ status: 400 })),
    clientStart({ method: "POST", url: "https://api.mythiq.ai/v1/images/generations", key: KEY }, 0),
  ]);
  for (const secret of [TOKEN, COOKIE, QUERY]) t.notOk(all.includes(secret), secret);
  t.end();
});
