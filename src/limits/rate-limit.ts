/**
 * SPEC §3 `rate_limit`, §4 step 6: a token bucket of `burst` tokens (default `requests`) refilled
 * at `requests` per `per`, one bucket per client, per session subject or per caller IP (`by`).
 * An empty bucket answers 429 `rate_limited` with `Retry-After` = the seconds until one token is
 * back, rounded up.
 */
import { createHash } from "node:crypto";
import type { ClientConfig, RateLimitConfig } from "../config/types.ts";
import { callerKey } from "../rules/auth-failures.ts";
import { CONTINUE, deny, type CallerContext, type Rule, type Verdict } from "../pipeline/types.ts";
import { retrySeconds, storeUnavailable } from "./deny.ts";
import { UNAVAILABLE, type GuardedStore } from "./fallback.ts";
import type { BucketSpec } from "./store.ts";

interface Compiled {
  readonly by: RateLimitConfig["by"];
  readonly bucket: BucketSpec;
}

/**
 * The bucket a request draws from. Subjects are hashed: they are caller-chosen strings of any
 * length (a key must stay short) and may be personal data (a key is visible to whoever reads Redis).
 * A request without a subject on a `by: subject` client (a static token or an anonymous caller
 * next to the sessions) draws from one bucket shared by all such requests of that client: fail
 * closed, never unlimited.
 */
export function rateKey(clientId: string, by: RateLimitConfig["by"], ctx: Pick<CallerContext, "ip" | "subject">): string {
  switch (by) {
    case "client":
      return `rate:${clientId}`;
    case "ip":
      // IPv6 callers by /64, like the failed-auth limiter: one host usually holds a whole /64.
      return `rate:${clientId}:ip:${callerKey(ctx.ip)}`;
    case "subject":
      return ctx.subject === undefined
        ? `rate:${clientId}:nosub`
        : `rate:${clientId}:sub:${createHash("sha256").update(ctx.subject).digest("hex").slice(0, 32)}`;
  }
}

/** Builds the rule for the clients that set `rate_limit`; undefined when none does. */
export function createRateLimitRule(clients: readonly ClientConfig[], store: GuardedStore): Rule | undefined {
  const limits = new Map<string, Compiled>();
  for (const client of clients) {
    const rate = client.rate_limit;
    if (rate === undefined) continue;
    limits.set(client.id, { by: rate.by, bucket: { capacity: rate.burst, refill: rate.requests, periodMs: rate.per } });
  }
  if (limits.size === 0) return undefined;

  return {
    name: "rate-limit",
    async check(ctx): Promise<Verdict> {
      const client = ctx.client;
      const limit = limits.get(client.id);
      if (limit === undefined) return CONTINUE;
      const result = await store.take(rateKey(client.id, limit.by, ctx), limit.bucket);
      if (result === UNAVAILABLE) return storeUnavailable();
      if (result.ok) return CONTINUE;
      return deny("rate_limited", `rate limit of client ${client.id} (by ${limit.by}) reached`, retrySeconds(result.retryAfterMs));
    },
  };
}
