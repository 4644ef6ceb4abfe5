import t from "tap";
import { parseConfig } from "../../src/config/load.ts";
import type { ProxyConfig } from "../../src/config/types.ts";
import { createCors } from "../../src/http/cors.ts";
import { makeContext } from "../helpers/context.ts";
import { TOKEN_HASH } from "../helpers/proxy-harness.ts";

function config(extra = "", cookie = true): ProxyConfig {
  const yaml = `
keys: { default: { source: env, env: K } }
${cookie ? "sessions: { jwt: { issuer: https://auth.example.com, audience: a, secret: { env: S }, algorithms: [HS256], cookie: session } }" : ""}
clients:
  - id: spa
    auth: { ${cookie ? "jwt: true" : `tokens: ["${TOKEN_HASH}"]`} }
    origins: [https://app.example.com, "https://*.example.org", "http://localhost:3000"]
    routes: [GET /v1/models, POST /v1/images/generations]
  - id: other
    auth: { tokens: ["sha256:${"1".repeat(64)}"] }
    origins: [https://other.example.net]
    routes: ["DELETE /v1/files/{id}"]
  - id: server
    auth: { tokens: ["sha256:${"2".repeat(64)}"] }
    routes: [PUT /v1/things]
${extra}`;
  const result = parseConfig(yaml, "cors.yaml");
  if (!result.ok) throw new Error(result.problems.map((p) => p.message).join("\n"));
  return result.config;
}

const preflight = (origin: string | undefined, method = "POST", headers?: string) =>
  makeContext({
    method: "OPTIONS",
    path: "/v1/images/generations",
    headers: {
      ...(origin === undefined ? {} : { origin }),
      "access-control-request-method": method,
      ...(headers === undefined ? {} : { "access-control-request-headers": headers }),
    },
  });

void t.test("preflights from allowed origins get exactly that origin back", async (t) => {
  const cors = createCors(config());
  for (const origin of ["https://app.example.com", "https://a.example.org", "https://a.b.example.org", "http://localhost:3000"]) {
    const result = cors.preflight(preflight(origin, "POST", "Authorization, Content-Type, x-stainless-os"));
    t.ok(result?.ok, origin);
    if (!result?.ok) continue;
    t.equal(result.headers["access-control-allow-origin"], origin);
    t.match(result.headers["vary"], /Origin/);
    t.equal(result.headers["access-control-allow-methods"], "GET, POST", "the methods of the clients listing the origin");
    t.equal(result.headers["access-control-allow-headers"], "authorization, content-type, x-stainless-os");
    t.equal(result.headers["access-control-allow-credentials"], "true", "cookie sessions configured");
    t.equal(result.headers["access-control-max-age"], "600");
  }
});

void t.test("preflights from anything else are refused", async (t) => {
  const cors = createCors(config());
  const cases: Array<[string | undefined, string]> = [
    [undefined, "origin_not_allowed"],
    ["null", "origin_not_allowed"],
    ["https://example.org", "origin_not_allowed"], // the apex of a wildcard
    ["https://app.example.com.evil.com", "origin_not_allowed"],
    ["https://evilapp.example.com", "origin_not_allowed"],
    ["https://app.example.com:8443", "origin_not_allowed"],
    ["http://app.example.com", "origin_not_allowed"],
    ["https://app.example.com/", "origin_not_allowed"],
    ["https://app.example.com, https://app.example.com", "origin_not_allowed"],
    ["https://xexample.org", "origin_not_allowed"],
    ["https://a.example.org.", "origin_not_allowed"],
    ["https://user@app.example.com", "origin_not_allowed"],
    ["http://localhost:3001", "origin_not_allowed"],
    ["https://other.example.net", "route_not_allowed"], // listed, but its client may not POST
  ];
  for (const [origin, reason] of cases) {
    const result = cors.preflight(preflight(origin));
    t.equal(result?.ok === false ? result.deny.reason : "ok", reason, String(origin));
  }
  const badHeader = cors.preflight(preflight("https://app.example.com", "POST", "content-type, x-api-key"));
  t.equal(badHeader?.ok === false ? badHeader.deny.reason : "ok", "invalid_header", "a request header the proxy does not accept");
  t.equal(cors.preflight(makeContext({ method: "OPTIONS" })), undefined, "OPTIONS without Access-Control-Request-Method is no preflight");
  t.equal(cors.preflight(makeContext({ method: "GET", headers: { "access-control-request-method": "GET" } })), undefined);
});

void t.test("response headers: CORS only for the client's own origins, Vary: Origin always", async (t) => {
  const cfg = config();
  const cors = createCors(cfg);
  const spa = cfg.clients[0]!;
  const server = cfg.clients[2]!;
  const headersFor = (origin: string | undefined, client = spa) => cors.responseHeaders(makeContext({ client, ...(origin === undefined ? {} : { origin }) }));
  t.same(headersFor("https://a.example.org"), {
    "access-control-allow-origin": "https://a.example.org",
    vary: "Origin",
    "access-control-expose-headers": "x-request-id, retry-after",
    "access-control-allow-credentials": "true",
  });
  t.same(headersFor("https://other.example.net"), { vary: "Origin" }, "another client's origin");
  t.same(headersFor("null"), { vary: "Origin" });
  t.same(headersFor(undefined), { vary: "Origin" }, "no Origin");
  t.same(headersFor("https://app.example.com", server), { vary: "Origin" }, "a client without origins gets no CORS headers");
  const unknownCaller = cors.responseHeaders(makeContext({ origin: "https://other.example.net" }));
  t.equal(unknownCaller["access-control-allow-origin"], "https://other.example.net", "before the caller is known, any listed origin may read the error");
});

void t.test("without cookie sessions, no Allow-Credentials; without origins anywhere, no Vary", async (t) => {
  const cors = createCors(config("", false));
  const result = cors.preflight(preflight("https://app.example.com"));
  t.ok(result?.ok);
  if (result?.ok) t.equal(result.headers["access-control-allow-credentials"], undefined);
  const bare = parseConfig(`keys: { default: { source: env, env: K } }\nclients: [{ id: s, auth: { tokens: ["${TOKEN_HASH}"] }, routes: [GET /v1/models] }]\n`, "x.yaml");
  if (!bare.ok) throw new Error("bad fixture");
  t.same(createCors(bare.config).responseHeaders(makeContext({ origin: "https://app.example.com" })), {});
});
