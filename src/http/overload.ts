/**
 * Load shedding on event-loop lag (SPEC §5 `overloaded`). When the one thread that runs every
 * request is behind, each new request only adds to the queue in front of the ones already
 * accepted; refusing it at once with 503 and `Retry-After` lets callers go to another replica and
 * lets the proxy catch up. `max_connections` (the listener) bounds sockets; this bounds work.
 *
 * How lag is measured: a timer is due every `interval` ms; how late it fires is one sample. The
 * samples are smoothed (an exponentially weighted average, `smoothing` the weight of the newest),
 * so one long garbage-collection pause does not trip it, while lag that persists does:
 * - shedding starts when the smoothed lag goes above `shedAbove` ms, or at once when the timer is
 *   overdue by more than `2 × shedAbove` right now (the loop is stuck behind a long run of work);
 * - shedding stops by itself when the smoothed lag falls below `recoverBelow` ms (hysteresis, so
 *   the state does not flap around one threshold).
 *
 * Defaults: a sample every 100 ms, weight 0.3, shed above 500 ms, recover below 200 ms. A healthy
 * proxy lags a few ms; 500 ms means every request already waits half a second before its first
 * line of code runs. With the defaults, a loop blocked ~400 ms out of every 500 sheds within about
 * 1.5 s and, once the load is gone, recovers within about 0.5 s.
 */

export interface LagMonitorOptions {
  /** Sampling period in ms; default 100. */
  readonly interval?: number;
  /** Weight of the newest sample in the smoothed lag, 0 < w ≤ 1; default 0.3. */
  readonly smoothing?: number;
  /** Start shedding above this smoothed lag, in ms; default 500. */
  readonly shedAbove?: number;
  /** Stop shedding below this smoothed lag, in ms; default 200. */
  readonly recoverBelow?: number;
  /** Told when shedding starts (`true`) and stops, with the smoothed lag in ms. Exceptions are ignored. */
  readonly onChange?: (shedding: boolean, lagMs: number) => void;
  /** Monotonic ms; default `performance.now()`. */
  readonly now?: () => number;
}

export interface LagMonitor {
  /** Seconds for `Retry-After` when new requests should be shed now; undefined otherwise. */
  shedSeconds(): number | undefined;
  /** Smoothed lag in ms. */
  lagMs(): number;
  /** Whether the monitor is shedding (hysteresis state; an overdue timer alone does not set it). */
  shedding(): boolean;
  close(): void;
}

export const LAG_DEFAULTS = Object.freeze({ interval: 100, smoothing: 0.3, shedAbove: 500, recoverBelow: 200 });

/** Longest `Retry-After` the monitor asks for, in seconds. */
const MAX_RETRY_AFTER_S = 30;

/** Starts sampling at once; `close()` stops it. The timer never keeps the process alive. */
export function createLagMonitor(options: LagMonitorOptions = {}): LagMonitor {
  const interval = options.interval ?? LAG_DEFAULTS.interval;
  const smoothing = options.smoothing ?? LAG_DEFAULTS.smoothing;
  const shedAbove = options.shedAbove ?? LAG_DEFAULTS.shedAbove;
  const recoverBelow = Math.min(options.recoverBelow ?? LAG_DEFAULTS.recoverBelow, shedAbove);
  const now = options.now ?? (() => performance.now());

  let smoothed = 0;
  let shedding = false;
  let due = now() + interval;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  function notify(): void {
    try {
      options.onChange?.(shedding, Math.round(smoothed));
    } catch {
      // An observer must not stop the sampling.
    }
  }

  function tick(): void {
    timer = undefined;
    if (closed) return;
    const at = now();
    const lag = Math.max(0, at - due);
    smoothed = smoothing * lag + (1 - smoothing) * smoothed;
    if (!shedding && smoothed > shedAbove) {
      shedding = true;
      notify();
    } else if (shedding && smoothed < recoverBelow) {
      shedding = false;
      notify();
    }
    schedule(at);
  }

  function schedule(from: number): void {
    due = from + interval;
    timer = setTimeout(tick, interval);
    timer.unref();
  }

  schedule(now());

  return {
    shedSeconds() {
      if (closed) return undefined;
      const overdue = Math.max(0, now() - due);
      if (!shedding && overdue <= 2 * shedAbove) return undefined;
      const lag = Math.max(smoothed, overdue);
      return Math.min(MAX_RETRY_AFTER_S, Math.max(1, Math.ceil(lag / 1000)));
    },
    lagMs: () => smoothed,
    shedding: () => shedding,
    close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}
