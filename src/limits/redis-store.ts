/**
 * The `redis` limit store: every replica runs the same atomic Lua scripts against one Redis, so they
 * enforce one shared limit (SPEC §3 `limits.store: redis`).
 *
 * On the hot path a Redis call never waits long: each call times out after `timeoutMs`, calls are
 * never queued while disconnected (they fail at once), and after a failure the store reports itself
 * `down` and is skipped by the caller (see fallback.ts) until a background PING or a reconnection
 * shows Redis answering again. Recovery needs no operator: ioredis reconnects on its own.
 *
 * Concurrency slots are leases (`leaseMs`, renewed every third of it while the request runs), so the
 * slots of a replica that dies free themselves instead of blocking the client for ever.
 */
import { createHash, randomBytes } from "node:crypto";
// A type-only import: the client library (about 20 MB resident) is loaded on first use, so a
// proxy with in-memory limits never pays for it.
import type { Redis } from "ioredis";
import { errorFields } from "../observe/log.ts";
import { ACQUIRE_SLOT, RELEASE_SLOT, RENEW_SLOTS, RESERVE, TAKE_TOKEN, UNRESERVE } from "./redis-scripts.ts";
import type { LimitStore, Release, Settle, StoreHealth } from "./store.ts";

/** What the store tells its owner; for the log and metrics. Never carries the URL. */
export interface RedisStoreEvents {
  /** Redis answers (first connection, or back after being down). */
  up?(): void;
  /** Redis stopped answering; `why` is safe to log (no URL, no password). */
  down?(why: string): void;
  /** A call failed or timed out. */
  error?(): void;
}

export interface RedisStoreOptions {
  /** Resolves the redis URL. It is a secret (it may carry a password): never logged. */
  readonly url: () => Promise<string>;
  /** Put in front of every key (SPEC `limits.redis.prefix`). */
  readonly prefix: string;
  readonly events?: RedisStoreEvents;
  /** Longest wait for one Redis call on the hot path, ms; default 250. */
  readonly timeoutMs?: number;
  /** Concurrency slot lease, ms; default 30 000 (renewed every third while held). */
  readonly leaseMs?: number;
  /** While down after a failed call, how often Redis is PINGed, ms; default 1000. */
  readonly probeMs?: number;
  /** The store is `down` (not `starting`) if the first connection is not ready within this, ms; default 2000. */
  readonly connectTimeoutMs?: number;
  /** Longest pause between reconnection attempts, ms; default 2000. */
  readonly maxReconnectDelayMs?: number;
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
} as const;

type Arg = string | number;

/** Creates the store and starts connecting in the background. Call `close()` to stop it. */
export function createRedisStore(options: RedisStoreOptions): LimitStore {
  const events = options.events ?? {};
  const timeoutMs = options.timeoutMs ?? 250;
  const leaseMs = options.leaseMs ?? 30_000;
  const probeMs = options.probeMs ?? 1_000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 2_000;
  const maxReconnectDelayMs = options.maxReconnectDelayMs ?? 2_000;
  const instance = randomBytes(6).toString("hex");
  let seq = 0;

  let client: Redis | undefined;
  let closed = false;
  let tripped = false;
  let state: StoreHealth = "starting";
  let outstanding = 0;
  let secrets: string[] = [];
  let probe: NodeJS.Timeout | undefined;
  /** Slots held by requests in flight, by full key: renewed until released. */
  const held = new Map<string, Set<string>>();

  let markStarted: () => void = () => {};
  const started = new Promise<void>((resolve) => (markStarted = resolve));

  /** Error text with any part of the URL removed (ioredis does not put it there; this makes sure). */
  function describe(err: unknown): string {
    const fields = errorFields(err);
    let text = fields.code !== undefined && !fields.error.includes(fields.code) ? `${fields.code}: ${fields.error}` : fields.error;
    for (const secret of secrets) if (secret !== "") text = text.split(secret).join("[redacted]");
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
  }

  function trip(err: unknown): void {
    events.error?.();
    tripped = true;
    setState("down", describe(err));
    if (probe !== undefined || closed) return;
    probe = setInterval(() => {
      const c = client;
      if (c === undefined || c.status !== "ready") return; // a reconnection ends in "ready" below
      c.ping().then(
        () => {
          if (!tripped) return;
          tripped = false;
          stopProbe();
          setState("up");
        },
        () => {},
      );
    }, probeMs);
    probe.unref();
  }

  async function run(s: Script, key: string, args: readonly Arg[]): Promise<unknown> {
    const c = client;
    if (c === undefined || state !== "up") throw new Error("limits store is not connected");
    try {
      try {
        return await c.evalsha(s.sha, 1, key, ...args);
      } catch (err) {
        // Redis restarted (or flushed its scripts): send the body once, which caches it again.
        if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
        return await c.eval(s.lua, 1, key, ...args);
      }
    } catch (err) {
      trip(err);
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

  function connect(url: string, RedisClient: typeof Redis): void {
    secrets = secretParts(url);
    const c = new RedisClient(url, {
      commandTimeout: timeoutMs,
      connectTimeout: Math.max(timeoutMs, Math.min(connectTimeoutMs, 10_000)),
      // Fail at once while disconnected instead of queueing: the caller falls back or refuses.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // A reservation whose reply was lost must not run a second time after a reconnection.
      autoResendUnfulfilledCommands: false,
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times - 1, 8), maxReconnectDelayMs),
      connectionName: "mythiq-proxy",
    });
    c.on("ready", () => {
      tripped = false;
      stopProbe();
      setState("up");
      // A Redis that restarted empty lost the leases of requests still in flight: put them back now.
      renewAll();
    });
    c.on("error", (err: unknown) => {
      if (state === "starting") setState("down", describe(err));
    });
    c.on("close", () => setState("down", "connection to redis closed"));
    client = c;
  }

  Promise.all([options.url(), import("ioredis")]).then(
    ([url, ioredis]) => {
      if (!closed) connect(url, ioredis.Redis);
    },
    (err: unknown) => setState("down", `redis url could not be read: ${describe(err)}`),
  );

  function counted(release: () => void): Release {
    const settle = settled(release);
    return () => settle(false);
  }

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
      return counted(() => {
        ids.delete(id);
        if (ids.size === 0 && held.get(full) === ids) held.delete(full);
        // Unreachable now: the lease runs out instead, since nothing renews it any more.
        if (state === "up") run(SCRIPTS.release, full, [id]).catch(() => {});
      });
    },

    async reserve(key, amount, cap, ttlMs) {
      const full = options.prefix + key;
      const reply = await run(SCRIPTS.reserve, full, [amount, cap, Math.max(1, Math.ceil(ttlMs))]);
      if (reply !== 1) return undefined;
      return settled((keep) => {
        // Unreachable now: the spend stays counted (an overestimate, never an overspend).
        if (!keep && state === "up") run(SCRIPTS.unreserve, full, [amount]).catch(() => {});
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
      const c = client;
      client = undefined;
      if (c === undefined) return Promise.resolve();
      return new Promise<void>((resolve) => {
        c.once("end", () => resolve());
        c.disconnect();
        // "end" is not emitted when the client never connected: do not wait on it for ever.
        setTimeout(resolve, 1000).unref();
      });
    },
  };
}

/** The parts of a redis URL that must never reach a log line: the URL itself and its password. */
function secretParts(url: string): string[] {
  const parts = [url];
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parts.push(parsed.password, decodeURIComponent(parsed.password));
  } catch {
    // ioredis reports an unparsable URL itself; there is nothing more to hide.
  }
  return parts;
}

function pair(reply: unknown): [number, number] {
  if (!Array.isArray(reply)) return [0, 1000];
  const [a, b] = reply as unknown[];
  return [typeof a === "number" ? a : 0, typeof b === "number" ? b : 1000];
}
