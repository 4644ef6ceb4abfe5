/**
 * Notices when the config file changes, so the proxy can reload it (SPEC §8).
 *
 * - Kubernetes updates a mounted ConfigMap by writing a new timestamped directory and swapping the
 *   `..data` symlink in one rename; the config file itself is a symlink through `..data`, so no
 *   event ever names the file: the *directory* is watched, and any event there triggers a check.
 * - inotify is lost on some filesystems (network, FUSE, some overlay cases) and the path may be a
 *   symlink into a directory that is not watched at all, so the file is also `stat`ed on a timer.
 * - A check compares the file's identity and times (symlinks followed) with the last ones seen and
 *   reports a change only when they differ; a burst of events (an editor's write-rename-chmod, the
 *   kubelet's several renames) is debounced into one check.
 *
 * The watcher says "maybe changed"; the reload compares content hashes, so a touch or a rewrite
 * with the same bytes is still a no-op there.
 */
import { watch, type FSWatcher, type Stats } from "node:fs";
import { stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "../observe/log.ts";

/** Default period of the `stat` poll, in ms. */
export const CONFIG_POLL_INTERVAL_MS = 2_000;
/** Default delay from a directory event to the check, in ms: the kubelet's renames come in a burst. */
export const CONFIG_DEBOUNCE_MS = 250;

export interface ConfigWatchOptions {
  /** Called (never re-entered) when the file's identity, size or times changed. */
  readonly onChange: () => void;
  readonly logger?: Logger;
  /** Period of the `stat` poll in ms; default 2000; 0 turns polling off. */
  readonly pollInterval?: number;
  /** Delay in ms from a directory event to the check; default 250. */
  readonly debounce?: number;
  /** Watch the directory with `fs.watch`; default true. */
  readonly watch?: boolean;
}

export interface ConfigWatcher {
  /** Resolves once the first look at the file is recorded: changes from then on are reported. */
  readonly ready: Promise<void>;
  close(): void;
}

function signature(stats: Stats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "error";
}

/**
 * Starts watching `file`. The first check only records the current state; changes after that call
 * `onChange`. Timers and the watcher never keep the process alive.
 */
export function watchConfigFile(file: string, options: ConfigWatchOptions): ConfigWatcher {
  const pollInterval = options.pollInterval ?? CONFIG_POLL_INTERVAL_MS;
  const debounce = options.debounce ?? CONFIG_DEBOUNCE_MS;
  const { logger } = options;

  let lastSeen: string | undefined;
  let watcher: FSWatcher | undefined;
  let poller: ReturnType<typeof setInterval> | undefined;
  let pending: ReturnType<typeof setTimeout> | undefined;
  let checking = false;
  let recheck = false;
  let closed = false;

  async function check(): Promise<void> {
    if (closed) return;
    if (checking) {
      // An event during a check may describe a change the running stat already missed.
      recheck = true;
      return;
    }
    checking = true;
    try {
      do {
        recheck = false;
        let current: string;
        try {
          current = signature(await stat(file));
        } catch (err) {
          // Mid-swap or deleted: remembered as such, so the file coming back counts as a change.
          current = `missing:${errorCode(err)}`;
        }
        if (closed) return;
        const changed = lastSeen !== undefined && current !== lastSeen;
        lastSeen = current;
        if (changed) {
          try {
            options.onChange();
          } catch (err) {
            logger?.warn("config change listener failed", { config: file, error: errorCode(err) });
          }
        }
      } while (recheck && !closed);
    } finally {
      checking = false;
    }
  }

  function scheduleCheck(): void {
    if (pending !== undefined || closed) return;
    pending = setTimeout(() => {
      pending = undefined;
      void check();
    }, debounce);
    pending.unref();
  }

  const ready = check();

  if (options.watch !== false) {
    const directory = dirname(file);
    try {
      watcher = watch(directory, { persistent: false }, scheduleCheck);
      watcher.on("error", (err: unknown) => {
        // The directory went away or inotify gave up: the poll still sees changes.
        logger?.warn("config watch stopped; polling only", { config: file, error: errorCode(err) });
        watcher?.close();
        watcher = undefined;
      });
    } catch (err) {
      logger?.warn("config directory cannot be watched; polling only", { config: file, directory, error: errorCode(err) });
    }
  }
  if (pollInterval > 0) {
    poller = setInterval(() => void check(), pollInterval);
    poller.unref();
  }

  return {
    ready,
    close() {
      closed = true;
      watcher?.close();
      watcher = undefined;
      if (poller !== undefined) clearInterval(poller);
      poller = undefined;
      if (pending !== undefined) clearTimeout(pending);
      pending = undefined;
    },
  };
}
