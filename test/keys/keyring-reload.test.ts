import t from "tap";
import type { KeyConfig, RefreshConfig } from "../../src/config/types.ts";
import { createKeyring, keyChange, sameConfig, type KeyRefreshEvent, type ManagedKeyring } from "../../src/keys/keyring.ts";
import type { KeySource } from "../../src/keys/types.ts";
import { fingerprint } from "../../src/keys/validate-key.ts";
import {
  MINUTE,
  refresh,
  createFakeClock,
  createRecordingLogger,
  createScriptedSource,
  settle,
  value,
  vaultKey,
  type FakeClock,
  type RecordingLogger,
} from "../helpers/keys-fakes.ts";

const KEY_A = "mq-live-reloadAAAAAAAAAAA";
const KEY_B = "mq-live-reloadBBBBBBBBBBB";
const KEY_C = "mq-live-reloadCCCCCCCCCCC";

function awsKey(overrides: Partial<RefreshConfig> = {}): KeyConfig {
  return {
    source: "aws",
    refresh: refresh(overrides),
    aws: { region: "eu-west-1", secret_id: "mythiq/production", version_stage: "AWSCURRENT", endpoint: "" },
  };
}

function fileKey(file: string, overrides: Partial<RefreshConfig> = {}): KeyConfig {
  return { source: "file", file, refresh: refresh(overrides) };
}

async function started(keys: Record<string, KeyConfig>, sources: Record<string, KeySource>) {
  const clock = createFakeClock();
  const logger = createRecordingLogger();
  const keyring = createKeyring({ keys, sources, logger, clock });
  keyring.start();
  await settle();
  return { clock, logger, keyring };
}

/** The keyring a reload builds for `production` (with `source` when given), replacing `previous`. */
function reloadTo(
  t: { teardown(fn: () => void): void },
  from: { clock: FakeClock; logger: RecordingLogger; keyring: ManagedKeyring },
  key: KeyConfig,
  source?: KeySource,
) {
  const events: KeyRefreshEvent[] = [];
  const next = createKeyring({
    keys: { production: key },
    ...(source === undefined ? {} : { sources: { production: source } }),
    logger: from.logger,
    clock: from.clock,
    events: { refreshed: (e) => events.push(e) },
    previous: from.keyring,
  });
  t.teardown(() => next.close());
  return { next, events };
}

void t.test("a reload keeps held keys whose settings did not change", async (t) => {
  const oldProduction = createScriptedSource("vault", value(KEY_A));
  const oldAnalytics = createScriptedSource("aws", value(KEY_B));
  const { clock, logger, keyring: old } = await started(
    { production: vaultKey(), analytics: vaultKey({}, "mythiq/analytics") },
    { production: oldProduction, analytics: oldAnalytics },
  );
  const heldBefore = old.current("production");
  await clock.advance(2 * MINUTE);

  const newProduction = createScriptedSource("vault", value(KEY_C));
  const newAnalytics = createScriptedSource("aws", value(KEY_C));
  const events: KeyRefreshEvent[] = [];
  const next = createKeyring({
    // Equal settings for production, but new objects (a freshly parsed config); analytics moved.
    keys: { production: vaultKey(), analytics: vaultKey({}, "mythiq/analytics-v2") },
    sources: { production: newProduction, analytics: newAnalytics },
    logger,
    clock,
    events: { refreshed: (e) => events.push(e) },
    previous: old,
  });
  t.teardown(() => next.close());

  t.equal(next.current("production"), heldBefore, "held key adopted before start: no gap in service");
  t.equal(next.current("analytics")?.value, KEY_B, "moved key: the old value is served meanwhile");
  t.ok(newProduction.closed, "the unused new source for the adopted key is closed");
  t.notOk(newAnalytics.closed);

  next.start();
  await settle();
  t.equal(oldProduction.calls, 1, "no re-fetch of the adopted key at start");
  t.equal(newProduction.calls, 0, "the new source for it is never used");
  t.equal(newAnalytics.calls, 1, "a moved key is fetched through its new source at once");
  t.equal(oldAnalytics.calls, 1, "and never again through its old one");
  t.equal(next.current("analytics")?.value, KEY_C);
  t.match(events, [{ name: "analytics", result: "changed", rotated: true }]);
  t.equal(clock.pending().filter((d) => d === 3 * MINUTE).length, 1, "the adopted key keeps its schedule (5m - 2m)");

  old.close();
  t.notOk(oldProduction.closed, "closing the old keyring does not close the adopted source");
  t.ok(oldAnalytics.closed, "it closes the sources it still owns");

  oldProduction.script(value(KEY_B));
  await clock.advance(3 * MINUTE);
  t.equal(oldProduction.calls, 2, "the adopted source is refreshed by the new keyring");
  t.equal(next.current("production")?.value, KEY_B);
  t.match(events.at(-1), { name: "production", result: "changed", rotated: true });

  oldProduction.script(value(KEY_C));
  oldProduction.change();
  await settle();
  t.equal(next.current("production")?.value, KEY_C, "the adopted source's change notifications reach the new keyring");
});

void t.test("only interval or max_stale changed: value and source adopted, the new schedule applies", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A));
  const before = await started({ production: vaultKey() }, { production: source });
  const { clock, logger, keyring: old } = before;
  const held = old.current("production");
  await clock.advance(2 * MINUTE);

  const given = createScriptedSource("vault", value(KEY_B));
  const { next } = reloadTo(t, before, vaultKey({ interval: 3 * MINUTE, max_stale: 10 * MINUTE }), given);
  t.equal(next.current("production"), held, "the held key, before start");
  t.ok(given.closed, "the source built for the new config is not needed");
  next.start();
  old.close();
  t.notOk(source.closed, "the adopted source stays open");
  await settle();
  t.equal(source.calls, 1, "no fetch at start");
  t.same(clock.pending(), [1 * MINUTE], "the new 3m interval counts from the last fetch, 2m ago");
  t.notOk(logger.records.some((r) => r.msg.startsWith("key settings changed")), "nothing is bridged");

  source.script(new Error("vault down"));
  await clock.advance(1 * MINUTE);
  t.equal(source.calls, 2, "the adopted source, on the new schedule");
  t.equal(next.current("production"), held, "fail static");
  await clock.advance(7 * MINUTE);
  t.equal(next.current("production"), held, "10m after the last success: still served");
  await clock.advance(1);
  t.equal(next.current("production"), undefined, "past the new max_stale: no longer served");
  t.match(next.readiness(["production"]).reasons, [/key production stale \(last fetched 10m ago, max_stale 10m\)/]);
});

void t.test("refresh.timeout changed: value and schedule kept, the new source (built with the timeout) used", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A));
  const before = await started({ production: vaultKey() }, { production: source });
  const { clock, logger, keyring: old } = before;
  const held = old.current("production");
  await clock.advance(2 * MINUTE);

  const given = createScriptedSource("vault", "hang");
  const { next } = reloadTo(t, before, vaultKey({ timeout: 30_000 }), given);
  t.equal(next.current("production"), held);
  t.notOk(given.closed);
  next.start();
  old.close();
  t.ok(source.closed, "the old source (built with the old timeout) is closed with the old keyring");
  await settle();
  t.equal(given.calls, 0, "no fetch at start: the held value came from these very store settings");
  t.same(clock.pending(), [3 * MINUTE]);
  await clock.advance(3 * MINUTE);
  t.equal(given.calls, 1, "the next fetch uses the new source");
  t.same(clock.pending(), [30_000], "bounded by the new timeout");
  t.notOk(logger.records.some((r) => r.msg.startsWith("key settings changed")), "nothing is bridged");
});

void t.test("source settings changed: the old value is served until the new source delivers", async (t) => {
  const oldSource = createScriptedSource("vault", value(KEY_A, "3"));
  const before = await started({ production: vaultKey() }, { production: oldSource });
  const { clock, logger, keyring: old } = before;
  const held = old.current("production");
  await clock.advance(1 * MINUTE);

  const newSource = createScriptedSource("vault", new Error("vault read secret/data/mythiq/production-v2 failed: HTTP 404"));
  const { next, events } = reloadTo(t, before, vaultKey({}, "mythiq/production-v2"), newSource);
  t.equal(next.current("production"), held, "served from the first moment");
  next.start();
  old.close();
  await settle();
  t.ok(oldSource.closed, "the old source is not handed over");
  t.notOk(newSource.closed);
  t.equal(newSource.calls, 1, "the new source is asked at once");

  t.equal(next.current("production"), held, "its failure leaves the old value in service");
  t.equal(old.current("production"), held, "requests under the old config see the same key");
  t.same(next.readiness(["production"]), { ready: true, reasons: [] });
  t.match(logger.records.find((r) => r.msg === "key settings changed; serving the previous key until the new source delivers"), {
    level: "info",
    fields: { key: "production", source: "vault", serving: fingerprint(KEY_A), serving_source: "vault", serving_age_ms: MINUTE },
  });
  t.match(logger.records.filter((r) => r.msg === "key refresh failed").at(-1), {
    fields: { key: "production", serving: fingerprint(KEY_A), serving_previous_settings: true },
  });
  t.match(events, [{ name: "production", result: "failed", rotated: false }]);
  t.equal(events[0]?.key, held, "the failure event reports the key still served");

  // A 401 meanwhile asks the new source, not the old one; it still fails: the same key comes back.
  const refused = await next.refreshNow("production");
  t.equal(refused?.fingerprint, fingerprint(KEY_A), "the forwarder sees no different key: 502, no retry");
  t.equal(oldSource.calls, 1, "the old source is never asked again");

  newSource.script(value(KEY_B, "1"));
  await clock.advance(2_000);
  t.equal(next.current("production")?.value, KEY_B, "switched once the new source delivered");
  t.equal(next.current("production")?.version, "1");
  t.match(events.at(-1), { name: "production", result: "changed", rotated: true });
  t.match(logger.records.find((r) => r.msg === "key source switched"), {
    level: "info",
    fields: {
      key: "production",
      source: "vault",
      fingerprint: fingerprint(KEY_B),
      previous_fingerprint: fingerprint(KEY_A),
      previous_source: "vault",
      rotated: true,
    },
  });
  t.notOk(logger.records.some((r) => r.msg === "key rotated"), "one line for the switch");

  newSource.script(new Error("vault down"));
  await clock.advance(5 * MINUTE + 30_000);
  const failure = logger.records.filter((r) => r.msg === "key refresh failed").at(-1);
  t.equal(failure?.fields["serving"], fingerprint(KEY_B));
  t.notOk("serving_previous_settings" in (failure?.fields ?? {}), "the bridge is over");
  t.notOk(logger.text().includes(KEY_A) || logger.text().includes(KEY_B), "no value in any log field");
});

void t.test("the old value's age keeps counting: max_stale ends the bridge if the new source never delivers", async (t) => {
  const oldSource = createScriptedSource("vault", value(KEY_A));
  const before = await started({ production: vaultKey() }, { production: oldSource });
  const { clock, keyring: old } = before;
  const held = old.current("production");
  await clock.advance(2 * MINUTE);
  const newSource = createScriptedSource("vault", new Error("vault down"));
  const { next } = reloadTo(t, before, vaultKey({ max_stale: 5 * MINUTE }, "mythiq/production-v2"), newSource);
  next.start();
  old.close();
  await settle();
  t.equal(next.current("production"), held);
  await clock.advance(3 * MINUTE);
  t.equal(next.current("production"), held, "exactly max_stale after its fetch: still served");
  await clock.advance(1);
  t.equal(next.current("production"), undefined, "then no longer: its age counts from its fetch, not from the reload");
  t.match(next.readiness(["production"]).reasons, [/key production stale \(last fetched 5m ago, max_stale 5m\)/]);
  newSource.script(value(KEY_B));
  t.equal((await next.refreshNow("production"))?.value, KEY_B, "served again once the new source delivers");
});

void t.test("a new source with the same value: the switch is logged, not counted as a rotation", async (t) => {
  const oldSource = createScriptedSource("vault", value(KEY_A));
  const before = await started({ production: vaultKey() }, { production: oldSource });
  const { clock, logger, keyring: old } = before;
  t.teardown(() => old.close());
  await clock.advance(MINUTE);
  const newSource = createScriptedSource("aws", value(KEY_A, "v-1"));
  const { next, events } = reloadTo(t, before, awsKey(), newSource);
  t.equal(next.current("production")?.source, "vault", "the served key says where it came from");
  next.start();
  await settle();
  t.match(events, [{ name: "production", source: "aws", result: "unchanged", rotated: false }]);
  t.equal(next.current("production")?.source, "aws");
  t.equal(next.current("production")?.fetchedAt, clock.now(), "its age restarts with the new source");
  t.match(logger.records.find((r) => r.msg === "key settings changed; serving the previous key until the new source delivers"), {
    fields: { source: "aws", serving_source: "vault" },
  });
  t.match(logger.records.find((r) => r.msg === "key source switched"), {
    fields: { source: "aws", previous_source: "vault", fingerprint: fingerprint(KEY_A), previous_fingerprint: fingerprint(KEY_A), rotated: false, version: "v-1" },
  });
});

void t.test("reloads while the new source has not delivered keep bridging the old value", async (t) => {
  const oldSource = createScriptedSource("vault", value(KEY_A));
  const { clock, logger, keyring: first } = await started({ production: vaultKey() }, { production: oldSource });
  const held = first.current("production");
  const v2 = createScriptedSource("vault", new Error("HTTP 404"));
  const second = createKeyring({ keys: { production: vaultKey({}, "mythiq/v2") }, sources: { production: v2 }, logger, clock, previous: first });
  second.start();
  first.close();
  await settle();
  t.equal(v2.calls, 1);

  // Only the interval changes: the failing v2 source is adopted, and so is the bridged value.
  const third = createKeyring({ keys: { production: vaultKey({ interval: 10 * MINUTE }, "mythiq/v2") }, logger, clock, previous: second });
  third.start();
  second.close();
  await settle();
  t.equal(v2.calls, 2, "a bridged key is fetched at once, not on the interval");
  t.equal(third.current("production"), held);

  // Another path again: still the first value, through a third source.
  const v3 = createScriptedSource("vault", "hang");
  const fourth = createKeyring({ keys: { production: vaultKey({}, "mythiq/v3") }, sources: { production: v3 }, logger, clock, previous: third });
  t.teardown(() => fourth.close());
  fourth.start();
  third.close();
  await settle();
  t.ok(v2.closed);
  t.equal(fourth.current("production"), held);
  t.equal(first.current("production"), held, "every older keyring forwards to the newest");

  v3.script(value(KEY_B));
  await clock.advance(7_000);
  t.equal(fourth.current("production")?.value, KEY_B, "the hung fetch timed out (5s), the retry (1s) delivered");
  t.equal(logger.records.filter((r) => r.msg === "key source switched").length, 1);
  t.equal(first.current("production")?.value, KEY_B);
});

void t.test("a key never loaded is not taken over when its source settings change", async (t) => {
  const oldSource = createScriptedSource("vault", new Error("HTTP 403"));
  const before = await started({ production: vaultKey() }, { production: oldSource });
  const { logger, keyring: old } = before;
  const newSource = createScriptedSource("vault", value(KEY_A));
  const { next } = reloadTo(t, before, vaultKey({}, "mythiq/v2"), newSource);
  t.equal(next.current("production"), undefined);
  next.start();
  old.close();
  await settle();
  t.ok(oldSource.closed);
  t.equal(next.current("production")?.value, KEY_A);
  t.notOk(logger.records.some((r) => r.msg === "key source switched"), "a first load, not a switch");
  t.ok(logger.records.some((r) => r.msg === "key loaded"));
});

void t.test("requests still running under the old config see the new keyring's key", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A));
  const { clock, logger, keyring: old } = await started({ production: vaultKey() }, { production: source });
  t.teardown(() => old.close());
  const next = createKeyring({ keys: { production: vaultKey() }, logger, clock, previous: old });
  t.teardown(() => next.close());
  next.start();
  source.script(value(KEY_B));
  const refusedA = old.current("production")!;
  const refreshed = await old.refreshNow("production", refusedA);
  t.equal(refreshed?.value, KEY_B, "old.refreshNow forwards to the new keyring");
  t.equal(source.calls, 2, "one fetch");
  t.equal(old.current("production")?.value, KEY_B, "old.current forwards too");
  t.equal(old.held("production")?.value, KEY_B);
  t.same(old.readiness(["production"]), { ready: true, reasons: [] });
  t.equal((await next.refreshNow("production", refusedA))?.value, KEY_B);
  t.equal(source.calls, 2, "A was refused already and B is held: no fetch");
  // MythIQ refuses B before the store has a newer value: the same value comes back.
  const refusedB = next.current("production")!;
  await old.refreshNow("production", refusedB);
  t.equal(source.calls, 3, "a newly refused value fetches");
  await next.refreshNow("production", refusedB);
  t.equal(source.calls, 3, "the 30 s window is shared: it lives in the new keyring");
  await clock.advance(10 * MINUTE);
  t.equal(source.calls, 5, "only the new keyring refreshes (two intervals, not four)");
});

void t.test("a key adopted from a closed keyring keeps its value but uses the new source", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A));
  const { clock, logger, keyring: old } = await started({ production: vaultKey() }, { production: source });
  old.close();
  const fresh = createScriptedSource("vault", value(KEY_B));
  const newLogger = createRecordingLogger();
  const next = createKeyring({ keys: { production: vaultKey() }, sources: { production: fresh }, logger: newLogger, clock, previous: old });
  t.teardown(() => next.close());
  t.equal(next.current("production")?.value, KEY_A);
  t.ok(newLogger.secrets.has(KEY_A) && logger.secrets.has(KEY_A), "the adopted value is registered with the new logger");
  next.start();
  await clock.advance(5 * MINUTE);
  t.equal(fresh.calls, 1);
  t.equal(next.current("production")?.value, KEY_B);
});

void t.test("a key is adopted by one successor only", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A));
  const { clock, logger, keyring: old } = await started({ production: vaultKey() }, { production: source });
  t.teardown(() => old.close());
  const first = createKeyring({ keys: { production: vaultKey() }, logger, clock, previous: old });
  const second = createKeyring({ keys: { production: vaultKey() }, logger, clock, previous: old });
  t.teardown(() => first.close());
  t.teardown(() => second.close());
  t.equal(first.current("production")?.value, KEY_A);
  t.equal(second.current("production"), undefined);
});

void t.test("keyChange tells the schedule, the timeout and the source apart", (t) => {
  t.equal(keyChange(vaultKey(), vaultKey()), "none");
  t.equal(keyChange(vaultKey(), vaultKey({ interval: MINUTE })), "schedule");
  t.equal(keyChange(vaultKey(), vaultKey({ max_stale: MINUTE })), "schedule");
  t.equal(keyChange(vaultKey(), vaultKey({ timeout: 1_000, interval: MINUTE })), "timeout");
  t.equal(keyChange(vaultKey(), vaultKey({}, "other")), "source");
  t.equal(keyChange(vaultKey(), vaultKey({ timeout: 1_000 }, "other")), "source");
  t.equal(keyChange(vaultKey(), awsKey()), "source");
  t.equal(keyChange(fileKey("/a"), fileKey("/b")), "source");
  t.equal(keyChange(fileKey("/a"), fileKey("/a", { interval: MINUTE })), "schedule");
  t.end();
});

void t.test("sameConfig compares plain data deeply", (t) => {
  t.ok(sameConfig(vaultKey(), vaultKey()));
  t.notOk(sameConfig(vaultKey(), vaultKey({ timeout: 1 })));
  t.notOk(sameConfig(vaultKey(), vaultKey({}, "other")));
  t.notOk(sameConfig({ a: [1, 2] }, { a: { 0: 1, 1: 2 } }));
  t.notOk(sameConfig({ a: 1 }, { a: 1, b: undefined }));
  t.notOk(sameConfig({ a: 1, c: 1 }, { a: 1, b: 1 }));
  t.ok(sameConfig([{ x: null }], [{ x: null }]));
  t.notOk(sameConfig(null, {}));
  t.end();
});
