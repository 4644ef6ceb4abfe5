// Key rotation under steady load, through the whole proxy, with the key in a fake Vault. The ops
// procedure (MythIQ's docs: create a new key, update the store, revoke the old one) seen from the
// proxy: the store already holds the new key when MythIQ starts refusing the old one with 401.
// The 401 triggers one refresh; requests whose body was held are retried once with the new key,
// so clients see no failure; a streamed body cannot be replayed, so at most the one request in
// flight fails. And a caller who can make MythIQ answer 401 cannot make the proxy hammer the store.
import t, { type Test } from "tap";
import { startFakeUpstream, type FakeUpstream, type RecordedRequest, type Reply } from "../helpers/fake-upstream.ts";
import { send, type ClientResponse } from "../helpers/forward-harness.ts";
import { startVaultStore, withKey } from "../helpers/key-stores.ts";
import { configYaml, startTestProxy, TOKEN, waitReady, type TestProxy } from "../helpers/proxy-harness.ts";
import { parseScrape } from "../helpers/prom-text.ts";
import { until } from "../helpers/store-lifecycle.ts";
import { fingerprint } from "../../src/keys/validate-key.ts";

const KEY1 = "mq-load-old-00112233445566778899aa";
const KEY2 = "mq-load-new-ffeeddccbbaa99887766554";
const KEY3 = "mq-load-next-0f1e2d3c4b5a69788796a5";
const auth = { authorization: `Bearer ${TOKEN}` };
const BODY = JSON.stringify({ model: "stability/sdxl", prompt: "a lighthouse at dusk" });

interface Rig {
  readonly upstream: FakeUpstream;
  readonly store: Awaited<ReturnType<typeof startVaultStore>>;
  readonly proxy: TestProxy;
  /** Keys MythIQ refuses with 401. */
  readonly revoked: Set<string>;
  readonly responses: ClientResponse[];
  /** 401s MythIQ answered. */
  refusals(): number;
}

const bearer = (req: RecordedRequest): string => (req.headers["authorization"] ?? "").replace(/^Bearer /, "");

/** A proxy whose `default` key is in a fake Vault, refreshed only every 5 minutes in the background. */
async function rig(t: Test, initial = KEY1): Promise<Rig> {
  const upstream = await startFakeUpstream();
  const revoked = new Set<string>();
  let refusals = 0;
  upstream.fallback = (req): Reply => {
    if (!revoked.has(bearer(req))) return { type: "json", status: 200, body: { object: "list", data: [] } };
    refusals += 1;
    return { type: "unauthorized" };
  };
  const store = await startVaultStore(initial);
  const proxy = await startTestProxy({ yaml: withKey(configYaml(upstream.url), store.keyYaml({ interval: "5m" })), env: store.env });
  t.teardown(async () => {
    await proxy.close();
    await store.close();
    await upstream.close();
  });
  await waitReady(proxy);
  return { upstream, store, proxy, revoked, responses: [], refusals: () => refusals };
}

function get(r: Rig): Promise<ClientResponse> {
  return send(r.proxy.port, { path: "/v1/models", headers: auth });
}

/** A POST whose Content-Length is small: the proxy holds the body and can replay it. */
function postHeld(r: Rig): Promise<ClientResponse> {
  return send(r.proxy.port, {
    method: "POST",
    path: "/v1/images/generations",
    headers: { ...auth, "content-type": "application/json", "content-length": Buffer.byteLength(BODY) },
    body: BODY,
  });
}

/** A chunked POST: the proxy streams it to MythIQ and cannot replay it. */
function postStreamed(r: Rig): Promise<ClientResponse> {
  return send(r.proxy.port, {
    method: "POST",
    path: "/v1/images/generations",
    headers: { ...auth, "content-type": "application/json" },
    body: [BODY.slice(0, 10), BODY.slice(10)],
  });
}

const reads = (r: Rig): number => r.store.reads();

/** Runs `workers` loops of `request` until `stop()`; every response is kept in order. */
function load(r: Rig, workers: number, request: (r: Rig) => Promise<ClientResponse>, stop: () => boolean): Promise<void> {
  const loop = async (): Promise<void> => {
    while (!stop()) r.responses.push(await request(r));
  };
  return Promise.all(Array.from({ length: workers }, loop)).then(() => undefined);
}

function scan(t: Test, r: Rig, metrics: string): void {
  const texts = [r.proxy.rawLog(), metrics, ...r.responses.map((res) => res.raw.toString("latin1"))].join("\n");
  const secrets = [KEY1, KEY2, KEY3, ...r.store.secrets()];
  t.same(secrets.filter((secret) => texts.includes(secret)), [], "no key, Vault token or secret id in logs, metrics or responses");
}

t.test("held bodies under steady load: the rotation is invisible to clients", async (t) => {
  const r = await rig(t);
  let stop = false;
  const running = load(r, 8, (rig) => (r.responses.length % 2 === 0 ? get(rig) : postHeld(rig)), () => stop);
  await until(() => r.responses.length >= 100, 10_000, "load before the rotation");
  const readsBefore = reads(r);
  // A store that takes 200 ms to answer: every worker meets the 401 while the one refresh runs.
  r.store.vault.readDelayMs = 200;
  // The operator updates the store, then revokes the old key at MythIQ.
  r.store.rotate(KEY2);
  r.revoked.add(KEY1);
  const rotatedAt = r.responses.length;
  await until(() => r.responses.length >= rotatedAt + 300, 15_000, "load after the rotation");
  stop = true;
  await running;

  const failures = r.responses.filter((res) => res.status !== 200);
  t.same(failures.map((res) => res.status), [], `no client-visible failure in ${r.responses.length} requests`);
  t.ok(r.refusals() >= 2, `MythIQ refused the old key ${r.refusals()} times; each of those requests was retried`);
  t.equal(r.proxy.logs.filter((line) => line["msg"] === "upstream refused the key").length, r.refusals());
  t.equal(r.upstream.requests.at(-1)?.headers["authorization"], `Bearer ${KEY2}`);
  t.equal(reads(r) - readsBefore, 1, "one store read for the whole rotation");
  const metrics = (await r.proxy.admin("/metrics")).body;
  t.match(metrics, /mythiq_proxy_key_rotations_total\{key="default"\} 1\n/);
  const authFailed = parseScrape(metrics).samples.find(
    (sample) => sample.name === "mythiq_proxy_upstream_errors_total" && sample.labels["reason"] === "upstream_auth_failed",
  );
  t.equal(authFailed?.value ?? 0, 0, "no upstream_auth_failed was counted");
  scan(t, r, metrics);
});

t.test("two rotations seconds apart, each revoked at once: still invisible to held bodies", async (t) => {
  const r = await rig(t);
  let stop = false;
  const running = load(r, 8, (rig) => (r.responses.length % 2 === 0 ? get(rig) : postHeld(rig)), () => stop);
  await until(() => r.responses.length >= 100, 10_000, "load before the first rotation");
  const readsBefore = reads(r);
  r.store.vault.readDelayMs = 200;
  r.store.rotate(KEY2);
  r.revoked.add(KEY1);
  let mark = r.responses.length;
  await until(() => r.responses.length >= mark + 300, 15_000, "load after the first rotation");
  const refusalsFirst = r.refusals();
  // Well inside the 30 s that once blocked a second 401-triggered refresh of the same key.
  r.store.rotate(KEY3);
  r.revoked.add(KEY2);
  mark = r.responses.length;
  await until(() => r.responses.length >= mark + 300, 15_000, "load after the second rotation");
  stop = true;
  await running;

  const failures = r.responses.filter((res) => res.status !== 200);
  t.same(failures.map((res) => res.status), [], `no client-visible failure in ${r.responses.length} requests`);
  t.ok(refusalsFirst >= 1 && r.refusals() > refusalsFirst, `MythIQ refused each old key (${refusalsFirst}, then ${r.refusals() - refusalsFirst})`);
  t.equal(reads(r) - readsBefore, 2, "one store read per rotation");
  t.equal(r.upstream.requests.at(-1)?.headers["authorization"], `Bearer ${KEY3}`);
  const metrics = (await r.proxy.admin("/metrics")).body;
  t.match(metrics, /mythiq_proxy_key_rotations_total\{key="default"\} 2\n/);
  t.same(
    r.proxy.logs.filter((line) => line["msg"] === "key refresh requested").map((line) => line["refused"]),
    [fingerprint(KEY1), fingerprint(KEY2)],
    "one 401-triggered refresh per refused value",
  );
  scan(t, r, metrics);
});

t.test("streamed bodies under steady load: at most one client-visible failure", async (t) => {
  const r = await rig(t);
  let stop = false;
  const running = load(r, 1, postStreamed, () => stop);
  await until(() => r.responses.length >= 30, 10_000, "load before the rotation");
  r.store.rotate(KEY2);
  r.revoked.add(KEY1);
  const rotatedAt = r.responses.length;
  await until(() => r.responses.length >= rotatedAt + 60, 10_000, "load after the rotation");
  stop = true;
  await running;

  const failures = r.responses.filter((res) => res.status !== 200);
  t.ok(failures.length <= 1, `${failures.length} failure(s) in ${r.responses.length} requests`);
  for (const failure of failures) {
    t.equal(failure.status, 502);
    t.match(JSON.parse(failure.body.toString()), { reason: "upstream_auth_failed" });
  }
  const refused = r.responses.findIndex((res) => res.status !== 200);
  t.ok(refused === -1 || refused >= rotatedAt, "nothing failed before the rotation");
  t.ok(r.responses.slice(refused + 1).every((res) => res.status === 200), "every request after the refused one succeeds, with the new key");
  t.equal(r.upstream.requests.at(-1)?.headers["authorization"], `Bearer ${KEY2}`);
  scan(t, r, (await r.proxy.admin("/metrics")).body);
});

t.test("401s cannot provoke refresh storms: one store read per refused value per 30 s, shared", async (t) => {
  const r = await rig(t);
  const readsBefore = reads(r);
  const loginsBefore = r.store.vault.count((req) => req.path.endsWith("/login"));
  // MythIQ refuses everything (or a caller found a way to make it answer 401).
  r.revoked.add(KEY1);
  let sent = 0;
  await load(r, 12, postHeld, () => sent++ >= 120);
  t.equal(r.responses.length, 120, "every request answered");
  t.ok(r.responses.every((res) => res.status === 502), "each refused key ends in 502");
  t.ok(r.responses.every((res) => JSON.parse(res.body.toString()).reason === "upstream_auth_failed"));
  t.equal(reads(r) - readsBefore, 1, `one store read for ${r.responses.length} refused requests`);
  t.equal(r.store.vault.count((req) => req.path.endsWith("/login")) - loginsBefore, 0, "and no extra login");
  t.equal(r.refusals(), r.responses.length, "each forwarded once: no retry with the same key");
  scan(t, r, (await r.proxy.admin("/metrics")).body);
});
