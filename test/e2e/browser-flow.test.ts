// A browser's view, end to end: a single-page app on https://app.example.com holds an HS256
// session in a cookie. It sends the CORS preflight, then the cookie-session request from its own
// origin — forwarded with the key, the cookie left behind — while the same cookie sent from any
// other origin (or with no Origin, as a cross-site form would) is refused before MythIQ sees it.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { AUDIENCE, hmacToken, ISSUER, sessionClaims } from "../helpers/fake-jwks.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { send, type ClientResponse } from "../helpers/forward-harness.ts";
import { leaksKey } from "../helpers/hostile.ts";
import { configHead, startTestProxy, TEST_KEY, waitReady, type TestProxy } from "../helpers/proxy-harness.ts";

const APP = "https://app.example.com";
const SECRET = "browser-flow-session-secret-0123456789abcdef";

let upstream: FakeUpstream;
let proxy: TestProxy;
let dir: string;

t.before(async () => {
  upstream = await startFakeUpstream();
  dir = mkdtempSync(join(tmpdir(), "browser-flow-"));
  const secretFile = join(dir, "session-secret");
  writeFileSync(secretFile, `${SECRET}\n`);
  proxy = await startTestProxy({
    env: { MYTHIQ_API_KEY: TEST_KEY },
    yaml: `${configHead(upstream.url)}sessions:
  jwt:
    issuer: ${ISSUER}
    audience: ${AUDIENCE}
    secret: { file: ${secretFile} }
    algorithms: [HS256]
    cookie: mythiq_session
    client_claim: client
    subject_claim: sub
clients:
  - id: spa
    auth: { jwt: true }
    origins: ["${APP}"]
    routes: [GET /v1/models, POST /v1/images/generations]
    models: [stability/sdxl]
    max_body: 16KiB
`,
  });
  await waitReady(proxy);
});
t.teardown(async () => {
  await proxy.close();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

const session = hmacToken(SECRET, sessionClaims({ client: "spa", sub: "alice@example.com" }));
const cookie = `theme=dark; mythiq_session=${session}`;
const body = JSON.stringify({ model: "stability/sdxl", prompt: "a lighthouse at dusk", n: 1 });
const reason = (res: ClientResponse) => (JSON.parse(res.body.toString()) as { reason: string }).reason;

/** What a browser sends for `fetch(url, { method: "POST", credentials: "include", headers: { "content-type": "application/json" }, body })`. */
function browserPost(origin: string | undefined, payload = body) {
  return send(proxy.port, {
    method: "POST",
    path: "/v1/images/generations",
    headers: {
      ...(origin === undefined ? {} : { origin }),
      cookie,
      "content-type": "application/json",
      "content-length": Buffer.byteLength(payload),
      "sec-fetch-mode": "cors",
    },
    body: payload,
  });
}

void t.test("preflight, then the cookie-session request from the app's origin", async (t) => {
  const before = upstream.requests.length;
  const preflight = await send(proxy.port, {
    method: "OPTIONS",
    path: "/v1/images/generations",
    headers: { origin: APP, "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
  });
  t.equal(preflight.status, 204, "preflight answered by the proxy");
  t.equal(preflight.headers["access-control-allow-origin"], APP);
  t.equal(preflight.headers["access-control-allow-credentials"], "true", "cookies may be sent");
  t.match(preflight.headers["access-control-allow-methods"], /POST/);
  t.equal(preflight.headers["access-control-allow-headers"], "content-type");
  t.match(preflight.headers["vary"], /Origin/);
  t.equal(upstream.requests.length, before, "the preflight never reached MythIQ");

  const res = await browserPost(APP);
  t.equal(res.status, 200);
  t.equal(res.headers["access-control-allow-origin"], APP, "the page may read the answer");
  t.equal(res.headers["access-control-allow-credentials"], "true");
  t.match(res.headers["access-control-expose-headers"], /x-request-id/);
  t.match(res.headers["vary"], /Origin/);
  t.equal(upstream.requests.length, before + 1);
  const got = upstream.requests[before]!;
  await got.ended;
  t.equal(got.headers["authorization"], `Bearer ${TEST_KEY}`, "MythIQ gets the key");
  t.equal(got.count("cookie"), 0, "and never the session cookie");
  t.equal(got.body.toString(), body, "the body as checked");
  t.notOk(leaksKey(res.raw.toString("latin1")));

  const audit = proxy.logs.find((line) => line["request_id"] === res.headers["x-request-id"]);
  t.equal(audit?.["client"], "spa");
  t.equal(audit?.["subject"], "alice@example.com", "the session's subject is in the audit log");
  t.equal(audit?.["model"], "stability/sdxl");
});

void t.test("the same cookie from any other origin is refused before MythIQ sees it", async (t) => {
  const before = upstream.requests.length;
  for (const origin of ["https://evil.example.net", "https://app.example.com.evil.net", "http://app.example.com", "null", undefined]) {
    const res = await browserPost(origin);
    t.equal(res.status, 403, String(origin));
    t.equal(reason(res), "origin_not_allowed", String(origin));
    t.equal(res.headers["access-control-allow-origin"], undefined, `${String(origin)}: the other page cannot even read the refusal`);
    t.notOk(leaksKey(res.raw.toString("latin1")));
  }
  const preflight = await send(proxy.port, {
    method: "OPTIONS",
    path: "/v1/images/generations",
    headers: { origin: "https://evil.example.net", "access-control-request-method": "POST" },
  });
  t.equal(preflight.status, 403);
  t.equal(upstream.requests.length, before, "the upstream received nothing");
});

void t.test("a refusal on the app's own origin is readable by the page", async (t) => {
  const before = upstream.requests.length;
  const res = await browserPost(APP, JSON.stringify({ model: "openai/dall-e-3", prompt: "x" }));
  t.equal(res.status, 403);
  t.equal(reason(res), "model_not_allowed");
  t.equal(res.headers["access-control-allow-origin"], APP);
  t.equal(upstream.requests.length, before);
});

void t.test("an expired session is a 401 the page can read, and nothing is forwarded", async (t) => {
  const before = upstream.requests.length;
  const expired = hmacToken(SECRET, sessionClaims({ client: "spa", exp: Math.floor(Date.now() / 1000) - 3600 }));
  const res = await send(proxy.port, {
    path: "/v1/models",
    headers: { origin: APP, cookie: `mythiq_session=${expired}` },
  });
  t.equal(res.status, 401);
  t.equal(reason(res), "invalid_credentials");
  t.equal(res.headers["www-authenticate"], "Bearer");
  t.equal(res.headers["access-control-allow-origin"], APP);
  t.equal(upstream.requests.length, before);
});

void t.test("no session, cookie, JWT or secret in any log line", async (t) => {
  const log = proxy.rawLog();
  t.notOk(log.includes(session.split(".")[2]!), "no JWT signature");
  t.notOk(log.includes(session.split(".")[1]!), "no JWT payload");
  t.notOk(log.includes(SECRET));
  t.notOk(log.includes(TEST_KEY));
});
