/**
 * The Lua scripts of the redis limit store. Each runs atomically inside Redis, so replicas racing
 * for the last token, slot or dollar are serialised there. Each touches exactly one key, passed as
 * KEYS[1], and sets a TTL on it, so nothing a replica writes outlives its use.
 *
 * One key per script is also what makes them run unchanged on a Redis Cluster: a script may only
 * touch keys of one hash slot, and one key is always in one slot, so no hash tag (`{…}`) is needed
 * and the keys keep the names they had before Cluster support (an upgrade keeps the day's counts).
 * test/limits/redis-scripts.test.ts fails if a script ever reaches for a second key.
 *
 * Time comes from Redis (`TIME`), not from the replicas, so replicas whose clocks disagree still
 * refill one bucket at one rate. `redis.replicate_commands()` lets Redis 5 and 6 replicate the
 * writes that follow a non-deterministic `TIME` (Redis 7 always does; the call is then a no-op).
 */

const NOW_MS = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * Token bucket. KEYS[1] a hash {tokens, ts}; ARGV capacity, refill, period_ms.
 * Returns {1, 0} when a token was taken, else {0, ms until one token is there}.
 * The key expires once the bucket would be full again: an absent key is a full bucket.
 */
export const TAKE_TOKEN = `${NOW_MS}
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2]) / tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(capacity, tokens + elapsed * rate)
local taken = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = math.max(1, math.ceil((1 - tokens) * tonumber(ARGV[3]) / tonumber(ARGV[2]) - 0.000001))
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate) + 1000)
return {taken, wait}
`;

/**
 * Concurrency slot with a lease. KEYS[1] a sorted set of slot id → lease end (ms);
 * ARGV limit, slot id, lease_ms. Expired leases (a replica that died holding them) are dropped
 * first. Returns 1 when the slot was taken, 0 when all `limit` are in use.
 */
export const ACQUIRE_SLOT = `${NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local lease = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
`;

/**
 * Extends the leases of slots still held by requests in flight. KEYS[1] the sorted set;
 * ARGV lease_ms, slot ids... A slot that had expired (Redis was away, or restarted empty) is put
 * back: the request is still in flight, so it still counts.
 */
export const RENEW_SLOTS = `${NOW_MS}
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return #ARGV - 1
`;

/** KEYS[1] the sorted set; ARGV slot id. */
export const RELEASE_SLOT = `
return redis.call('ZREM', KEYS[1], ARGV[1])
`;

/**
 * A day's budget counter (KEYS[1]) is a hash: `total`, and `r:<replica>` = that replica's share of
 * it (budget-ledger.ts). Counters written by versions before the shares were plain integers: they
 * are turned into the hash on first touch, their value kept as `total` (and as `legacy`, the share
 * of no replica). Returns the total.
 */
const OPEN_COUNTER = `
local function open_counter(key)
  if redis.call('TYPE', key).ok == 'string' then
    local value = redis.call('GET', key)
    local ttl = redis.call('PTTL', key)
    redis.call('DEL', key)
    redis.call('HSET', key, 'total', value, 'legacy', value)
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  end
  return tonumber(redis.call('HGET', key, 'total') or '0')
end
`;

/**
 * Budget reservation. KEYS[1] the counter; ARGV amount, cap, ttl_ms, replica.
 * Adds `amount` to the total and to the replica's share when the total stays at or below `cap`.
 * Returns {1, new total} when reserved, else {0, total}.
 */
export const RESERVE = `${OPEN_COUNTER}
local total = open_counter(KEYS[1])
local amount = tonumber(ARGV[1])
if total + amount > tonumber(ARGV[2]) then return {0, total} end
redis.call('HINCRBY', KEYS[1], 'total', amount)
redis.call('HINCRBY', KEYS[1], 'r:' .. ARGV[4], amount)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, total + amount}
`;

/**
 * Gives a reservation back. KEYS[1] the counter; ARGV amount, replica. Never takes more than the
 * replica's share or the total hold: a counter that expired or was lost (Redis restarted empty, a
 * failover) stays absent rather than going negative, which would grant extra budget.
 */
export const UNRESERVE = `${OPEN_COUNTER}
local total = open_counter(KEYS[1])
local field = 'r:' .. ARGV[2]
local share = tonumber(redis.call('HGET', KEYS[1], field) or '0')
local amount = math.min(tonumber(ARGV[1]), share, total)
if amount <= 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'total', -amount)
redis.call('HINCRBY', KEYS[1], field, -amount)
return 1
`;

/**
 * Writes a replica's share back (budget-ledger.ts). KEYS[1] the counter; ARGV share, ttl_ms,
 * replica. The replica's field becomes the larger of what Redis holds and `share`, and the total
 * grows by the difference: spend reserved while Redis was away, or lost by a failover, is counted
 * again, and sending the same share twice adds nothing. Returns {added, total}.
 */
export const RESTORE = `${OPEN_COUNTER}
local total = open_counter(KEYS[1])
local field = 'r:' .. ARGV[3]
local held = tonumber(redis.call('HGET', KEYS[1], field) or '0')
local share = tonumber(ARGV[1])
local added = 0
if share > held then
  added = share - held
  total = total + added
  redis.call('HINCRBY', KEYS[1], 'total', added)
  redis.call('HSET', KEYS[1], field, share)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return {added, total}
`;

/**
 * Whether the node that owns KEYS[1] answers (reads nothing, writes nothing). On a cluster the key
 * routes it to the slot's primary, so a probe after a failure asks the server that failed.
 */
export const PROBE = `
return 1
`;
