import t from "tap";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KeyConfig } from "../../src/config/types.ts";
import { builtinSources, createSource, createSources, type SourceDeps } from "../../src/keys/sources.ts";
import { createKeyring } from "../../src/keys/keyring.ts";
import { createRecordingLogger, refresh, settle, vaultKey } from "../helpers/keys-fakes.ts";

const KEY = "mq-live-sourcessources01";
const signal = () => new AbortController().signal;
/** A registry without vault and aws, as a build that left them out would have. */
const envAndFile = { env: builtinSources.env, file: builtinSources.file };

function deps(env: Record<string, string | undefined> = {}): SourceDeps {
  return { env, logger: createRecordingLogger(), file: { pollInterval: 0, watch: false } };
}

const awsKey: KeyConfig = {
  source: "aws",
  refresh: refresh(),
  aws: { region: "eu-west-1", secret_id: "mythiq/analytics", field: "api_key", version_stage: "AWSCURRENT", endpoint: "" },
};

void t.test("env and file are built in", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-sources-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "key"), `${KEY}\n`);
  const env = { MYTHIQ_API_KEY: KEY };
  const sources = createSources(
    {
      default: { source: "env", env: "MYTHIQ_API_KEY", refresh: refresh() },
      legacy: { source: "file", file: join(dir, "key"), refresh: refresh() },
    },
    deps(env),
  );
  t.equal(sources["default"]?.kind, "env");
  t.equal(sources["legacy"]?.kind, "file");
  t.same(env, {}, "env scrubbed when the source was built");
  t.equal((await sources["default"]!.fetch(signal())).value, KEY);
  t.equal((await sources["legacy"]!.fetch(signal())).value, KEY);
  for (const source of Object.values(sources)) source.close?.();
  t.same(Object.keys(builtinSources).sort(), ["aws", "env", "file", "vault"]);
});

void t.test("vault and aws without a registered factory: a source that fails clearly", async (t) => {
  for (const config of [vaultKey(), awsKey]) {
    const source = createSource(config, deps(), envAndFile);
    t.equal(source.kind, config.source);
    await t.rejects(source.fetch(signal()), new Error(`key source "${config.source}" is not available in this build`));
  }
});

void t.test("the keyring never holds such a key and does not crash", async (t) => {
  const logger = createRecordingLogger();
  const keys = { production: vaultKey(), analytics: awsKey };
  const keyring = createKeyring({ keys, sources: createSources(keys, deps(), envAndFile), logger });
  t.teardown(() => keyring.close());
  keyring.start();
  await settle();
  t.same(keyring.readiness(["production", "analytics"]), {
    ready: false,
    reasons: ["key production not loaded", "key analytics not loaded"],
  });
  t.equal(logger.records.filter((r) => r.level === "warn").length, 2);
});

void t.test("a registry can add a kind; a throwing factory becomes a failing source", async (t) => {
  const registry = {
    ...builtinSources,
    vault: (config: { vault: { path: string } }) => ({
      kind: "vault" as const,
      fetch: () => Promise.resolve({ value: `${KEY}-${config.vault.path.length}`, version: "3" }),
    }),
    aws: () => {
      throw new Error("region is not reachable");
    },
  };
  const vault = createSource(vaultKey(), deps(), registry);
  t.same(await vault.fetch(signal()), { value: `${KEY}-17`, version: "3" });
  const aws = createSource(awsKey, deps(), registry);
  await t.rejects(aws.fetch(signal()), new Error('key source "aws" could not be created: region is not reachable'));
});
