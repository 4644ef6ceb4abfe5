/**
 * Ownership records in Redis (`limits.store: redis`): every replica records and checks in the same
 * place, so an id created through one replica is refused to other callers on every replica.
 *
 * They use the limits store's own connection (`LimitStore.runScript`): its timeouts, its health
 * (a failed call marks the store down, and `on_store_error` applies until it answers again) and its
 * `limits.redis.prefix`. Each owner's ids of a kind are one sorted set, id → expiry in ms of Redis
 * time (replicas' clocks may disagree), under `{own:KIND:OWNERHASH}` (records.ts): one key per
 * script, in one Cluster slot. The set expires with its newest id.
 */
import { createHash } from "node:crypto";
import type { LimitStore } from "../limits/store.ts";
import type { OwnershipRecords } from "./records.ts";

const NOW_MS = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * KEYS[1] the owner's sorted set; ARGV ttl_ms, max_items, ids... Drops expired ids, adds or
 * refreshes these, keeps the newest max_items. Returns how many ids the set holds.
 */
const RECORD = `${NOW_MS}
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1) end
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
`;

/** KEYS[1] the owner's sorted set; ARGV ids... Returns, per id, 1 when recorded and not expired, else 0. */
const OWNED = `${NOW_MS}
local out = {}
for i = 1, #ARGV do
  local expires = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if expires and tonumber(expires) > now then out[i] = 1 else out[i] = 0 end
end
return out
`;

function script(lua: string): { readonly lua: string; readonly sha: string } {
  return { lua, sha: createHash("sha1").update(lua).digest("hex") };
}

const SCRIPTS = { record: script(RECORD), owned: script(OWNED) } as const;

/** Most ids sent to one script call. */
const IDS_PER_CALL = 1000;

/** The records of a redis limit store. Throws when the store cannot run scripts (not redis). */
export function createRedisRecords(store: LimitStore): OwnershipRecords {
  const run = store.runScript?.bind(store);
  if (run === undefined) throw new Error("ownership records need a limits store that runs scripts (redis)");
  return {
    async record(key, ids, ttlMs, maxItems) {
      if (ids.length === 0) return;
      await run(SCRIPTS.record, key, [Math.max(1, Math.ceil(ttlMs)), maxItems, ...ids]);
    },
    async owned(key, ids) {
      const out: boolean[] = [];
      // A 1 MiB list can name 100 000 ids: asked in batches, so no call spreads them all as arguments.
      for (let from = 0; from < ids.length; from += IDS_PER_CALL) {
        const batch = ids.slice(from, from + IDS_PER_CALL);
        const reply = await run(SCRIPTS.owned, key, batch);
        if (!Array.isArray(reply)) throw new Error("unexpected reply from the ownership script");
        for (let i = 0; i < batch.length; i++) out.push(reply[i] === 1);
      }
      return out;
    },
  };
}
