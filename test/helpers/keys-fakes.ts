/**
 * Fakes for keyring tests: a clock whose time only moves when told, a scripted key source, a logger
 * that records raw fields (no redaction, so a value put into a field is caught), and key configs.
 */
import { setImmediate as nextMacrotask } from "node:timers/promises";
import type { KeyConfig, KeySourceKind, RefreshConfig } from "../../src/config/types.ts";
import type { KeyringClock } from "../../src/keys/keyring.ts";
import type { KeySource, SourceValue } from "../../src/keys/types.ts";
import type { Level, Logger, LogFields } from "../../src/observe/log.ts";

export interface FakeClock extends KeyringClock {
  /** Value returned by `random()`; 0.5 = no jitter. */
  randomValue: number;
  /** Delays (ms) of the timers now pending, in creation order. */
  pending(): number[];
  /** Moves time forward by `ms`, firing due timers in order and letting promises settle after each. */
  advance(ms: number): Promise<void>;
}

/** Lets pending promise chains (not real I/O) run to completion. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await nextMacrotask();
}

export function createFakeClock(start = 1_700_000_000_000): FakeClock {
  let now = start;
  let seq = 0;
  const timers = new Map<number, { at: number; delay: number; callback: () => void }>();
  const clock: FakeClock = {
    randomValue: 0.5,
    now: () => now,
    random: () => clock.randomValue,
    setTimeout(callback, ms) {
      const id = ++seq;
      timers.set(id, { at: now + ms, delay: ms, callback });
      return { id, unref() {} };
    },
    clearTimeout(handle) {
      const id = (handle as { id?: number } | undefined)?.id;
      if (id !== undefined) timers.delete(id);
    },
    pending: () => [...timers.values()].map((t) => t.delay),
    async advance(ms) {
      const until = now + ms;
      await settle();
      for (;;) {
        let next: [number, { at: number; callback: () => void }] | undefined;
        for (const entry of timers) if (entry[1].at <= until && (!next || entry[1].at < next[1].at)) next = entry;
        if (!next) break;
        timers.delete(next[0]);
        now = Math.max(now, next[1].at);
        next[1].callback();
        await settle();
      }
      now = until;
      await settle();
    },
  };
  return clock;
}

type Step = SourceValue | Error | "hang" | (() => Promise<SourceValue>);

export interface ScriptedSource extends KeySource {
  /** Number of fetch calls so far. */
  calls: number;
  /** Signals passed to fetch, in order. */
  signals: AbortSignal[];
  closed: boolean;
  /** Results of the next fetches, in order; the last one repeats. */
  script(...steps: Step[]): void;
  /** Calls the listener registered with onChange. */
  change(): void;
}

/** A source that answers from a script; "hang" never settles (and ignores the signal). */
export function createScriptedSource(kind: KeySourceKind = "vault", ...steps: Step[]): ScriptedSource {
  let queue: Step[] = steps;
  let listener: (() => void) | undefined;
  const source: ScriptedSource = {
    kind,
    calls: 0,
    signals: [],
    closed: false,
    script(...next) {
      queue = next;
    },
    change() {
      listener?.();
    },
    fetch(signal) {
      source.calls += 1;
      source.signals.push(signal);
      const step = queue.length > 1 ? queue.shift() : queue[0];
      if (step === undefined) return Promise.reject(new Error("script is empty"));
      if (step === "hang") return new Promise<SourceValue>(() => {});
      if (step instanceof Error) return Promise.reject(step);
      if (typeof step === "function") return step();
      return Promise.resolve(step);
    },
    onChange(next) {
      listener = next;
    },
    close() {
      source.closed = true;
    },
  };
  return source;
}

export interface LogRecord {
  readonly level: Level | "audit";
  readonly msg: string;
  readonly fields: LogFields;
}

export interface RecordingLogger extends Logger {
  readonly records: LogRecord[];
  readonly secrets: Set<string>;
  /** Every record as one JSON string (fields unredacted). */
  text(): string;
}

export function createRecordingLogger(): RecordingLogger {
  const records: LogRecord[] = [];
  const secrets = new Set<string>();
  const at = (level: Level) => (msg: string, fields: LogFields = {}) => {
    records.push({ level, msg, fields });
  };
  return {
    records,
    secrets,
    text: () => records.map((r) => JSON.stringify(r)).join("\n"),
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    audit: (record) => records.push({ level: "audit", msg: "", fields: record }),
    registerSecret: (value) => secrets.add(value),
    forgetSecret: (value) => secrets.delete(value),
  };
}

export const MINUTE = 60_000;

export function refresh(overrides: Partial<RefreshConfig> = {}): RefreshConfig {
  return { interval: 5 * MINUTE, timeout: 5_000, max_stale: 0, ...overrides };
}

/** A vault-kind key config (the keyring never looks inside it except to compare on reload). */
export function vaultKey(overrides: Partial<RefreshConfig> = {}, path = "mythiq/production"): KeyConfig {
  return {
    source: "vault",
    refresh: refresh(overrides),
    vault: {
      address: "https://vault.example:8200",
      namespace: "",
      auth: { method: "token", token: { env: "VAULT_TOKEN" } },
      kv_version: 2,
      mount: "secret",
      path,
      field: "api_key",
    },
  };
}

export function value(v: string, version = ""): SourceValue {
  return { value: v, version };
}
