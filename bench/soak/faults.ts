/**
 * The fault schedule: what is done to the proxy, when, and the windows in which each fault is "in
 * force" for the classifier.
 *
 * The run is cut into cycles of up to two minutes (after a 5 s warm-up), each with every fault, at
 * these fractions of the cycle:
 *
 *   5 %   key rotation: the new key written to the key file, the old one revoked at MythIQ at once
 *  15 %   valid config reload by rewriting the file (the watcher applies it)
 *  20 %   MythIQ resets 2 % of connections before answering and cuts 5 % of streams halfway, for 15 %
 *  25 %   Redis killed (SIGKILL), started again (empty) 15 % later
 *  45 %   two rotations 6 s apart, each revoking the previous key at once (inside the 30 s that
 *         once limited 401-triggered refreshes per key)
 *  55 %   an invalid config written (rejected), then SIGHUP on it (rejected again, not counted)
 *  62 %   a new valid config written and SIGHUP at once (applied, counted once)
 *  65 %   MythIQ stalls 1 % of requests past `response_timeout` and 5 % of streams past
 *         `idle_timeout`, for 15 %
 *  85 %   valid reload by SIGHUP right after the rewrite
 *
 * Three tracks run side by side: rotations and reloads in order, each step waiting until the proxy
 * logged that it took the previous one in (so what the soak counts does not depend on how fast a
 * busy machine is); MythIQ's fault windows; the Redis outage. The last two keep their durations
 * even when the first is slowed down. A cycle shorter than two minutes (short runs) compresses
 * the offsets; the rapid pair stays 6 s apart.
 */
import type { FaultWindow } from "./classify.ts";

type Rates = { reset?: number; stall?: number; cut?: number; idle?: number };

export type FaultAction =
  | { readonly type: "rotate"; readonly rapid: boolean }
  | { readonly type: "reload"; readonly via: "file" | "file+sighup"; readonly valid: boolean }
  | { readonly type: "sighup-again" }
  | { readonly type: "upstream"; readonly window: "reset" | "stall"; readonly rates: Rates; readonly durationMs: number }
  | { readonly type: "redis-outage"; readonly durationMs: number };

export interface ScheduledFault {
  /** Milliseconds after the start of traffic. */
  readonly at: number;
  readonly action: FaultAction;
}

export const WARMUP_MS = 5_000;
const CYCLE_MS = 120_000;
const RAPID_GAP_MS = 6_000;
/** How long a revocation explains a refused streamed body. */
const REVOCATION_WINDOW_MS = 10_000;
/** How long the proxy may take to say it saw a rotation or a reload (a busy machine is slow). */
const ACK_MS = 20_000;
/** A fault switched off still explains answers that end within this long. */
const TAIL_MS = 5_000;

export const RESET_RATES = { reset: 0.02, cut: 0.05 };
export const STALL_RATES = { stall: 0.01, idle: 0.05 };

/** The schedule for a run of `durationMs` of traffic. Faults end 5 s before the traffic does. */
export function buildSchedule(durationMs: number): ScheduledFault[] {
  const span = durationMs - WARMUP_MS - TAIL_MS;
  const cycles = Math.max(1, Math.round(span / CYCLE_MS));
  const cycle = span / cycles;
  const window = Math.round(0.15 * cycle);
  const faults: ScheduledFault[] = [];
  for (let c = 0; c < cycles; c++) {
    const at = (fraction: number): number => Math.round(WARMUP_MS + c * cycle + fraction * cycle);
    faults.push(
      { at: at(0.05), action: { type: "rotate", rapid: false } },
      { at: at(0.15), action: { type: "reload", via: "file", valid: true } },
      { at: at(0.2), action: { type: "upstream", window: "reset", rates: RESET_RATES, durationMs: window } },
      { at: at(0.25), action: { type: "redis-outage", durationMs: window } },
      { at: at(0.45), action: { type: "rotate", rapid: false } },
      { at: at(0.45) + RAPID_GAP_MS, action: { type: "rotate", rapid: true } },
      { at: at(0.55), action: { type: "reload", via: "file", valid: false } },
      { at: at(0.58), action: { type: "sighup-again" } },
      { at: at(0.62), action: { type: "reload", via: "file+sighup", valid: true } },
      { at: at(0.65), action: { type: "upstream", window: "stall", rates: STALL_RATES, durationMs: window } },
      { at: at(0.85), action: { type: "reload", via: "file+sighup", valid: true } },
    );
  }
  return faults.sort((a, b) => a.at - b.at);
}

/** What the schedule acts on. */
export interface FaultHandles {
  rotateKey(): void;
  writeConfig(valid: boolean): void;
  sighup(): void;
  /** How many log lines with this `msg` the proxy has written so far. */
  logged(msg: string): number;
  setRates(rates: Rates): void;
  redisKill(): Promise<void>;
  redisStart(): Promise<void>;
  log(line: string): void;
}

export interface FaultLog {
  readonly windows: FaultWindow[];
  readonly counts: {
    rotations: number;
    rapidRotations: number;
    reloadsValid: number;
    reloadsInvalid: number;
    sighups: number;
    redisKills: number;
    redisStarts: number;
  };
  /** Errors the schedule met while applying a fault (a failed Redis start, say). */
  readonly errors: string[];
}

export interface RunningSchedule {
  /** Filled in as faults are applied: windows open (end = Infinity) until they close. */
  readonly log: FaultLog;
  /** Resolves once every fault has been applied and undone (or the run stopped), every window closed. */
  readonly done: Promise<void>;
}

const OFF: Rates = { reset: 0, stall: 0, cut: 0, idle: 0 };

/** Applies `schedule` against the soak's clock until it is done or `stopped()` says so. */
export function startSchedule(schedule: readonly ScheduledFault[], handles: FaultHandles, now: () => number, stopped: () => boolean): RunningSchedule {
  const log: FaultLog = {
    windows: [],
    counts: { rotations: 0, rapidRotations: 0, reloadsValid: 0, reloadsInvalid: 0, sighups: 0, redisKills: 0, redisStarts: 0 },
    errors: [],
  };
  const fmt = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
  /** Sleeps until `at`, or less when the run stops; true when it is time to act. */
  const until = async (at: number): Promise<boolean> => {
    while (now() < at) {
      if (stopped()) return false;
      await sleep(Math.min(250, at - now()));
    }
    return !stopped();
  };

  /**
   * Waits until the proxy has logged `msg` once more than `before` times: two rewrites the proxy
   * read as one would count one reload, two rotations read together one rotation.
   */
  async function acknowledged(msg: string, before: number): Promise<void> {
    const deadline = now() + ACK_MS;
    while (handles.logged(msg) <= before) {
      if (now() > deadline) throw new Error(`the proxy did not log "${msg}" within ${ACK_MS / 1000} s`);
      await sleep(50);
    }
  }

  async function apply(action: FaultAction, at: number): Promise<void> {
    switch (action.type) {
      case "rotate": {
        const before = handles.logged("key rotated");
        handles.rotateKey();
        log.counts.rotations += 1;
        if (action.rapid) log.counts.rapidRotations += 1;
        log.windows.push({ type: "revocation", start: at, end: at + REVOCATION_WINDOW_MS });
        handles.log(`${fmt(at)} key rotated, old key revoked at MythIQ${action.rapid ? " (second rotation within 30 s)" : ""}`);
        await acknowledged("key rotated", before);
        return;
      }
      case "reload": {
        const message = action.valid ? "config reloaded" : "config reload rejected, keeping the running config";
        const before = handles.logged(message);
        handles.writeConfig(action.valid);
        if (action.via === "file+sighup") {
          handles.sighup();
          log.counts.sighups += 1;
        }
        if (action.valid) log.counts.reloadsValid += 1;
        else log.counts.reloadsInvalid += 1;
        log.windows.push({ type: "reload", start: at, end: at + 5_000 });
        handles.log(`${fmt(at)} config ${action.valid ? "valid" : "INVALID"} written (${action.via})`);
        await acknowledged(message, before);
        return;
      }
      case "sighup-again": {
        const message = "config reload rejected again (file unchanged since), keeping the running config";
        const before = handles.logged(message);
        handles.sighup();
        log.counts.sighups += 1;
        handles.log(`${fmt(at)} SIGHUP on the unchanged invalid file`);
        await acknowledged(message, before);
        return;
      }
      case "upstream": {
        const window: FaultWindow = { type: action.window, start: at, end: Infinity };
        log.windows.push(window);
        handles.setRates(action.rates);
        handles.log(`${fmt(at)} MythIQ ${action.window === "reset" ? "resets and cuts" : "stalls"} ${JSON.stringify(action.rates)} for ${fmt(action.durationMs)}`);
        await until(at + action.durationMs);
        handles.setRates(action.window === "reset" ? { reset: 0, cut: 0 } : { stall: 0, idle: 0 });
        window.end = now() + TAIL_MS;
        return;
      }
      case "redis-outage": {
        const window: FaultWindow = { type: "redis", start: at, end: Infinity };
        log.windows.push(window);
        await handles.redisKill();
        log.counts.redisKills += 1;
        handles.log(`${fmt(at)} Redis killed`);
        await until(at + action.durationMs);
        await handles.redisStart();
        log.counts.redisStarts += 1;
        window.end = now() + TAIL_MS;
        handles.log(`${fmt(now())} Redis started again`);
        return;
      }
    }
  }

  const track = async (faults: readonly ScheduledFault[]): Promise<void> => {
    for (const fault of faults) {
      if (!(await until(fault.at))) break;
      const at = now();
      try {
        await apply(fault.action, at);
      } catch (err) {
        log.errors.push(`${fmt(at)} ${fault.action.type}: ${(err as Error).message}`);
      }
    }
  };
  const of = (...types: FaultAction["type"][]): ScheduledFault[] => schedule.filter((f) => types.includes(f.action.type));
  const done = Promise.all([track(of("rotate", "reload", "sighup-again")), track(of("upstream")), track(of("redis-outage"))]).then(() => {
    // A stopped run may leave a window open: switch its fault off and close it.
    handles.setRates(OFF);
    for (const window of log.windows) if (window.end === Infinity) window.end = now() + TAIL_MS;
  });
  return { log, done };
}
