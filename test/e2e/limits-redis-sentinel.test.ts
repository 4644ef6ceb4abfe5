// Issue 16, Sentinel: a primary, one replica and three sentinels (real redis-server processes); two
// proxy replicas (real child processes) find the primary through the sentinels and share a rate
// limit and a daily budget under steady traffic. The primary is killed mid-run (SIGKILL): while no
// primary answers, on_store_error: local decides; the sentinels promote the replica; both proxies
// reconnect to it by themselves, write back the budget they spent locally, and count the failover.
// The bounds asserted are the (see test/helpers/failover-scenario.ts checkFailover).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { budgetKey } from "../../src/limits/budget.ts";
import { utcDay } from "../../src/limits/utc-day.ts";
import { checkFailover, failoverUnderLoad, replicaYaml } from "../helpers/failover-scenario.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startReplica, until, type Replica } from "../helpers/proxy-replica.ts";
import { startSentinelSetup, type SentinelSetup } from "../helpers/redis-ha.ts";

const PREFIX = "ha:";
let setup: SentinelSetup;
let upstream: FakeUpstream;
let replicas: Replica[] = [];
const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-sentinel-"));

t.before(async () => {
  setup = await startSentinelSetup("mythiq");
  upstream = await startFakeUpstream();
  upstream.fallback = { type: "json", status: 200, body: { object: "list", data: [] } };
  const sentinels = setup.sentinels.map((s) => `"127.0.0.1:${s.port}"`).join(", ");
  const redis = `sentinels: [${sentinels}], name: mythiq, prefix: "${PREFIX}"`;
  replicas = await Promise.all(
    ["a", "b"].map((name) => startReplica({ name, dir, yaml: (ports) => replicaYaml(upstream.url, ports, redis) })),
  );
});
t.teardown(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await upstream?.close();
  await setup?.close();
  rmSync(dir, { recursive: true, force: true });
});

t.test("the primary is killed under load: local decisions while no primary answers, then the new primary, no overspend", async (t) => {
  const replicaAddress = `127.0.0.1:${setup.replica.port}`;
  const report = await failoverUnderLoad({
    replicas,
    upstream,
    kill: () => setup.primary.kill(),
    promoted: () => until("the sentinels to promote the replica", async () => (await setup.primaryAddress()) === replicaAddress, 30_000),
    async budgetTotal() {
      const reply = await setup.replica.command("HGET", PREFIX + budgetKey("spender", utcDay(Date.now())), "total");
      return Number(reply.split("\r\n")[1] ?? 0);
    },
  });
  for (const r of replicas) {
    t.ok(r.logs.some((l) => l["msg"] === "limits store connected" && l["mode"] === "sentinel"), `${r.name} connected through the sentinels`);
  }
  await checkFailover(t, report, replicas);
});
