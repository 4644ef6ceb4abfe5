/**
 * SPEC §3 `budget`, `pricing`, §4 step 6: the daily budget, checked once the body is known (it
 * prices the model and `n`), before forwarding.
 *
 * The request's estimated cost is reserved atomically: refused with 429 `budget_exhausted` when
 * today's spend plus this cost would pass `daily_usd` (`Retry-After` = the seconds until 00:00 UTC).
 * Since a request reserves before it is forwarded, requests racing for the last dollars cannot
 * overspend: the reservation that would pass the cap is refused.
 *
 * When the request ends (a `ctx.cleanups` entry) the reservation is kept if MythIQ may have done
 * the work, else given back:
 * - kept: MythIQ answered 2xx; or the whole request reached MythIQ and no answer came back
 *   (timeout, reset, client gone): the image may have been made and billed;
 * - given back: MythIQ answered an error or a redirect, or never received the whole request.
 * `estimated_cost_usd_total` counts what is kept, for every client with a price, budget or not.
 */
import type { ProxyConfig } from "../config/types.ts";
import type { Metrics } from "../observe/metrics.ts";
import { CONTINUE, deny, type RequestOutcome, type Rule, type Verdict } from "../pipeline/types.ts";
import { retrySeconds, storeUnavailable } from "./deny.ts";
import { UNAVAILABLE, type GuardedStore } from "./fallback.ts";
import { estimateMicros, hasBody, MICROS_PER_USD, toMicros } from "./pricing.ts";
import { msUntilUtcMidnight, utcDay } from "./utc-day.ts";

/** How long a day's counter outlives the day, so late settlements still find it. */
const DAY_COUNTER_GRACE_MS = 3_600_000;

/** Whether a request's estimated cost stays spent (see the module comment). */
export function spendKept(outcome: RequestOutcome): boolean {
  if (outcome.upstreamStatus !== undefined) return outcome.upstreamStatus >= 200 && outcome.upstreamStatus < 300;
  return outcome.forwarded;
}

export function budgetKey(clientId: string, day: string): string {
  return `budget:${clientId}:${day}`;
}

/** The client of a `budgetKey` (client ids never hold a colon: formats.ts checkName). */
export function budgetClient(key: string): string | undefined {
  const [kind, client] = key.split(":");
  return kind === "budget" ? client : undefined;
}

export interface ChargeDeps {
  readonly store: GuardedStore;
  readonly metrics: Pick<Metrics, "cost">;
  /** Wall clock in epoch ms (UTC days); default `Date.now`. */
  readonly now?: () => number;
}

/** Builds the rule; undefined when `pricing` is empty (then nothing has a cost). */
export function createChargeRule(config: Pick<ProxyConfig, "clients" | "pricing">, deps: ChargeDeps): Rule | undefined {
  if (Object.keys(config.pricing).length === 0) return undefined;
  const now = deps.now ?? Date.now;
  const caps = new Map<string, number>();
  for (const client of config.clients) {
    if (client.budget !== undefined) caps.set(client.id, toMicros(client.budget.daily_usd));
  }

  return {
    name: "budget",
    async check(ctx): Promise<Verdict> {
      const client = ctx.client;
      const micros = estimateMicros(config.pricing, { model: ctx.model, imageCount: ctx.imageCount, hasBody: hasBody(ctx.headers) });
      ctx.costUsd = micros / MICROS_PER_USD;
      if (micros === 0) return CONTINUE;

      let settle: ((keep: boolean) => void) | undefined;
      const cap = caps.get(client.id);
      if (cap !== undefined) {
        const at = now();
        const untilMidnight = msUntilUtcMidnight(at);
        const reserved = await deps.store.reserve(budgetKey(client.id, utcDay(at)), micros, cap, untilMidnight + DAY_COUNTER_GRACE_MS);
        if (reserved === UNAVAILABLE) return storeUnavailable();
        if (reserved === undefined) {
          return deny("budget_exhausted", `daily budget of client ${client.id} would be passed`, retrySeconds(untilMidnight));
        }
        settle = reserved;
      }
      const model = ctx.model;
      ctx.cleanups.push((outcome) => {
        const keep = spendKept(outcome);
        settle?.(keep);
        if (keep) deps.metrics.cost(client.id, model, micros / MICROS_PER_USD);
      });
      return CONTINUE;
    },
  };
}
