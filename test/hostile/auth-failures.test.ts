// Token guessing against the whole proxy: failed authentications count per caller IP
// (`limits.auth_failures`), a blocked IP is refused even with a right token, a spoofed
// X-Forwarded-For from an untrusted caller cannot rotate past the limit, and other callers are
// not affected.
import t from "tap";
import { auth, INTERNAL_TOKEN, leaksKey, req, sendFrom, startHostileEnv, TRUSTED, UNTRUSTED, type HostileEnv } from "../helpers/hostile.ts";

let env: HostileEnv;
t.before(async () => {
  env = await startHostileEnv({ authFailures: "{ requests: 3, per: 1m }" });
});
t.teardown(() => env.close());

async function status(raw: string, from: string): Promise<{ status: number | undefined; reason: unknown; retryAfter: string | undefined; raw: string }> {
  const res = await sendFrom(env.proxy.port, raw, { from });
  const final = res.responses.find((r) => r.status >= 200);
  let reason: unknown;
  try {
    reason = (JSON.parse(final?.body ?? "") as { reason?: unknown }).reason;
  } catch {
    reason = undefined;
  }
  return { status: final?.status, reason, retryAfter: final?.headers["retry-after"], raw: res.raw };
}

const guess = (i: number, extra: readonly string[] = []) => req("GET", "/v1/models", [`Authorization: Bearer guess-${i}-0000000000`, ...extra]);

void t.test("guessing from one IP is cut off after limits.auth_failures, whatever it claims to be", async (t) => {
  const before = env.upstream.requests.length;
  for (let i = 0; i < 3; i++) {
    const r = await status(guess(i, [`X-Forwarded-For: 10.0.0.${i}`, `X-Real-IP: 10.0.1.${i}`]), UNTRUSTED);
    t.equal(r.reason, "invalid_credentials", `guess ${i + 1}: 401`);
  }
  const blocked = await status(guess(9, ["X-Forwarded-For: 10.9.9.9"]), UNTRUSTED);
  t.equal(blocked.status, 429, "the fourth guess: 429");
  t.equal(blocked.reason, "auth_failures");
  t.ok(Number(blocked.retryAfter) >= 1, "with Retry-After");
  const right = await status(req("GET", "/v1/models", [auth]), UNTRUSTED);
  t.equal(right.reason, "auth_failures", "even the right token is refused while blocked: guessing learns nothing");
  const missing = await status(req("GET", "/v1/models"), UNTRUSTED);
  t.equal(missing.reason, "auth_failures");
  t.equal(env.upstream.requests.length, before, "the upstream received nothing");
  t.notOk(leaksKey(blocked.raw + right.raw));
});

void t.test("another caller is not affected", async (t) => {
  const other = await status(req("GET", "/v1/models", [auth]), "127.0.0.3");
  t.equal(other.status, 200);
});

void t.test("behind the trusted proxy, each forwarded caller has its own count", async (t) => {
  for (let i = 0; i < 4; i++) {
    const r = await status(guess(i, ["X-Forwarded-For: 198.51.100.20"]), TRUSTED);
    t.equal(r.reason, i < 3 ? "invalid_credentials" : "auth_failures", `caller A attempt ${i + 1}`);
  }
  const b = await status(req("GET", "/v1/models", [`Authorization: Bearer ${INTERNAL_TOKEN}`, "X-Forwarded-For: 10.20.30.40"]), TRUSTED);
  t.equal(b.status, 200, "caller B, behind the same proxy, is served");
});
