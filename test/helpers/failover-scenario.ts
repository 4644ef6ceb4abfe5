/**
 * The failover run shared by test/e2e/limits-redis-sentinel.test.ts and
 * test/e2e/limits-redis-cluster.test.ts (issue 16): two proxy replicas (real child processes) serve
 * steady traffic of two clients against highly available Redis, the primary that holds the
 * clients' counters is killed mid-run, and the run goes on until both replicas are back on the
 * shared store and have drained what is left of the shared limits.
 *
 * - `rated`: a rate limit of 100 per day (nothing refills during the run).
 * - `spender`: a daily budget of 0.50 USD at 0.01 per request (50 requests).
 *
 * Every request's status and time to its answer (MythIQ, a fake, answers at once, so that is the
 * time to the decision) is recorded, and so is when each replica's `limits_store_up` went to 0
 * and back to 1. `checkFailover` asserts the issue's bounds on a run's report.
 */
import type { Test } from "tap";
import { hashToken } from "../../src/cli/hash-token.ts";
import type { FakeUpstream } from "./fake-upstream.ts";
import { send } from "./forward-harness.ts";
import { find, valueOf } from "./prom-text.ts";
import { TEST_KEY } from "./proxy-harness.ts";
import { until, type Replica } from "./proxy-replica.ts";

export const TOKENS = {
  rated: "tok-rated-ha-0123456789abcdef",
  spender: "tok-spender-ha-0123456789abcdef",
  warm: "tok-warm-ha-0123456789abcdef",
} as const;
export const RATE_LIMIT = 100;
export const DAILY_USD = 0.5;
export const PRICE_USD = 0.01;
/** `limits.redis.timeout` of the replicas. */
export const STORE_TIMEOUT_MS = 250;

/** The replicas' config; `redis` is the body of `limits.redis` (a flow map's inside). */
export function replicaYaml(upstreamUrl: string, ports: { listen: number; admin: number }, redis: string): string {
  return `
listen: { host: 127.0.0.1, port: ${ports.listen} }
admin: { host: 127.0.0.1, port: ${ports.admin} }
upstream: { url: ${upstreamUrl}, allow_insecure_upstream: true, connect_timeout: 2s, response_timeout: 10s, idle_timeout: 10s }
keys:
  default: { source: env, env: MYTHIQ_API_KEY }
clients:
  - id: rated
    auth: { tokens: ["${hashToken(TOKENS.rated)}"] }
    routes: [GET /v1/models]
    rate_limit: { requests: ${RATE_LIMIT}, per: 24h }
  - id: spender
    auth: { tokens: ["${hashToken(TOKENS.spender)}"] }
    routes: [POST /v1/images/generations]
    budget: { daily_usd: ${DAILY_USD} }
  - id: warm
    auth: { tokens: ["${hashToken(TOKENS.warm)}"] }
    routes: [GET /v1/models, POST /v1/images/generations]
    rate_limit: { requests: 1000000, per: 1h }
    budget: { daily_usd: 1000 }
pricing: { default: ${PRICE_USD} }
limits:
  store: redis
  redis: { ${redis}, timeout: ${STORE_TIMEOUT_MS}ms }
  on_store_error: local
`;
}

interface Sent {
  readonly kind: "rated" | "spender";
  readonly replica: number;
  /** Date.now() when sent, and ms to the complete answer. */
  readonly at: number;
  readonly ms: number;
  readonly status: number;
  readonly reason: string | undefined;
  readonly leaked: boolean;
}

export interface FailoverReport {
  readonly sent: readonly Sent[];
  /** Date.now() of the kill, of the new primary serving the keys, of each replica back up (its log line). */
  readonly killedAt: number;
  readonly promotedAt: number;
  readonly backAt: readonly number[];
  /** When each replica logged the store unavailable after the kill; undefined when it did not. */
  readonly downAt: ReadonlyArray<number | undefined>;
  /** Summed over both replicas. */
  readonly localRateAllowed: number;
  readonly localBudgetAllowed: number;
  readonly writtenBackUsd: number;
  readonly failovers: readonly number[];
  readonly upstreamRequests: number;
  /**
   * Each request's time to its decision as its replica measured it (audit `duration_ms` minus
   * `upstream_ms`), by replica: free of the delays of this test process, which runs the load and
   * the scrapes.
   */
  readonly decisionMs: ReadonlyArray<readonly number[]>;
  /** The longest event-loop stall of each replica during the run, ms (prom-client's monitor, 10 ms resolution). */
  readonly maxLoopLagMs: readonly number[];
  /** The day's budget counter in Redis after the run, USD. */
  readonly budgetInRedisUsd: number;
}

export interface FailoverOptions {
  readonly replicas: readonly Replica[];
  readonly upstream: FakeUpstream;
  /** Kills the primary that holds the counters. */
  kill(): Promise<void>;
  /** Resolves once a new primary serves the counters (as Sentinel or the cluster says). */
  promoted(): Promise<void>;
  /** The `total` of the day's budget counter of `spender`, micro-dollars, read from the primary now. */
  budgetTotal(): Promise<number>;
  /** Between two requests of each client, ms; default 40 (25 per second each). */
  readonly intervalMs?: number;
  /** Traffic before the kill, ms; default 1500. */
  readonly beforeKillMs?: number;
  /** Traffic after both replicas are back, ms, at least; default 2000 (then until both limits refuse). */
  readonly afterBackMs?: number;
}

const generate = (port: number, token: string = TOKENS.spender) => {
  const body = JSON.stringify({ model: "stability/sdxl", prompt: "a lighthouse" });
  return send(port, {
    method: "POST",
    path: "/v1/images/generations",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    body,
  });
};

const list = (port: number, token: string = TOKENS.rated) => send(port, { path: "/v1/models", headers: { authorization: `Bearer ${token}` } });

async function sum(replicas: readonly Replica[], name: string, labels: Record<string, string>): Promise<number> {
  let total = 0;
  for (const r of replicas) total += (await r.metric(name, labels)) ?? 0;
  return total;
}

/** Runs the scenario; throws only when the setup itself fails (a replica never comes back: timeout). */
export async function failoverUnderLoad(options: FailoverOptions): Promise<FailoverReport> {
  const { replicas, upstream } = options;
  const intervalMs = options.intervalMs ?? 40;
  for (const r of replicas) await until(`${r.name} on the shared store`, async () => (await r.metric("mythiq_proxy_limits_store_up")) === 1);
  // Fresh processes compile their hot paths on the first requests: warm both up on a client of
  // its own (the same rate limit and budget code, against the same store) before measuring.
  for (const r of replicas) {
    for (let i = 0; i < 30; i++) await Promise.all([list(r.port, TOKENS.warm), generate(r.port, TOKENS.warm)]);
  }
  const upstreamBefore = upstream.requests.length;
  const logsBefore = replicas.map((r) => r.logs.length);

  const sent: Sent[] = [];
  const inFlight = new Set<Promise<void>>();
  let tick = 0;
  const fire = (kind: Sent["kind"], replica: number): void => {
    const at = Date.now();
    const begun = performance.now();
    const port = replicas[replica]!.port;
    const done = (kind === "rated" ? list(port) : generate(port)).then((res) => {
      let reason: string | undefined;
      if (res.status !== 200) {
        try {
          reason = (JSON.parse(res.body.toString()) as { reason?: string }).reason;
        } catch {
          reason = `not JSON: ${res.body.toString().slice(0, 80)}`;
        }
      }
      sent.push({ kind, replica, at, ms: performance.now() - begun, status: res.status, reason, leaked: res.raw.includes(TEST_KEY) });
    });
    inFlight.add(done);
    void done.finally(() => inFlight.delete(done));
  };
  const load = setInterval(() => {
    tick += 1;
    fire("rated", tick % 2);
    fire("spender", (tick + 1) % 2);
  }, intervalMs);

  // Each replica's event-loop stalls, from its own metrics every 100 ms.
  const maxLoopLagMs: number[] = replicas.map(() => 0);
  const watch = setInterval(() => {
    replicas.forEach((r, i) => {
      void r.scrape().then((scrape) => {
        // prom-client's event-loop delay since the previous scrape: how long the replica itself stalled.
        const lag = valueOf(scrape, "nodejs_eventloop_lag_max_seconds") ?? 0;
        maxLoopLagMs[i] = Math.max(maxLoopLagMs[i] ?? 0, lag * 1000);
      });
    });
  }, 100);

  try {
    await new Promise((r) => setTimeout(r, options.beforeKillMs ?? 1500));
    const killedAt = Date.now();
    await options.kill();
    await options.promoted();
    const promotedAt = Date.now();
    // The store's state changes as each replica logged them (exact times, no sampling).
    const downAt = (): (number | undefined)[] => replicas.map((r) => logTime(r, "limits store unavailable", killedAt));
    const backAt = (): (number | undefined)[] =>
      replicas.map((r, i) => logTime(r, "limits store answers again", downAt()[i] ?? Number.POSITIVE_INFINITY));
    await until("both replicas back on the shared store", () => backAt().every((t) => t !== undefined), 20_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${storeLog(replicas)}`, { cause: err });
    });
    // Then on until both limits are used up again on the shared store (a refusal of each after
    // both replicas were back), so that "100 ± the local decisions" is measured on a drained bucket.
    const back = Math.max(...backAt().map((t) => t ?? Number.POSITIVE_INFINITY));
    const drained = (kind: Sent["kind"]): boolean => sent.some((x) => x.kind === kind && x.at > back && x.status === 429);
    await new Promise((r) => setTimeout(r, options.afterBackMs ?? 2000));
    await until("the shared limits to be used up after the failover", () => drained("rated") && drained("spender"), 20_000);
    clearInterval(load);
    while (inFlight.size > 0) await Promise.all([...inFlight]);
    clearInterval(watch);

    const failovers: number[] = [];
    for (const r of replicas) failovers.push((await r.metric("mythiq_proxy_limits_store_failovers_total")) ?? 0);
    return {
      sent,
      killedAt,
      promotedAt,
      backAt: backAt().map((t) => t ?? Number.NaN),
      downAt: downAt(),
      localRateAllowed: await sum(replicas, "mythiq_proxy_limits_local_decisions_total", { limit: "rate_limit", result: "allowed" }),
      localBudgetAllowed: await sum(replicas, "mythiq_proxy_limits_local_decisions_total", { limit: "budget", result: "allowed" }),
      writtenBackUsd: await sum(replicas, "mythiq_proxy_limits_written_back_usd_total", { client: "spender" }),
      failovers,
      maxLoopLagMs,
      upstreamRequests: upstream.requests.length - upstreamBefore,
      decisionMs: replicas.map((r, i) =>
        r.logs
          .slice(logsBefore[i])
          .filter((l) => typeof l["request_id"] === "string" && typeof l["duration_ms"] === "number" && l["client"] !== "warm")
          .map((l) => (l["duration_ms"] as number) - (typeof l["upstream_ms"] === "number" ? l["upstream_ms"] : 0)),
      ),
      budgetInRedisUsd: (await options.budgetTotal()) / 1e6,
    };
  } finally {
    clearInterval(load);
    clearInterval(watch);
  }
}

/** When `replica` first logged a line starting with `msg` at or after `since` (epoch ms). */
function logTime(replica: Replica, msg: string, since: number): number | undefined {
  for (const l of replica.logs) {
    const at = Date.parse(String(l["time"]));
    if (at >= since && String(l["msg"]).startsWith(msg)) return at;
  }
  return undefined;
}

/** The replicas' log lines about the limits store, for a failure message. */
function storeLog(replicas: readonly Replica[]): string {
  return replicas
    .map((r) => {
      const lines = r.logs.filter((l) => String(l["msg"]).startsWith("limits store"));
      return `${r.name}:\n${lines.map((l) => `  ${String(l["time"])} ${String(l["msg"])} ${JSON.stringify(l["error"] ?? l["usd"] ?? "")}`).join("\n")}`;
    })
    .join("\n");
}

/** The issue's assertions on a run, with its numbers as comments (for the report). */
export async function checkFailover(t: Test, report: FailoverReport, replicas: readonly Replica[]): Promise<void> {
  const rated = report.sent.filter((s) => s.kind === "rated");
  const spent = report.sent.filter((s) => s.kind === "spender");
  const acceptedRated = rated.filter((s) => s.status === 200).length;
  const acceptedSpend = spent.filter((s) => s.status === 200).length;
  const spentUsd = Math.round(acceptedSpend * PRICE_USD * 1e6) / 1e6;
  const slowestBy = report.decisionMs.map((d) => Math.max(0, ...d));
  const slowestSeen = Math.max(...report.sent.map((s) => s.ms));
  const inFailover = report.sent.filter((s) => s.at >= report.killedAt && s.at <= Math.max(...report.backAt));
  const slowestSeenInFailover = Math.max(0, ...inFailover.map((s) => s.ms));
  const recovery = report.backAt.map((t) => Math.round(t - report.promotedAt));

  t.comment(
    `${report.sent.length} requests; primary killed at +${Math.round(report.killedAt - (report.sent[0]?.at ?? report.killedAt))} ms, ` +
      `new primary after ${Math.round(report.promotedAt - report.killedAt)} ms; ` +
      `replicas down after ${report.downAt.map((d) => (d === undefined ? "never" : `${Math.round(d - report.killedAt)} ms`)).join(", ")}, ` +
      `back ${recovery.map((r) => `${r} ms`).join(", ")} after the new primary`,
  );
  t.comment(`rate limit ${RATE_LIMIT}: ${acceptedRated} of ${rated.length} accepted, ${report.localRateAllowed} of them decided locally during the failover`);
  t.comment(
    `budget ${DAILY_USD} USD: ${spentUsd} USD spent (${acceptedSpend} requests, ${report.localBudgetAllowed} reserved locally), ` +
      `${report.writtenBackUsd.toFixed(2)} USD written back, ${report.budgetInRedisUsd} USD in Redis after the run`,
  );
  t.comment(
    `slowest decision as the proxies measured it: ${slowestBy.map((d) => `${d.toFixed(1)} ms`).join(", ")} over ${report.decisionMs.flat().length} requests; ` +
      `slowest answer as this test saw it: ${slowestSeen.toFixed(1)} ms (during the failover ${slowestSeenInFailover.toFixed(1)} ms); store timeout ${STORE_TIMEOUT_MS} ms; ` +
      `longest event-loop stall of the replicas: ${report.maxLoopLagMs.map((l) => `${l.toFixed(0)} ms`).join(", ")}`,
  );
  t.comment(`failovers counted: ${report.failovers.join(", ")}`);
  for (const s of [...report.sent].sort((a, b) => b.ms - a.ms).slice(0, 3)) {
    t.comment(`slowest answers: ${s.kind} on ${replicas[s.replica]?.name ?? s.replica}, sent at kill ${s.at >= report.killedAt ? "+" : ""}${Math.round(s.at - report.killedAt)} ms, ${s.ms.toFixed(1)} ms → ${s.status}`);
  }
  if (process.env["FAILOVER_DEBUG"] === "1") t.comment(storeLog(replicas));

  t.ok(report.localRateAllowed > 0, "requests were served in local mode during the failover (reported by the proxies)");
  // Redis replicates asynchronously: tokens the old primary granted just before it was killed may
  // never reach the new one, which then grants them again (docs/limits.md, "forgiven too"). Those
  // can only be among the requests accepted in the last 100 ms before the kill.
  const maybeUnreplicated = rated.filter((s) => s.status === 200 && s.at >= report.killedAt - 100 && s.at < report.killedAt).length;
  t.ok(
    acceptedRated >= RATE_LIMIT - report.localRateAllowed && acceptedRated <= RATE_LIMIT + report.localRateAllowed + maybeUnreplicated,
    `rate limit: ${acceptedRated} accepted = ${RATE_LIMIT} + ${report.localRateAllowed} (requests served locally)` +
      ` + at most ${maybeUnreplicated} (accepted in the 100 ms before the kill)`,
  );
  t.ok(
    spentUsd <= DAILY_USD + report.writtenBackUsd + 1e-9,
    `budget: ${spentUsd} USD spent ≤ daily_usd ${DAILY_USD} + ${report.writtenBackUsd.toFixed(2)} USD written back (docs/limits.md)`,
  );
  t.ok(spentUsd <= replicas.length * DAILY_USD + 1e-9, `budget: ${spentUsd} USD ≤ N × daily_usd (the bound for ${replicas.length} replicas)`);
  t.ok(report.budgetInRedisUsd + 1e-9 >= spentUsd, `every dollar spent is in Redis after the write-back (${report.budgetInRedisUsd} ≥ ${spentUsd})`);
  const afterBack = spent.filter((s) => s.at > Math.max(...report.backAt) + 500 && s.status === 200).length;
  if (report.budgetInRedisUsd >= DAILY_USD) t.equal(afterBack, 0, "the day's budget is not handed out again once Redis holds the local spend");
  t.equal(report.decisionMs.flat().length, report.sent.length, "every request has its audit line");
  // The issue's bound is on waiting for the store. A replica whose whole event loop stalled (a busy
  // machine: this suite runs test files in parallel on two cores) is slow for every request alike,
  // store or not; such a stall, as the replica itself measured it, is reported and not counted.
  for (const [i, d] of slowestBy.entries()) {
    const stall = report.maxLoopLagMs[i] ?? 0;
    t.ok(
      d <= STORE_TIMEOUT_MS + 100 + stall,
      `replica ${replicas[i]?.name ?? i}: every request decided within the store timeout + 100 ms (slowest ${d.toFixed(1)} ms; longest stall of its event loop ${stall.toFixed(0)} ms)`,
    );
  }
  for (const [i, r] of recovery.entries()) t.ok(r <= 10_000, `replica ${replicas[i]?.name ?? i} back on the shared store ${r} ms after the new primary`);
  for (const [i, n] of report.failovers.entries()) t.ok(n >= 1, `replica ${replicas[i]?.name ?? i} counted the failover (${n})`);

  t.same([...new Set(report.sent.map((s) => s.status))].filter((s) => s !== 200 && s !== 429), [], "no error other than 429 (on_store_error: local)");
  t.same([...new Set(rated.filter((s) => s.status === 429).map((s) => s.reason))].filter((r) => r !== "rate_limited"), [], "rated: refused only as rate_limited");
  t.same([...new Set(spent.filter((s) => s.status === 429).map((s) => s.reason))].filter((r) => r !== "budget_exhausted"), [], "spender: refused only as budget_exhausted");
  t.equal(report.upstreamRequests, acceptedRated + acceptedSpend, "MythIQ received exactly the accepted requests");
  t.notOk(report.sent.some((s) => s.leaked), "no key byte came back");
  for (const r of replicas) {
    t.ok(r.logs.some((l) => l["msg"] === "limits store failed over: another primary answers now"), `${r.name} logged the failover`);
    const scrape = await r.scrape();
    t.ok(find(scrape, "mythiq_proxy_limits_local_decisions_total").length === 6, `${r.name}: local decisions by limit and result`);
    t.equal(valueOf(scrape, "mythiq_proxy_limits_store_up"), 1, `${r.name} is on the shared store at the end`);
  }
}
