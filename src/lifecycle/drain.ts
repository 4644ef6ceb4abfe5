/**
 * Stop (SPEC §8): `/readyz` turns 503 at once (the caller sets draining first), new connections are
 * refused, idle keep-alive connections close, requests and streams in flight finish up to
 * `server.drain_timeout`, then the rest are cut.
 */
import type { Server } from "node:http";
import type { OpenResponses } from "../http/open-responses.ts";
import type { Logger } from "../observe/log.ts";

export interface Drain {
  /** Call whenever a response closes: closes the connection it leaves idle, and ends the wait for the last one. */
  responseClosed(): void;
  /**
   * Waits for the responses in flight (up to `timeoutMs`), then closes every connection of
   * `listener` and the listener itself. Resolves with how many requests were cut.
   */
  run(timeoutMs: number): Promise<number>;
}

export function createDrain(listener: Server, open: OpenResponses, logger: Logger): Drain {
  let drained: (() => void) | undefined;

  /** Resolves true when no response is open any more, false after `ms`. */
  function waitForIdle(ms: number): Promise<boolean> {
    if (open.size === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        drained = undefined;
        resolve(false);
      }, ms);
      drained = () => {
        drained = undefined;
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  return {
    responseClosed() {
      if (drained === undefined) return;
      // A response that just finished left its keep-alive connection idle: close it now rather
      // than wait for the client's next request (which would only get 503 draining).
      setImmediate(() => listener.closeIdleConnections());
      if (open.size === 0) drained();
    },

    async run(timeoutMs) {
      const closed = new Promise<void>((resolve) => (listener.listening ? listener.close(() => resolve()) : resolve()));
      listener.closeIdleConnections();
      // Responses not started yet say `Connection: close`, so their connections end with them.
      for (const res of open) if (!res.headersSent) res.shouldKeepAlive = false;
      let cut = 0;
      if (!(await waitForIdle(timeoutMs))) {
        cut = open.size;
        logger.warn("drain_timeout reached, cutting the requests still in flight", { in_flight: cut, drain_timeout_ms: timeoutMs });
      }
      listener.closeAllConnections();
      await closed;
      // The cut responses report their end a tick after their sockets: wait for it (briefly), so
      // the in-flight bookkeeping and the retired upstream pools are settled when this resolves.
      await waitForIdle(1_000);
      return cut;
    },
  };
}
