// Hostile config files arriving by reload: each is refused and the proxy goes on serving, without
// its event loop ever running the parser. The first file is the one that motivated validating in
// a child process: 1 MiB of `pricing` entries kept the (bounded) loader busy for about 100 s on
// Node 24 before its duplicate-key check became linear, and still takes seconds when every value
// is wrong; in the proxy's process that would stop every request for as long. Here the validator
// is killed after `validateTimeoutMs` (1 s) while requests keep flowing. The other files get 4 s:
// a real config validates in about 0.3 s on an idle machine, but the validator is a new Node
// process, and on a loaded two-core machine its start alone can take a second.
import { spawnSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import t, { type Test } from "tap";
import { MAX_CONFIG_BYTES } from "../../src/config/bounded-yaml.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { request, startLoad, startOpsProxy, upstreamRequests } from "../helpers/ops.ts";
import { configYaml, TEST_KEY, TOKEN } from "../helpers/proxy-harness.ts";

const AUTH = { authorization: `Bearer ${TOKEN}` };

/** 1 MiB of `pricing` entries, every price invalid: about 3.5 s to validate on this machine. */
function pricingBomb(): string {
  const lines = ["pricing:"];
  let size = 9;
  for (let i = 0; size < MAX_CONFIG_BYTES - 64; i++) {
    const line = `  m${i}: x`;
    lines.push(line);
    size += line.length + 1;
  }
  return `${lines.join("\n")}\n`;
}

function billionLaughs(): string {
  const lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'];
  for (let i = 1; i < 10; i++) lines.push(`a${i}: &a${i} [${Array<string>(10).fill(`*a${i - 1}`).join(", ")}]`);
  return `${lines.join("\n")}\n`;
}

async function serving(t: Test, validateTimeoutMs: number) {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const yaml = configYaml(upstream.url);
  const proxy = await startOpsProxy({ yaml, env: { MYTHIQ_API_KEY: TEST_KEY }, validateTimeoutMs });
  t.teardown(() => proxy.close());
  await proxy.waitForLog((l) => l["msg"] === "key loaded");
  return { upstream, yaml, proxy, runningHash: proxy.proxy.compiled().hash };
}

t.test("a file too slow to validate is refused at the timeout while the proxy keeps serving", async (t) => {
  const { upstream, proxy, runningHash } = await serving(t, 1_000);
  const load = startLoad(proxy.port, { concurrency: 4, headers: AUTH });
  await upstreamRequests(upstream, 20);
  writeFileSync(proxy.configFile, pricingBomb());
  const before = load.results.length;
  const started = performance.now();
  t.equal(await proxy.proxy.reload("SIGHUP"), "rejected");
  const tookMs = performance.now() - started;
  const during = load.results.slice(before);
  const results = await load.stop();
  t.ok(tookMs >= 1_000 && tookMs < 8_000, `refused after the validation timeout (${Math.round(tookMs)} ms)`);
  t.same(results.filter((r) => r.status !== 200), [], "no request failed");
  t.ok(during.length >= 20, `${during.length} requests served while the validator ran`);
  const slowest = Math.max(...during.map((r) => r.ms));
  t.ok(slowest < 1_000, `the event loop was never blocked: slowest request ${Math.round(slowest)} ms`);
  const killed = await proxy.waitForLog((l) => l["msg"] === "config reload rejected, keeping the running config");
  t.match(killed["problems"], [/proxy\.yaml:1:1: validation did not finish within 1000 ms/]);
  t.equal(await proxy.metric("mythiq_proxy_config_reloads_total", { result: "rejected" }), 1, "counted");
  t.equal(proxy.proxy.compiled().hash, runningHash, "the config in force did not change");
});

t.test("hostile files are refused one by one while the proxy keeps serving", async (t) => {
  const { yaml, proxy, runningHash } = await serving(t, 4_000);

  // 1. Files the bounded loader refuses with a position, each one counted once.
  const files: Array<[string, string | Buffer, RegExp]> = [
    ["nesting bomb", "[".repeat(100_000), /:1:65: nesting is deeper than 64 levels/],
    ["alias bomb", billionLaughs(), /more than 100 alias expansions/],
    ["oversized", "a: b\n".repeat(300_000), /larger than 1048576 bytes/],
    ["binary", Buffer.from([0x6b, 0x3a, 0x20, 0xff, 0xfe, 0x00, 0x01, 0x0a]), /not valid UTF-8/],
    ["truncated", yaml.slice(0, yaml.indexOf("clients:") + 20), /proxy\.yaml:\d+:\d+: /],
  ];
  let rejected = 0;
  for (const [name, content, message] of files) {
    writeFileSync(proxy.configFile, content);
    t.equal(await proxy.proxy.reload("file change"), "rejected", name);
    rejected += 1;
    const line = proxy.logs.filter((l) => l["msg"] === "config reload rejected, keeping the running config").at(-1);
    t.match((line?.["problems"] as string[] | undefined)?.[0], message, `${name}: the problem is named`);
    t.equal((await request(proxy.port, { path: "/v1/models", headers: AUTH })).status, 200, `${name}: still serving`);
  }

  // 2. A FIFO where the file was: opening it would block a reader for ever; the validator is killed.
  rmSync(proxy.configFile);
  t.equal(spawnSync("mkfifo", [proxy.configFile]).status, 0, "mkfifo");
  t.equal(await proxy.proxy.reload("SIGHUP"), "rejected", "fifo");
  rejected += 1;
  t.equal((await request(proxy.port, { path: "/v1/models", headers: AUTH })).status, 200, "fifo: still serving");
  rmSync(proxy.configFile);

  t.equal(await proxy.metric("mythiq_proxy_config_reloads_total", { result: "rejected" }), rejected, "every refusal counted");
  t.equal(proxy.proxy.compiled().hash, runningHash, "the config in force never changed");

  // 3. The process is healthy: a good file still applies.
  writeFileSync(proxy.configFile, yaml.replace("idle_timeout: 5s", "idle_timeout: 7s"));
  t.equal(await proxy.proxy.reload("SIGHUP"), "applied");
  t.equal((await request(proxy.port, { path: "/v1/models", headers: AUTH })).status, 200);
  t.notOk(proxy.rawLog().includes(TEST_KEY));
});
