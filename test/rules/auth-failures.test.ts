import t from "tap";
import { callerKey, createAuthFailureLimiter } from "../../src/rules/auth-failures.ts";
import { createIdentityCheck } from "../../src/rules/identity-check.ts";
import { UNKNOWN_IP } from "../../src/rules/ip.ts";
import { hashToken } from "../../src/rules/tokens.ts";
import { makeClient, makeContext } from "../helpers/context.ts";

function fakeClock(start = 1_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

void t.test("callerKey: IPv4 as is, IPv6 by /64", (t) => {
  const cases: Array<[string, string]> = [
    ["203.0.113.7", "203.0.113.7"],
    ["::ffff:203.0.113.7", "203.0.113.7"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8:1:2::9", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:0db8:0000:0000:ffff::1", "2001:db8:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["fe80::1:2:3:4", "fe80:0:0:0::/64"],
    [UNKNOWN_IP, UNKNOWN_IP],
    ["garbage", UNKNOWN_IP],
  ];
  for (const [ip, want] of cases) t.equal(callerKey(ip), want, ip);
  t.end();
});

void t.test("blocks after `requests` failures and refills at requests per `per`", (t) => {
  const clock = fakeClock();
  const limiter = createAuthFailureLimiter({ requests: 3, per: 60_000, now: clock.now });
  const ip = "198.51.100.1";
  t.equal(limiter.blocked(ip), undefined, "unknown caller is not blocked");
  for (let i = 0; i < 3; i++) {
    t.equal(limiter.blocked(ip), undefined, `attempt ${i + 1} allowed`);
    limiter.failed(ip);
  }
  const blocked = limiter.blocked(ip);
  t.same(blocked, { ok: false, reason: "auth_failures", detail: "too many failed authentications from this caller", retryAfterSeconds: 20 });
  t.equal(limiter.blocked("198.51.100.2"), undefined, "other callers unaffected");

  clock.advance(19_000);
  t.equal(limiter.blocked(ip)?.retryAfterSeconds, 1, "Retry-After counts down");
  clock.advance(1_000);
  t.equal(limiter.blocked(ip), undefined, "one token back after per/requests");
  limiter.failed(ip);
  t.equal(limiter.blocked(ip)?.reason, "auth_failures", "and spent again by one more failure");

  clock.advance(60_000);
  t.equal(limiter.blocked(ip), undefined, "fully refilled");
  t.equal(limiter.size, 0, "a fully refilled caller is forgotten");
  t.end();
});

void t.test("IPv6 callers in one /64 share a bucket", (t) => {
  const clock = fakeClock();
  const limiter = createAuthFailureLimiter({ requests: 2, per: 1_000, now: clock.now });
  limiter.failed("2001:db8:1:2::1");
  limiter.failed("2001:db8:1:2::2");
  t.equal(limiter.blocked("2001:db8:1:2::3")?.reason, "auth_failures");
  t.equal(limiter.blocked("2001:db8:1:3::1"), undefined);
  t.end();
});

void t.test("bounded memory: the least recently failed caller is forgotten first", (t) => {
  const clock = fakeClock();
  const limiter = createAuthFailureLimiter({ requests: 1, per: 60_000, now: clock.now, maxEntries: 2 });
  limiter.failed("192.0.2.1");
  limiter.failed("192.0.2.2");
  limiter.failed("192.0.2.1"); // touched again: now most recent
  limiter.failed("192.0.2.3");
  t.equal(limiter.size, 2);
  t.equal(limiter.blocked("192.0.2.2"), undefined, "oldest forgotten");
  t.equal(limiter.blocked("192.0.2.1")?.reason, "auth_failures");
  t.equal(limiter.blocked("192.0.2.3")?.reason, "auth_failures");
  t.end();
});

void t.test("a clock that goes backwards does not add tokens", (t) => {
  const clock = fakeClock(10_000);
  const limiter = createAuthFailureLimiter({ requests: 1, per: 60_000, now: clock.now });
  limiter.failed("192.0.2.1");
  clock.advance(-5_000);
  t.equal(limiter.blocked("192.0.2.1")?.reason, "auth_failures");
  t.end();
});

void t.test("wired into the identity check: guessing tokens ends in 429, even for the right token", async (t) => {
  const clock = fakeClock();
  const limiter = createAuthFailureLimiter({ requests: 2, per: 60_000, now: clock.now });
  const web = makeClient({ id: "web", auth: { tokens: [hashToken("tok-web")] } });
  const rule = createIdentityCheck([web], { authFailures: limiter });
  const attempt = async (token: string, ip = "203.0.113.50") => {
    const verdict = await rule.identify(makeContext({ ip, headers: { authorization: `Bearer ${token}` } }));
    return verdict.ok ? "ok" : verdict.reason;
  };
  t.equal(await attempt("guess-1"), "invalid_credentials");
  t.equal(await attempt("guess-2"), "invalid_credentials");
  t.equal(await attempt("tok-web"), "auth_failures");
  t.equal(await attempt("tok-web", "203.0.113.51"), "ok", "another caller is served");
  clock.advance(30_000);
  t.equal(await attempt("tok-web"), "ok", "served again once a token refilled");
});
