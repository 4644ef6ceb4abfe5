// The redis store behind Sentinel when the primary is replaced while it is still up (a manual
// `SENTINEL FAILOVER`, or a partition that heals): the sentinel turns the old primary into a
// replica and disconnects its clients; the store reconnects, asks the sentinel, lands on the new
// primary by itself, counts the failover, and the budget spend is all there.
import t from "tap";
import { createRedisStore } from "../../src/limits/redis-store.ts";
import { startRedisServer, type RedisServer } from "../helpers/redis-server.ts";

const servers: RedisServer[] = [];
t.teardown(() => Promise.all(servers.map((s) => s.close())));

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

t.test("a manual failover with the old primary still up: the store lands on the new primary", async (t) => {
  const primary = await startRedisServer();
  servers.push(primary);
  const replica = await startRedisServer({ args: ["--replicaof", "127.0.0.1", String(primary.port)] });
  servers.push(replica);
  await until("the replica in sync", async () => /master_link_status:up/.test(await replica.command("INFO", "replication")));
  const sentinel = await startRedisServer({ sentinel: `sentinel monitor m 127.0.0.1 ${primary.port} 1\n` });
  servers.push(sentinel);
  await until("the sentinel to know the replica", async () => (await sentinel.command("SENTINEL", "REPLICAS", "m")).startsWith("*1"));

  const events: string[] = [];
  const store = createRedisStore({
    target: () => Promise.resolve({ mode: "sentinel", sentinels: [{ host: "127.0.0.1", port: sentinel.port }], name: "m" }),
    prefix: "mf:",
    probeMs: 100,
    maxReconnectDelayMs: 200,
    events: {
      up: () => events.push("up"),
      down: () => events.push("down"),
      failover: () => events.push("failover"),
    },
  });
  t.teardown(() => store.close());
  await until("up", () => store.health() === "up");
  (await store.reserve("budget:m:2030-01-01", 40, 100, 3_600_000))?.(true);

  t.match(await sentinel.command("SENTINEL", "FAILOVER", "m"), /^\+OK/);
  await until("the old primary to be a replica", async () => /role:slave/.test(await primary.command("INFO", "replication")));
  // Keep working meanwhile: calls fail (and fall back) until the store is on the new primary.
  await until("the new primary to take a reservation", async () => {
    const settle = await store.reserve("budget:m:2030-01-01", 1, 100, 3_600_000).catch(() => undefined);
    settle?.(true);
    return settle !== undefined && /role:master/.test(await replica.command("INFO", "replication"));
  });
  t.ok(events.includes("failover"), `counted as a failover (${events.join(", ")})`);
  const total = Number((await replica.command("HGET", "mf:budget:m:2030-01-01", "total")).split("\r\n")[1]);
  t.ok(total >= 41, `the new primary holds the spend (${total})`);
});
