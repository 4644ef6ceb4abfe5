/**
 * SPEC §3 `concurrency`, §4 step 6: at most `concurrency` requests of a client in flight at once.
 * A request holds its slot from this check until it ends (a stream until its last byte, an aborted
 * request when it is torn down): the slot is given back by a `ctx.cleanups` entry, which the
 * pipeline runs exactly once whatever the outcome.
 */
import type { ClientConfig } from "../config/types.ts";
import { CONTINUE, deny, type Rule, type Verdict } from "../pipeline/types.ts";
import { storeUnavailable } from "./deny.ts";
import { UNAVAILABLE, type GuardedStore } from "./fallback.ts";

/**
 * `Retry-After` for `concurrency_limited`. A slot frees when some request ends, which the proxy
 * cannot predict; one second is the smallest honest value.
 */
export const CONCURRENCY_RETRY_SECONDS = 1;

export function concurrencyKey(clientId: string): string {
  return `conc:${clientId}`;
}

/** Builds the rule for the clients that set `concurrency`; undefined when none does. */
export function createConcurrencyRule(clients: readonly ClientConfig[], store: GuardedStore): Rule | undefined {
  const limits = new Map<string, number>();
  for (const client of clients) if (client.concurrency !== undefined) limits.set(client.id, client.concurrency);
  if (limits.size === 0) return undefined;

  return {
    name: "concurrency",
    async check(ctx): Promise<Verdict> {
      const client = ctx.client;
      const limit = limits.get(client.id);
      if (limit === undefined) return CONTINUE;
      const release = await store.acquire(concurrencyKey(client.id), limit);
      if (release === UNAVAILABLE) return storeUnavailable();
      if (release === undefined) {
        return deny("concurrency_limited", `${limit} requests of client ${client.id} in flight`, CONCURRENCY_RETRY_SECONDS);
      }
      ctx.cleanups.push(() => release());
      return CONTINUE;
    },
  };
}
