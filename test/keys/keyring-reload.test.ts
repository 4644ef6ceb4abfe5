import t from "tap";
import { createKeyring, sameConfig, type KeyRefreshEvent } from "../../src/keys/keyring.ts";
import type { KeySource } from "../../src/keys/types.ts";
import {
  MINUTE,
  createFakeClock,
  createRecordingLogger,
  createScriptedSource,
  settle,
  value,
  vaultKey,
} from "../helpers/keys-fakes.ts";

const KEY_A = "mq-live-reloadAAAAAAAAAAA";
const KEY_B = "mq-live-reloadBBBBBBBBBBB";
const KEY_C = "mq-live-reloadCCCCCCCCCCC";

async function started(keys: Record<string, ReturnType<typeof vaultKey>>, sources: Record<string, KeySource>) {
  const clock = createFakeClock();
  const logger = createRecordingLogger();
  const keyring = createKeyring({ keys, sources, logger, clock });
  keyring.start();
  await settle();
  return { clock, logger, keyring };
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
    // Equal settings, but new objects (a freshly parsed config).
    keys: { production: vaultKey(), analytics: vaultKey({ interval: 10 * MINUTE }, "mythiq/analytics") },
    sources: { production: newProduction, analytics: newAnalytics },
    logger,
    clock,
    events: { refreshed: (e) => events.push(e) },
    previous: old,
  });
  t.teardown(() => next.close());

  t.equal(next.current("production"), heldBefore, "held key adopted before start: no gap in service");
  t.equal(next.current("analytics"), undefined, "changed settings: not adopted");
  t.ok(newProduction.closed, "the unused new source for the adopted key is closed");
  t.notOk(newAnalytics.closed);

  next.start();
  await settle();
  t.equal(oldProduction.calls, 1, "no re-fetch of the adopted key at start");
  t.equal(newProduction.calls, 0, "the new source for it is never used");
  t.equal(newAnalytics.calls, 1, "a changed key is fetched through its new source");
  t.equal(next.current("analytics")?.value, KEY_C);
  t.same(events.map((e) => e.name), ["analytics"]);
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

void t.test("requests still running under the old config see the new keyring's key", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A));
  const { clock, logger, keyring: old } = await started({ production: vaultKey() }, { production: source });
  t.teardown(() => old.close());
  const next = createKeyring({ keys: { production: vaultKey() }, logger, clock, previous: old });
  t.teardown(() => next.close());
  next.start();
  source.script(value(KEY_B));
  const refreshed = await old.refreshNow("production");
  t.equal(refreshed?.value, KEY_B, "old.refreshNow forwards to the new keyring");
  t.equal(source.calls, 2, "one fetch");
  t.equal(old.current("production")?.value, KEY_B, "old.current forwards too");
  t.equal(old.held("production")?.value, KEY_B);
  t.same(old.readiness(["production"]), { ready: true, reasons: [] });
  await next.refreshNow("production");
  t.equal(source.calls, 2, "the 30 s window is shared: it lives in the new keyring");
  await clock.advance(10 * MINUTE);
  t.equal(source.calls, 4, "only the new keyring refreshes (two intervals, not four)");
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
