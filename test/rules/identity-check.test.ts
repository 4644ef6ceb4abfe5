import t, { type Test } from "tap";
import type { ClientConfig } from "../../src/config/types.ts";
import { deny, type Deny, type RequestContext } from "../../src/pipeline/types.ts";
import { createIdentityCheck, type AuthFailures, type SessionResult, type SessionVerifier } from "../../src/rules/identity-check.ts";
import { UNKNOWN_IP } from "../../src/rules/ip.ts";
import { hashToken } from "../../src/rules/tokens.ts";
import { makeClient, makeContext, type ContextInit } from "../helpers/context.ts";

const web = makeClient({ id: "web", auth: { tokens: [hashToken("tok-web")] }, origins: ["https://app.example.com"] });
const srv = makeClient({ id: "srv", auth: { tokens: [hashToken("tok-srv")], jwt: true }, networks: ["10.0.0.0/8"] });
const sess = makeClient({ id: "sess", auth: { jwt: true } });
const noJwt = makeClient({ id: "no-jwt" });
const dupA = makeClient({ id: "dup-a", auth: { tokens: [hashToken("tok-dup")] } });
const dupB = makeClient({ id: "dup-b", auth: { tokens: [hashToken("tok-dup")] } });
const anonOrigins = makeClient({ id: "anon-origins", auth: { anonymous: true }, origins: ["https://public.example.com", "https://*.shared.example.com"] });
const anonBoth = makeClient({ id: "anon-both", auth: { anonymous: true }, origins: ["https://both.example.com", "https://x.shared.example.com"], networks: ["192.168.0.0/16"] });
const anonNet = makeClient({ id: "anon-net", auth: { anonymous: true }, networks: ["172.16.0.0/12", "192.168.1.0/24"] });
const anonEmpty = makeClient({ id: "anon-empty", auth: { anonymous: true }, origins: [] });
const anonOpen = makeClient({ id: "anon-open", auth: { anonymous: true } }); // refused by validation; never matches
const clients: ClientConfig[] = [web, srv, sess, noJwt, dupA, dupB, anonOrigins, anonBoth, anonNet, anonEmpty, anonOpen];

/** A session verifier driven by a table: bearer → result, cookie header → result. Records what it saw. */
function fakeSessions(byBearer: Record<string, SessionResult>, byCookie: Record<string, SessionResult> = {}, async = false) {
  const seen: Array<string | undefined> = [];
  const verifier: SessionVerifier = {
    verify(ctx: RequestContext, bearer: string | undefined) {
      seen.push(bearer);
      const cookie = typeof ctx.headers.cookie === "string" ? byCookie[ctx.headers.cookie] : undefined;
      const fromBearer = bearer === undefined ? undefined : byBearer[bearer];
      const result = fromBearer ?? cookie;
      return async ? Promise.resolve(result) : result;
    },
  };
  return { verifier, seen };
}

function recordingLimiter(blockedIps: Record<string, Deny> = {}) {
  const failed: string[] = [];
  const limiter: AuthFailures = { blocked: (ip) => blockedIps[ip], failed: (ip) => void failed.push(ip) };
  return { limiter, failed };
}

interface Case {
  name: string;
  ctx: ContextInit;
  want: string; // reason, or "ok:<client id>"
  credential?: RequestContext["credential"];
  subject?: string;
  counted?: boolean; // reported to the auth-failure limiter
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function runCases(t: Test, cases: Case[], deps: { sessions?: SessionVerifier } = {}) {
  for (const c of cases) {
    const { limiter, failed } = recordingLimiter();
    const rule = createIdentityCheck(clients, { ...deps, authFailures: limiter });
    const ctx = makeContext(c.ctx);
    const verdict = await rule.identify(ctx);
    const got = verdict.ok ? `ok:${ctx.client?.id}` : verdict.reason;
    t.equal(got, c.want, c.name);
    if (verdict.ok) {
      t.equal(verdict.ctx, ctx, `${c.name}: the same context, now the caller's`);
      t.equal(ctx.credential, c.credential, `${c.name}: credential`);
      t.equal(ctx.subject, c.subject, `${c.name}: subject`);
    } else {
      t.equal(ctx.client, undefined, `${c.name}: no client set`);
      t.notOk(verdict.detail?.includes("tok-"), `${c.name}: detail quotes no token`);
    }
    t.same(failed, c.counted ? [ctx.ip] : [], `${c.name}: failure ${c.counted ? "counted" : "not counted"}`);
  }
}

void t.test("static tokens", async (t) => {
  await runCases(t, [
    { name: "right token", ctx: { headers: bearer("tok-web") }, want: "ok:web", credential: "token" },
    { name: "lower-case scheme", ctx: { headers: { authorization: "bearer tok-web" } }, want: "ok:web", credential: "token" },
    { name: "wrong token", ctx: { headers: bearer("tok-nope") }, want: "invalid_credentials", counted: true },
    { name: "two spaces", ctx: { headers: { authorization: "Bearer  tok-web" } }, want: "invalid_credentials", counted: true },
    { name: "tab", ctx: { headers: { authorization: "Bearer\ttok-web" } }, want: "invalid_credentials", counted: true },
    { name: "empty header", ctx: { headers: { authorization: "" } }, want: "invalid_credentials", counted: true },
    { name: "scheme only", ctx: { headers: { authorization: "Bearer" } }, want: "invalid_credentials", counted: true },
    { name: "Basic", ctx: { headers: { authorization: "Basic dG9rLXdlYjo=" } }, want: "invalid_credentials", counted: true },
    { name: "token listed by two clients", ctx: { headers: bearer("tok-dup") }, want: "invalid_credentials", counted: true },
    // A credential that fails never falls back to an anonymous client that would match.
    {
      name: "wrong token from an anonymous client's network",
      ctx: { headers: bearer("tok-nope"), ip: "172.16.0.1" },
      want: "invalid_credentials",
      counted: true,
    },
    { name: "token of a client with networks, from outside (network check decides later)", ctx: { headers: bearer("tok-srv"), ip: "203.0.113.7" }, want: "ok:srv", credential: "token" },
  ]);
});

void t.test("anonymous clients", async (t) => {
  await runCases(t, [
    { name: "no credential, nothing matches", ctx: {}, want: "missing_credentials", counted: true },
    { name: "origins-only client: listed Origin", ctx: { origin: "https://public.example.com" }, want: "ok:anon-origins", credential: "anonymous" },
    { name: "origins-only client: wildcard Origin", ctx: { origin: "https://a.b.shared.example.com" }, want: "ok:anon-origins", credential: "anonymous" },
    { name: "origins-only client: other Origin", ctx: { origin: "https://evil.example.com" }, want: "missing_credentials", counted: true },
    { name: "origins-only client: null Origin", ctx: { origin: "null" }, want: "missing_credentials", counted: true },
    // curl with no Origin: origins prove nothing, only networks can vouch.
    { name: "no Origin, no matching network", ctx: { ip: "203.0.113.7" }, want: "missing_credentials", counted: true },
    { name: "both set: no Origin, inside network", ctx: { ip: "192.168.5.5" }, want: "ok:anon-both", credential: "anonymous" },
    { name: "both set: listed Origin, inside network", ctx: { ip: "192.168.5.5", origin: "https://both.example.com" }, want: "ok:anon-both", credential: "anonymous" },
    { name: "both set: listed Origin, outside network", ctx: { ip: "203.0.113.7", origin: "https://both.example.com" }, want: "missing_credentials", counted: true },
    { name: "both set: other Origin, inside network → next client by network", ctx: { ip: "192.168.1.9", origin: "https://evil.example.com" }, want: "ok:anon-net", credential: "anonymous" },
    { name: "both set: other Origin, inside only its network", ctx: { ip: "192.168.5.5", origin: "https://evil.example.com" }, want: "missing_credentials", counted: true },
    { name: "networks-only client: inside", ctx: { ip: "172.16.3.4" }, want: "ok:anon-net", credential: "anonymous" },
    { name: "networks-only client: inside, any Origin", ctx: { ip: "172.16.3.4", origin: "https://evil.example.com" }, want: "ok:anon-net", credential: "anonymous" },
    { name: "networks-only client: unknown caller", ctx: { ip: UNKNOWN_IP }, want: "missing_credentials", counted: true },
    // Config order decides: x.shared.example.com is allowed by anon-origins (wildcard) and anon-both (exact).
    { name: "first match in config order", ctx: { ip: "192.168.5.5", origin: "https://x.shared.example.com" }, want: "ok:anon-origins", credential: "anonymous" },
    { name: "socket inside network but caller outside", ctx: { socketIp: "172.16.0.1", ip: "203.0.113.7" }, want: "missing_credentials", counted: true },
  ]);
});

void t.test("sessions", async (t) => {
  const sessions = {
    "jwt-sess": { client: sess, subject: "user-1", credential: "jwt" as const },
    "jwt-srv": { client: srv, subject: "user-2", credential: "jwt" as const },
    "jwt-nojwt": { client: noJwt, subject: "user-3", credential: "jwt" as const },
    "jwt-expired": deny("invalid_credentials", "expired"),
    "jwt-ambiguous": deny("ambiguous_credentials", "header and cookie differ"),
  };
  const cookies = {
    "session=c-sess": { client: sess, subject: "user-9", credential: "cookie" as const },
    "session=c-srv": { client: srv, subject: "user-8", credential: "cookie" as const },
    "session=c-bad": deny("invalid_credentials", "bad signature"),
  };
  const cases: Case[] = [
    { name: "bearer JWT", ctx: { headers: bearer("jwt-sess") }, want: "ok:sess", credential: "jwt", subject: "user-1" },
    { name: "cookie session", ctx: { headers: { cookie: "session=c-sess" } }, want: "ok:sess", credential: "cookie", subject: "user-9" },
    { name: "invalid JWT", ctx: { headers: bearer("jwt-expired") }, want: "invalid_credentials", counted: true },
    { name: "verifier's 400 passes through, not counted", ctx: { headers: bearer("jwt-ambiguous") }, want: "ambiguous_credentials" },
    { name: "session names a client without jwt: true", ctx: { headers: bearer("jwt-nojwt") }, want: "invalid_credentials", counted: true },
    { name: "bearer neither token nor JWT", ctx: { headers: bearer("nothing") }, want: "invalid_credentials", counted: true },
    { name: "token + cookie of the same client: token, subject kept", ctx: { headers: { ...bearer("tok-srv"), cookie: "session=c-srv" } }, want: "ok:srv", credential: "token", subject: "user-8" },
    { name: "token + cookie of another client", ctx: { headers: { ...bearer("tok-web"), cookie: "session=c-sess" } }, want: "ambiguous_credentials" },
    { name: "token + invalid cookie", ctx: { headers: { ...bearer("tok-web"), cookie: "session=c-bad" } }, want: "invalid_credentials", counted: true },
    { name: "invalid cookie never falls back to anonymous", ctx: { headers: { cookie: "session=c-bad" }, ip: "172.16.0.1" }, want: "invalid_credentials", counted: true },
    { name: "no session, anonymous still works", ctx: { ip: "172.16.0.1" }, want: "ok:anon-net", credential: "anonymous" },
    // The fake verifier ignores the unknown bearer and returns the cookie's session: the identity
    // check itself must not let a wrong bearer ride on a good cookie.
    { name: "wrong bearer next to a good cookie", ctx: { headers: { ...bearer("nothing"), cookie: "session=c-sess" } }, want: "invalid_credentials", counted: true },
  ];
  await runCases(t, cases, { sessions: fakeSessions(sessions, cookies).verifier });
  await t.test("same cases with an async verifier", async (t) => {
    await runCases(t, cases, { sessions: fakeSessions(sessions, cookies, true).verifier });
  });
});

void t.test("the verifier sees the bearer only when it is not a static token", async (t) => {
  const { verifier, seen } = fakeSessions({});
  const rule = createIdentityCheck(clients, { sessions: verifier });
  await rule.identify(makeContext({ headers: bearer("tok-web") }));
  await rule.identify(makeContext({ headers: bearer("eyJ.x.y") }));
  await rule.identify(makeContext({}));
  t.same(seen, [undefined, "eyJ.x.y", undefined]);
});

void t.test("a blocked caller is refused before any credential is looked at", async (t) => {
  const { verifier, seen } = fakeSessions({});
  const { limiter, failed } = recordingLimiter({ "198.51.100.9": deny("auth_failures", "blocked", 7) });
  const rule = createIdentityCheck(clients, { sessions: verifier, authFailures: limiter });
  for (const headers of [bearer("tok-web"), bearer("tok-nope"), {}]) {
    const ctx = makeContext({ ip: "198.51.100.9", headers });
    const verdict = await rule.identify(ctx);
    t.same(verdict, { ok: false, reason: "auth_failures", detail: "blocked", retryAfterSeconds: 7 });
    t.equal(ctx.client, undefined);
  }
  t.same(seen, [], "no verification attempted");
  t.same(failed, [], "a blocked request is not counted again");
  const other = makeContext({ ip: "198.51.100.10", headers: bearer("tok-web") });
  t.ok((await rule.identify(other)).ok, "another caller is not blocked");
});

void t.test("works without optional dependencies", async (t) => {
  const rule = createIdentityCheck(clients);
  t.equal(rule.name, "identity");
  const ok = makeContext({ headers: bearer("tok-web") });
  t.ok((await rule.identify(ok)).ok);
  t.equal(ok.client, web);
  const verdict = await rule.identify(makeContext({ headers: bearer("eyJ.x.y") }));
  t.equal(verdict.ok ? "ok" : verdict.reason, "invalid_credentials");
});
