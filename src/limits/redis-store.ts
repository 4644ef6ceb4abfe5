/**
 * The `redis` limit store: every replica runs the same atomic Lua scripts against one Redis (one
 * server, a primary behind Sentinel, or a Redis Cluster: redis-link.ts), so they enforce one shared
 * limit (SPEC §3 `limits.store: redis`, §11).
 *
 * On the hot path a Redis call never waits long: each call is cut off after `timeoutMs` whatever
 * the client library does, calls are never queued while disconnected (they fail at once), and after
 * a failure the store reports itself `down` and is skipped by the caller (see fallback.ts) until it
 * has shown that Redis answers again. Recovery needs no operator:
 *
 * - a closed connection is reconnected by ioredis (to the new primary after a failover);
 * - after a failed call, a probe every `probeMs` asks the server that failed (the failed keys' own
 *   slots on a cluster); two failed probes on a live-looking connection force a reconnection, since
 *   a primary that vanished without closing its connections would otherwise be asked for ever;
 * - before the store reports `up` again it writes back this replica's budget shares
 *   (budget-ledger.ts): spend reserved while Redis was away, and spend a failover lost, is in Redis
 *   before this replica takes another dollar from it.
 *
 * Concurrency slots are leases (`leaseMs`, renewed every third of it while the request runs), so the
 * slots of a replica that dies free themselves instead of blocking the client for ever.
 */
import { createHash, randomBytes } from "node:crypto";
import { errorFields } from "../observe/log.ts";
import { createBudgetLedger, type PendingShare } from "./budget-ledger.ts";
import { deadline } from "./deadline.ts";
import { loadIoredis } from "./ioredis.ts";
import { openRedisLink, type RedisLink } from "./redis-link.ts";
import { ACQUIRE_SLOT, PROBE, RELEASE_SLOT, RENEW_SLOTS, RESERVE, RESTORE, TAKE_TOKEN, UNRESERVE } from "./redis-scripts.ts";
import { secretsOf, type RedisTarget } from "./redis-target.ts";
import type { LimitStore, Release, Settle, StoreHealth } from "./store.ts";

/** What the store tells its owner; for the log and metrics. Never carries a URL or a password. */
export interface RedisStoreEvents {
  /** Redis answers (first connection, or back after being down). */
  up?(): void;
  /** Redis stopped answering; `why` is safe to log (no URL, no password). */
  down?(why: string): void;
  /** A call failed or timed out. */
  error?(): void;
  /** The store answers from other primary server(s) than before: a failover, or a restarted Redis. */
  failover?(): void;
  /**
   * Budget spend this replica had reserved and Redis did not hold was added to Redis: `amount` in
   * the counter's unit (micro-dollars) to the counter of logical `key` (`budget:<client>:<day>`).
   */
  wroteBack?(key: string, amount: number): void;
}

export interface RedisStoreOptions {
  /** Resolves where Redis is, with its secrets (never logged). */
  readonly target: () => Promise<RedisTarget>;
  /** Put in front of every key (SPEC `limits.redis.prefix`). */
  readonly prefix: string;
  readonly events?: RedisStoreEvents;
  /** Longest wait for one Redis call on the hot path, ms; default 250 (`limits.redis.timeout`). */
  readonly timeoutMs?: number;
  /** Concurrency slot lease, ms; default 30 000 (renewed every third while held). */
  readonly leaseMs?: number;
  /** While down after a failed call, how often Redis is probed, ms; default 1000. Also how often a cluster's slot map is read. */
  readonly probeMs?: number;
  /** The store is `down` (not `starting`) if the first connection is not ready within this, ms; default 2000. */
  readonly connectTimeoutMs?: number;
  /** Longest pause between reconnection attempts, ms; default 2000. */
  readonly maxReconnectDelayMs?: number;
  /** Wall clock in epoch ms, for when budget counters end; default `Date.now`. */
  readonly now?: () => number;
  /** Makes the client (tests drive faults through it); default `openRedisLink`. */
  readonly openLink?: typeof openRedisLink;
}

/** The redis store's own operations beyond `LimitStore`. */
export interface RedisLimitStore extends LimitStore {
  readonly kind: "redis";
  /**
   * Reserves budget without Redis, for `on_store_error: local` while it is down: against the total
   * Redis last reported, and written back to Redis when it answers again (see budget-ledger.ts).
   */
  reserveOffline(key: string, amount: number, cap: number, ttlMs: number): Settle | undefined;
}

interface Script {
  readonly lua: string;
  readonly sha: string;
}

function script(lua: string): Script {
  return { lua, sha: createHash("sha1").update(lua).digest("hex") };
}

const SCRIPTS = {
  take: script(TAKE_TOKEN),
  acquire: script(ACQUIRE_SLOT),
  renew: script(RENEW_SLOTS),
  release: script(RELEASE_SLOT),
  reserve: script(RESERVE),
  unreserve: script(UNRESERVE),
  restore: script(RESTORE),
  probe: script(PROBE),
} as const;

type Arg = string | number;

/** Failed keys remembered for the probe: enough for every limit of a few clients. */
const MAX_FAILED_KEYS = 32;

/** Creates the store and starts connecting in the background. Call `close()` to stop it. */
export function createRedisStore(options: RedisStoreOptions): RedisLimitStore {
  const events = options.events ?? {};
  const timeoutMs = options.timeoutMs ?? 250;
  const leaseMs = options.leaseMs ?? 30_000;
  const probeMs = options.probeMs ?? 1_000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 2_000;
  const maxReconnectDelayMs = options.maxReconnectDelayMs ?? 2_000;
  const instance = randomBytes(6).toString("hex");
  const ledger = createBudgetLedger(options.now ?? Date.now);
  let seq = 0;

  let link: RedisLink | undefined;
  let closed = false;
  let tripped = false;
  let recovering = false;
  let failedProbes = 0;
  let state: StoreHealth = "starting";
  let outstanding = 0;
  let secrets: string[] = [];
  let probe: NodeJS.Timeout | undefined;
  let primaries: string | undefined;
  /** Full keys whose calls failed since the store was last up: the probe asks their servers. */
  const failedKeys = new Set<string>();
  /** Slots held by requests in flight, by full key: renewed until released. */
  const held = new Map<string, Set<string>>();

  let markStarted: () => void = () => {};
  const started = new Promise<void>((resolve) => (markStarted = resolve));

  /** Error text with every secret removed (ioredis does not put them there; this makes sure). */
  function describe(err: unknown): string {
    const fields = errorFields(err);
    let text = fields.code !== undefined && !fields.error.includes(fields.code) ? `${fields.code}: ${fields.error}` : fields.error;
    for (const secret of secrets) text = text.split(secret).join("[redacted]");
    return text;
  }

  function setState(next: StoreHealth, why = ""): void {
    if (closed || state === next) return;
    const was = state;
    state = next;
    if (was === "starting") markStarted();
    if (next === "up") events.up?.();
    else if (next === "down") events.down?.(why);
  }

  function stopProbe(): void {
    if (probe !== undefined) clearInterval(probe);
    probe = undefined;
    failedProbes = 0;
  }

  /** Rejects after `ms` unless `promise` settled first; leaves no timer behind. */
  function within<T>(promise: Promise<T>, ms: number): Promise<T> {
    let cancel: () => void = () => {};
    const late = new Promise<never>((_, reject) => {
      cancel = deadline(ms, () => reject(new Error(`redis call timed out after ${ms} ms`)));
    });
    return Promise.race([promise, late]).finally(() => cancel());
  }

  /** One script on one key, up or not (the caller decides), cut off at `timeoutMs`. */
  async function exec(s: Script, key: string, args: readonly Arg[]): Promise<unknown> {
    const l = link;
    if (l === undefined || !l.ready()) throw new Error("limits store is not connected");
    const call = async (): Promise<unknown> => {
      try {
        return await l.evalsha(s.sha, key, args);
      } catch (err) {
        // Redis restarted, failed over or flushed its scripts: send the body once, which caches it again.
        if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
        return await l.eval(s.lua, key, args);
      }
    };
    return within(call(), timeoutMs);
  }

  function trip(err: unknown, key?: string): void {
    events.error?.();
    tripped = true;
    if (key !== undefined && failedKeys.size < MAX_FAILED_KEYS) failedKeys.add(key);
    setState("down", describe(err));
    if (probe !== undefined || closed) return;
    probe = setInterval(() => void probeOnce(), probeMs);
    probe.unref();
  }

  async function probeOnce(): Promise<void> {
    const l = link;
    if (l === undefined || recovering || !tripped || closed) return;
    if (!l.ready()) return; // ioredis is reconnecting; "ready" starts the recovery
    try {
      if (failedKeys.size === 0) await within(l.ping(), timeoutMs);
      else await Promise.all([...failedKeys].map((key) => exec(SCRIPTS.probe, key, [])));
      failedProbes = 0;
      await recover();
    } catch {
      failedProbes += 1;
      // The connection looks alive but nothing answers (a primary that vanished without closing
      // it): connect again, which asks Sentinel or the cluster where the primary is now.
      if (failedProbes >= 2) {
        failedProbes = 0;
        l.reconnect();
      }
    }
  }

  /**
   * Redis answers again (or for the first time): writes back this replica's budget shares, then
   * reports `up`. If a write-back fails the store stays down and the probe tries again.
   */
  async function recover(): Promise<void> {
    if (recovering || closed) return;
    recovering = true;
    try {
      noticePrimaries(await link?.primaries());
      await writeBack();
      // Offline reservations made while the write-back was on its way are not in it: send again
      // (they are few), so that from "up" on Redis holds everything this replica reserved.
      for (let again = 0; again < 3 && ledger.unwritten() > 0; again++) await writeBack();
      if (ledger.unwritten() > 0) throw new Error("budget spend reserved while redis was away is still being written back");
      tripped = false;
      failedKeys.clear();
      stopProbe();
      setState("up");
      // A Redis that restarted empty or failed over lost leases of requests still in flight: put them back.
      renewAll();
    } catch (err) {
      trip(err);
    } finally {
      recovering = false;
    }
  }

  async function writeBack(): Promise<void> {
    await Promise.all(ledger.pending().map((share) => writeShare(share)));
  }

  async function writeShare(share: PendingShare): Promise<void> {
    const reply = await exec(SCRIPTS.restore, share.fullKey, [share.share, Math.max(1, Math.ceil(share.ttlMs)), instance]).catch(
      (err: unknown) => {
        // The probe asks this key's server next (on a cluster, another node than a PING would).
        if (failedKeys.size < MAX_FAILED_KEYS) failedKeys.add(share.fullKey);
        throw err;
      },
    );
    const [added, total] = pair(reply, share.share);
    ledger.restored(share, total);
    if (added > 0) events.wroteBack?.(share.key, added);
  }

  function noticePrimaries(now: string | undefined): boolean {
    if (now === undefined) return false;
    const changed = primaries !== undefined && primaries !== now;
    primaries = now;
    if (changed) events.failover?.();
    return changed;
  }

  async function run(s: Script, key: string, args: readonly Arg[]): Promise<unknown> {
    if (link === undefined || state !== "up") throw new Error("limits store is not connected");
    try {
      return await exec(s, key, args);
    } catch (err) {
      trip(err, key);
      throw err;
    }
  }

  function renewAll(): void {
    if (state !== "up") return;
    for (const [key, ids] of held) {
      if (ids.size === 0) continue;
      run(SCRIPTS.renew, key, [leaseMs, ...ids]).catch(() => {});
    }
  }
  const renewTimer = setInterval(renewAll, Math.max(10, Math.floor(leaseMs / 3)));
  renewTimer.unref();

  const startTimer = setTimeout(() => {
    if (state === "starting") setState("down", "no connection to redis yet");
  }, connectTimeoutMs);
  startTimer.unref();

  function connect(target: RedisTarget, ioredis: Awaited<ReturnType<typeof loadIoredis>>): void {
    secrets = secretsOf(target);
    const l = (options.openLink ?? openRedisLink)(target, ioredis, {
      // ioredis's own command timeout is only a backstop: `within` is the deadline that counts
      // (deadline.ts says why ioredis's plain timer would fire early on a busy process).
      timeoutMs: timeoutMs * 2,
      connectTimeoutMs: Math.max(timeoutMs, Math.min(connectTimeoutMs, 10_000)),
      maxReconnectDelayMs,
      refreshMs: probeMs,
    });
    // Events of a client that was replaced (below) are not this store's any more.
    l.on("ready", () => {
      if (link === l) void recover();
    });
    l.onError((err) => {
      if (link === l && state === "starting") setState("down", describe(err));
    });
    l.on("close", () => {
      if (link === l) setState("down", "connection to redis closed");
    });
    // ioredis ends a client for good in a few cases (an interrupted Sentinel lookup, for one): a
    // replica must not stay on per-replica limits for ever, so a new client takes over.
    l.on("end", () => {
      if (closed || link !== l) return;
      setState("down", "connection to redis ended");
      const retry = setTimeout(() => {
        if (closed || link !== l) return;
        void l.close();
        connect(target, ioredis);
      }, maxReconnectDelayMs);
      retry.unref();
    });
    // A cluster whose slot map names other primaries failed over, perhaps without this replica
    // seeing an error: write the shares back at once (a failover may have lost the last ones).
    l.onTopology((now) => {
      if (link === l && state === "up" && noticePrimaries(now)) writeBack().catch(() => {});
    });
    link = l;
  }

  Promise.all([options.target(), loadIoredis()]).then(
    ([target, ioredis]) => {
      if (!closed) connect(target, ioredis);
    },
    (err: unknown) => setState("down", `redis settings could not be read: ${describe(err)}`),
  );

  function settled(settle: (keep: boolean) => void): Settle {
    let done = false;
    outstanding += 1;
    return (keep) => {
      if (done) return;
      done = true;
      outstanding -= 1;
      settle(keep);
    };
  }

  return {
    kind: "redis",

    async take(key, spec) {
      const reply = await run(SCRIPTS.take, options.prefix + key, [spec.capacity, spec.refill, spec.periodMs]);
      const [taken, wait] = pair(reply);
      return taken === 1 ? { ok: true } : { ok: false, retryAfterMs: Math.max(1, wait) };
    },

    async acquire(key, limit) {
      const full = options.prefix + key;
      const id = `${instance}:${(seq += 1)}`;
      const reply = await run(SCRIPTS.acquire, full, [limit, id, leaseMs]);
      if (reply !== 1) return undefined;
      const ids = held.get(full) ?? new Set<string>();
      ids.add(id);
      held.set(full, ids);
      const settle = settled(() => {
        ids.delete(id);
        if (ids.size === 0 && held.get(full) === ids) held.delete(full);
        // Unreachable now: the lease runs out instead, since nothing renews it any more.
        if (state === "up") run(SCRIPTS.release, full, [id]).catch(() => {});
      });
      const release: Release = () => settle(false);
      return release;
    },

    async reserve(key, amount, cap, ttlMs) {
      const full = options.prefix + key;
      const ttl = Math.max(1, Math.ceil(ttlMs));
      const reply = await run(SCRIPTS.reserve, full, [amount, cap, ttl, instance]);
      const [reserved, total] = pair(reply, cap);
      ledger.seen(full, key, total, ttl);
      if (reserved !== 1) return undefined;
      ledger.reservedShared(full, key, amount, ttl);
      return settled((keep) => {
        if (keep) return;
        // Unreachable now: the spend stays counted, in Redis and in this replica's share (an
        // overestimate, never an overspend).
        if (state !== "up") return;
        ledger.returnedShared(full, amount);
        run(SCRIPTS.unreserve, full, [amount, instance]).catch(() => {});
      });
    },

    reserveOffline(key, amount, cap, ttlMs) {
      const full = options.prefix + key;
      const number = ledger.reserveOffline(full, key, amount, cap, Math.max(1, Math.ceil(ttlMs)));
      if (number === undefined) return undefined;
      return settled((keep) => {
        if (keep) return;
        const inRedis = ledger.returnedOffline(full, amount, number);
        if (inRedis && state === "up") run(SCRIPTS.unreserve, full, [amount, instance]).catch(() => {});
      });
    },

    runScript: (s, key, args) => run(s, options.prefix + key, args),

    health: () => state,
    started,
    outstanding: () => outstanding,

    close() {
      if (closed) return Promise.resolve();
      closed = true;
      clearInterval(renewTimer);
      clearTimeout(startTimer);
      stopProbe();
      markStarted();
      const l = link;
      link = undefined;
      return l === undefined ? Promise.resolve() : l.close();
    },
  };
}

/** A script's `{a, b}` reply; `[0, fallback]` for anything else. */
function pair(reply: unknown, fallback = 1000): [number, number] {
  if (!Array.isArray(reply)) return [0, fallback];
  const [a, b] = reply as unknown[];
  return [typeof a === "number" ? a : 0, typeof b === "number" ? b : fallback];
}
