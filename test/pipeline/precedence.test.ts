// The order of SPEC §4, pinned: each row is a request that fails two or more checks, and the
// refusal that must win is the one of the earliest step. Every row is decided twice: by the
// running proxy over a real socket (in front of a recording fake MythIQ) and by `test-policy`'s
// engine, offline. Both must give the expected answer; a refused row must reach MythIQ not at all,
// and no answer may carry a byte of the key.
//
// Rows with `before` are sequences (limits carry state): they run on a proxy of their own, and
// through one compiled config in the policy engine.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { stringify } from "yaml";
import { hashToken } from "../../src/cli/hash-token.ts";
import { loadConfigFile } from "../../src/config/load.ts";
import type { Reason } from "../../src/errors.ts";
import { parseCases, type PolicyCase } from "../../src/policy/cases.ts";
import { createPolicyRunner, type Outcome } from "../../src/policy/run.ts";
import { createSessionIssuer } from "../../src/policy/sessions.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { rawRequest } from "../helpers/policy-wire.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy-harness.ts";
import { sendRaw } from "../helpers/raw-http.ts";

const KEY = "mq-precedence-key-0123456789abcdef";
const SESSION_SECRET = "precedence-hs256-secret-0123456789abcdef";
const APP = "https://app.example.com";
const EVIL = "https://evil.example.net";
const INSIDE = "203.0.113.9";
const OUTSIDE = "198.51.100.9";

function configYaml(upstreamUrl: string): string {
  const token = (name: string) => `"${hashToken(`tok-${name}`)}"`;
  return `
listen: { host: 127.0.0.1, port: 8080 }
admin: { host: 127.0.0.1, port: 9090 }
trusted_proxies: [127.0.0.0/8]
upstream: { url: ${upstreamUrl}, allow_insecure_upstream: true, connect_timeout: 2s, response_timeout: 5s }
server: { max_header_count: 20 }
keys:
  default: { source: env, env: KEY_DEFAULT }
  absent: { source: env, env: KEY_ABSENT }
sessions:
  jwt: { issuer: https://auth.test, audience: mythiq-proxy, secret: { env: SESSION_SECRET }, algorithms: [HS256], cookie: session, client_claim: client }
clients:
  - id: web
    auth: { tokens: [${token("web")}], jwt: true }
    origins: ["${APP}"]
    networks: [203.0.113.0/24]
    routes: [GET /v1/models, "GET /v1/generations?limit", POST /v1/images/generations]
    models: [stability/sdxl]
    max_body: 1KiB
  - id: other
    auth: { tokens: [${token("other")}] }
    routes: [GET /v1/models]
  - id: nokey
    key: absent
    auth: { tokens: [${token("nokey")}] }
    routes: [GET /v1/models, POST /v1/images/generations, "GET /v1/media/{id}"]
    models: [stability/sdxl]
    max_body: 1KiB
    rate_limit: { requests: 1, per: 1h, burst: 1 }
  - id: limited
    auth: { tokens: [${token("limited")}] }
    origins: ["${APP}"]
    routes: [GET /v1/models, POST /v1/images/generations, "GET /v1/media/{id}"]
    models: [stability/sdxl]
    max_body: 1KiB
    rate_limit: { requests: 1, per: 1h, burst: 1 }
  - id: budgeted
    auth: { tokens: [${token("budgeted")}] }
    routes: [GET /v1/models, POST /v1/images/generations]
    models: [stability/sdxl]
    max_body: 1KiB
    budget: { daily_usd: 0.001 }
  - id: gallery
    auth: { tokens: [${token("gallery")}] }
    origins: ["${APP}"]
    routes: [GET /v1/models, POST /v1/images/generations, "GET /v1/media?limit", "GET /v1/media/{id}", "POST /v1/media/{id}"]
    models: [stability/sdxl]
    max_body: 1KiB
    fields:
      public: { allowed: [false], required: true, routes: [POST /v1/images/generations] }
      provider: { allowed: [stability] }
  - id: private
    auth: { tokens: [${token("private")}] }
    routes: [POST /v1/images/generations]
    max_body: 1KiB
    budget: { daily_usd: 0.001 }
    fields:
      public: { allowed: [false], required: true }
  - id: public
    auth: { anonymous: true }
    origins: ["https://public.example.com"]
    routes: [GET /v1/models]
pricing: { stability/sdxl: 0.004, default: 0.01 }
limits: { auth_failures: { requests: 1000, per: 1m } }
ownership:
  media:
    create: [{ route: POST /v1/images/generations, id: "data[].id" }]
    use: [{ route: "GET /v1/media/{id}" }, { route: "POST /v1/media/{id}" }]
    list: [{ route: GET /v1/media, items: result.medias, count: result.total }]
`;
}

type Request = Record<string, unknown>;
type Expect = { readonly status: number; readonly reason: Reason } | { readonly allow: true; readonly client: string };
interface Row {
  readonly name: string;
  /** Requests sent first, on the same proxy (their answers are not checked). */
  readonly before?: readonly Request[];
  /** A function when it needs a session issued at run time. */
  readonly request: Request | (() => Request);
  readonly expect: Expect;
}

const tok = (name: string) => ({ token: `tok-${name}` });
const viaProxy = (ip: string) => ({ ip: "127.0.0.1", forwarded_for: ip });
const sdxl = { model: "stability/sdxl", prompt: "x" };
const dalle = { model: "openai/dall-e-3", prompt: "x" };
const post = (json: unknown) => ({ method: "POST", path: "/v1/images/generations", json });
const refused = (status: number, reason: Reason): Expect => ({ status, reason });
const web = { ...tok("web"), origin: APP, ...viaProxy(INSIDE) };

// The session cookie of a web-app user, for the cookie rows (issued once, see below).
let webSession = "";
let otherSession = "";

const ROWS = (): Row[] => [
  // Step 1 (framing and target) beats everything after it.
  { name: "TRACE beats a missing credential", request: { method: "TRACE", path: "/v1/models" }, expect: refused(405, "method_not_allowed") },
  { name: "an upgrade beats a missing credential", request: { path: "/v1/models", headers: { Connection: "Upgrade", Upgrade: "websocket" } }, expect: refused(405, "method_not_allowed") },
  { name: "a dot segment beats a wrong token", request: { path: "/v1/images/../models", token: "tok-wrong" }, expect: refused(400, "invalid_path") },
  { name: "a percent-escape beats an unlisted route", request: { ...web, path: "/v1/%6dodels" }, expect: refused(400, "invalid_path") },
  { name: "an underscore header beats a missing credential", request: { path: "/v1/models", headers: { X_Api_Key: "x" } }, expect: refused(400, "invalid_header") },
  { name: "a body on GET beats a wrong token", request: { path: "/v1/models", token: "tok-wrong", body: "x" }, expect: refused(400, "body_not_allowed") },
  { name: "an unknown Expect beats an unlisted route", request: { ...web, path: "/v1/admin", headers: { Expect: "teapot" } }, expect: refused(417, "expectation_failed") },
  {
    name: "too many headers beat a missing credential",
    request: { path: "/v1/models", headers: Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`X-Filler-${i}`, "y"])) },
    expect: refused(431, "headers_too_large"),
  },
  // Step 2: a preflight is answered before identity, and never counts against a limit.
  {
    name: "a preflight from a listed origin is answered, whatever its Authorization",
    request: { method: "OPTIONS", path: "/v1/images/generations", origin: APP, token: "tok-wrong", headers: { "Access-Control-Request-Method": "POST" } },
    expect: { allow: true, client: "(preflight)" },
  },
  {
    name: "a preflight from an unlisted origin beats an unlisted route",
    request: { method: "OPTIONS", path: "/v1/admin", origin: EVIL, headers: { "Access-Control-Request-Method": "POST" } },
    expect: refused(403, "origin_not_allowed"),
  },
  {
    name: "preflights spend no rate token",
    before: [1, 2, 3].map(() => ({ method: "OPTIONS", path: "/v1/models", origin: APP, headers: { "Access-Control-Request-Method": "GET" } })),
    request: { ...tok("limited"), origin: APP, path: "/v1/models" },
    expect: { allow: true, client: "limited" },
  },
  // Step 3 (identity) beats origin, network, route and everything later.
  { name: "no credential beats an unlisted route", request: { path: "/v1/admin" }, expect: refused(401, "missing_credentials") },
  { name: "a wrong token beats a refused origin", request: { ...tok("wrong"), origin: EVIL, path: "/v1/models" }, expect: refused(401, "invalid_credentials") },
  { name: "a malformed Authorization beats a refused network", request: { path: "/v1/models", headers: { Authorization: "Basic d2ViOng=" }, ...viaProxy(OUTSIDE) }, expect: refused(401, "invalid_credentials") },
  { name: "a wrong token beats a body over max_body", request: { ...tok("wrong"), ...post({ prompt: "x".repeat(4096) }) }, expect: refused(401, "invalid_credentials") },
  { name: "a token and a session for different clients beat an unlisted route", request: () => ({ ...tok("other"), path: "/v1/admin", cookie: `session=${webSession}` }), expect: refused(400, "ambiguous_credentials") },
  { name: "a session for a client without jwt beats an unlisted route", request: () => ({ path: "/v1/admin", headers: { Authorization: `Bearer ${otherSession}` } }), expect: refused(401, "invalid_credentials") },
  { name: "an anonymous caller from an unlisted origin is unknown, before its route is looked at", request: { origin: EVIL, path: "/v1/admin" }, expect: refused(401, "missing_credentials") },
  // Step 4: origin, then network, beat the route and everything later.
  { name: "a refused origin beats a refused route", request: { ...tok("web"), origin: EVIL, ...viaProxy(INSIDE), path: "/v1/admin" }, expect: refused(403, "origin_not_allowed") },
  { name: "a refused origin beats a refused network", request: { ...tok("web"), origin: EVIL, ...viaProxy(OUTSIDE), path: "/v1/models" }, expect: refused(403, "origin_not_allowed") },
  { name: "a cookie session without Origin beats an unlisted route", request: () => ({ path: "/v1/admin", cookie: `session=${webSession}`, ...viaProxy(INSIDE) }), expect: refused(403, "origin_not_allowed") },
  { name: "a refused network beats a refused route", request: { ...tok("web"), ...viaProxy(OUTSIDE), path: "/v1/admin" }, expect: refused(403, "network_not_allowed") },
  { name: "a refused network beats a refused model", request: { ...tok("web"), origin: APP, ...viaProxy(OUTSIDE), ...post(dalle) }, expect: refused(403, "network_not_allowed") },
  // Step 5: the route beats the key, the limits and the body.
  { name: "an unlisted route beats key_unavailable", request: { ...tok("nokey"), path: "/v1/admin" }, expect: refused(403, "route_not_allowed") },
  { name: "an unlisted query parameter beats key_unavailable", request: { ...tok("nokey"), path: "/v1/models", query: { limit: 5 } }, expect: refused(400, "query_not_allowed") },
  { name: "an unlisted route beats a body over max_body", request: { ...web, method: "POST", path: "/v1/images/edits", json: { prompt: "x".repeat(4096) } }, expect: refused(403, "route_not_allowed") },
  { name: "a trailing slash is another route, before its query is looked at", request: { ...web, path: "/v1/models/", query: { admin: 1 } }, expect: refused(403, "route_not_allowed") },
  { name: "an unlisted query parameter beats a rate limit", before: [{ ...tok("limited"), path: "/v1/models" }], request: { ...tok("limited"), path: "/v1/models", query: { x: 1 } }, expect: refused(400, "query_not_allowed") },
  // The key must be held before any quota is spent or any body byte is read.
  { name: "key_unavailable beats a refused model", request: { ...tok("nokey"), ...post(dalle) }, expect: refused(503, "key_unavailable") },
  { name: "key_unavailable beats a body over max_body", request: { ...tok("nokey"), ...post({ prompt: "x".repeat(4096) }) }, expect: refused(503, "key_unavailable") },
  { name: "key_unavailable spends no rate token", before: [{ ...tok("nokey"), path: "/v1/models" }, { ...tok("nokey"), path: "/v1/models" }], request: { ...tok("nokey"), path: "/v1/models" }, expect: refused(503, "key_unavailable") },
  // Step 6: the rate limit beats the body.
  { name: "a rate limit beats a body over max_body", before: [{ ...tok("limited"), path: "/v1/models" }], request: { ...tok("limited"), ...post({ prompt: "x".repeat(4096) }) }, expect: refused(429, "rate_limited") },
  { name: "a rate limit beats a refused model", before: [{ ...tok("limited"), path: "/v1/models" }], request: { ...tok("limited"), ...post(dalle) }, expect: refused(429, "rate_limited") },
  { name: "a rate limit beats a missing model", before: [{ ...tok("limited"), path: "/v1/models" }], request: { ...tok("limited"), method: "POST", path: "/v1/images/generations" }, expect: refused(429, "rate_limited") },
  { name: "a route refusal spends no rate token", before: [{ ...tok("limited"), path: "/v1/admin" }, { ...tok("limited"), path: "/v1/admin" }], request: { ...tok("limited"), path: "/v1/models" }, expect: { allow: true, client: "limited" } },
  { name: "a refusal at the body step has spent its rate token", before: [{ ...tok("limited"), ...post(dalle) }], request: { ...tok("limited"), path: "/v1/models" }, expect: refused(429, "rate_limited") },
  // Step 7: the declared length first, then the content type, then the parse, then the model; the budget last.
  { name: "413 on Content-Length comes before any model check", request: { ...web, ...post({ ...dalle, prompt: "x".repeat(4096) }) }, expect: refused(413, "body_too_large") },
  { name: "an unsupported content type beats a refused model", request: { ...web, method: "POST", path: "/v1/images/generations", body: JSON.stringify(dalle), headers: { "Content-Type": "text/plain" } }, expect: refused(415, "unsupported_media_type") },
  { name: "a duplicate key beats a refused model", request: { ...web, method: "POST", path: "/v1/images/generations", body: '{"model":"openai/dall-e-3","model":"stability/sdxl"}', headers: { "Content-Type": "application/json" } }, expect: refused(400, "duplicate_key") },
  { name: "a refused model beats an exhausted budget", request: { ...tok("budgeted"), ...post(dalle) }, expect: refused(403, "model_not_allowed") },
  { name: "a missing model beats an exhausted budget", request: { ...tok("budgeted"), method: "POST", path: "/v1/images/generations" }, expect: refused(400, "model_required") },
  { name: "a body over max_body beats an exhausted budget", request: { ...tok("budgeted"), ...post({ ...sdxl, prompt: "x".repeat(4096) }) }, expect: refused(413, "body_too_large") },
  { name: "the budget is checked last", request: { ...tok("budgeted"), ...post(sdxl) }, expect: refused(429, "budget_exhausted") },
  // Field policies are part of step 7: after the declared length, the content type, the parse and
  // the model; values before presence; the budget after them.
  { name: "a missing required field beats an exhausted budget", request: { ...tok("private"), ...post({ prompt: "x" }) }, expect: refused(400, "field_required") },
  { name: "a missing body with a required field beats an exhausted budget", request: { ...tok("private"), method: "POST", path: "/v1/images/generations" }, expect: refused(400, "field_required") },
  { name: "a refused field value beats an exhausted budget", request: { ...tok("private"), ...post({ prompt: "x", public: true }) }, expect: refused(403, "field_not_allowed") },
  { name: 'the string "false" is refused before the budget', request: { ...tok("private"), ...post({ prompt: "x", public: "false" }) }, expect: refused(403, "field_not_allowed") },
  { name: "a duplicate key beats a missing required field", request: { ...tok("private"), method: "POST", path: "/v1/images/generations", body: '{"prompt":"x","prompt":"y"}', headers: { "Content-Type": "application/json" } }, expect: refused(400, "duplicate_key") },
  { name: "a body over max_body beats a refused field", request: { ...tok("private"), ...post({ public: true, prompt: "x".repeat(4096) }) }, expect: refused(413, "body_too_large") },
  { name: "an unsupported content type beats a missing field", request: { ...tok("private"), method: "POST", path: "/v1/images/generations", body: "public=false", headers: { "Content-Type": "text/plain" } }, expect: refused(415, "unsupported_media_type") },
  { name: "a refused model beats a refused field", request: { ...tok("gallery"), ...post({ ...dalle, public: true }) }, expect: refused(403, "model_not_allowed") },
  { name: "a refused field value beats a missing required one", request: { ...tok("gallery"), ...post({ ...sdxl, provider: "openai" }) }, expect: refused(403, "field_not_allowed") },
  // Ownership of a use route's id: after the limits (probing ids spends rate tokens), before the body.
  { name: "an unowned id beats a body over max_body", request: { ...tok("gallery"), method: "POST", path: "/v1/media/med_1", json: { prompt: "x".repeat(4096) } }, expect: refused(404, "not_found") },
  { name: "an unowned id beats a refused model", request: { ...tok("gallery"), method: "POST", path: "/v1/media/med_1", json: dalle }, expect: refused(404, "not_found") },
  { name: "an unowned id beats a refused field", request: { ...tok("gallery"), method: "POST", path: "/v1/media/med_1", json: { provider: "openai" } }, expect: refused(404, "not_found") },
  { name: "an unlisted query parameter beats an unowned id", request: { ...tok("gallery"), path: "/v1/media/med_1", query: { limit: 1 } }, expect: refused(400, "query_not_allowed") },
  { name: "a refused origin beats an unowned id", request: { ...tok("gallery"), origin: EVIL, path: "/v1/media/med_1" }, expect: refused(403, "origin_not_allowed") },
  { name: "a body on GET beats an unowned id", request: { ...tok("gallery"), path: "/v1/media/med_1", body: "x" }, expect: refused(400, "body_not_allowed") },
  { name: "key_unavailable beats an unowned id", request: { ...tok("nokey"), path: "/v1/media/med_1" }, expect: refused(503, "key_unavailable") },
  { name: "a rate limit beats an unowned id", before: [{ ...tok("limited"), path: "/v1/models" }], request: { ...tok("limited"), path: "/v1/media/med_1" }, expect: refused(429, "rate_limited") },
  { name: "probing an id has spent its rate token", before: [{ ...tok("limited"), path: "/v1/media/med_1" }], request: { ...tok("limited"), path: "/v1/models" }, expect: refused(429, "rate_limited") },
  { name: "and a request that fails nothing is forwarded", request: { ...web, ...post(sdxl) }, expect: { allow: true, client: "web" } },
];

/** One parsed case per request of the row (defaults applied as in a cases file). */
function casesOf(row: Row): PolicyCase[] {
  const requests = [...(row.before ?? []), typeof row.request === "function" ? row.request() : row.request];
  const parsed = parseCases(stringify(requests.map((request, i) => ({ name: `${row.name} #${i}`, request, expect: { allow: true } }))), "row.yaml");
  if (!parsed.ok) throw new Error(`${row.name}: ${parsed.problems.map((p) => `${p.line}:${p.col} ${p.message}`).join("; ")}`);
  return parsed.cases.map((c) => c.case);
}

function describe(outcome: Outcome): Expect {
  return outcome.allow ? { allow: true, client: outcome.client } : { status: outcome.status, reason: outcome.reason };
}

let upstream: FakeUpstream;
let shared: TestProxy;
const dir = mkdtempSync(join(tmpdir(), "mythiq-precedence-"));
const env = { KEY_DEFAULT: KEY, SESSION_SECRET };

async function startProxy(): Promise<TestProxy> {
  const proxy = await startTestProxy({ yaml: configYaml(upstream.url), env: { ...env }, watch: false, overload: false });
  // `absent` is never held (its variable is unset), so /readyz stays 503: wait for `default` alone.
  for (let waited = 0; proxy.proxy.compiled().keyring.current("default") === undefined; waited += 10) {
    if (waited > 5_000) throw new Error("key default not held");
    await new Promise((r) => setTimeout(r, 10));
  }
  return proxy;
}

t.before(async () => {
  upstream = await startFakeUpstream();
  shared = await startProxy();
});
t.teardown(async () => {
  await shared.close();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

void t.test("SPEC §4 precedence: the running proxy and test-policy give the earliest step's answer", async (t) => {
  const configFile = join(dir, "proxy.yaml");
  writeFileSync(configFile, configYaml(upstream.url));
  const loaded = await loadConfigFile(configFile);
  if (!loaded.ok) throw new Error(loaded.problems.map((p) => p.message).join("; "));
  const issuer = await createSessionIssuer(loaded.config, env);
  webSession = await issuer.issue({ client: "web", sub: "user-1" });
  otherSession = await issuer.issue({ client: "other", sub: "user-2" });
  const runner = await createPolicyRunner(loaded.config, loaded.hash, env, { unheldKeys: new Set(["absent"]) });

  const rows = ROWS();
  t.ok(rows.filter((row) => !("allow" in row.expect)).length >= 30, "at least 30 rows of refusals");
  for (const row of rows) {
    const cases = casesOf(row);
    const offline = await runner.runSequence(cases);
    t.same(describe(offline.at(-1)!), row.expect, `${row.name}: test-policy`);

    const proxy = row.before === undefined ? shared : await startProxy();
    try {
      for (const before of cases.slice(0, -1)) await sendRaw(proxy.port, rawRequest(before, "session"), { finals: 1 });
      const sent = upstream.requests.length;
      const res = await sendRaw(proxy.port, rawRequest(cases.at(-1)!, "session"), { finals: 1 });
      const answer = res.responses.find((r) => r.status >= 200);
      const arrived = upstream.requests.slice(sent);
      t.notOk(res.raw.includes(KEY), `${row.name}: no byte of the key in the answer`);
      if ("allow" in row.expect) {
        if (row.expect.client === "(preflight)") {
          t.equal(answer?.status, 204, `${row.name}: the proxy answered the preflight`);
          t.equal(arrived.length, 0, `${row.name}: nothing forwarded`);
        } else {
          t.equal(arrived.length, 1, `${row.name}: forwarded once`);
          t.equal(arrived[0]?.headers["authorization"], `Bearer ${KEY}`, `${row.name}: with the key`);
        }
        continue;
      }
      const body = JSON.parse(answer?.body ?? "{}") as { reason?: string };
      t.same({ status: answer?.status, reason: body.reason }, row.expect, `${row.name}: the running proxy`);
      t.equal(arrived.length, 0, `${row.name}: MythIQ received nothing`);
    } finally {
      if (proxy !== shared) await proxy.close();
    }
  }
});
