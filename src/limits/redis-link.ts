/**
 * The connection of the redis limit store, in each of the three forms of `limits.redis` (SPEC §11):
 * one Redis, a primary found through Sentinel, or a Redis Cluster, all through ioredis's own
 * support. redis-store.ts sees one small interface and never which form it talks to.
 *
 * What all three share, and why:
 * - every command times out after the store timeout, and none is queued while disconnected (it
 *   fails at once): the caller falls back or refuses instead of waiting;
 * - a command whose reply was lost is never sent again by ioredis after a reconnection: a
 *   reservation must not run twice;
 * - reconnection backs off from 100 ms up to `maxReconnectDelayMs`, for ever.
 *
 * Sentinel: ioredis asks the sentinels for the primary of `name` at each (re)connection and checks
 * the server's role, so after a failover it lands on the new primary. A primary that was replaced
 * while still reachable (a partition, a manual failover) answers writes with READONLY once the
 * sentinels have made it a replica: that error reconnects, which asks the sentinels again.
 * ioredis's `failoverDetector` (a subscription to `+switch-master`) is left off: when the switch is
 * announced while ioredis is itself reconnecting, it aborts that reconnection and the client ends
 * for good (ioredis 5.x), which a proxy replica must never do.
 *
 * Cluster: commands are routed by their one key's slot; the slot map is read again every
 * `refreshMs` and on every MOVED, so the replica promoted in place of a failed primary is used
 * as soon as the cluster says so.
 */
import type { Cluster, ClusterOptions, Redis, RedisOptions } from "ioredis";
import type { IoredisModule } from "./ioredis.ts";
import type { RedisMode, RedisTarget } from "./redis-target.ts";

export interface LinkTuning {
  /** Longest wait for one command, ms. */
  readonly timeoutMs: number;
  /** Longest wait for a TCP (and TLS) connection, ms. */
  readonly connectTimeoutMs: number;
  /** Longest pause between reconnection attempts, ms. */
  readonly maxReconnectDelayMs: number;
  /** How often a cluster's slot map is read again, ms. */
  readonly refreshMs: number;
}

type Arg = string | number;

export interface RedisLink {
  readonly mode: RedisMode;
  /** Runs a cached script on its one key (on a cluster: on the primary of the key's slot). */
  evalsha(sha: string, key: string, args: readonly Arg[]): Promise<unknown>;
  /** Sends a script's body (which caches it on that server). */
  eval(lua: string, key: string, args: readonly Arg[]): Promise<unknown>;
  ping(): Promise<unknown>;
  /** Whether commands can be sent now (connected, and on a cluster the slot map is known). */
  ready(): boolean;
  /**
   * Names the primary server(s) answering now: the run id of the one primary, or the addresses of a
   * cluster's primaries. It changes when a failover (or a restart) put another server in charge.
   * Undefined when it cannot be told (e.g. INFO refused by an ACL).
   */
  primaries(): Promise<string | undefined>;
  /** Drops the connections and connects again, asking Sentinel or the cluster where to. */
  reconnect(): void;
  /**
   * `ready`: connected, the first time or again. `close`: every connection is lost (ioredis is
   * reconnecting). `end`: the client gave up and will not reconnect (not after `close()` only).
   */
  on(event: "ready" | "close" | "end", listener: () => void): void;
  /** A cluster's slot map was read again; `primaries` as `primaries()` says. Never called otherwise. */
  onTopology(listener: (primaries: string | undefined) => void): void;
  onError(listener: (err: unknown) => void): void;
  /** Disconnects for good; resolves when done (at most about a second). */
  close(): Promise<void>;
}

/** What the store needs of an ioredis client; both `Redis` and `Cluster` have it. */
interface Client {
  evalsha(sha: string, numKeys: number, ...args: Arg[]): Promise<unknown>;
  eval(lua: string, numKeys: number, ...args: Arg[]): Promise<unknown>;
  ping(): Promise<unknown>;
  disconnect(reconnect?: boolean): void;
  readonly status: string;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
}

/** Creates the client for `target`; it starts connecting at once. */
export function openRedisLink(target: RedisTarget, ioredis: IoredisModule, tuning: LinkTuning): RedisLink {
  const retry = (times: number): number => Math.min(100 * 2 ** Math.min(Math.max(times, 1) - 1, 8), tuning.maxReconnectDelayMs);
  const tls = target.tls === undefined ? undefined : { ...target.tls };
  const common: RedisOptions = {
    commandTimeout: tuning.timeoutMs,
    connectTimeout: tuning.connectTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectionName: "mythiq-proxy",
    ...(target.username === undefined ? {} : { username: target.username }),
    ...(target.password === undefined ? {} : { password: target.password }),
    ...(tls === undefined ? {} : { tls }),
  };

  let client: Client;
  let cluster: Cluster | undefined;
  let primaries: () => Promise<string | undefined>;
  if (target.mode === "cluster") {
    const options: ClusterOptions = {
      redisOptions: common,
      // Unlike one Redis, this stays on: ioredis connects to each node lazily, and with it off a
      // command sent while a node's first connection is being made fails ("Connection is closed")
      // although nothing is wrong. The store sends nothing while the cluster is not ready, and cuts
      // every call off at its timeout, so nothing waits in this queue for long.
      enableOfflineQueue: true,
      clusterRetryStrategy: retry,
      slotsRefreshInterval: tuning.refreshMs,
      slotsRefreshTimeout: Math.max(tuning.timeoutMs, 1_000),
      scaleReads: "master",
      // A command for a primary that is gone fails at once instead of being retried after a pause:
      // the request is decided by on_store_error now, and the probe finds the new primary.
      retryDelayOnFailover: 0,
      retryDelayOnClusterDown: 0,
      retryDelayOnTryAgain: 0,
      // With TLS, connect by the names the nodes were given so that certificates match them.
      ...(tls === undefined ? {} : { dnsLookup: (address: string, callback: (err: null, address: string) => void) => callback(null, address) }),
    };
    const c: Cluster = new ioredis.Cluster(
      target.nodes.map((n) => ({ host: n.host, port: n.port })),
      options,
    );
    cluster = c;
    client = c;
    primaries = () => Promise.resolve(clusterPrimaries(c));
  } else {
    const redis: Redis =
      target.mode === "sentinel"
        ? new ioredis.Redis({
            ...common,
            retryStrategy: retry,
            sentinels: target.sentinels.map((s) => ({ host: s.host, port: s.port })),
            name: target.name,
            role: "master",
            ...(target.sentinelUsername === undefined ? {} : { sentinelUsername: target.sentinelUsername }),
            ...(target.sentinelPassword === undefined ? {} : { sentinelPassword: target.sentinelPassword }),
            ...(tls === undefined ? {} : { sentinelTLS: tls, enableTLSForSentinelMode: true }),
            sentinelCommandTimeout: tuning.timeoutMs,
            sentinelRetryStrategy: retry,
            failoverDetector: false,
            reconnectOnError: readOnlyReconnects,
          })
        : new ioredis.Redis(urlFor(target), { ...common, retryStrategy: retry, reconnectOnError: readOnlyReconnects });
    client = redis;
    primaries = async () => {
      try {
        return /^run_id:([0-9a-f]+)/m.exec(await redis.info("server"))?.[1];
      } catch {
        return undefined;
      }
    };
  }
  // ioredis prints unhandled "error" events to stderr; the store handles them (and a cluster's
  // per-node errors show up as failed commands).
  client.on("node error", () => {});

  return {
    mode: target.mode,
    evalsha: (sha, key, args) => client.evalsha(sha, 1, key, ...args),
    eval: (lua, key, args) => client.eval(lua, 1, key, ...args),
    ping: () => client.ping(),
    ready: () => client.status === "ready",
    primaries,
    reconnect: () => client.disconnect(true),
    on(event, listener) {
      client.on(event, () => listener());
    },
    onTopology(listener) {
      if (cluster !== undefined) client.on("refresh", () => listener(clusterPrimaries(cluster)));
    },
    onError(listener) {
      client.on("error", (err) => listener(err));
    },
    close() {
      return new Promise<void>((resolve) => {
        client.once("end", () => resolve());
        client.disconnect();
        // "end" is not emitted when the client never connected: do not wait on it for ever.
        setTimeout(resolve, 1000).unref();
      });
    },
  };
}

/** A write refused by a server that is a replica now (after a failover): connect again, to the primary. */
function readOnlyReconnects(err: Error): boolean {
  return err.message.startsWith("READONLY");
}

/**
 * The URL of a one-Redis target. An explicit `username`/`password` replaces the URL's own (ioredis
 * would otherwise prefer the URL's).
 */
function urlFor(target: RedisTarget & { mode: "standalone" }): string {
  if (target.username === undefined && target.password === undefined) return target.url;
  try {
    const url = new URL(target.url);
    if (target.password !== undefined) url.password = "";
    if (target.username !== undefined) url.username = "";
    return url.href;
  } catch {
    return target.url;
  }
}

/** The addresses of the primaries that own the cluster's slots, as the client's slot map says. */
function clusterPrimaries(cluster: Cluster): string | undefined {
  const owners = new Set<string>();
  for (const nodes of cluster.slots as (string[] | undefined)[]) {
    const primary = nodes?.[0];
    if (primary !== undefined) owners.add(primary);
  }
  return owners.size === 0 ? undefined : [...owners].sort().join(",");
}
