/**
 * Ownership records as the checks see them: in the shared store, or — while it cannot be reached —
 * as `limits.on_store_error` says (README "Ownership"):
 *
 * - `local`: this replica's memory records. Ids recorded meanwhile are known here only (also once
 *   Redis is back: this replica keeps honouring them until their ttl; other replicas never learn
 *   them), and ids recorded in Redis before are unknown here: their owners get 404 until Redis
 *   answers again. Nobody ever gets an id that is not theirs.
 * - `deny`: `UNAVAILABLE`, which the checks turn into 503 `overloaded` (a use or list request) or
 *   an unrecorded create response. No foreign id is ever served.
 *
 * The same policy as the limits (src/limits/fallback.ts), for operations the limit store interface
 * does not have: a store that is down is not called at all, and one still making its first
 * connection is waited for briefly.
 */
import type { LimitStores } from "../limits/limits.ts";
import { UNAVAILABLE, type OnStoreError, type Unavailable } from "../limits/fallback.ts";
import { memoryRecordsOf } from "./memory-records.ts";
import type { OwnershipRecords } from "./records.ts";
import { createRedisRecords } from "./redis-records.ts";

export interface GuardedRecords {
  record(key: string, ids: readonly string[], ttlMs: number, maxItems: number): Promise<void | Unavailable>;
  owned(key: string, ids: readonly string[]): Promise<boolean[] | Unavailable>;
}

/** How long a request waits for a store still making its first connection, ms (as for the limits). */
const START_WAIT_MS = 250;

export function createGuardedRecords(stores: LimitStores, onStoreError: OnStoreError): GuardedRecords {
  const local = memoryRecordsOf(stores.local);
  if (stores.shared === stores.local) return local;
  const shared = stores.shared;
  const remote = createRedisRecords(shared);

  async function attempt<T>(op: (records: OwnershipRecords) => Promise<T>): Promise<T | Unavailable> {
    if (shared.health() === "starting") await waitFor(shared.started, START_WAIT_MS);
    if (shared.health() === "up") {
      try {
        return await op(remote);
      } catch {
        // The store has marked itself down and counted the error; the policy decides below.
      }
    }
    return onStoreError === "local" ? op(local) : UNAVAILABLE;
  }

  return {
    record: (key, ids, ttlMs, maxItems) => attempt((r) => r.record(key, ids, ttlMs, maxItems)),
    owned: async (key, ids) => {
      const answer = await attempt((r) => r.owned(key, ids));
      if (answer === UNAVAILABLE) return answer;
      // Ids this replica recorded locally during an outage stay its creators' here once Redis is
      // back (Redis never learnt them). Local records only ever hold the caller's own creations.
      const here = await local.owned(key, ids);
      return answer.map((owned, i) => owned || here[i] === true);
    },
  };
}

function waitFor(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
