/**
 * The key lifecycle through the whole proxy (`startTestProxy`) in front of a fake MythIQ, with the
 * `default` key read from a fake secret store (SPEC §6, §8): the store down at start, a rotation
 * picked up by the next refresh, the store down after start, a slow store, malformed values — and
 * a scan of every log line, metric and response for keys and store credentials. One scenario, run
 * by `test/e2e/rotation-vault.test.ts` and `test/e2e/rotation-aws.test.ts`.
 */
import { createHash } from "node:crypto";
import t from "tap";
import { startFakeUpstream, type FakeUpstream } from "./fake-upstream.ts";
import { send, type ClientResponse } from "./forward-harness.ts";
import type { KeyStore } from "./key-stores.ts";
import { withKey } from "./key-stores.ts";
import { configYaml, startTestProxy, TOKEN, waitReady, type TestProxy } from "./proxy-harness.ts";

const KEY1 = "mq-e2e-first-0a1b2c3d4e5f60718293";
const KEY2 = "mq-e2e-second-f0e1d2c3b4a596877869";
const BAD_VALUES = ["mq-e2e-with space-0123456789", "mq-e2e-crlf\r\nx-injected: 1"];

const fingerprint = (value: string): string => createHash("sha256").update(value).digest("hex").slice(0, 8);

/** Polls `check` every 10 ms until it holds, or fails after `ms`. */
export async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function storeLifecycle(startStore: (initial: string) => Promise<KeyStore>): void {
  let upstream: FakeUpstream;
  let store: KeyStore;
  let proxy: TestProxy;
  const responses: ClientResponse[] = [];

  const get = async (): Promise<ClientResponse> => {
    const res = await send(proxy.port, { path: "/v1/models", headers: { authorization: `Bearer ${TOKEN}` } });
    responses.push(res);
    return res;
  };
  const logged = (msg: string): Array<Record<string, unknown>> => proxy.logs.filter((line) => line["msg"] === msg);
  const lastAuthorization = (): string | undefined => upstream.requests.at(-1)?.headers["authorization"];

  t.before(async () => {
    upstream = await startFakeUpstream();
    store = await startStore(KEY1);
    store.mode("down");
    proxy = await startTestProxy({
      // The fetch timeout (at most the interval) is twice what the slow-store scenario's 20
      // requests take on a loaded machine, so that one fetch is still waiting when they are done.
      yaml: withKey(configYaml(upstream.url), store.keyYaml({ interval: "2s", timeout: "2s" })),
      env: store.env,
    });
  });
  t.teardown(async () => {
    await proxy?.close();
    await store?.close();
    await upstream?.close();
  });

  t.test("store down at start: 503 key_unavailable and /readyz 503 until it comes up", async (t) => {
    await until(() => logged("key refresh failed").length > 0, 8_000, "a failed first fetch");
    const refused = await get();
    t.equal(refused.status, 503);
    t.match(JSON.parse(refused.body.toString()), { reason: "key_unavailable", code: "service_unavailable" });
    t.equal(refused.headers["retry-after"], "5");
    t.equal(upstream.requests.length, 0, "nothing was sent upstream without a key");
    const notReady = await proxy.admin("/readyz");
    t.equal(notReady.status, 503);
    t.same(JSON.parse(notReady.body), { ready: false, reasons: ["key default not loaded"] });

    store.mode("up");
    await waitReady(proxy, 8_000);
    const ok = await get();
    t.equal(ok.status, 200);
    t.equal(lastAuthorization(), `Bearer ${KEY1}`);
  });

  t.test("a rotated secret is picked up by the next refresh", async (t) => {
    store.rotate(KEY2);
    await until(async () => (await get()).status === 200 && lastAuthorization() === `Bearer ${KEY2}`, 8_000, "the new key upstream");
    const metrics = (await proxy.admin("/metrics")).body;
    t.match(metrics, new RegExp(`mythiq_proxy_key_rotations_total\\{key="default"\\} 1\\n`));
    t.match(metrics, new RegExp(`mythiq_proxy_key_info\\{key="default",source="${store.name}",fingerprint="${fingerprint(KEY2)}",version="[^"]+"\\} 1\\n`));
    t.ok(logged("key rotated").length === 1);
  });

  t.test("store down after start: requests keep succeeding with the cached key", async (t) => {
    const before = logged("key refresh failed").length;
    store.mode("down");
    t.teardown(() => store.mode("up"));
    await until(() => logged("key refresh failed").length > before, 8_000, "a failed refresh");
    for (let i = 0; i < 5; i++) {
      const res = await get();
      t.equal(res.status, 200);
      t.equal(lastAuthorization(), `Bearer ${KEY2}`);
    }
    t.equal((await proxy.admin("/readyz")).status, 200, "still ready: max_stale is 0");
    t.match((await proxy.admin("/metrics")).body, new RegExp(`mythiq_proxy_key_refresh_total\\{key="default",source="${store.name}",result="failed"\\} \\d+`));
  });

  t.test("a slow store never delays requests", async (t) => {
    store.mode("stall");
    t.teardown(() => store.mode("up"));
    const reads = store.reads();
    const failures = logged("key refresh failed").length;
    await until(() => store.reads() > reads, 8_000, "a refresh waiting on the store");
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      const res = await get();
      times.push(performance.now() - started);
      t.equal(res.status, 200);
    }
    t.equal(logged("key refresh failed").length, failures, "the fetch was still waiting on the store throughout");
    const slowest = Math.max(...times);
    t.ok(slowest < 1_000, `slowest request ${Math.round(slowest)} ms while the store hung`);
    await until(() => logged("key refresh failed").length > failures, 8_000, "the stalled fetch to time out");
    const last = logged("key refresh failed").at(-1);
    t.equal(last?.["error"], "fetch timed out after 2s");
  });

  t.test("malformed values are rejected and the old key kept", async (t) => {
    for (const bad of BAD_VALUES) {
      const before = logged("key refresh failed").length;
      store.rotate(bad);
      await until(() => logged("key refresh failed").length > before, 8_000, "the bad value to be refused");
      t.match(logged("key refresh failed").at(-1)?.["error"], /^invalid key value: the value contains (spaces or tabs|CR or LF)$/);
      const res = await get();
      t.equal(res.status, 200);
      t.equal(lastAuthorization(), `Bearer ${KEY2}`, "the last good key is still used");
    }
    t.equal((await proxy.admin("/readyz")).status, 200);
  });

  t.test("no key, token or store credential in any log line, metric or response", async (t) => {
    const metrics = (await proxy.admin("/metrics")).body;
    const texts = [proxy.rawLog(), metrics, ...responses.map((r) => r.raw.toString("latin1"))];
    const secrets = [KEY1, KEY2, ...BAD_VALUES, ...store.secrets()];
    for (const [i, text] of texts.entries()) {
      const found = secrets.filter((secret) => text.includes(secret));
      t.same(found, [], i === 0 ? "log" : i === 1 ? "metrics" : `response ${i - 2}`);
    }
    t.ok(responses.length > 30);
  });
}
