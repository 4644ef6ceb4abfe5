// Hostile input, part 2: credential and JWT attacks, origin spoofing (CSRF on cookie sessions,
// look-alike origins) and network spoofing (X-Forwarded-For, X-Real-IP, Forwarded from callers
// that are not trusted proxies) — over raw sockets against the whole proxy.
import { exportSPKI } from "jose";
import t from "tap";
import { hmacToken, makeSigningKey, sessionClaims, signSession, unsignedToken, withPayload } from "../helpers/fake-jwks.ts";
import {
  ALLOWED_ORIGIN,
  auth,
  INTERNAL_TOKEN,
  PARTNER_TOKEN,
  req,
  runCases,
  startHostileEnv,
  TOKEN,
  TRUSTED,
  UNTRUSTED,
  type HostileCase,
  type HostileEnv,
} from "../helpers/hostile.ts";

let env: HostileEnv;
t.before(async () => {
  env = await startHostileEnv();
});
t.teardown(() => env.close());

const get = (headers: readonly string[], target = "/v1/models") => req("GET", target, headers);
const bearer = (token: string) => `Authorization: Bearer ${token}`;
const cookie = (token: string) => `Cookie: theme=dark; session=${token}`;
const internal = bearer(INTERNAL_TOKEN);

void t.test("credential and JWT attacks", async (t) => {
  const good = await env.session();
  const attacker = await makeSigningKey("RS256", "idp-1");
  const pem = await exportSPKI(await crypto.subtle.importKey("jwk", env.idpKey.publicJwk, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, true, ["verify"]));
  const claims = sessionClaims({ client: "spa", sub: "user-1" });
  const now = Math.floor(Date.now() / 1000);
  const cases: HostileCase[] = [
    { name: "no credential", raw: get([]), status: 401, reason: "missing_credentials", check: (t, _g, res) => t.equal(res.headers["www-authenticate"], "Bearer") },
    { name: "wrong static token", raw: get([bearer("tok-web-0123456789abcdeX")]), status: 401, reason: "invalid_credentials" },
    { name: "token with two spaces", raw: get([`Authorization: Bearer  ${TOKEN}`]), status: 401, reason: "invalid_credentials" },
    { name: "token with a trailing space", raw: get([`Authorization: Bearer ${TOKEN} x`]), status: 401, reason: "invalid_credentials" },
    { name: "Basic credentials", raw: get([`Authorization: Basic ${Buffer.from(`web:${TOKEN}`).toString("base64")}`]), status: 401, reason: "invalid_credentials" },
    { name: "two Authorization headers", raw: get([bearer("nope"), auth]), status: 400, reason: "invalid_header" },
    { name: "token list in one header", raw: get([`Authorization: Bearer ${TOKEN}, Bearer other`]), status: 401, reason: "invalid_credentials" },
    { name: "token in X-Api-Key is not a credential", raw: get([`X-Api-Key: ${TOKEN}`]), status: 401, reason: "missing_credentials" },
    { name: "token in Proxy-Authorization is not a credential", raw: get([`Proxy-Authorization: Bearer ${TOKEN}`]), status: 401, reason: "missing_credentials" },
    { name: "JWT alg none", raw: get([bearer(unsignedToken(claims))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT HS256 signed with the IdP's RSA public key", raw: get([bearer(hmacToken(pem, claims, { alg: "HS256", kid: "idp-1" }))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT signed by another key under the IdP's kid", raw: get([bearer(await signSession(attacker, { client: "spa" }))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT carrying its own jwk", raw: get([bearer(await signSession(attacker, { client: "spa" }, { kid: "mine", jwk: attacker.publicJwk }))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT with a jku", raw: get([bearer(await signSession(attacker, { client: "spa" }, { kid: "mine", jku: `${env.idp.url}?evil` }))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT payload swapped after signing", raw: get([bearer(withPayload(good, sessionClaims({ client: "partner", sub: "admin" })))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT expired beyond clock_skew", raw: get([bearer(await env.session({ exp: now - 120 }))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT not yet valid", raw: get([bearer(await env.session({ nbf: now + 600 }))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT without exp", raw: get([bearer(await env.session({ exp: undefined }))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT for another audience", raw: get([bearer(await env.session({ aud: "some-other-api" }))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT from another issuer", raw: get([bearer(await env.session({ iss: "https://evil.example.com" }))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT naming a client without auth.jwt", raw: get([bearer(await env.session({ client: "web" }))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT naming no client", raw: get([bearer(await env.session({ client: "root" }))]), status: 401, reason: "invalid_credentials" },
    { name: "JWT with a subject that would forge log lines", raw: get([bearer(await env.session({ sub: 'x"}\n{"client":"root' }))]), status: 401, reason: "invalid_credentials" },
    { name: "bearer session and cookie session for different clients", raw: get([bearer(good), cookie(await env.session({ client: "partner" })), `Origin: ${ALLOWED_ORIGIN}`]), status: 400, reason: "ambiguous_credentials" },
    { name: "static token and a session for another client", raw: get([auth, cookie(good), `Origin: ${ALLOWED_ORIGIN}`]), status: 400, reason: "ambiguous_credentials" },
    { name: "session cookie tossed twice with different values", raw: get([`Cookie: session=${good}; session=${await env.session({ sub: "victim" })}`, `Origin: ${ALLOWED_ORIGIN}`]), status: 401, reason: "invalid_credentials" },
    { name: "wrong bearer next to a good cookie", raw: get([bearer("not-a-token"), cookie(good), `Origin: ${ALLOWED_ORIGIN}`]), status: 401, reason: "invalid_credentials" },
    {
      name: "a good session is forwarded without the caller's JWT or cookie",
      raw: get([bearer(good), "Cookie: other=1", `Origin: ${ALLOWED_ORIGIN}`]),
      status: 200,
      forwarded: true,
      check: (t, got, res) => {
        t.equal(got?.count("cookie"), 0);
        t.notOk(got?.head.toString("latin1").includes(good.split(".")[1]!), "no part of the JWT upstream");
        t.equal(res.headers["access-control-allow-origin"], ALLOWED_ORIGIN);
      },
    },
    {
      name: "a static token plus the same client's session: token wins, forwarded",
      raw: get([bearer(PARTNER_TOKEN), cookie(await env.session({ client: "partner" }))]),
      status: 200,
      forwarded: true,
      check: (t, got) => t.equal(got?.count("cookie"), 0),
    },
  ];
  await runCases(t, env, cases);
  t.equal(env.idp.requests, 1, "forged kids did not make the proxy hammer the IdP: one JWKS fetch in all");
});

void t.test("origin spoofing", async (t) => {
  const good = await env.session();
  const withCookie = (origin: string | undefined) => get([cookie(good), ...(origin === undefined ? [] : [`Origin: ${origin}`])]);
  const cases: HostileCase[] = [
    { name: "cookie session without Origin (CSRF from a form or an old browser)", raw: withCookie(undefined), status: 403, reason: "origin_not_allowed" },
    { name: "cookie session with only a Referer", raw: get([cookie(good), `Referer: ${ALLOWED_ORIGIN}/page`]), status: 403, reason: "origin_not_allowed" },
    { name: "cookie session from another site", raw: withCookie("https://evil.example.net"), status: 403, reason: "origin_not_allowed" },
    { name: "Origin: null (sandboxed iframe, file:)", raw: withCookie("null"), status: 403, reason: "origin_not_allowed" },
    { name: "allowed origin as a prefix", raw: withCookie("https://app.example.com.evil.net"), status: 403, reason: "origin_not_allowed" },
    { name: "wildcard apex", raw: withCookie("https://example.com"), status: 403, reason: "origin_not_allowed" },
    { name: "wildcard suffix without the dot", raw: withCookie("https://evilexample.com"), status: 403, reason: "origin_not_allowed" },
    { name: "other scheme", raw: withCookie("http://app.example.com"), status: 403, reason: "origin_not_allowed" },
    { name: "other port", raw: withCookie("https://app.example.com:8443"), status: 403, reason: "origin_not_allowed" },
    { name: "trailing dot", raw: withCookie("https://app.example.com."), status: 403, reason: "origin_not_allowed" },
    { name: "userinfo", raw: withCookie("https://app.example.com@evil.net"), status: 403, reason: "origin_not_allowed" },
    { name: "two origins in one header", raw: withCookie(`${ALLOWED_ORIGIN} https://evil.net`), status: 403, reason: "origin_not_allowed" },
    { name: "bearer session from another site", raw: get([bearer(good), "Origin: https://evil.example.net"]), status: 403, reason: "origin_not_allowed" },
    {
      name: "a subdomain under the wildcard is allowed",
      raw: withCookie("https://beta.example.com"),
      status: 200,
      forwarded: true,
      check: (t, got, res) => {
        t.equal(got?.count("cookie"), 0, "the session cookie is not forwarded");
        t.equal(got?.count("origin"), 1, "Origin itself is harmless and passes");
        t.equal(res.headers["access-control-allow-origin"], "https://beta.example.com");
        t.equal(res.headers["access-control-allow-credentials"], "true");
      },
    },
    { name: "preflight from another site", raw: req("OPTIONS", "/v1/models", ["Origin: https://evil.example.net", "Access-Control-Request-Method: GET"]), status: 403, reason: "origin_not_allowed" },
    { name: "preflight from null", raw: req("OPTIONS", "/v1/models", ["Origin: null", "Access-Control-Request-Method: GET"]), status: 403, reason: "origin_not_allowed" },
    {
      name: "preflight from the allowed origin is answered locally",
      raw: req("OPTIONS", "/v1/images/generations", [`Origin: ${ALLOWED_ORIGIN}`, "Access-Control-Request-Method: POST", "Access-Control-Request-Headers: content-type"]),
      status: 204,
      check: (t, _got, res) => {
        t.equal(res.headers["access-control-allow-origin"], ALLOWED_ORIGIN);
        t.match(res.headers["vary"], /Origin/);
      },
    },
  ];
  await runCases(t, env, cases);
});

void t.test("network spoofing", async (t) => {
  const cases: HostileCase[] = [
    { name: "X-Forwarded-For from an untrusted caller", from: UNTRUSTED, raw: get([internal, "X-Forwarded-For: 10.0.0.1"]), status: 403, reason: "network_not_allowed" },
    { name: "X-Real-IP from an untrusted caller", from: UNTRUSTED, raw: get([internal, "X-Real-IP: 10.0.0.1"]), status: 403, reason: "network_not_allowed" },
    { name: "Forwarded from an untrusted caller", from: UNTRUSTED, raw: get([internal, "Forwarded: for=10.0.0.1;proto=https"]), status: 403, reason: "network_not_allowed" },
    { name: "True-Client-IP and X-Client-IP", from: UNTRUSTED, raw: get([internal, "True-Client-IP: 10.0.0.1", "X-Client-IP: 10.0.0.1", "CF-Connecting-IP: 10.0.0.1"]), status: 403, reason: "network_not_allowed" },
    { name: "a spoofed hop prepended before the ingress's", from: TRUSTED, raw: get([internal, "X-Forwarded-For: 10.0.0.1, 198.51.100.7"]), status: 403, reason: "network_not_allowed" },
    { name: "a spoofed header next to the ingress's", from: TRUSTED, raw: get([internal, "X-Forwarded-For: 10.0.0.1", "X-Forwarded-For: 198.51.100.7"]), status: 403, reason: "network_not_allowed" },
    { name: "an unreadable hop from the trusted proxy", from: TRUSTED, raw: get([internal, "X-Forwarded-For: 10.0.0.1, not-an-ip"]), status: 403, reason: "network_not_allowed" },
    { name: "an IPv6 hop outside the networks", from: TRUSTED, raw: get([internal, "X-Forwarded-For: 2001:db8::1"]), status: 403, reason: "network_not_allowed" },
    { name: "a zone id", from: TRUSTED, raw: get([internal, "X-Forwarded-For: fd00::1%eth0"]), status: 403, reason: "network_not_allowed" },
    {
      name: "behind the trusted proxy, the right-most untrusted hop is the caller",
      from: TRUSTED,
      raw: get([internal, "X-Forwarded-For: 198.51.100.7, 10.1.2.3", "X-Real-IP: 198.51.100.7", "Forwarded: for=198.51.100.7"]),
      status: 200,
      forwarded: true,
      check: (t, got) => {
        for (const name of ["x-forwarded-for", "x-real-ip", "forwarded"]) t.equal(got?.count(name), 0, `${name} never forwarded`);
      },
    },
    { name: "IPv4-mapped IPv6 hop", from: TRUSTED, raw: get([internal, "X-Forwarded-For: ::ffff:10.9.8.7"]), status: 200, forwarded: true },
    { name: "IPv6 hop inside fd00::/8", from: TRUSTED, raw: get([internal, "X-Forwarded-For: [fd00::42]:443"]), status: 200, forwarded: true },
    {
      name: "spoofing headers from an untrusted caller are never forwarded either",
      from: UNTRUSTED,
      raw: get([auth, "X-Forwarded-For: 10.0.0.1", "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: http", "X-Real-IP: 10.0.0.1", "Forwarded: for=10.0.0.1"]),
      status: 200,
      forwarded: true,
      check: (t, got) => {
        for (const name of ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "forwarded"]) t.equal(got?.count(name), 0, `${name} not forwarded`);
      },
    },
  ];
  await runCases(t, env, cases);
});
