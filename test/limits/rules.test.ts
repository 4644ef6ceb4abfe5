// The three limit rules on a memory store: which bucket a request draws from (by client, subject,
// IP), the SPEC reasons and Retry-After values, slots given back exactly once through ctx.cleanups,
// how a request is priced, when a reservation is kept or given back, and what
// estimated_cost_usd_total is told.
import t from "tap";
import { budgetKey, createChargeRule, spendKept } from "../../src/limits/budget.ts";
import { CONCURRENCY_RETRY_SECONDS, createConcurrencyRule } from "../../src/limits/concurrency.ts";
import { STORE_DOWN_RETRY_SECONDS } from "../../src/limits/deny.ts";
import { createGuardedStore, type GuardedStore } from "../../src/limits/fallback.ts";
import { createMemoryStore } from "../../src/limits/memory-store.ts";
import { estimateMicros, toMicros } from "../../src/limits/pricing.ts";
import { createRateLimitRule, rateKey } from "../../src/limits/rate-limit.ts";
import type { LimitStore } from "../../src/limits/store.ts";
import { msUntilUtcMidnight, utcDay } from "../../src/limits/utc-day.ts";
import type { RequestContext, RequestOutcome, Rule } from "../../src/pipeline/types.ts";
import { makeCaller, makeClient, type ContextInit } from "../helpers/context.ts";

function memoryGuard(now?: () => number): GuardedStore {
  const memory = createMemoryStore(now === undefined ? {} : { now });
  return createGuardedStore({ shared: memory, local: memory, onStoreError: "deny" });
}

/** A store that is down: with on_store_error deny, every call answers UNAVAILABLE. */
function downGuard(): GuardedStore {
  const memory = createMemoryStore();
  const down: LimitStore = { ...memory, health: () => "down" };
  return createGuardedStore({ shared: down, local: memory, onStoreError: "deny" });
}

function end(ctx: RequestContext, outcome: RequestOutcome): void {
  for (const cleanup of ctx.cleanups) cleanup(outcome);
}

const OK: RequestOutcome = { status: 200, forwarded: true, upstreamStatus: 200 };

t.test("rate: bucket keys by client, by IP (/64 for IPv6), by hashed subject, and one shared bucket without a subject", async (t) => {
  t.equal(rateKey("web", "client", { ip: "203.0.113.7", subject: "alice" }), "rate:web");
  t.equal(rateKey("web", "ip", { ip: "203.0.113.7", subject: undefined }), "rate:web:ip:203.0.113.7");
  t.equal(rateKey("web", "ip", { ip: "2001:db8:1:2:3:4:5:6", subject: undefined }), rateKey("web", "ip", { ip: "2001:db8:1:2::9", subject: undefined }));
  const alice = rateKey("web", "subject", { ip: "1.1.1.1", subject: "alice" });
  t.match(alice, /^rate:web:sub:[0-9a-f]{32}$/);
  t.notOk(alice.includes("alice"), "the subject itself is not in the key");
  t.not(alice, rateKey("web", "subject", { ip: "1.1.1.1", subject: "bob" }));
  t.equal(rateKey("web", "subject", { ip: "1.1.1.1", subject: undefined }), "rate:web:nosub");
});

t.test("rate: burst at once, then 429 rate_limited with Retry-After = seconds to the next token, rounded up", async (t) => {
  let now = 0;
  const client = makeClient({ id: "web", rate_limit: { requests: 60, per: 60_000, burst: 2, by: "client" } });
  const rule = createRateLimitRule([client], memoryGuard(() => now))!;
  const check = () => rule.check(makeCaller({ client }));
  t.same(await check(), { ok: true });
  t.same(await check(), { ok: true });
  t.match(await check(), { ok: false, reason: "rate_limited", retryAfterSeconds: 1 });
  now += 1_000;
  t.same(await check(), { ok: true }, "60 per minute: one token a second");

  const slow = makeClient({ id: "slow", rate_limit: { requests: 2, per: 3_600_000, burst: 2, by: "client" } });
  const slowRule = createRateLimitRule([slow], memoryGuard(() => now))!;
  await slowRule.check(makeCaller({ client: slow }));
  await slowRule.check(makeCaller({ client: slow }));
  t.match(await slowRule.check(makeCaller({ client: slow })), { ok: false, reason: "rate_limited", retryAfterSeconds: 1_800 });
  now += 1_799_500;
  t.match(await slowRule.check(makeCaller({ client: slow })), { ok: false, retryAfterSeconds: 1 }, "500 ms left is 1 s, never 0");
});

t.test("rate: by ip and by subject keep callers apart; clients without rate_limit pass", async (t) => {
  const perIp = makeClient({ id: "ip", rate_limit: { requests: 1, per: 60_000, burst: 1, by: "ip" } });
  const perSub = makeClient({ id: "sub", auth: { jwt: true }, rate_limit: { requests: 1, per: 60_000, burst: 1, by: "subject" } });
  const free = makeClient({ id: "free" });
  const rule = createRateLimitRule([perIp, perSub, free], memoryGuard())!;
  t.same(await rule.check(makeCaller({ client: perIp, ip: "203.0.113.1" })), { ok: true });
  t.same(await rule.check(makeCaller({ client: perIp, ip: "203.0.113.2" })), { ok: true });
  t.match(await rule.check(makeCaller({ client: perIp, ip: "203.0.113.1" })), { ok: false, reason: "rate_limited" });
  t.same(await rule.check(makeCaller({ client: perSub, subject: "alice" })), { ok: true });
  t.same(await rule.check(makeCaller({ client: perSub, subject: "bob" })), { ok: true });
  t.match(await rule.check(makeCaller({ client: perSub, subject: "alice" })), { ok: false });
  t.same(await rule.check(makeCaller({ client: perSub })), { ok: true }, "no subject: the shared bucket");
  t.match(await rule.check(makeCaller({ client: perSub })), { ok: false, reason: "rate_limited" }, "…which is limited too (fail closed)");
  for (let i = 0; i < 5; i++) t.same(await rule.check(makeCaller({ client: free })), { ok: true });
  t.equal(createRateLimitRule([free], memoryGuard()), undefined, "no rule when no client has a rate limit");
});

t.test("concurrency: 429 concurrency_limited with Retry-After while full; the cleanup gives the slot back exactly once", async (t) => {
  const client = makeClient({ id: "web", concurrency: 2 });
  const rule = createConcurrencyRule([client], memoryGuard())!;
  const a = makeCaller({ client });
  const b = makeCaller({ client });
  t.same(await rule.check(a), { ok: true });
  t.same(await rule.check(b), { ok: true });
  t.equal(a.cleanups.length, 1, "a cleanup registered");
  t.match(await rule.check(makeCaller({ client })), { ok: false, reason: "concurrency_limited", retryAfterSeconds: CONCURRENCY_RETRY_SECONDS });
  end(a, { status: 499, forwarded: false });
  end(a, { status: 499, forwarded: false });
  const c = makeCaller({ client });
  t.same(await rule.check(c), { ok: true }, "one slot back");
  t.match(await rule.check(makeCaller({ client })), { ok: false }, "only one, although the cleanup ran twice");
  end(b, OK);
  end(c, OK);
  t.equal(createConcurrencyRule([makeClient()], memoryGuard()), undefined);
});

t.test("pricing: no body is free; pricing[model] else default; times n; micro-dollars", async (t) => {
  const pricing = Object.assign(Object.create(null) as Record<string, number>, { "stability/sdxl": 0.004, default: 0.01 });
  t.equal(estimateMicros(pricing, { model: "stability/sdxl", imageCount: 1, hasBody: false }), 0);
  t.equal(estimateMicros(pricing, { model: "stability/sdxl", imageCount: 1, hasBody: true }), 4_000);
  t.equal(estimateMicros(pricing, { model: "stability/sdxl", imageCount: 3, hasBody: true }), 12_000);
  t.equal(estimateMicros(pricing, { model: "other/model", imageCount: 2, hasBody: true }), 20_000);
  t.equal(estimateMicros(pricing, { model: undefined, imageCount: 1, hasBody: true }), 10_000, "a body the proxy did not parse costs the default");
  t.equal(estimateMicros(pricing, { model: "constructor", imageCount: 1, hasBody: true }), 10_000, "no prototype lookups");
  t.equal(estimateMicros(pricing, { model: "x", imageCount: 0, hasBody: true }), 10_000, "n below 1 counts as 1");
  t.equal(estimateMicros(Object.create(null) as Record<string, number>, { model: "x", imageCount: 1, hasBody: true }), 0);
  t.equal(toMicros(0.0000001), 1, "a price above 0 is at least one micro-dollar");
  t.equal(toMicros(0.1 + 0.2), 300_000, "no float drift");
});

t.test("spendKept: 2xx keeps; an upstream error or redirect, or never reaching MythIQ, gives back; sent but unanswered keeps", async (t) => {
  t.equal(spendKept({ status: 200, forwarded: true, upstreamStatus: 200 }), true);
  t.equal(spendKept({ status: 499, forwarded: true, upstreamStatus: 200 }), true, "client left mid-stream");
  t.equal(spendKept({ status: 400, forwarded: true, upstreamStatus: 400 }), false);
  t.equal(spendKept({ status: 500, forwarded: true, upstreamStatus: 500 }), false);
  t.equal(spendKept({ status: 502, forwarded: true, upstreamStatus: 302 }), false);
  t.equal(spendKept({ status: 502, forwarded: true, upstreamStatus: 401 }), false);
  t.equal(spendKept({ status: 502, forwarded: false }), false, "unreachable");
  t.equal(spendKept({ status: 429, forwarded: false }), false, "refused locally");
  t.equal(spendKept({ status: 504, forwarded: true }), true, "timed out after the whole request was sent");
});

function chargeSetup(options: { now?: number; daily?: number } = {}) {
  const costs: Array<[string | undefined, string | undefined, number]> = [];
  const client = makeClient({ id: "web", budget: { daily_usd: options.daily ?? 0.05 } });
  const unbudgeted = makeClient({ id: "free" });
  const pricing = Object.assign(Object.create(null) as Record<string, number>, { "stability/sdxl": 0.004, default: 0.01 });
  const at = options.now ?? Date.UTC(2025, 0, 31, 23, 59, 30);
  const rule = createChargeRule(
    { clients: [client, unbudgeted], pricing },
    { store: memoryGuard(), metrics: { cost: (c, m, usd) => costs.push([c, m, usd]) }, now: () => at },
  )!;
  const post = (init: ContextInit = {}) =>
    makeCaller({ method: "POST", path: "/v1/images/generations", client, headers: { "content-length": "40" }, ...init });
  return { rule, client, unbudgeted, costs, post };
}

t.test("budget: reserved up to daily_usd, then 429 budget_exhausted with Retry-After = seconds to 00:00 UTC", async (t) => {
  const { rule, post } = chargeSetup();
  const held: RequestContext[] = [];
  for (let i = 0; i < 5; i++) {
    const ctx = post();
    t.same(await rule.check(ctx), { ok: true }, `request ${i + 1} of 0.01 fits in 0.05`);
    t.equal(ctx.costUsd, 0.01);
    held.push(ctx);
  }
  t.match(await rule.check(post()), { ok: false, reason: "budget_exhausted", retryAfterSeconds: 30 }, "23:59:30 UTC: 30 s to midnight");
  const sdxl = post({ model: "stability/sdxl" });
  t.match(await rule.check(sdxl), { ok: false, reason: "budget_exhausted" }, "even a cheaper model passes the cap");
  end(held[0]!, { status: 500, forwarded: true, upstreamStatus: 500 });
  t.same(await rule.check(post()), { ok: true }, "a failed request gave its reservation back");
});

t.test("budget: counts only kept spend in estimated_cost_usd_total, with the model", async (t) => {
  const { rule, post, costs } = chargeSetup({ daily: 1 });
  const kept = post({ model: "stability/sdxl", imageCount: 2 });
  const failed = post();
  await rule.check(kept);
  await rule.check(failed);
  t.same(costs, [], "nothing counted before the request ends");
  end(kept, OK);
  end(failed, { status: 502, forwarded: false });
  t.same(costs, [["web", "stability/sdxl", 0.008]]);
});

t.test("budget: requests without a body cost nothing; clients without a budget are priced but never refused", async (t) => {
  const { rule, post, unbudgeted, costs } = chargeSetup({ daily: 0.01 });
  const get = makeCaller({ client: post().client, headers: {} });
  t.same(await rule.check(get), { ok: true });
  t.equal(get.cleanups.length, 0);
  t.equal(get.costUsd, 0);
  for (let i = 0; i < 3; i++) {
    const ctx = post({ client: unbudgeted, headers: { "transfer-encoding": "chunked" } });
    t.same(await rule.check(ctx), { ok: true });
    end(ctx, OK);
  }
  t.equal(costs.length, 3, "their spend is counted");
  t.same(costs[0], ["free", undefined, 0.01]);
});

t.test("budget: the day is the UTC day; a new day starts from zero", async (t) => {
  const store = memoryGuard();
  const client = makeClient({ id: "web", budget: { daily_usd: 0.01 } });
  const pricing = Object.assign(Object.create(null) as Record<string, number>, { default: 0.01 });
  let at = Date.UTC(2025, 5, 1, 23, 0, 0);
  const rule = createChargeRule({ clients: [client], pricing }, { store, metrics: { cost() {} }, now: () => at })!;
  const post = () => makeCaller({ method: "POST", client, headers: { "content-length": "2" } });
  t.same(await rule.check(post()), { ok: true });
  t.match(await rule.check(post()), { ok: false, retryAfterSeconds: 3_600 });
  at = Date.UTC(2025, 5, 2, 0, 0, 0);
  t.same(await rule.check(post()), { ok: true }, "00:00 UTC: a fresh budget");
  t.equal(budgetKey("web", utcDay(at)), "budget:web:2025-06-02");
  t.equal(msUntilUtcMidnight(at), 86_400_000);
  t.equal(msUntilUtcMidnight(at - 1), 1);
});

t.test("store down with on_store_error deny: 503 overloaded with Retry-After from every limit rule", async (t) => {
  const client = makeClient({ id: "web", concurrency: 1, budget: { daily_usd: 1 }, rate_limit: { requests: 1, per: 1_000, burst: 1, by: "client" } });
  const pricing = Object.assign(Object.create(null) as Record<string, number>, { default: 0.01 });
  const store = downGuard();
  const rules: Rule[] = [
    createRateLimitRule([client], store)!,
    createConcurrencyRule([client], store)!,
    createChargeRule({ clients: [client], pricing }, { store, metrics: { cost() {} } })!,
  ];
  for (const rule of rules) {
    const ctx = makeCaller({ client, method: "POST", headers: { "content-length": "2" } });
    t.match(await rule.check(ctx), { ok: false, reason: "overloaded", retryAfterSeconds: STORE_DOWN_RETRY_SECONDS }, rule.name);
    t.equal(ctx.cleanups.length, 0, `${rule.name}: nothing to give back`);
  }
});
