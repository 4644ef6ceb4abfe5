// limits.redis in each of its three forms against real servers that speak only TLS, with an ACL
// user whose permissions are exactly the list in docs/limits.md and passwords from {env} and
// {file} references: one Redis (`url`), a primary behind Sentinel (`sentinels` + `name`, the
// sentinel asking for its own password) and a Redis Cluster (`cluster`). Each store connects, runs
// every script, and says nothing secret when a password or the CA is wrong.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import t, { type Test } from "tap";
import type { RedisConfig } from "../../src/config/types.ts";
import { createRedisStore } from "../../src/limits/redis-store.ts";
import { resolveRedisTarget } from "../../src/limits/redis-target.ts";
import type { LimitStore } from "../../src/limits/store.ts";
import { startRedisServer, type RedisServer } from "../helpers/redis-server.ts";

const TLS = {
  cert: fileURLToPath(new URL("../fixtures/tls/upstream.crt", import.meta.url)),
  key: fileURLToPath(new URL("../fixtures/tls/upstream.key", import.meta.url)),
  ca: fileURLToPath(new URL("../fixtures/tls/upstream.crt", import.meta.url)),
};
const PASSWORD = "acl-Pass-For-Limits-7f3a";
const SENTINEL_PASSWORD = "sentinel-Pass-9c1d";
const PREFIX = "modes:";
/** docs/limits.md "ACL": what the proxy's Redis user needs, nothing more. */
const ACL: readonly string[] = [
  "mythiq",
  "on",
  `>${PASSWORD}`,
  `~${PREFIX}*`,
  "resetchannels",
  "-@all",
  "+evalsha", "+eval", "+ping", "+info",
  "+client|setname", "+cluster|slots", "+cluster|info",
  "+time", "+type", "+get", "+del", "+pttl", "+pexpire",
  "+hget", "+hmget", "+hset", "+hincrby",
  "+zadd", "+zrem", "+zcard", "+zremrangebyscore",
];

const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-redis-modes-"));
const passwordFile = join(dir, "redis-password");
writeFileSync(passwordFile, `${PASSWORD}\n`);
const env = { SENTINEL_PASSWORD, WRONG: "not-the-password-123" };
const servers: RedisServer[] = [];
const stores: LimitStore[] = [];

t.teardown(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all(servers.map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

async function server(options: Parameters<typeof startRedisServer>[0]): Promise<RedisServer> {
  const s = await startRedisServer(options);
  servers.push(s);
  return s;
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A store for `config` (references resolved like the proxy does), with its events. */
function open(config: RedisConfig) {
  const events: string[] = [];
  const store = createRedisStore({
    target: () => resolveRedisTarget(config, env),
    prefix: config.prefix,
    timeoutMs: 1_000,
    connectTimeoutMs: 5_000,
    probeMs: 100,
    maxReconnectDelayMs: 200,
    events: { up: () => events.push("up"), down: (why) => events.push(`down: ${why}`) },
  });
  stores.push(store);
  return { store, events };
}

async function everyScript(t: Test, store: LimitStore): Promise<void> {
  await until("the store to be up", () => store.health() === "up", 15_000);
  t.same(await store.take("rate:m", { capacity: 1, refill: 1, periodMs: 60_000 }), { ok: true }, "take");
  t.match(await store.take("rate:m", { capacity: 1, refill: 1, periodMs: 60_000 }), { ok: false }, "bucket empty");
  const release = await store.acquire("conc:m", 1);
  t.ok(release, "acquire");
  release?.();
  const settle = await store.reserve("budget:m:2030-01-01", 5, 10, 60_000);
  t.ok(settle, "reserve");
  settle?.(false);
  t.equal(await store.reserve("budget:m:2030-01-01", 11, 10, 60_000), undefined, "over the cap");
}

const tlsArgs = ["--tls-replication", "yes"];

t.test("one Redis: rediss://, an ACL user and a password from a file", async (t) => {
  const redis = await server({ tls: TLS, args: ["--user", ...ACL] });
  const base = { url: redis.url, username: "mythiq", tls: { ca_file: TLS.ca }, prefix: PREFIX, timeout: 1_000 } as const;
  const good = open({ ...base, password: { file: passwordFile } });
  await everyScript(t, good.store);

  // A password given as password: wins over one in the URL.
  const overridden = open({ ...base, url: redis.url.replace("rediss://", "rediss://mythiq:url-pass-not-used@"), password: { file: passwordFile } });
  await until("up with the password: key", () => overridden.store.health() === "up", 15_000);

  const wrong = open({ ...base, password: { env: "WRONG" } });
  await until("refused", () => wrong.store.health() === "down");
  const untrusted = open({ ...base, password: { file: passwordFile }, tls: {} });
  await until("refused", () => untrusted.store.health() === "down");
  const text = [...wrong.events, ...untrusted.events].join("\n");
  t.match(wrong.events.join("\n"), /WRONGPASS|NOAUTH|invalid username-password/i, "a wrong password is reported");
  t.match(untrusted.events.join("\n"), /certificate/i, "an untrusted certificate is reported");
  for (const secret of [PASSWORD, env.WRONG]) t.notOk(text.includes(secret), "no password in the events");
});

t.test("Sentinel: the sentinel and Redis over TLS, each with its own password", async (t) => {
  const primary = await server({ tls: TLS, args: ["--user", ...ACL, ...tlsArgs] });
  const sentinel = await server({
    tls: TLS,
    sentinel: `sentinel monitor limits 127.0.0.1 ${primary.port} 1\nrequirepass ${SENTINEL_PASSWORD}\n`,
    args: tlsArgs,
  });
  const config: RedisConfig = {
    sentinels: [{ host: "127.0.0.1", port: sentinel.port }],
    name: "limits",
    username: "mythiq",
    password: { file: passwordFile },
    sentinel_password: { env: "SENTINEL_PASSWORD" },
    tls: { ca_file: TLS.ca },
    prefix: PREFIX,
    timeout: 1_000,
  };
  await everyScript(t, open(config).store);

  const wrongSentinel = open({ ...config, sentinel_password: { env: "WRONG" } });
  await until("refused", () => wrongSentinel.store.health() === "down");
  t.notOk(wrongSentinel.events.join("\n").includes(env.WRONG), "no password in the events");
});

t.test("Cluster: three primaries over TLS, an ACL user on every node", async (t) => {
  const nodes: RedisServer[] = [];
  for (let i = 0; i < 3; i++) {
    nodes.push(
      await server({
        tls: TLS,
        args: ["--user", ...ACL, ...tlsArgs, "--tls-cluster", "yes", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
      }),
    );
  }
  await promisify(execFile)(
    "redis-cli",
    ["--tls", "--cacert", TLS.ca, "--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-yes"],
    { timeout: 30_000 },
  );
  for (const n of nodes) {
    const deadline = Date.now() + 15_000;
    while (!/cluster_state:ok/.test(await n.command("CLUSTER", "INFO"))) {
      if (Date.now() > deadline) throw new Error("cluster not ok");
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const config: RedisConfig = {
    cluster: [{ host: "127.0.0.1", port: nodes[0]!.port }],
    username: "mythiq",
    password: { file: passwordFile },
    tls: { ca_file: TLS.ca },
    prefix: PREFIX,
    timeout: 1_000,
  };
  await everyScript(t, open(config).store);
  // The keys landed on more than one node: the scripts ran where their slots are.
  const keys = await Promise.all(nodes.map(async (n) => Number((await n.command("DBSIZE")).slice(1))));
  t.ok(keys.filter((k) => k > 0).length >= 2, `keys spread over the nodes (${keys.join(", ")})`);
});
