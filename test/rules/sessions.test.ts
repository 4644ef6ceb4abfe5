// Session JWTs, verified for real with jose: HS256 from a secret reference, RS256/ES256 from a JWKS
// served over HTTP by a fake identity provider. Every forged or stale token is refused with 401
// `invalid_credentials`, and the JWKS is fetched only when it must be.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportSPKI } from "jose";
import t, { type Test } from "tap";
import { parseConfig } from "../../src/config/load.ts";
import type { ProxyConfig } from "../../src/config/types.ts";
import { createLogger } from "../../src/observe/log.ts";
import type { SessionResult } from "../../src/rules/identity-check.ts";
import { createSessionVerifier, type SessionDeps } from "../../src/rules/sessions.ts";
import { makeContext } from "../helpers/context.ts";
import {
  AUDIENCE,
  hmacToken,
  ISSUER,
  makeSigningKey,
  sessionClaims,
  signSession,
  startFakeJwks,
  unsignedToken,
  withPayload,
} from "../helpers/fake-jwks.ts";
import { TOKEN_HASH } from "../helpers/proxy-harness.ts";

const SECRET = "hs256-secret-that-is-long-enough-0123456789";

function configFor(sessionKeys: string, extraSessions = ""): ProxyConfig {
  const yaml = `
keys: { default: { source: env, env: MYTHIQ_API_KEY } }
sessions:
  jwt:
    issuer: ${ISSUER}
    audience: ${AUDIENCE}
${sessionKeys}
    cookie: session
    client_claim: client
    subject_claim: sub
    clock_skew: 30s
${extraSessions}
clients:
  - id: spa
    auth: { jwt: true }
    origins: [https://app.example.com]
    routes: [GET /v1/models]
  - id: partner
    auth: { jwt: true }
    routes: [GET /v1/models]
  - id: server
    auth: { tokens: ["${TOKEN_HASH}"] }
    routes: [GET /v1/models]
`;
  const result = parseConfig(yaml, "sessions.yaml");
  if (!result.ok) throw new Error(result.problems.map((p) => `${p.line}:${p.col} ${p.message}`).join("\n"));
  return result.config;
}

const hsConfig = (algorithms = "[HS256]") => configFor(`    secret: { env: SESSION_SECRET }\n    algorithms: ${algorithms}`);

function describe(result: SessionResult): string {
  if (result === undefined) return "none";
  if ("ok" in result) return result.reason;
  return `${result.credential}:${result.client.id}:${result.subject ?? "-"}`;
}

async function verify(config: ProxyConfig, deps: SessionDeps, headers: Record<string, string>, bearer?: string): Promise<string> {
  const verifier = createSessionVerifier(config, deps);
  if (verifier === undefined) throw new Error("no verifier");
  return describe(await verifier.verify(makeContext({ headers }), bearer));
}

const now = () => Math.floor(Date.now() / 1000);
const hs = (claims: Record<string, unknown> = {}) =>
  hmacToken(SECRET, Object.fromEntries(Object.entries(sessionClaims({ client: "spa", sub: "user-1", ...claims })).filter(([, v]) => v !== undefined)));

void t.test("no sessions configured: no verifier", async (t) => {
  const result = parseConfig("keys: { default: { source: env, env: K } }\nclients: [{ id: a, auth: { tokens: [\"" + TOKEN_HASH + "\"] }, routes: [GET /v1/models] }]\n", "x.yaml");
  t.ok(result.ok);
  if (result.ok) t.equal(createSessionVerifier(result.config), undefined);
});

void t.test("HS256 from a secret reference", async (t) => {
  const config = hsConfig();
  const deps: SessionDeps = { env: { SESSION_SECRET: SECRET } };
  const cases: Array<[string, Record<string, string>, string | undefined, string]> = [
    ["bearer", {}, hs(), "jwt:spa:user-1"],
    ["cookie", { cookie: `theme=dark; session=${hs()}` }, undefined, "cookie:spa:user-1"],
    ["quoted cookie", { cookie: `session="${hs()}"` }, undefined, "cookie:spa:user-1"],
    ["nothing", {}, undefined, "none"],
    ["other cookies only", { cookie: "sessionx=a; Session=b" }, undefined, "none"],
    ["expired", {}, hs({ exp: now() - 120 }), "invalid_credentials"],
    ["expired within clock_skew", {}, hs({ exp: now() - 10 }), "jwt:spa:user-1"],
    ["not yet valid", {}, hs({ nbf: now() + 120 }), "invalid_credentials"],
    ["nbf within clock_skew", {}, hs({ nbf: now() + 10 }), "jwt:spa:user-1"],
    ["no exp", {}, hs({ exp: undefined }), "invalid_credentials"],
    ["exp not a number", {}, hs({ exp: String(now() + 300) }), "invalid_credentials"],
    ["wrong issuer", {}, hs({ iss: "https://evil.example.com" }), "invalid_credentials"],
    ["no issuer", {}, hs({ iss: undefined }), "invalid_credentials"],
    ["wrong audience", {}, hs({ aud: "another-api" }), "invalid_credentials"],
    ["no audience", {}, hs({ aud: undefined }), "invalid_credentials"],
    ["audience list containing ours", {}, hs({ aud: ["other", AUDIENCE] }), "jwt:spa:user-1"],
    ["client without auth.jwt", {}, hs({ client: "server" }), "invalid_credentials"],
    ["unknown client", {}, hs({ client: "nobody" }), "invalid_credentials"],
    ["client claim not a string", {}, hs({ client: ["spa"] }), "invalid_credentials"],
    ["no client claim", {}, hs({ client: undefined }), "invalid_credentials"],
    ["numeric subject", {}, hs({ sub: 42 }), "jwt:spa:42"],
    ["no subject", {}, hs({ sub: undefined }), "jwt:spa:-"],
    ["subject with a newline", {}, hs({ sub: "user\n{\"forged\":1}" }), "invalid_credentials"],
    ["subject too long", {}, hs({ sub: "u".repeat(257) }), "invalid_credentials"],
    ["subject an object", {}, hs({ sub: { id: 1 } }), "invalid_credentials"],
    ["wrong secret", {}, hmacToken("another-secret-that-is-also-long-enough", sessionClaims({ client: "spa" })), "invalid_credentials"],
    ["alg none", {}, unsignedToken(sessionClaims({ client: "spa" })), "invalid_credentials"],
    ["alg None with a signature", {}, unsignedToken(sessionClaims({ client: "spa" }), { alg: "None" }, "c2ln"), "invalid_credentials"],
    ["HS512 not pinned", {}, hmacToken(SECRET + SECRET, sessionClaims({ client: "spa" }), { alg: "HS512" }), "invalid_credentials"],
    ["payload swapped after signing", {}, withPayload(hs(), sessionClaims({ client: "partner" })), "invalid_credentials"],
    ["unknown crit header", {}, hmacToken(SECRET, sessionClaims({ client: "spa" }), { alg: "HS256", crit: ["x-never"], "x-never": 1 }), "invalid_credentials"],
    ["not a JWT", {}, "opaque-token-value", "invalid_credentials"],
    ["two segments", {}, hs().split(".").slice(0, 2).join("."), "invalid_credentials"],
    ["oversized", {}, hs({ pad: "x".repeat(9000) }), "invalid_credentials"],
    ["garbage cookie", { cookie: "session=not-a-jwt" }, undefined, "invalid_credentials"],
    ["cookie sent twice, different values", { cookie: `session=${hs()}; session=${hs({ sub: "user-2" })}` }, undefined, "invalid_credentials"],
    ["cookie sent twice, same value", { cookie: `session=${hs()}; session=${hs()}` }, undefined, "cookie:spa:user-1"],
    ["bearer and cookie, same client", { cookie: `session=${hs({ sub: "user-2" })}` }, hs(), "jwt:spa:user-1"],
    ["bearer and cookie, different clients", { cookie: `session=${hs({ client: "partner" })}` }, hs(), "ambiguous_credentials"],
    ["good bearer, expired cookie", { cookie: `session=${hs({ exp: now() - 600 })}` }, hs(), "invalid_credentials"],
    ["bad bearer, good cookie", { cookie: `session=${hs()}` }, "opaque-token-value", "invalid_credentials"],
  ];
  for (const [name, headers, bearer, want] of cases) t.equal(await verify(config, deps, headers, bearer), want, name);
});

void t.test("the clock comes from deps, with clock_skew tolerance", async (t) => {
  const deps: SessionDeps = { env: { SESSION_SECRET: SECRET } };
  const token = hs({ exp: now() + 60, nbf: now() });
  t.equal(await verify(hsConfig(), { ...deps, clock: () => Date.now() + 80_000 }, {}, token), "jwt:spa:user-1", "20 s past exp: within 30 s skew");
  t.equal(await verify(hsConfig(), { ...deps, clock: () => Date.now() + 95_000 }, {}, token), "invalid_credentials", "35 s past exp");
  t.equal(await verify(hsConfig(), { ...deps, clock: () => Date.now() - 25_000 }, {}, token), "jwt:spa:user-1", "25 s before nbf");
  t.equal(await verify(hsConfig(), { ...deps, clock: () => Date.now() - 40_000 }, {}, token), "invalid_credentials", "40 s before nbf");
});

void t.test("the secret is read from a file reference too, before the first verification", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sessions-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "secret");
  writeFileSync(file, `${SECRET}\n`);
  const config = configFor(`    secret: { file: ${file} }\n    algorithms: [HS256]`);
  const verifier = createSessionVerifier(config, {});
  // Called at once, in the same tick as creation: it waits for the read instead of refusing.
  const result = await verifier!.verify(makeContext({}), hs());
  t.equal(describe(result), "jwt:spa:user-1");
});

void t.test("a secret that cannot be used refuses every session and says so once in the log", async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ level: "debug", redact: false, write: (line) => void lines.push(line) });
  t.equal(await verify(hsConfig(), { env: { SESSION_SECRET: "short-secret" }, logger }, {}, hmacToken("short-secret", sessionClaims({ client: "spa" }))), "invalid_credentials", "shorter than 32 bytes");
  t.match(lines.join(""), /too short/);
  t.notMatch(lines.join(""), /short-secret/, "the secret is not logged");
  lines.length = 0;
  t.equal(await verify(hsConfig("[HS512]"), { env: { SESSION_SECRET: SECRET }, logger }, {}, hmacToken(SECRET, sessionClaims({ client: "spa" }), { alg: "HS512" })), "invalid_credentials", "HS512 needs 64 bytes");
  t.equal(await verify(hsConfig(), { env: {}, logger }, {}, hs()), "invalid_credentials", "unset variable");
  t.match(lines.join(""), /could not be read/);
  t.notMatch(lines.join(""), new RegExp(SECRET));
});

async function withIdp(t: Test) {
  const idp = await startFakeJwks();
  t.teardown(() => idp.close());
  const rsa = await makeSigningKey("RS256", "rsa-1");
  const ec = await makeSigningKey("ES256", "ec-1");
  idp.publish([rsa, ec]);
  const config = configFor(`    jwks_url: ${idp.url}\n    algorithms: [RS256, ES256]`);
  let monotonic = 0;
  const deps: SessionDeps = { jwks: { now: () => monotonic, cooldownMs: 30_000, maxAgeMs: 600_000, timeoutMs: 300 } };
  const verifier = createSessionVerifier(config, deps)!;
  const check = async (token: string, headers: Record<string, string> = {}) => describe(await verifier.verify(makeContext({ headers }), token));
  return { idp, rsa, ec, config, check, advance: (ms: number) => (monotonic += ms) };
}

void t.test("JWKS: RS256 and ES256 verified, keys fetched once and cached", async (t) => {
  const { idp, rsa, ec, check } = await withIdp(t);
  t.equal(await check(await signSession(rsa, { client: "spa", sub: "u1" })), "jwt:spa:u1");
  t.equal(await check(await signSession(ec, { client: "partner", sub: "u2" })), "jwt:partner:u2");
  t.equal(await check(await signSession(rsa, { client: "spa", sub: "u1" }, { kid: undefined })), "jwt:spa:u1", "no kid: the one RS256 key");
  t.equal(idp.requests, 1, "one fetch for all of them");
});

void t.test("JWKS: forged tokens are refused", async (t) => {
  const { rsa, check } = await withIdp(t);
  const attacker = await makeSigningKey("RS256", "rsa-1");
  const pem = await exportSPKI(await crypto.subtle.importKey("jwk", rsa.publicJwk, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, true, ["verify"]));
  const claims = sessionClaims({ client: "spa" });
  const cases: Array<[string, string]> = [
    ["signed by another key under the same kid", await signSession(attacker, { client: "spa" })],
    ["HS256 with the RSA public key as the HMAC secret", hmacToken(pem, claims, { alg: "HS256", kid: "rsa-1" })],
    ["HS256 with the JWK modulus as the secret", hmacToken(Buffer.from(rsa.publicJwk.n!, "base64url"), claims, { alg: "HS256", kid: "rsa-1" })],
    ["alg none", unsignedToken(claims, { alg: "none", kid: "rsa-1" })],
    ["embedded attacker jwk", await signSession(attacker, { client: "spa" }, { kid: "attacker", jwk: attacker.publicJwk })],
    ["jku pointing elsewhere", await signSession(attacker, { client: "spa" }, { kid: "attacker", jku: "http://127.0.0.1:1/jwks" })],
    ["kid path traversal", await signSession(attacker, { client: "spa" }, { kid: "../../../../dev/null" })],
    ["ES256 all-zero signature (CVE-2022-21449)", unsignedToken(claims, { alg: "ES256", kid: "ec-1" }, Buffer.alloc(64).toString("base64url"))],
    ["RS256 alg on the EC key's kid", await signSession(attacker, { client: "spa" }, { kid: "ec-1" })],
    ["PS256 not pinned", unsignedToken(claims, { alg: "PS256", kid: "rsa-1" }, "AAAA")],
    ["payload swapped", withPayload(await signSession(rsa, { client: "partner" }), sessionClaims({ client: "spa" }))],
  ];
  for (const [name, token] of cases) t.equal(await check(token), "invalid_credentials", name);
});

void t.test("JWKS: an unknown kid refetches once per cool-down, so rotation works and floods do not", async (t) => {
  const { idp, rsa, check, advance } = await withIdp(t);
  t.equal(await check(await signSession(rsa, { client: "spa" })), "jwt:spa:-");
  t.equal(idp.requests, 1);
  advance(31_000);
  const rotated = await makeSigningKey("RS256", "rsa-2");
  idp.publish([rsa, rotated]);
  t.equal(await check(await signSession(rotated, { client: "spa" })), "jwt:spa:-", "a key published after the first fetch");
  t.equal(idp.requests, 2, "found by one refetch");
  const stranger = await makeSigningKey("RS256", "rsa-3");
  for (let i = 0; i < 20; i++) t.equal(await check(await signSession(stranger, { client: "spa" }, { kid: `random-${i}` })), "invalid_credentials");
  t.equal(idp.requests, 2, "twenty unknown kids within the cool-down: no fetch");
  advance(31_000);
  t.equal(await check(await signSession(stranger, { client: "spa" }, { kid: "random-x" })), "invalid_credentials");
  t.equal(idp.requests, 3, "after the cool-down: one more");
});

void t.test("JWKS: provider down at first use, then back", async (t) => {
  const { idp, rsa, check, advance } = await withIdp(t);
  idp.mode = "fail";
  const token = await signSession(rsa, { client: "spa" });
  t.equal(await check(token), "invalid_credentials", "no keys: refused");
  t.equal(await check(token), "invalid_credentials");
  t.equal(idp.requests, 1, "no second fetch within the cool-down");
  idp.mode = "ok";
  advance(31_000);
  t.equal(await check(token), "jwt:spa:-", "fetched again after the cool-down");
});

void t.test("JWKS: provider down later, the keys in hand keep working", async (t) => {
  const { idp, rsa, check, advance } = await withIdp(t);
  const token = await signSession(rsa, { client: "spa" });
  t.equal(await check(token), "jwt:spa:-");
  idp.mode = "fail";
  advance(700_000);
  t.equal(await check(token), "jwt:spa:-", "stale set still used while a background refetch fails");
  await idp.waitForRequests(2);
  t.equal(await check(token), "jwt:spa:-");
});

void t.test("JWKS: stalls, redirects and oversized documents are not followed or kept", async (t) => {
  for (const mode of ["stall", "redirect", "huge"] as const) {
    const { idp, rsa, check } = await withIdp(t);
    idp.mode = mode;
    const started = Date.now();
    t.equal(await check(await signSession(rsa, { client: "spa" })), "invalid_credentials", mode);
    t.ok(Date.now() - started < 3000, `${mode}: bounded by the timeout`);
    t.equal(idp.requests, 1, `${mode}: one request, nothing followed`);
  }
});

void t.test("JWKS: private or symmetric keys in the set are never used", async (t) => {
  const { idp, check } = await withIdp(t);
  const oct = { kty: "oct", kid: "oct-1", k: Buffer.from(SECRET).toString("base64url"), alg: "HS256" };
  idp.publish([oct]);
  t.equal(await check(hmacToken(SECRET, sessionClaims({ client: "spa" }), { alg: "HS256", kid: "oct-1" })), "invalid_credentials");
});
