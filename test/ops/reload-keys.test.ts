// A reload that moves a key (here: another `file`) never leaves its clients without a key: the key
// held under the old settings is served until the new source delivers its first good value, then
// the proxy switches (SPEC §8: keys are kept across reloads; fail static on the key).
import t from "tap";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fingerprint } from "../../src/keys/validate-key.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { request, startLoad, startOpsProxy } from "../helpers/ops.ts";
import { configYaml, TOKEN } from "../helpers/proxy-harness.ts";

const AUTH = { authorization: `Bearer ${TOKEN}` };
const KEY_OLD = "mq-live-reloadkeyOLD0123456789abcdef";
const KEY_NEW = "mq-live-reloadkeyNEW0123456789abcdef";

/** configYaml with the `default` key read from `file`. */
function withKeyFile(upstreamUrl: string, file: string): string {
  const yaml = configYaml(upstreamUrl);
  const envKey = "default: { source: env, env: MYTHIQ_API_KEY }";
  if (!yaml.includes(envKey)) throw new Error("configYaml changed: update this test");
  return yaml.replace(envKey, `default: { source: file, file: ${JSON.stringify(file)} }`);
}

t.test("a reload pointing a key at a file that does not exist yet keeps serving the old key, then switches", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-reload-keys-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const oldFile = join(dir, "api-key-v1");
  const newFile = join(dir, "api-key-v2");
  writeFileSync(oldFile, KEY_OLD);

  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const proxy = await startOpsProxy({ yaml: withKeyFile(upstream.url, oldFile) });
  t.teardown(() => proxy.close());
  await proxy.waitForLog((l) => l["msg"] === "key loaded");
  const sentWith = (): string | undefined => upstream.requests.at(-1)?.headers["authorization"];

  t.equal((await request(proxy.port, { path: "/v1/models", headers: AUTH })).status, 200);
  t.equal(sentWith(), `Bearer ${KEY_OLD}`);

  // The reload under load: no request may fail while the new file is missing.
  const load = startLoad(proxy.port, { concurrency: 4, headers: AUTH });
  const before = upstream.requests.length;
  await upstream.waitForRequests(before + 20);
  writeFileSync(proxy.configFile, withKeyFile(upstream.url, newFile));
  t.equal(await proxy.proxy.reload("test"), "applied");
  const failedFetch = await proxy.waitForLog((l) => l["msg"] === "key refresh failed" && l["key"] === "default");
  t.match(failedFetch, { source: "file", serving: fingerprint(KEY_OLD), serving_previous_settings: true });
  t.match(String(failedFetch["error"]), /cannot read key file .*api-key-v2: ENOENT/);
  await upstream.waitForRequests(upstream.requests.length + 20);
  const results = await load.stop();
  t.same(results.filter((r) => r.status !== 200), [], `no request failed across the reload (${results.length} sent)`);

  t.equal((await request(proxy.port, { path: "/v1/models", headers: AUTH })).status, 200, "still served after the new source failed");
  t.equal(sentWith(), `Bearer ${KEY_OLD}`, "with the key held under the old settings");
  t.equal((await proxy.admin("/readyz")).status, 200, "and ready");
  t.match(proxy.logs.find((l) => l["msg"] === "key settings changed; serving the previous key until the new source delivers"), {
    key: "default",
    serving: fingerprint(KEY_OLD),
  });

  // The Secret update lands: written aside, renamed into place (one event for the new name).
  writeFileSync(join(dir, "tmp"), KEY_NEW);
  renameSync(join(dir, "tmp"), newFile);
  const switched = await proxy.waitForLog((l) => l["msg"] === "key source switched");
  t.match(switched, { key: "default", fingerprint: fingerprint(KEY_NEW), previous_fingerprint: fingerprint(KEY_OLD), rotated: true });
  t.equal((await request(proxy.port, { path: "/v1/models", headers: AUTH })).status, 200);
  t.equal(sentWith(), `Bearer ${KEY_NEW}`, "the new file's key is injected from then on");
  t.equal(await proxy.metric("mythiq_proxy_key_rotations_total", { key: "default" }), 1, "counted as a rotation");
  t.equal(await proxy.metric("mythiq_proxy_key_info", { key: "default", fingerprint: fingerprint(KEY_NEW) }), 1);
  t.equal(await proxy.metric("mythiq_proxy_key_info", { key: "default", fingerprint: fingerprint(KEY_OLD) }), undefined);

  // The old file is no longer read: rewriting it changes nothing.
  writeFileSync(oldFile, "mq-live-reloadkeyIGNORED0123456789ab");
  t.equal((await request(proxy.port, { path: "/v1/models", headers: AUTH })).status, 200);
  t.equal(sentWith(), `Bearer ${KEY_NEW}`);
  t.notOk(proxy.rawLog().includes(KEY_OLD) || proxy.rawLog().includes(KEY_NEW), "no key in any log line");
});

t.test("a reload changing only the refresh settings keeps the key without reading it again", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-reload-keys-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "api-key");
  writeFileSync(file, KEY_OLD);
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const proxy = await startOpsProxy({ yaml: withKeyFile(upstream.url, file) });
  t.teardown(() => proxy.close());
  await proxy.waitForLog((l) => l["msg"] === "key loaded");

  writeFileSync(proxy.configFile, `${withKeyFile(upstream.url, file)}key_refresh: { interval: 10m, max_stale: 1h }\n`);
  t.equal(await proxy.proxy.reload("test"), "applied");
  t.equal((await request(proxy.port, { path: "/v1/models", headers: AUTH })).status, 200);
  t.equal(upstream.requests.at(-1)?.headers["authorization"], `Bearer ${KEY_OLD}`);
  t.equal((await proxy.admin("/readyz")).status, 200);
  t.equal(proxy.logs.filter((l) => l["msg"] === "key loaded").length, 1, "read once: at start");
  t.notOk(proxy.logs.some((l) => l["msg"] === "key refreshed, unchanged"), "and not again at the reload");
  t.notOk(proxy.logs.some((l) => l["msg"] === "key settings changed; serving the previous key until the new source delivers"));
});
