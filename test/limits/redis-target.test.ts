// limits.redis → where to connect, with the secrets read from their references: each mode, the CA
// file, errors that name the reference or file and never a value, and every secret listed for
// redaction.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import type { RedisConfig } from "../../src/config/types.ts";
import { modeOf, resolveRedisTarget, secretsOf } from "../../src/limits/redis-target.ts";

const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-redis-target-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const ca = join(dir, "ca.pem");
writeFileSync(ca, "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n");
const env = { REDIS_URL: "redis://:url-Secret-1@redis:6379/0", REDIS_PASSWORD: "pw-Secret-2\n", SENTINEL_PASSWORD: "sentinel-Secret-3" };
const base = { prefix: "p:", timeout: 250 } as const;

t.test("one Redis: the URL from its reference; username, password and TLS beside it", async (t) => {
  const config: RedisConfig = { ...base, url: { env: "REDIS_URL" }, username: "proxy", password: { env: "REDIS_PASSWORD" }, tls: { ca_file: ca, server_name: "redis.example.com" } };
  t.equal(modeOf(config), "standalone");
  const target = await resolveRedisTarget(config, env);
  t.match(target, { mode: "standalone", url: env.REDIS_URL, username: "proxy", password: "pw-Secret-2", tls: { servername: "redis.example.com" } });
  t.ok(target.tls?.ca?.toString().includes("not really"), "the CA file's content");
  t.same(secretsOf(target), [env.REDIS_URL, "pw-Secret-2", "url-Secret-1"].sort((a, b) => b.length - a.length), "URL, its password, the password");
});

t.test("Sentinel and Cluster: addresses as given, both passwords read", async (t) => {
  const sentinel: RedisConfig = {
    ...base,
    sentinels: [{ host: "s0", port: 26379 }],
    name: "mymaster",
    password: { env: "REDIS_PASSWORD" },
    sentinel_username: "watcher",
    sentinel_password: { env: "SENTINEL_PASSWORD" },
    tls: {},
  };
  t.equal(modeOf(sentinel), "sentinel");
  const s = await resolveRedisTarget(sentinel, env);
  t.match(s, { mode: "sentinel", sentinels: [{ host: "s0", port: 26379 }], name: "mymaster", sentinelUsername: "watcher", sentinelPassword: "sentinel-Secret-3", tls: {} });
  t.same(secretsOf(s).sort(), ["pw-Secret-2", "sentinel-Secret-3"]);

  const cluster: RedisConfig = { ...base, cluster: [{ host: "c0", port: 6379 }] };
  t.equal(modeOf(cluster), "cluster");
  const c = await resolveRedisTarget(cluster, env);
  t.same(c, { mode: "cluster", nodes: [{ host: "c0", port: 6379 }] }, "no TLS, no password");
  t.same(secretsOf(c), []);
});

t.test("a reference or CA file that cannot be read: the error names it, never a value", async (t) => {
  await t.rejects(resolveRedisTarget({ ...base, cluster: [{ host: "c", port: 1 }], password: { env: "MISSING" } }, env), /environment variable MISSING is not set/);
  await t.rejects(resolveRedisTarget({ ...base, cluster: [{ host: "c", port: 1 }], tls: { ca_file: join(dir, "nope.pem") } }, env), /limits\.redis\.tls\.ca_file .*nope\.pem cannot be read \(ENOENT\)/);
});
