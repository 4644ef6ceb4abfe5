// Hot reload (SPEC §8): applied atomically under load, requests in flight finish under the config
// they started with (and its upstream pool is closed only after them), keys not re-fetched, bad
// files refused with the old config serving, `server` settings applied (listen/admin changes logged
// as waiting for a restart), each change counted
// once whether SIGHUP or the file watch saw it, and Kubernetes ConfigMap updates (an atomic swap
// of the `..data` symlink) picked up by the directory watch and by the poll alone.
import t, { type Test } from "tap";
import { writeFileSync } from "node:fs";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { configMapDir, request, startLoad, startOpsProxy, upstreamRequests, type OpsProxy } from "../helpers/ops.ts";
import { configYaml, TEST_KEY, TOKEN } from "../helpers/proxy-harness.ts";
import { connectRaw } from "../helpers/raw-http.ts";

const AUTH = { authorization: `Bearer ${TOKEN}` };
const ROUTE_LINE = "      - GET /v1/generations?limit&after\n";

/** configYaml with one more route for `web`: `GET /v1/usage`. */
function withUsageRoute(upstreamUrl: string, extra = ""): string {
  const yaml = configYaml(upstreamUrl, extra);
  return yaml.replace(ROUTE_LINE, `${ROUTE_LINE}      - GET /v1/usage\n`);
}

async function setUp(
  t: Test,
  options: { yaml?: (url: string) => string; configFile?: string; watch?: Parameters<typeof startOpsProxy>[0]["watch"] } = {},
): Promise<{ upstream: FakeUpstream; proxy: OpsProxy }> {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const proxy = await startOpsProxy({
    ...(options.configFile === undefined ? { yaml: (options.yaml ?? configYaml)(upstream.url) } : { configFile: options.configFile }),
    env: { MYTHIQ_API_KEY: TEST_KEY },
    ...(options.watch === undefined ? {} : { watch: options.watch }),
  });
  t.teardown(() => proxy.close());
  await proxy.waitForLog((l) => l["msg"] === "key loaded");
  // With a watcher: its first look at the file is recorded once the start-up check has run.
  if (options.watch !== undefined) await proxy.waitForLog((l) => l["msg"] === "config unchanged" && l["trigger"] === "start");
  return { upstream, proxy };
}

t.test("a valid reload under steady load fails no request, applies at once, and keeps the held key", async (t) => {
  const { upstream, proxy } = await setUp(t);
  const oldHash = proxy.proxy.compiled().hash;
  t.equal((await request(proxy.port, { path: "/v1/usage", headers: AUTH })).status, 403, "the new route is refused before the reload");

  const load = startLoad(proxy.port, { concurrency: 8, headers: AUTH });
  await upstreamRequests(upstream, 100);
  writeFileSync(proxy.configFile, withUsageRoute(upstream.url));
  t.equal(await proxy.proxy.reload("test"), "applied");
  const seen = upstream.requests.length;
  await upstreamRequests(upstream, seen + 100);
  const results = await load.stop();

  const failed = results.filter((r) => r.status !== 200);
  t.ok(results.length >= 200, `steady load: ${results.length} requests`);
  t.same(failed, [], "no request failed across the reload");
  t.equal((await request(proxy.port, { path: "/v1/usage", headers: AUTH })).status, 200, "the new route is forwarded after it");

  const newHash = proxy.proxy.compiled().hash;
  t.not(newHash, oldHash);
  t.equal(await proxy.metric("mythiq_proxy_config_reloads_total", { result: "applied" }), 1);
  t.equal(await proxy.metric("mythiq_proxy_config_info", { hash: newHash }), 1);
  t.equal(await proxy.metric("mythiq_proxy_config_info", { hash: oldHash }), undefined, "the old hash's series is gone");
  // The env source scrubbed MYTHIQ_API_KEY after reading it: a re-fetch would have failed loudly.
  t.equal(proxy.logs.filter((l) => l["msg"] === "key loaded").length, 1, "the key was fetched once, then adopted");
  t.notOk(proxy.logs.some((l) => l["msg"] === "key refresh failed"));
  t.notOk(proxy.rawLog().includes(TEST_KEY), "the key is never logged");
});

t.test("a request in flight finishes under the old runtime; its upstream pool closes once it ends", async (t) => {
  const { upstream, proxy } = await setUp(t);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  upstream.reply({ type: "respond", status: 200, headers: { "content-type": "text/plain" }, body: ["first half,", { until: gate }, " second half"] });
  const pending = request(proxy.port, { path: "/v1/models", headers: AUTH });
  await upstream.waitForRequests(1);
  const oldConnection = upstream.connections[0];
  t.ok(oldConnection, "the old runtime's pooled upstream connection");

  // A change to the upstream settings: the new runtime gets its own forwarder and pool.
  writeFileSync(proxy.configFile, configYaml(upstream.url).replace("idle_timeout: 5s", "idle_timeout: 6s"));
  t.equal(await proxy.proxy.reload("test"), "applied");
  const reloaded = await proxy.waitForLog((l) => l["msg"] === "config reloaded");
  t.equal(reloaded["in_flight_on_previous"], 1, "one request still runs under the old config");
  t.notOk(oldConnection?.isClosed(), "the old pool is not closed under a running request");

  open();
  const res = await pending;
  t.equal(res.status, 200);
  t.equal(res.body, "first half, second half", "the response arrived whole");
  await oldConnection?.closed;
  t.ok(oldConnection?.isClosed(), "the old pool was closed once its last request ended");

  const after = await request(proxy.port, { path: "/v1/models", headers: AUTH });
  t.equal(after.status, 200);
  t.equal(upstream.connectionCount, 2, "new requests use the new runtime's pool");
});

t.test("an invalid file is refused, the old config keeps serving, and the same file counts once", async (t) => {
  const { upstream, proxy } = await setUp(t);
  const good = proxy.proxy.compiled().hash;
  writeFileSync(proxy.configFile, "clients: 3\nbogus: true\n");
  t.equal(await proxy.proxy.reload("file change"), "rejected");
  t.equal(proxy.proxy.compiled().hash, good, "the running config is unchanged");
  t.equal((await request(proxy.port, { path: "/v1/models", headers: AUTH })).status, 200, "still serving");
  t.equal(await proxy.metric("mythiq_proxy_config_reloads_total", { result: "rejected" }), 1);
  const line = await proxy.waitForLog((l) => l["msg"] === "config reload rejected, keeping the running config");
  const problems = line["problems"] as string[];
  t.ok(problems.length >= 2, "every problem is listed");
  for (const problem of problems) t.match(problem, /^\/.+proxy\.yaml:\d+:\d+: /, "FILE:LINE:COL");
  t.ok(problems.some((p) => /:2:1: .*bogus/.test(p)));

  t.equal(await proxy.proxy.reload("SIGHUP"), "rejected", "the same bad file, seen again");
  t.equal(await proxy.metric("mythiq_proxy_config_reloads_total", { result: "rejected" }), 1, "not counted twice");
  t.ok(proxy.logs.some((l) => l["msg"] === "config reload rejected again (file unchanged since), keeping the running config"));

  writeFileSync(proxy.configFile, "clients: 4\n");
  t.equal(await proxy.proxy.reload("SIGHUP"), "rejected");
  t.equal(await proxy.metric("mythiq_proxy_config_reloads_total", { result: "rejected" }), 2, "another bad file counts");

  writeFileSync(proxy.configFile, configYaml(upstream.url));
  t.equal(await proxy.proxy.reload("SIGHUP"), "unchanged", "back to the running content: a no-op");
  t.equal(await proxy.metric("mythiq_proxy_config_reloads_total", { result: "applied" }), 0);
});

t.test("server settings apply on reload; a listen or admin change is applied otherwise and logged as waiting for a restart", async (t) => {
  const { upstream, proxy } = await setUp(t);
  // Before: a header block may take 10 s (the default). Half a header block then nothing: still open.
  const slow = await connectRaw(proxy.port);
  slow.write("GET /v1/models HTTP/1.1\r\nHost: x\r\n");
  await new Promise((r) => setTimeout(r, 1_500));
  t.notOk(slow.serverClosed(), "the old headers_timeout (10s) is in force");
  slow.destroy();

  const server = "server: { headers_timeout: 1s, request_timeout: 1s, max_header_count: 10 }\n";
  writeFileSync(proxy.configFile, withUsageRoute(upstream.url, server).replace("port: 8080", "port: 8081"));
  t.equal(await proxy.proxy.reload("SIGHUP"), "applied", "a valid file is applied, server settings included");
  const restart = await proxy.waitForLog((l) => l["msg"] === "config reloaded, but these changes take effect only after a restart");
  t.same(restart["changes"], ["listen.port changed (8080 → 8081)"]);
  t.equal((await request(proxy.port, { path: "/v1/usage", headers: AUTH })).status, 200, "the rest of the file is in force");
  t.equal(await proxy.metric("mythiq_proxy_config_reloads_total", { result: "applied" }), 1);

  // After: the new headers_timeout cuts a stalled header block with SPEC's 408.
  const stalled = await connectRaw(proxy.port);
  stalled.write("GET /v1/models HTTP/1.1\r\nHost: x\r\n");
  const answer = await stalled.closed;
  t.match(answer, /^HTTP\/1\.1 408 /, "request_timeout after the new 1 s");
  t.match(answer, /"reason":"request_timeout"/);
  // And the new max_header_count refuses a head the old one (100) let through.
  const headers = Array.from({ length: 15 }, (_, i) => ({ [`x-filler-${i}`]: "y" })).reduce((a, b) => ({ ...a, ...b }), {});
  t.equal((await request(proxy.port, { path: "/v1/models", headers: { ...AUTH, ...headers } })).status, 431);

  // Reloading again with the same listen change does not repeat the warning.
  writeFileSync(proxy.configFile, withUsageRoute(upstream.url, server.replace("10 }", "11 }")).replace("port: 8080", "port: 8081"));
  t.equal(await proxy.proxy.reload("SIGHUP"), "applied");
  t.equal(proxy.logs.filter((l) => l["msg"] === "config reloaded, but these changes take effect only after a restart").length, 1, "said once");
});

t.test("SIGHUP and the file watch seeing one change apply it and count it once", async (t) => {
  const { upstream, proxy } = await setUp(t, { watch: { debounce: 20, pollInterval: 50 } });
  writeFileSync(proxy.configFile, withUsageRoute(upstream.url));
  // Both at once: the watcher's check and an operator's SIGHUP.
  const byHup = proxy.proxy.reload("SIGHUP");
  const watched = proxy.waitForLog((l) => l["trigger"] === "file change" && (l["msg"] === "config unchanged" || l["msg"] === "config reloaded"));
  const [result, line] = await Promise.all([byHup, watched]);
  t.ok(result === "applied" || line["msg"] === "config reloaded", "one of them applied it");
  t.equal(await proxy.metric("mythiq_proxy_config_reloads_total", { result: "applied" }), 1, "counted once");
  t.equal(await proxy.proxy.reload("SIGHUP"), "unchanged", "a later SIGHUP is a no-op");
  t.equal(await proxy.metric("mythiq_proxy_config_reloads_total", { result: "applied" }), 1);
  t.equal((await request(proxy.port, { path: "/v1/usage", headers: AUTH })).status, 200);
});

for (const mode of ["directory watch", "stat poll only"] as const) {
  t.test(`a ConfigMap update (atomic ..data symlink swap) is applied: ${mode}`, async (t) => {
    const upstream = await startFakeUpstream();
    t.teardown(() => upstream.close());
    const cm = configMapDir(configYaml(upstream.url));
    t.teardown(() => cm.remove());
    const { proxy } = await setUp(t, {
      configFile: cm.file,
      watch: mode === "directory watch" ? { debounce: 20, pollInterval: 0 } : { watch: false, pollInterval: 50 },
    });
    t.equal((await request(proxy.port, { path: "/v1/usage", headers: AUTH })).status, 403);

    cm.update(withUsageRoute(upstream.url));
    const line = await proxy.waitForLog((l) => l["msg"] === "config reloaded");
    t.equal(line["trigger"], "file change");
    t.equal((await request(proxy.port, { path: "/v1/usage", headers: AUTH })).status, 200, "the new config is in force");
    t.equal(await proxy.metric("mythiq_proxy_config_reloads_total", { result: "applied" }), 1);

    // A bad update is refused by the same path, and the config in force stays.
    cm.update("clients: [\n");
    await proxy.waitForLog((l) => l["msg"] === "config reload rejected, keeping the running config");
    t.equal((await request(proxy.port, { path: "/v1/usage", headers: AUTH })).status, 200, "still the last good config");
  });
}
