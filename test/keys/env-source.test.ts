import t from "tap";
import { spawnSync } from "node:child_process";
import { createEnvSource, takeFromEnv } from "../../src/keys/env-source.ts";

const KEY = "mq-live-envenvenvenvenv01";
const signal = () => new AbortController().signal;

void t.test("reads the variable at creation and scrubs it from the environment", async (t) => {
  const env: Record<string, string | undefined> = { MYTHIQ_API_KEY: KEY, OTHER: "kept" };
  const source = createEnvSource({ env: "MYTHIQ_API_KEY" }, { env });
  t.equal(source.kind, "env");
  t.notOk("MYTHIQ_API_KEY" in env, "deleted from the environment object");
  t.same(env, { OTHER: "kept" }, "other variables untouched");
  t.same(await source.fetch(signal()), { value: KEY, version: "" });
  env["MYTHIQ_API_KEY"] = "mq-live-changed-later-00";
  t.same(await source.fetch(signal()), { value: KEY, version: "" }, "read once: later changes are not seen");
});

void t.test("missing or empty: a clear error that names the variable only", async (t) => {
  const env: Record<string, string | undefined> = { EMPTY: "" };
  const missing = createEnvSource({ env: "MYTHIQ_API_KEY" }, { env });
  await t.rejects(missing.fetch(signal()), new Error("environment variable MYTHIQ_API_KEY is not set"));
  const empty = createEnvSource({ env: "EMPTY" }, { env });
  await t.rejects(empty.fetch(signal()), new Error("environment variable EMPTY is not set"));
  t.notOk("EMPTY" in env, "an empty variable is scrubbed too");
});

void t.test("an aborted signal rejects", async (t) => {
  const source = createEnvSource({ env: "K" }, { env: { K: KEY } });
  const controller = new AbortController();
  controller.abort();
  await t.rejects(source.fetch(controller.signal), /aborted/);
});

void t.test("a second source for the same variable (two keys, or a reload) still gets the value", async (t) => {
  const env: Record<string, string | undefined> = { SHARED: KEY };
  const first = createEnvSource({ env: "SHARED" }, { env });
  const second = createEnvSource({ env: "SHARED" }, { env });
  t.equal((await first.fetch(signal())).value, KEY);
  t.equal((await second.fetch(signal())).value, KEY);
  t.equal(takeFromEnv(env, "SHARED"), KEY);
  t.equal(takeFromEnv({}, "SHARED"), undefined, "remembered per environment object");
});

void t.test("with process.env: the variable is gone for this process and its children", async (t) => {
  const name = `MYTHIQ_PROXY_TEST_KEY_${process.pid}`;
  process.env[name] = KEY;
  t.teardown(() => {
    delete process.env[name];
  });
  const source = createEnvSource({ env: name });
  t.equal(process.env[name], undefined);
  t.equal((await source.fetch(signal())).value, KEY);
  const child = spawnSync(process.execPath, ["-e", `process.stdout.write(process.env[${JSON.stringify(name)}] ?? "absent")`], {
    encoding: "utf8",
  });
  t.equal(child.stdout, "absent", "a child process does not inherit it");
});
