// The reload validator in its own process: the config it hands back is the one the loader builds
// in-process (same values, same null-prototype maps, frozen); secret references are checked
// against the environment it is given; a validator that runs out of memory or is aborted is a
// rejection, never a crash of the caller.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { loadConfigFile } from "../../src/config/load.ts";
import { decodeValidation, encodeValidation, validateIsolated } from "../../src/config/validate-isolated.ts";

const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-validate-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const VALID = `
listen: { host: 0.0.0.0, port: 8080 }
upstream: { url: "https://api.mythiq.ai", max_sockets: 16 }
keys:
  default: { source: env, env: MYTHIQ_API_KEY }
clients:
  - id: web
    auth: { tokens: ["sha256:${"a".repeat(64)}"] }
    routes: [GET /v1/models, "POST /v1/images/generations"]
    models: [stability/sdxl]
    max_body: 1MiB
    rate_limit: { requests: 60, per: 1m }
    budget: { daily_usd: 5 }
pricing: { stability/sdxl: 0.004, default: 0.01 }
limits:
  store: redis
  redis: { url: { env: REDIS_URL } }
`;

t.test("the config from the child equals the one loaded in-process, prototypes included", async (t) => {
  const path = file("valid.yaml", VALID);
  const child = await validateIsolated(path, { env: { REDIS_URL: "redis://127.0.0.1:6379" } });
  const local = await loadConfigFile(path);
  t.equal(child.ok, true);
  t.equal(local.ok, true);
  if (!child.ok || !local.ok) return;
  t.equal(child.hash, local.hash);
  t.same(child.config, local.config);
  t.equal(JSON.stringify(child.config), JSON.stringify(local.config), "same keys in the same order");
  t.equal(Object.getPrototypeOf(child.config.keys), null, "maps keep their null prototype");
  t.equal(Object.getPrototypeOf(child.config.pricing), null);
  t.equal(Object.getPrototypeOf(child.config.upstream), Object.getPrototypeOf(local.config.upstream), "records keep theirs");
  t.ok(Object.isFrozen(child.config) && Object.isFrozen(child.config.clients[0]), "frozen like the loader's");
});

t.test("secret references are checked against the environment given", async (t) => {
  const path = file("refs.yaml", VALID);
  const result = await validateIsolated(path, { env: {} });
  t.equal(result.ok, false);
  if (result.ok) return;
  t.match(result.problems, [/refs\.yaml:\d+:\d+: limits\.redis\.url: environment variable REDIS_URL is not set/]);
});

t.test("a validator that runs out of memory rejects the file; the caller lives on", async (t) => {
  let text = "pricing: [";
  while (text.length < 1_000_000) text += "1,";
  const path = file("memory.yaml", `${text}1]\n`);
  const result = await validateIsolated(path, { env: {}, maxHeapMiB: 16, timeoutMs: 20_000 });
  t.equal(result.ok, false);
  if (result.ok) return;
  t.match(result.problems, [/memory\.yaml:1:1: the validator (was killed by SIGABRT|exited with code \d+)/]);
});

t.test("aborting kills the validator and rejects", async (t) => {
  const path = file("abort.yaml", VALID);
  const controller = new AbortController();
  const pending = validateIsolated(path, { env: {}, signal: controller.signal });
  controller.abort();
  const result = await pending;
  t.equal(result.ok, false);
  if (!result.ok) t.match(result.problems, [/validation cancelled/]);
  const already = await validateIsolated(path, { env: {}, signal: controller.signal });
  t.equal(already.ok, false, "an aborted signal never starts one");
});

t.test("the wire format refuses what is not a validation", async (t) => {
  t.equal(decodeValidation("not json"), undefined);
  t.equal(decodeValidation("[]"), undefined);
  t.equal(decodeValidation('{"ok":true,"hash":"x","warnings":[]}'), undefined, "ok without a config");
  t.equal(decodeValidation('{"ok":false,"problems":[1],"warnings":[]}'), undefined);
  const round = decodeValidation(encodeValidation({ ok: false, problems: ["f:1:1: x"], warnings: [], hash: "abc" }));
  t.same(round, { ok: false, problems: ["f:1:1: x"], warnings: [], hash: "abc" });
});
