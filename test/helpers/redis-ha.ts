/**
 * Highly available Redis for tests, from real `redis-server` processes on free 127.0.0.1 ports:
 *
 * - `startSentinelSetup()`: a primary, one replica and three sentinels (quorum 2) watching them,
 *   with short timeouts (down after 1 s) so that a killed primary is replaced in a few seconds.
 * - `startClusterSetup()`: a Redis Cluster of three primaries and three replicas made with
 *   `redis-cli --cluster create` (node timeout 1 s), so that a killed primary's replica takes over
 *   its slots.
 *
 * Both wait until the setup is complete (the sentinels know the replica and each other; every slot
 * is served and every replica is in sync) and close every process in `close()`.
 * `REDIS_CLI` overrides the redis-cli binary (default: on PATH, else /usr/bin/redis-cli).
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { startRedisServer, type RedisServer } from "./redis-server.ts";

const run = promisify(execFile);

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not there yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The bulk-string payload of a raw RESP reply (`$N\r\n…\r\n`). */
function bulk(reply: string): string {
  const start = reply.indexOf("\r\n");
  return reply.startsWith("$") && start >= 0 ? reply.slice(start + 2, -2) : reply;
}

/** The strings of a flat RESP array reply of bulk strings. */
function strings(reply: string): string[] {
  return reply
    .split("\r\n")
    .slice(1)
    .filter((_, i) => i % 2 === 1);
}

async function closeAll(servers: readonly RedisServer[]): Promise<void> {
  await Promise.all(servers.map((s) => s.close()));
}

// ---------------------------------------------------------------------------------------------
// Sentinel

export interface SentinelSetup {
  readonly name: string;
  readonly primary: RedisServer;
  readonly replica: RedisServer;
  readonly sentinels: readonly RedisServer[];
  /** `host:port` of the primary as the first sentinel that answers reports it. */
  primaryAddress(): Promise<string>;
  close(): Promise<void>;
}

export async function startSentinelSetup(name = "mymaster"): Promise<SentinelSetup> {
  const servers: RedisServer[] = [];
  try {
    const primary = await startRedisServer();
    servers.push(primary);
    const replica = await startRedisServer({ args: ["--replicaof", "127.0.0.1", String(primary.port)] });
    servers.push(replica);
    await until("the replica to sync", async () => /master_link_status:up/.test(await replica.command("INFO", "replication")), 10_000);
    const config = [
      `sentinel monitor ${name} 127.0.0.1 ${primary.port} 2`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 3000`,
      `sentinel parallel-syncs ${name} 1`,
      "",
    ].join("\n");
    const sentinels: RedisServer[] = [];
    for (let i = 0; i < 3; i++) {
      const sentinel = await startRedisServer({ sentinel: config });
      sentinels.push(sentinel);
      servers.push(sentinel);
    }
    // A failover needs the sentinels to know the replica and to find each other (hello messages
    // every 2 s through the primary): wait for both, or the kill would find no one to promote.
    for (const s of sentinels) {
      await until("a sentinel to know the replica", async () => (await s.command("SENTINEL", "REPLICAS", name)).startsWith("*1"), 15_000);
      await until("a sentinel to know the others", async () => (await s.command("SENTINEL", "SENTINELS", name)).startsWith("*2"), 15_000);
    }
    return {
      name,
      primary,
      replica,
      sentinels,
      async primaryAddress() {
        for (const s of sentinels) {
          if (!s.running) continue;
          try {
            const [host, port] = strings(await s.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name));
            if (host !== undefined && port !== undefined) return `${host}:${port}`;
          } catch {
            // try the next sentinel
          }
        }
        throw new Error("no sentinel answered");
      },
      close: () => closeAll(servers),
    };
  } catch (err) {
    await closeAll(servers);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Cluster

export interface ClusterNodeInfo {
  readonly id: string;
  readonly port: number;
  readonly primary: boolean;
  readonly failed: boolean;
  /** Slot ranges `[from, to]` served by this node (primaries only). */
  readonly slots: ReadonlyArray<readonly [number, number]>;
}

export interface ClusterSetup {
  /** Every node; which are primaries changes with failovers (see `nodes`). */
  readonly servers: readonly RedisServer[];
  /** `host:port` of every node, for `limits.redis.cluster`. */
  readonly addresses: readonly string[];
  /** The cluster as `node` sees it (CLUSTER NODES). */
  nodes(node: RedisServer): Promise<ClusterNodeInfo[]>;
  /** The hash slot of `key` (CLUSTER KEYSLOT). */
  slotOf(key: string): Promise<number>;
  /** The server whose primary serves `slot` now, as `asked` (default: any live node) sees it. */
  ownerOf(slot: number, asked?: RedisServer): Promise<RedisServer | undefined>;
  close(): Promise<void>;
}

function redisCli(): string {
  const configured = process.env["REDIS_CLI"];
  if (configured !== undefined && configured !== "") return configured;
  for (const dir of (process.env["PATH"] ?? "").split(":")) {
    if (dir !== "" && existsSync(join(dir, "redis-cli"))) return join(dir, "redis-cli");
  }
  return "/usr/bin/redis-cli";
}

function parseNodes(text: string): ClusterNodeInfo[] {
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const [id = "", address = "", flags = "", , , , , , ...slots] = line.trim().split(" ");
      const port = Number(/:(\d+)@/.exec(address)?.[1] ?? 0);
      const ranges = slots
        .filter((s) => !s.startsWith("["))
        .map((s): [number, number] => {
          const [from, to] = s.split("-").map(Number);
          return [from ?? 0, to ?? from ?? 0];
        });
      const flagList = flags.split(",");
      return { id, port, primary: flagList.includes("master"), failed: flagList.includes("fail"), slots: ranges };
    });
}

/** Three primaries and three replicas; `nodeTimeoutMs` is how long a node may be silent before it fails. */
export async function startClusterSetup(nodeTimeoutMs = 1000): Promise<ClusterSetup> {
  const servers: RedisServer[] = [];
  try {
    for (let i = 0; i < 6; i++) {
      servers.push(
        await startRedisServer({
          args: [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", String(nodeTimeoutMs),
            // A replica takes over however long it has been out of touch: these tests kill a primary
            // on purpose, and an old replica is better than slots that stay down.
            "--cluster-replica-validity-factor", "0",
          ],
        }),
      );
    }
    const addresses = servers.map((s) => `127.0.0.1:${s.port}`);
    await run(redisCli(), ["--cluster", "create", ...addresses, "--cluster-replicas", "1", "--cluster-yes"], { timeout: 30_000 });
    const nodes = async (node: RedisServer): Promise<ClusterNodeInfo[]> => parseNodes(bulk(await node.command("CLUSTER", "NODES")));
    for (const s of servers) {
      await until("every node to see a complete cluster", async () => /cluster_state:ok/.test(await s.command("CLUSTER", "INFO")), 20_000);
      await until("every node to know all six", async () => (await nodes(s)).length === 6, 20_000);
    }
    for (const s of servers) {
      const info = await s.command("INFO", "replication");
      if (/role:slave/.test(info)) await until("a replica to sync", async () => /master_link_status:up/.test(await s.command("INFO", "replication")), 20_000);
    }
    const live = (): RedisServer => {
      const found = servers.find((s) => s.running);
      if (found === undefined) throw new Error("no cluster node is running");
      return found;
    };
    return {
      servers,
      addresses,
      nodes,
      async slotOf(key) {
        return Number((await live().command("CLUSTER", "KEYSLOT", key)).slice(1));
      },
      async ownerOf(slot, asked = live()) {
        const owner = (await nodes(asked)).find((n) => n.primary && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b));
        return owner === undefined ? undefined : servers.find((s) => s.port === owner.port);
      },
      close: () => closeAll(servers),
    };
  } catch (err) {
    await closeAll(servers);
    throw err;
  }
}
