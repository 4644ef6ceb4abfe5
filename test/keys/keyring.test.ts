import t from "tap";
import { inspect } from "node:util";
import { createKeyring, formatDuration, type KeyRefreshEvent, type KeyringOptions } from "../../src/keys/keyring.ts";
import { failingSource } from "../../src/keys/sources.ts";
import { fingerprint } from "../../src/keys/validate-key.ts";
import type { KeySource } from "../../src/keys/types.ts";
import {
  MINUTE,
  createFakeClock,
  createRecordingLogger,
  createScriptedSource,
  settle,
  value,
  vaultKey,
  type FakeClock,
  type RecordingLogger,
} from "../helpers/keys-fakes.ts";

const KEY_A = "mq-live-AAAAAAAAAAAAAAAAAAAA";
const KEY_B = "mq-live-BBBBBBBBBBBBBBBBBBBB";

interface Setup {
  clock: FakeClock;
  logger: RecordingLogger;
  events: KeyRefreshEvent[];
  keyring: ReturnType<typeof createKeyring>;
}

function setup(
  t: { teardown(fn: () => void): void },
  sources: Record<string, KeySource>,
  keys: KeyringOptions["keys"] = Object.fromEntries(Object.keys(sources).map((n) => [n, vaultKey()])),
): Setup {
  const clock = createFakeClock();
  const logger = createRecordingLogger();
  const events: KeyRefreshEvent[] = [];
  const keyring = createKeyring({ keys, sources, logger, clock, events: { refreshed: (e) => events.push(e) } });
  t.teardown(() => keyring.close());
  return { clock, logger, events, keyring };
}

void t.test("start fetches in the background; current() is synchronous and undefined until held", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A, "7"));
  const { clock, logger, events, keyring } = setup(t, { production: source });
  t.equal(keyring.current("production"), undefined, "nothing before start");
  keyring.start();
  t.equal(source.calls, 1, "fetch started at once");
  t.equal(keyring.current("production"), undefined, "not held while the fetch is in flight");
  await settle();
  const key = keyring.current("production");
  t.ok(key);
  t.equal(key?.value, KEY_A);
  t.equal(key?.version, "7");
  t.equal(key?.fingerprint, fingerprint(KEY_A));
  t.equal(key?.fetchedAt, clock.now());
  t.ok(logger.secrets.has(KEY_A), "registered with the logger for redaction");
  t.match(logger.records, [{ level: "info", msg: "key loaded", fields: { key: "production", source: "vault", fingerprint: fingerprint(KEY_A), version: "7" } }]);
  t.match(events, [{ name: "production", source: "vault", result: "changed", rotated: false }]);
  t.equal(events[0]?.key, key);
  t.notOk(logger.text().includes(KEY_A), "the value is in no log field");
});

void t.test("refreshes every interval with ±10 % jitter", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A));
  const { clock, events, keyring } = setup(t, { production: source });
  clock.randomValue = 0.5;
  keyring.start();
  await settle();
  t.same(clock.pending(), [5 * MINUTE], "random 0.5: exactly the interval");
  await clock.advance(5 * MINUTE - 1);
  t.equal(source.calls, 1, "not before the interval");
  await clock.advance(1);
  t.equal(source.calls, 2, "fetched at the interval");
  t.equal(events[1]?.result, "unchanged");
  t.equal(events[1]?.rotated, false);
  t.equal(keyring.current("production")?.fetchedAt, clock.now(), "fetchedAt moves on an unchanged fetch");

  clock.randomValue = 0;
  await clock.advance(5 * MINUTE);
  t.same(clock.pending(), [0.9 * 5 * MINUTE], "random 0: 90 % of the interval");
  clock.randomValue = 0.999999;
  await clock.advance(0.9 * 5 * MINUTE);
  const [delay] = clock.pending();
  t.ok(delay !== undefined && delay <= 1.1 * 5 * MINUTE && delay > 1.09 * 5 * MINUTE, `random→1: just under 110 % (${delay})`);
});

void t.test("a failure keeps the last good key and backs off 1 s, 2 s, 4 s … capped at the interval", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A));
  const keys = { production: vaultKey({ interval: 10_000 }) };
  const { clock, logger, events, keyring } = setup(t, { production: source }, keys);
  keyring.start();
  await settle();
  const good = keyring.current("production");
  source.script(new Error("connect ECONNREFUSED 10.0.0.1:8200"));
  await clock.advance(10_000);
  const delays: number[] = [];
  for (let i = 0; i < 6; i++) {
    const [delay] = clock.pending();
    delays.push(delay!);
    await clock.advance(delay!);
  }
  t.same(delays, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
  t.equal(keyring.current("production"), good, "the last good key is still served");
  const failed = events.filter((e) => e.result === "failed");
  t.equal(failed.length, 7);
  t.equal(failed[0]?.key, good, "failed events carry the key still served");
  t.equal(failed[0]?.error, "connect ECONNREFUSED 10.0.0.1:8200");
  t.match(logger.records.find((r) => r.level === "warn"), {
    msg: "key refresh failed",
    fields: { key: "production", source: "vault", error: "connect ECONNREFUSED 10.0.0.1:8200", failures: 1, retry_in_ms: 1_000, serving: fingerprint(KEY_A) },
  });

  source.script(value(KEY_A));
  await clock.advance(10_000);
  t.equal(events.at(-1)?.result, "unchanged");
  t.same(clock.pending(), [10_000], "success resets the backoff");
});

void t.test("backoff delays are jittered too", async (t) => {
  const source = createScriptedSource("vault", new Error("down"));
  const { clock, keyring } = setup(t, { production: source });
  clock.randomValue = 0;
  keyring.start();
  await settle();
  t.same(clock.pending(), [900]);
  clock.randomValue = 0.999999;
  await clock.advance(900);
  t.same(clock.pending(), [2_200]);
});

void t.test("a rotated value is reported as changed and rotated", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A, "1"));
  const { clock, logger, events, keyring } = setup(t, { production: source });
  keyring.start();
  await settle();
  source.script(value(KEY_B, "2"));
  await clock.advance(5 * MINUTE);
  t.equal(keyring.current("production")?.value, KEY_B);
  t.match(events.at(-1), { result: "changed", rotated: true });
  t.match(logger.records.at(-1), {
    level: "info",
    msg: "key rotated",
    fields: { fingerprint: fingerprint(KEY_B), previous_fingerprint: fingerprint(KEY_A), version: "2" },
  });
  t.ok(logger.secrets.has(KEY_A) && logger.secrets.has(KEY_B), "both values stay registered for redaction");
  t.notOk(logger.text().includes(KEY_A) || logger.text().includes(KEY_B));
});

void t.test("invalid values are failures, never held, and the old key stays", async (t) => {
  const bad: Array<[string, string]> = [
    ["", "the value is empty"],
    [`${KEY_B}\n`, "the value has leading or trailing whitespace"],
    ["mq-live-BB\r\nX-Evil: 1", "the value contains CR or LF"],
    ["mq-live BBBBBBBBBBBBBBB", "the value contains spaces or tabs"],
    ["mq-live-\x00BBBBBBBBBBBB", "the value contains control bytes"],
    ["mq-live-BBBBBBBBBBBBBBé", "the value contains non-ASCII characters"],
    ["short", "the value is shorter than 8 characters"],
    ["x".repeat(4097), "the value is longer than 4096 characters"],
  ];
  const source = createScriptedSource("vault", value(KEY_A));
  const { clock, logger, events, keyring } = setup(t, { production: source });
  keyring.start();
  await settle();
  const good = keyring.current("production");
  for (const [raw, reason] of bad) {
    source.script(value(raw));
    await clock.advance(clock.pending()[0]!);
    t.equal(events.at(-1)?.result, "failed", reason);
    t.equal(events.at(-1)?.error, `invalid key value: ${reason}`);
    t.equal(keyring.current("production"), good, `old key kept after: ${reason}`);
    t.notOk(logger.secrets.has(raw), "a refused value is not held");
    if (raw.length >= 8) t.notOk(logger.text().includes(raw), "the refused value is in no log line");
  }
});

void t.test("a source that returns no object fails cleanly", async (t) => {
  const source = createScriptedSource("vault", () => Promise.resolve(undefined as never));
  const { events, keyring } = setup(t, { production: source });
  keyring.start();
  await settle();
  t.match(events, [{ result: "failed", error: "the source returned no value" }]);
});

void t.test("a source that throws synchronously is a failure, not a crash", async (t) => {
  const source: KeySource = {
    kind: "aws",
    fetch() {
      throw new Error("sdk exploded");
    },
  };
  const { events, keyring } = setup(t, { analytics: source });
  keyring.start();
  await settle();
  t.match(events, [{ name: "analytics", result: "failed", error: "sdk exploded" }]);
});

void t.test("each attempt is bounded by refresh.timeout, even if the source ignores the signal", async (t) => {
  const source = createScriptedSource("vault", "hang");
  const { clock, logger, events, keyring } = setup(t, { production: source });
  keyring.start();
  await clock.advance(4_999);
  t.same(events, [], "still waiting before the timeout");
  await clock.advance(1);
  t.match(events, [{ result: "failed", error: "fetch timed out after 5s" }]);
  t.ok(source.signals[0]?.aborted, "the signal given to the source was aborted");
  t.match(logger.records.at(-1), { level: "warn", fields: { error: "fetch timed out after 5s" } });
  source.script(value(KEY_A));
  await clock.advance(1_000);
  t.equal(source.calls, 2, "the next attempt is not blocked by the hung one");
  t.equal(keyring.current("production")?.value, KEY_A);
});

void t.test("single flight: concurrent refreshNow calls and the timer share one fetch", async (t) => {
  let resolve!: (v: { value: string; version: string }) => void;
  const source = createScriptedSource("vault", () => new Promise((r) => (resolve = r)), value(KEY_B));
  const { keyring } = setup(t, { production: source });
  keyring.start();
  const results = Promise.all(Array.from({ length: 20 }, () => keyring.refreshNow("production")));
  source.change();
  t.equal(source.calls, 1, "one fetch for start, 20 refreshNow calls");
  resolve(value(KEY_A));
  const keys = await results;
  t.equal(source.calls, 2, "the change notified during the fetch causes exactly one more fetch");
  t.ok(keys.every((k) => k?.value === KEY_B), "every caller gets the key read after the change");
  await settle();
  t.equal(source.calls, 2, "and no more");
});

void t.test("refreshNow: a stream of 401s for one value fetches at most once per 30 s", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A));
  const other = createScriptedSource("vault", value(KEY_B));
  const { clock, logger, keyring } = setup(t, { production: source, analytics: other });
  keyring.start();
  await settle();
  t.equal(source.calls, 1);
  const refusedA = keyring.current("production")!;
  // The store has not been updated yet (or a caller provokes 401s): the same value comes back.
  const first = await keyring.refreshNow("production", refusedA);
  t.equal(source.calls, 2, "the first 401 fetches");
  t.equal(first?.value, KEY_A, "and resolves with what the store holds (the same value)");
  t.match(logger.records.filter((r) => r.msg === "key refresh requested"), [
    { level: "info", fields: { key: "production", source: "vault", refused: fingerprint(KEY_A) } },
  ]);
  await clock.advance(10_000);
  const again = await Promise.all(Array.from({ length: 50 }, () => keyring.refreshNow("production", refusedA)));
  t.equal(source.calls, 2, "no fetch for the same value within the window");
  t.ok(again.every((k) => k?.value === KEY_A));
  t.equal(await keyring.refreshNow("production").then((k) => k?.value), KEY_A, "no argument means the held value");
  t.equal(source.calls, 2, "which is the same refused value");
  t.equal(other.calls, 1, "the window is per key");
  await keyring.refreshNow("analytics");
  t.equal(other.calls, 2, "another key may refresh");
  await clock.advance(19_999);
  await keyring.refreshNow("production", refusedA);
  t.equal(source.calls, 2, "still within 30 s");
  await clock.advance(1);
  await keyring.refreshNow("production", refusedA);
  t.equal(source.calls, 3, "30 s later the same value may fetch again");
  t.equal(await keyring.refreshNow("unknown"), undefined, "unknown key: undefined");
});

void t.test("refreshNow: every newly refused value gets its own fetch, rotations seconds apart", async (t) => {
  const KEY_C = "mq-live-CCCCCCCCCCCCCCCCCCCC";
  const source = createScriptedSource("vault", value(KEY_A));
  const { clock, events, keyring } = setup(t, { production: source });
  keyring.start();
  await settle();
  const refusedA = keyring.current("production")!;

  // Rotation 1: the store holds B, MythIQ refuses A; eight requests see the 401 at once.
  source.script(value(KEY_B));
  const firstWave = await Promise.all(Array.from({ length: 8 }, () => keyring.refreshNow("production", refusedA)));
  t.equal(source.calls, 2, "one fetch for the first rotation");
  t.ok(firstWave.every((k) => k?.value === KEY_B), "every refused request gets B");
  const refusedB = keyring.current("production")!;

  // Rotation 2, 5 s later (well inside 30 s): the store holds C, MythIQ refuses B.
  await clock.advance(5_000);
  source.script(value(KEY_C));
  const secondWave = await Promise.all(Array.from({ length: 8 }, () => keyring.refreshNow("production", refusedB)));
  t.equal(source.calls, 3, "the second rotation is not blocked by the first one's window");
  t.ok(secondWave.every((k) => k?.value === KEY_C), "every refused request gets C");

  // A request that left with A before rotation 1 comes back refused now: C is held, nothing to fetch.
  t.equal((await keyring.refreshNow("production", refusedA))?.value, KEY_C, "an older refused value gets the held one");
  t.equal((await keyring.refreshNow("production", refusedB))?.value, KEY_C);
  t.equal(source.calls, 3, "no fetch for values that are no longer held");
  t.same(
    events.map((e) => [e.result, e.rotated]),
    [
      ["changed", false],
      ["changed", true],
      ["changed", true],
    ],
  );

  // The store flips back to B within the window: B was refused 0 s ago, so a 401 for it waits.
  source.script(value(KEY_B));
  source.change();
  await settle();
  t.equal(keyring.current("production")?.value, KEY_B);
  t.equal(source.calls, 4, "the change notification fetched");
  t.equal((await keyring.refreshNow("production", keyring.current("production")))?.value, KEY_B);
  t.equal(source.calls, 4, "B's window still holds: no storm from a store that flips between values");
});

void t.test("refreshNow while a fetch is in flight: the answer comes from a read started after the 401", async (t) => {
  let release!: (v: { value: string; version: string }) => void;
  const source = createScriptedSource("vault", value(KEY_A));
  const keys = { production: vaultKey({ interval: 10_000 }) };
  const { clock, keyring } = setup(t, { production: source }, keys);
  keyring.start();
  await settle();
  const refusedA = keyring.current("production")!;
  // The interval's fetch starts and reads the store before the operator rotates.
  source.script(() => new Promise((r) => (release = r)), value(KEY_B));
  await clock.advance(10_000);
  t.equal(source.calls, 2, "the background fetch is in flight");
  const answer = keyring.refreshNow("production", refusedA);
  const second = keyring.refreshNow("production", refusedA);
  release(value(KEY_A));
  t.equal((await answer)?.value, KEY_B, "the 401 is answered by a fetch that started after it");
  t.equal((await second)?.value, KEY_B);
  t.equal(source.calls, 3, "exactly one more fetch, shared");
});

void t.test("refreshNow: a clock that jumps backwards does not extend the window", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A));
  const fake = createFakeClock();
  let skew = 0;
  const clock = { ...fake, now: () => fake.now() + skew };
  const keyring = createKeyring({ keys: { production: vaultKey() }, sources: { production: source }, logger: createRecordingLogger(), clock });
  t.teardown(() => keyring.close());
  keyring.start();
  await settle();
  await keyring.refreshNow("production");
  t.equal(source.calls, 2);
  skew = -60_000;
  await keyring.refreshNow("production");
  t.equal(source.calls, 3, "an entry from the future is dropped, not kept for longer");
});

void t.test("max_stale: an old key is no longer current and readiness says why", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A));
  const keys = {
    production: vaultKey({ interval: 5 * MINUTE, max_stale: 10 * MINUTE }),
    legacy: vaultKey({ interval: 5 * MINUTE, max_stale: 0 }),
  };
  const legacy = createScriptedSource("vault", value(KEY_B));
  const { clock, keyring } = setup(t, { production: source, legacy }, keys);
  keyring.start();
  await settle();
  source.script(new Error("vault sealed"));
  legacy.script(new Error("vault sealed"));
  await clock.advance(10 * MINUTE);
  t.equal(keyring.current("production")?.value, KEY_A, "exactly max_stale old: still served");
  t.same(keyring.readiness(["production", "legacy"]), { ready: true, reasons: [] });
  await clock.advance(2 * MINUTE);
  t.equal(keyring.current("production"), undefined, "older than max_stale: not served");
  t.equal(keyring.held("production")?.value, KEY_A, "but still held (it comes back if the source recovers)");
  t.equal(keyring.current("legacy")?.value, KEY_B, "max_stale 0: served for ever");
  t.same(keyring.readiness(["production", "legacy"]), {
    ready: false,
    reasons: ["key production stale (last fetched 12m ago, max_stale 10m)"],
  });
  source.script(value(KEY_A));
  t.equal((await keyring.refreshNow("production"))?.value, KEY_A, "served again after a success");
  t.equal(keyring.readiness(["production"]).ready, true);
});

void t.test("readiness reasons: not loaded, not configured, each name once", async (t) => {
  const production = createScriptedSource("vault", new Error("permission denied"));
  const legacy = createScriptedSource("file", value(KEY_B));
  const { keyring } = setup(t, { production, legacy });
  t.same(keyring.readiness(["legacy"]), { ready: false, reasons: ["key legacy not loaded"] }, "before start");
  keyring.start();
  await settle();
  t.same(keyring.readiness(["production", "legacy", "production", "nope"]), {
    ready: false,
    reasons: ["key production not loaded", "key nope not configured"],
  });
  t.same(keyring.readiness(["legacy"]), { ready: true, reasons: [] });
  t.same(keyring.readiness([]), { ready: true, reasons: [] });
});

void t.test("a source not available in this build: never held, no crash", async (t) => {
  const { logger, keyring } = setup(t, {
    production: failingSource("vault", 'key source "vault" is not available in this build'),
  });
  keyring.start();
  await settle();
  t.equal(keyring.current("production"), undefined);
  t.same(keyring.readiness(["production"]).reasons, ["key production not loaded"]);
  t.match(logger.records, [{ level: "warn", fields: { error: 'key source "vault" is not available in this build' } }]);
});

void t.test("a key without a source is never held", async (t) => {
  const { events, keyring } = setup(t, {}, { production: vaultKey() });
  keyring.start();
  await settle();
  t.match(events, [{ result: "failed", error: "no source was built for key production" }]);
});

void t.test("a change notification from the source fetches at once", async (t) => {
  const source = createScriptedSource("file", value(KEY_A));
  const { clock, keyring } = setup(t, { legacy: source });
  keyring.start();
  await settle();
  source.script(value(KEY_B));
  source.change();
  await settle();
  t.equal(keyring.current("legacy")?.value, KEY_B, "picked up without waiting for the interval");
  t.same(clock.pending(), [5 * MINUTE], "the interval restarts from the change");
});

void t.test("HeldKey and keyring print no value", async (t) => {
  const source = createScriptedSource("vault", value(KEY_A, "3"));
  const { keyring } = setup(t, { production: source });
  keyring.start();
  await settle();
  const key = keyring.current("production")!;
  const printed = [
    JSON.stringify(key),
    JSON.stringify({ key }),
    JSON.stringify({ ...key }),
    inspect(key),
    inspect(key, { showHidden: true, getters: true, depth: 10 }),
    inspect(key, { showHidden: true, getters: true, customInspect: false }),
    inspect({ nested: { key } }, { depth: 10 }),
    `${String(Object.keys(key))}`,
    JSON.stringify(structuredClone(key)),
    JSON.stringify(keyring),
    inspect(keyring, { showHidden: true, getters: true, depth: 10 }),
  ];
  for (const text of printed) t.notOk(text.includes(KEY_A), `no value in: ${text.slice(0, 80)}`);
  t.match(inspect(key), /^HeldKey \{\s+name: 'production',\s+source: 'vault',\s+version: '3',\s+fingerprint: '[0-9a-f]{8}'/);
  t.same(JSON.parse(JSON.stringify(key)), { name: "production", source: "vault", version: "3", fingerprint: fingerprint(KEY_A), fetchedAt: key.fetchedAt });
  t.notOk(Object.prototype.propertyIsEnumerable.call(key, "value"), "value is not enumerable");
  t.ok(Object.isFrozen(key), "frozen");
  t.equal(key.value, KEY_A, "but readable where the header is built");
  t.throws(() => (Object.create(Object.getPrototypeOf(key) as object) as { value: string }).value, TypeError, "a forged HeldKey has no value");
});

void t.test("a throwing event listener does not break refresh", async (t) => {
  const clock = createFakeClock();
  const logger = createRecordingLogger();
  const source = createScriptedSource("vault", value(KEY_A));
  const keyring = createKeyring({
    keys: { production: vaultKey() },
    sources: { production: source },
    logger,
    clock,
    events: {
      refreshed() {
        throw new Error("metrics broke");
      },
    },
  });
  t.teardown(() => keyring.close());
  keyring.start();
  await settle();
  t.equal(keyring.current("production")?.value, KEY_A);
  t.same(clock.pending(), [5 * MINUTE], "next refresh still scheduled");
  t.match(logger.records, [{ msg: "key loaded" }, { level: "warn", msg: "key refresh listener failed" }]);
});

void t.test("close() stops every timer, aborts the fetch in flight and closes sources", async (t) => {
  const hanging = createScriptedSource("vault", "hang");
  const healthy = createScriptedSource("vault", value(KEY_A));
  const { clock, events, keyring } = setup(t, { production: hanging, legacy: healthy });
  keyring.start();
  await settle();
  t.equal(clock.pending().length, 2, "a timeout and a refresh timer");
  keyring.close();
  t.same(clock.pending(), [], "no timer left");
  t.ok(hanging.signals[0]?.aborted, "in-flight fetch aborted");
  t.ok(hanging.closed && healthy.closed, "sources closed");
  const count = events.length;
  await clock.advance(60 * MINUTE);
  t.equal(events.length, count, "nothing happens after close");
  t.equal(hanging.calls + healthy.calls, 2);
  keyring.start();
  t.equal(healthy.calls, 1, "start after close does nothing");
  t.equal((await keyring.refreshNow("legacy"))?.value, KEY_A, "refreshNow after close returns the held key without fetching");
  t.equal(healthy.calls, 1);
});

void t.test("a fetch finishing after close() is dropped", async (t) => {
  let resolve!: (v: { value: string; version: string }) => void;
  const source = createScriptedSource("vault", () => new Promise((r) => (resolve = r)));
  const { logger, events, keyring } = setup(t, { production: source });
  keyring.start();
  keyring.close();
  resolve(value(KEY_A));
  await settle();
  t.equal(keyring.current("production"), undefined);
  t.same(events, []);
  t.notOk(logger.secrets.has(KEY_A));
});

void t.test("real timers are unref'd: an idle keyring does not keep the process alive", async (t) => {
  const handles: NodeJS.Timeout[] = [];
  const clock = {
    now: () => Date.now(),
    random: () => 0.5,
    setTimeout(callback: () => void, ms: number) {
      const handle = setTimeout(callback, ms);
      handles.push(handle);
      return handle;
    },
    clearTimeout: (handle: unknown) => clearTimeout(handle as NodeJS.Timeout),
  };
  const source = createScriptedSource("vault", value(KEY_A));
  const keyring = createKeyring({ keys: { production: vaultKey() }, sources: { production: source }, logger: createRecordingLogger(), clock });
  keyring.start();
  await settle();
  t.equal(keyring.current("production")?.value, KEY_A);
  t.equal(handles.length, 2, "a timeout timer and a refresh timer");
  t.ok(handles.every((h) => !h.hasRef()), "every timer is unref'd");
  keyring.close();
});

void t.test("formatDuration", (t) => {
  t.equal(formatDuration(500), "500ms");
  t.equal(formatDuration(45_000), "45s");
  t.equal(formatDuration(12 * MINUTE + 400), "12m");
  t.equal(formatDuration(12 * MINUTE + 30_000), "12m30s");
  t.equal(formatDuration(90 * MINUTE), "1h30m");
  t.equal(formatDuration(3 * 86_400_000 + 5 * MINUTE), "3d");
  t.end();
});

void t.test("a source whose close() throws does not break close()", async (t) => {
  const source: KeySource = {
    kind: "vault",
    fetch: () => Promise.resolve(value(KEY_A)),
    close() {
      throw new Error("socket already closed");
    },
  };
  const { logger, keyring } = setup(t, { production: source });
  keyring.start();
  await settle();
  t.doesNotThrow(() => keyring.close());
  t.match(logger.records.at(-1), { level: "warn", msg: "key source did not close cleanly", fields: { error: "socket already closed" } });
});
