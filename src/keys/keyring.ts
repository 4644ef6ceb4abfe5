/**
 * The keyring: holds the MythIQ keys in memory and keeps them fresh in the background (SPEC §8).
 *
 * - `current()` is synchronous and never waits on a secret store: the hot path only reads memory.
 * - Fail static: a failed or invalid fetch never drops the last good key; only `max_stale` (when set)
 *   stops an old key from being served.
 * - One fetch in flight per key, shared by the timer, the source's change notification and
 *   `refreshNow`; each attempt is bounded by `refresh.timeout` even if the source ignores its signal.
 * - `refreshNow` (an upstream 401) is limited to one fetch per refused value per 30 s, so callers
 *   that can provoke 401s cannot turn the proxy into a refresh storm against Vault or AWS, while
 *   each new rotation (a value just fetched, then revoked) still gets its own fetch at once.
 * - The value is registered with the logger for redaction before it is held, and is never put into a
 *   log field, an event, an error or the HeldKey's enumerable properties.
 * - A config reload never leaves a key that was held without one (SPEC §8, fail static): see
 *   `KeyringOptions.previous`.
 */
import type { KeyConfig, KeySourceKind } from "../config/types.ts";
import type { Logger } from "../observe/log.ts";
import { backoffDelay, jitter } from "./backoff.ts";
import { createHeldKey } from "./held-key.ts";
import { failingSource } from "./sources.ts";
import type { HeldKey, KeySource, Keyring, Readiness, SourceValue } from "./types.ts";
import { fingerprint, validateKey } from "./validate-key.ts";

/** Minimum time between two fetches triggered by `refreshNow` for one refused value, in ms (SPEC §4 step 9). */
export const REFRESH_NOW_WINDOW_MS = 30_000;

export interface KeyRefreshEvent {
  readonly name: string;
  readonly source: KeySourceKind;
  readonly result: "changed" | "unchanged" | "failed";
  /** The key held after the attempt (on failure: the last good one, if any). */
  readonly key?: HeldKey;
  /** Why the attempt failed; never contains the value. */
  readonly error?: string;
  /** A new value replaced a previously held one. */
  readonly rotated: boolean;
}

/** Hooks for metrics (`key_refresh_total`, `key_rotations_total`, `key_info`). Exceptions are ignored. */
export interface KeyringEvents {
  refreshed?(event: KeyRefreshEvent): void;
}

/** Time and randomness, injectable for tests. Timers are `unref`ed when the handle supports it. */
export interface KeyringClock {
  /** Epoch ms. */
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** A number in [0, 1). */
  random(): number;
}

const systemClock: KeyringClock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  random: () => Math.random(),
};

export interface KeyringOptions {
  /** The configured keys, each with its merged `refresh` settings. */
  readonly keys: Readonly<Record<string, KeyConfig>>;
  /** A source per key name. */
  readonly sources?: Readonly<Record<string, KeySource>>;
  /** Builds a source for a key missing from `sources` (and not adopted). */
  readonly createSource?: (name: string, config: KeyConfig) => KeySource;
  readonly logger: Logger;
  readonly events?: KeyringEvents;
  readonly clock?: KeyringClock;
  /**
   * The keyring being replaced by a config reload. What this keyring takes over for a key of the
   * same name depends on what changed in its config (`keyChange`):
   * - `none` or `schedule` (only `refresh.interval`/`max_stale`): the held value and the source
   *   (no re-fetch, no new Vault login); the source given for it in `sources`, if different, is
   *   closed. The next fetch is due `interval` (the new one) after the last successful one.
   * - `timeout`: the held value, and the schedule as above, but the new source (Vault and AWS build
   *   their HTTP clients with the timeout).
   * - `source` (another path, file, secret, store): the held value is still served, with its age,
   *   until the new source delivers its first good value (fetched at `start`); a failing new
   *   source never leaves the key without a value.
   * Only a key that has something to take over (a held value, or an equal config) is taken over.
   * From then on the previous keyring forwards `current`/`held`/`refreshNow` for that name to
   * this one, so requests still running under the old config see the same key. Close the
   * previous keyring after starting this one.
   */
  readonly previous?: Keyring;
}

export interface ManagedKeyring extends Keyring {
  /** The held key regardless of `max_stale` (for `key_age_seconds`/`key_info`); undefined before the first success. */
  held(name: string): HeldKey | undefined;
}

interface Adopted {
  readonly held: HeldKey | undefined;
  /** Undefined when the source is not handed over, or the previous keyring was closed already (its sources are closed). */
  readonly source: KeySource | undefined;
  /** `held` came from other source settings than the successor's: it is served until the new source delivers. */
  readonly bridged: boolean;
}

/** Module-private access from a new keyring to the one it replaces. */
interface Internals {
  handOver(name: string, config: KeyConfig, successor: ManagedKeyring): Adopted | undefined;
}

const internals = new WeakMap<object, Internals>();

interface Slot {
  readonly name: string;
  readonly config: KeyConfig;
  readonly source: KeySource;
  held: HeldKey | undefined;
  failures: number;
  inflight: Promise<void> | undefined;
  /** A change notification arrived while a fetch was in flight: fetch again when it ends. */
  again: boolean;
  abort: AbortController | undefined;
  timer: unknown;
  /**
   * The fetches `refreshNow` started, by the refused value (memory only, like the held value): a
   * stream of 401s for one value shares one fetch per 30 s, a newly refused value gets its own.
   * Entries older than the window are dropped at the next call, so at most one entry per value
   * refused in the last 30 s is kept.
   */
  readonly manual: Map<string, { readonly at: number; readonly result: Promise<HeldKey | undefined> }>;
  /** Set once a newer keyring adopted this key: this slot stops refreshing and forwards to it. */
  successor: ManagedKeyring | undefined;
  /** The source now belongs to the successor: closing this keyring must not close it. */
  sourceHandedOver: boolean;
  /** `held` came from the source settings of a previous config; the first good fetch replaces it. */
  bridged: boolean;
}

type Outcome = { readonly ok: true; readonly fetched: SourceValue } | { readonly ok: false; readonly error: string };

/** Deep equality of plain config data (objects, arrays, primitives). */
export function sameConfig(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keysA = Object.keys(a);
  const keysB = Object.keys(b);
  if (keysA.length !== keysB.length) return false;
  return keysA.every(
    (key) =>
      Object.prototype.hasOwnProperty.call(b, key) &&
      sameConfig((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]),
  );
}

/**
 * What changed in one key's config across a reload:
 * - `none`: nothing;
 * - `schedule`: only `refresh.interval` and/or `refresh.max_stale`, which only the keyring reads;
 * - `timeout`: `refresh.timeout` too (sources build their clients with it), nothing else;
 * - `source`: anything about where the key comes from (kind, path, file, secret, auth, address).
 */
export type KeyChange = "none" | "schedule" | "timeout" | "source";

/** Compares two configs of one key name (see `KeyChange`). */
export function keyChange(before: KeyConfig, after: KeyConfig): KeyChange {
  if (sameConfig(before, after)) return "none";
  const { refresh: beforeRefresh, ...beforeSource } = before;
  const { refresh: afterRefresh, ...afterSource } = after;
  if (!sameConfig(beforeSource, afterSource)) return "source";
  return beforeRefresh.timeout === afterRefresh.timeout ? "schedule" : "timeout";
}

/** "12m", "1h30m", "45s", "500ms": for readiness reasons. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.max(0, Math.floor(ms))}ms`;
  const units: ReadonlyArray<readonly [string, number]> = [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1_000],
  ];
  let rest = Math.floor(ms / 1_000) * 1_000;
  const parts: string[] = [];
  for (const [unit, size] of units) {
    if (rest >= size && parts.length < 2) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    } else if (parts.length > 0) {
      break;
    }
  }
  return parts.join("");
}

/** Error text for logs and events: one line, bounded, no stack. Sources must keep secrets out of it. */
function describe(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  // eslint-disable-next-line no-control-regex -- a source's message must stay one log-safe line
  const line = text.replace(/[\x00-\x1f\x7f]+/g, " ").trim() || "unknown error";
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** A version label is a metric label: short printable ASCII, and never a copy of the value. */
function safeVersion(version: unknown, value: string): string {
  if (typeof version !== "string" || version.length > 128 || !/^[\x20-\x7e]*$/.test(version)) return "";
  return version.includes(value) ? "" : version;
}

/** Node's timers overflow (and fire at once) beyond 2^31-1 ms, about 24.8 days. */
const MAX_TIMER_MS = 2_147_483_647;

function unref(handle: unknown): void {
  (handle as { unref?: () => void } | null)?.unref?.();
}

/**
 * Creates a keyring. Nothing is fetched until `start()`. Every held value is registered with
 * `logger.registerSecret` and stays registered for the life of the process: a retired key is still
 * a secret until it is revoked at MythIQ, and the same value may be held under another name or by
 * the keyring that adopted it.
 *
 * Timing: a fetch at `start()`, then every `refresh.interval` ±10 %; after a failure, retries at
 * 1 s, 2 s, 4 s, … ±10 %, capped at `refresh.interval`; each attempt bounded by `refresh.timeout`.
 */
export function createKeyring(options: KeyringOptions): ManagedKeyring {
  const { logger, events } = options;
  const clock = options.clock ?? systemClock;
  const random = (): number => clock.random();
  const slots = new Map<string, Slot>();
  let started = false;
  let closed = false;

  const keyring: ManagedKeyring = { current, readiness, refreshNow, start, close, held };

  for (const [name, config] of Object.entries(options.keys)) {
    const given = options.sources?.[name];
    const adopted =
      options.previous === undefined ? undefined : internals.get(options.previous)?.handOver(name, config, keyring);
    if (adopted?.source !== undefined && given !== undefined && given !== adopted.source) closeSource(given);
    // The new keyring may have been given another logger: it must redact the adopted value too.
    if (adopted?.held !== undefined) logger.registerSecret(adopted.held.value);
    const source =
      adopted?.source ??
      given ??
      options.createSource?.(name, config) ??
      failingSource(config.source, `no source was built for key ${name}`);
    slots.set(name, {
      name,
      config,
      source,
      held: adopted?.held,
      failures: 0,
      inflight: undefined,
      again: false,
      abort: undefined,
      timer: undefined,
      manual: new Map(),
      successor: undefined,
      sourceHandedOver: false,
      bridged: adopted?.bridged ?? false,
    });
  }

  internals.set(keyring, { handOver });

  function handOver(name: string, config: KeyConfig, successor: ManagedKeyring): Adopted | undefined {
    const slot = slots.get(name);
    if (slot === undefined || slot.successor !== undefined) return undefined;
    const change = keyChange(slot.config, config);
    const sameSource = change === "none" || change === "schedule";
    // Nothing worth taking: the successor starts this key afresh; this keyring keeps it until closed.
    if (slot.held === undefined && !sameSource) return undefined;
    slot.successor = successor;
    slot.sourceHandedOver = sameSource && !closed;
    stopSlot(slot);
    return {
      held: slot.held,
      source: slot.sourceHandedOver ? slot.source : undefined,
      // A value still bridged here came from older settings even if the source is handed over.
      bridged: slot.held !== undefined && (change === "source" || slot.bridged),
    };
  }

  function closeSource(source: KeySource): void {
    try {
      source.close?.();
    } catch (err) {
      logger.warn("key source did not close cleanly", { source: source.kind, error: describe(err) });
    }
  }

  function stopSlot(slot: Slot): void {
    if (slot.timer !== undefined) clock.clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.again = false;
    slot.abort?.abort(new Error("keyring closed"));
  }

  function active(slot: Slot): boolean {
    return !closed && slot.successor === undefined;
  }

  function fresh(slot: Slot): HeldKey | undefined {
    const key = slot.held;
    if (key === undefined) return undefined;
    const maxStale = slot.config.refresh.max_stale;
    if (maxStale > 0 && clock.now() - key.fetchedAt > maxStale) return undefined;
    return key;
  }

  function emit(event: KeyRefreshEvent): void {
    try {
      events?.refreshed?.(event);
    } catch (err) {
      logger.warn("key refresh listener failed", { key: event.name, error: describe(err) });
    }
  }

  function schedule(slot: Slot, ms: number): void {
    if (slot.timer !== undefined) clock.clearTimeout(slot.timer);
    slot.timer = undefined;
    if (!active(slot)) return;
    slot.timer = clock.setTimeout(() => {
      slot.timer = undefined;
      void refresh(slot);
    }, Math.min(ms, MAX_TIMER_MS));
    unref(slot.timer);
  }

  /** Runs the source, bounded by the timeout whether or not the source honours the signal. */
  async function fetchOnce(slot: Slot): Promise<Outcome> {
    const controller = new AbortController();
    slot.abort = controller;
    const timeout = slot.config.refresh.timeout;
    const timer = clock.setTimeout(() => {
      controller.abort(new Error(`fetch timed out after ${formatDuration(timeout)}`));
    }, Math.min(timeout, MAX_TIMER_MS));
    unref(timer);
    const aborted = new Promise<never>((_, reject) => {
      controller.signal.addEventListener(
        "abort",
        () => {
          // Synchronously, so close() leaves no timer behind.
          clock.clearTimeout(timer);
          reject(controller.signal.reason as Error);
        },
        { once: true },
      );
    });
    let pending: Promise<SourceValue>;
    try {
      pending = slot.source.fetch(controller.signal);
    } catch (err) {
      pending = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    try {
      const fetched = await Promise.race([pending, aborted]);
      if (fetched === null || typeof fetched !== "object") return { ok: false, error: "the source returned no value" };
      const check = validateKey(fetched.value);
      if (!check.ok) return { ok: false, error: `invalid key value: ${check.reason}` };
      return { ok: true, fetched };
    } catch (err) {
      return { ok: false, error: describe(err) };
    } finally {
      clock.clearTimeout(timer);
      if (slot.abort === controller) slot.abort = undefined;
    }
  }

  function succeed(slot: Slot, fetched: SourceValue): void {
    const { value } = fetched;
    const previous = slot.held;
    const switched = slot.bridged;
    slot.bridged = false;
    const changed = previous === undefined || previous.value !== value;
    const rotated = changed && previous !== undefined;
    // Registered before the key is held, so no line written from here on can carry it.
    if (changed) logger.registerSecret(value);
    const key = createHeldKey({
      name: slot.name,
      source: slot.config.source,
      value,
      version: safeVersion(fetched.version, value),
      fingerprint: changed ? fingerprint(value) : previous.fingerprint,
      fetchedAt: clock.now(),
    });
    slot.held = key;
    slot.failures = 0;
    const fields = { key: slot.name, source: slot.config.source, fingerprint: key.fingerprint, version: key.version };
    if (switched && previous !== undefined) {
      // The end of a reload's bridge: said at info even when the new source holds the same value.
      logger.info("key source switched", {
        ...fields,
        previous_source: previous.source,
        previous_fingerprint: previous.fingerprint,
        rotated,
      });
    } else if (rotated) {
      logger.info("key rotated", { ...fields, previous_fingerprint: previous.fingerprint });
    } else if (changed) {
      logger.info("key loaded", fields);
    } else {
      logger.debug("key refreshed, unchanged", fields);
    }
    emit({ name: slot.name, source: slot.config.source, result: changed ? "changed" : "unchanged", key, rotated });
    schedule(slot, jitter(slot.config.refresh.interval, random));
  }

  function fail(slot: Slot, error: string): void {
    slot.failures += 1;
    const delay = backoffDelay(slot.failures, slot.config.refresh.interval, random);
    logger.warn("key refresh failed", {
      key: slot.name,
      source: slot.config.source,
      error,
      failures: slot.failures,
      retry_in_ms: delay,
      // Which key is still served (fail static), by fingerprint only.
      serving: slot.held?.fingerprint ?? null,
      ...(slot.bridged ? { serving_previous_settings: true } : {}),
    });
    emit({
      name: slot.name,
      source: slot.config.source,
      result: "failed",
      ...(slot.held === undefined ? {} : { key: slot.held }),
      error,
      rotated: false,
    });
    schedule(slot, delay);
  }

  async function attempt(slot: Slot): Promise<void> {
    const outcome = await fetchOnce(slot);
    // A result that arrives after close() or after a reload adopted the key is dropped.
    if (!active(slot)) return;
    if (outcome.ok) succeed(slot, outcome.fetched);
    else fail(slot, outcome.error);
  }

  /** Single flight: every trigger shares the fetch in progress. Never rejects. */
  function refresh(slot: Slot): Promise<void> {
    if (slot.inflight !== undefined) return slot.inflight;
    if (!active(slot)) return Promise.resolve();
    const run = async (): Promise<void> => {
      do {
        slot.again = false;
        await attempt(slot);
      } while (slot.again && active(slot));
    };
    const inflight = run().finally(() => {
      slot.inflight = undefined;
    });
    slot.inflight = inflight;
    return inflight;
  }

  function onSourceChange(slot: Slot): void {
    if (!active(slot)) return;
    // The fetch in flight may have read the old content: make sure the new one is read too.
    if (slot.inflight !== undefined) slot.again = true;
    else void refresh(slot);
  }

  function current(name: string): HeldKey | undefined {
    const slot = slots.get(name);
    if (slot === undefined) return undefined;
    if (slot.successor !== undefined) return slot.successor.current(name);
    return fresh(slot);
  }

  function held(name: string): HeldKey | undefined {
    const slot = slots.get(name);
    if (slot === undefined) return undefined;
    if (slot.successor !== undefined) return slot.successor.held(name);
    return slot.held;
  }

  function readiness(names: Iterable<string>): Readiness {
    const reasons: string[] = [];
    for (const name of new Set(names)) {
      const slot = slots.get(name);
      if (slot === undefined) {
        reasons.push(`key ${name} not configured`);
        continue;
      }
      const key = held(name);
      if (key === undefined) {
        reasons.push(`key ${name} not loaded`);
        continue;
      }
      if (current(name) === undefined) {
        const age = formatDuration(clock.now() - key.fetchedAt);
        const maxStale = formatDuration(slot.config.refresh.max_stale);
        reasons.push(`key ${name} stale (last fetched ${age} ago, max_stale ${maxStale})`);
      }
    }
    return { ready: reasons.length === 0, reasons };
  }

  function refreshNow(name: string, refused?: HeldKey): Promise<HeldKey | undefined> {
    const slot = slots.get(name);
    if (slot === undefined) return Promise.resolve(undefined);
    if (slot.successor !== undefined) return slot.successor.refreshNow(name, refused);
    if (closed) return Promise.resolve(fresh(slot));
    const value = refused?.value ?? slot.held?.value;
    // Nothing held yet: the start-up fetch (or its retries) is the refresh.
    if (value === undefined) return refresh(slot).then(() => fresh(slot));
    // Another value is held already (a refresh finished after the refused request left): the
    // caller retries with it, no fetch needed.
    if (slot.held !== undefined && slot.held.value !== value) return Promise.resolve(fresh(slot));
    const now = clock.now();
    for (const [seen, entry] of slot.manual) {
      // A clock that jumped backwards does not extend the window.
      if (now < entry.at || now - entry.at >= REFRESH_NOW_WINDOW_MS) slot.manual.delete(seen);
    }
    const last = slot.manual.get(value);
    if (last !== undefined) return last.result.then(() => fresh(slot));
    logger.info("key refresh requested", { key: name, source: slot.config.source, refused: refused?.fingerprint ?? slot.held?.fingerprint });
    // A fetch already in flight may have read the store before the operator rotated the value that
    // was just refused: the answer to this 401 must come from a read that started after it.
    if (slot.inflight !== undefined) slot.again = true;
    const result = refresh(slot).then(() => fresh(slot));
    slot.manual.set(value, { at: now, result });
    return result;
  }

  function start(): void {
    if (started || closed) return;
    started = true;
    for (const slot of slots.values()) {
      slot.source.onChange?.(() => onSourceChange(slot));
      const key = slot.held;
      if (key === undefined) {
        void refresh(slot);
      } else if (slot.bridged) {
        logger.info("key settings changed; serving the previous key until the new source delivers", {
          key: slot.name,
          source: slot.config.source,
          serving: key.fingerprint,
          serving_source: key.source,
          serving_age_ms: Math.max(0, clock.now() - key.fetchedAt),
        });
        void refresh(slot);
      } else {
        // Adopted on reload: keep its schedule rather than fetching again at once.
        const due = Math.max(0, key.fetchedAt + slot.config.refresh.interval - clock.now());
        schedule(slot, jitter(due, random));
      }
    }
  }

  function close(): void {
    if (closed) return;
    closed = true;
    for (const slot of slots.values()) {
      stopSlot(slot);
      if (!slot.sourceHandedOver) closeSource(slot.source);
    }
  }

  return keyring;
}
