/**
 * The Lua scripts of the redis limit store. Each runs atomically inside Redis, so replicas racing
 * for the last token, slot or dollar are serialised there. Each touches exactly one key (Redis
 * Cluster could place it anywhere) and sets a TTL on it, so nothing a replica writes outlives its use.
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
 * Budget reservation. KEYS[1] an integer counter; ARGV amount, cap, ttl_ms.
 * Returns 1 and adds `amount` when the counter stays at or below `cap`, else 0.
 */
export const RESERVE = `
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if spent + amount > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', KEYS[1], amount)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
`;

/**
 * Gives a reservation back. KEYS[1] the counter; ARGV amount. A counter that expired or was lost
 * (Redis restarted empty) stays absent rather than going negative, which would grant extra budget.
 */
export const UNRESERVE = `
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = math.min(spent, tonumber(ARGV[1]))
if amount <= 0 then return 0 end
redis.call('DECRBY', KEYS[1], amount)
return 1
`;
