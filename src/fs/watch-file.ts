/**
 * Notices when one file may have changed: the config file (a mounted ConfigMap, SPEC §8) and a
 * `source: file` key (a mounted Secret, SPEC §3) both use it.
 *
 * - Kubernetes updates ConfigMap and Secret volumes by writing a new timestamped directory and
 *   swapping the `..data` symlink in one rename; the file itself is a symlink through `..data`, so
 *   no event ever names it: the *directory* is watched, and any event there triggers a check.
 * - inotify events are lost on some filesystems (network and FUSE mounts, overlay corner cases), and
 *   a path may be a symlink into a directory that is not watched at all, so the file is also
 *   `stat`ed on a timer.
 * - A check compares the file's identity, size and times (symlinks followed) with the last ones
 *   seen and reports a change only when they differ: unrelated activity in the directory costs one
 *   `stat`, and a burst of events (an editor's write-rename-chmod, the kubelet's renames) is
 *   debounced into one check.
 *
 * This says "maybe changed"; callers compare content (the config's hash, the key's value), so a
 * touch or a rewrite with the same bytes stays a no-op there.
 */
import { watch, type Stats } from "node:fs";
import { stat } from "node:fs/promises";
import { dirname } from "node:path";
import { errnoCode } from "../errno.ts";

/** What `fs.watch` returns, as far as this module uses it. */
export interface DirectoryWatcher {
  on(event: "error", listener: (err: unknown) => void): unknown;
  close(): void;
}

/** Starts watching `directory`, calling `listener` on any event in it; throws when it cannot. */
export type WatchDirectory = (directory: string, listener: () => void) => DirectoryWatcher;

/** `fs.watch` on the directory; never keeps the process alive. */
export const watchDirectory: WatchDirectory = (directory, listener) =>
  watch(directory, { persistent: false }, () => listener());

/** Something went wrong that the caller may want to log; watching goes on as well as it can. */
export interface WatchTrouble {
  /**
   * `unwatchable`: the directory could not be watched at start (polling only);
   * `stopped`: the directory watch failed later (polling only);
   * `listener`: `onChange` threw (the next change is still reported).
   */
  readonly kind: "unwatchable" | "stopped" | "listener";
  readonly directory: string;
  /** An errno code such as `ENOENT`, else the error's message. */
  readonly error: string;
}

export interface FileWatchOptions {
  /** Called (never re-entered) when the file's identity, size or times changed. */
  readonly onChange: () => void;
  /** Period of the `stat` poll, in ms; 0 turns polling off. */
  readonly pollInterval: number;
  /** Delay from a directory event to the check, in ms. */
  readonly debounce: number;
  /** Watch the directory: `true` (default) uses `fs.watch`, `false` polls only; tests pass their own. */
  readonly watch?: boolean | WatchDirectory;
  /** Told about watcher trouble; exceptions from it are ignored. */
  readonly onTrouble?: (trouble: WatchTrouble) => void;
}

/** The parts of `Stats` a check compares. */
export type FileIdentity = Pick<Stats, "dev" | "ino" | "size" | "mtimeMs" | "ctimeMs">;

export interface FileWatch {
  /** Resolves once the first look at the file is recorded: changes from then on are reported. */
  readonly ready: Promise<void>;
  /**
   * The caller has just read the file with these stats (an `fstat` of the handle it read): that
   * state becomes the one compared with, so a change after the read is reported and the read
   * itself is not.
   */
  seen(stats: FileIdentity): void;
  close(): void;
}

function signature(stats: FileIdentity): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;
}

/**
 * Starts watching `file`: a first check records its current state (`ready`), later checks call
 * `onChange` when it differs. Timers and the watcher never keep the process alive.
 */
export function watchFile(file: string, options: FileWatchOptions): FileWatch {
  const { pollInterval, debounce } = options;
  const directory = dirname(file);

  let lastSeen: string | undefined;
  let watcher: DirectoryWatcher | undefined;
  let poller: ReturnType<typeof setInterval> | undefined;
  let pending: ReturnType<typeof setTimeout> | undefined;
  let checking = false;
  let recheck = false;
  let closed = false;

  function trouble(kind: WatchTrouble["kind"], err: unknown): void {
    try {
      // A file-system error by its code; a failing listener (the proxy's own code) by its message.
      options.onTrouble?.({ kind, directory, error: errnoCode(err, err instanceof Error && err.message !== "" ? err.message : "unknown error") });
    } catch {
      // A logging problem must not stop the watch.
    }
  }

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
          current = `missing:${errnoCode(err)}`;
        }
        if (closed) return;
        const changed = lastSeen !== undefined && current !== lastSeen;
        lastSeen = current;
        if (changed) {
          try {
            options.onChange();
          } catch (err) {
            // check() runs from timers and watcher events: a throw here would be an unhandled rejection.
            trouble("listener", err);
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
    const start = typeof options.watch === "function" ? options.watch : watchDirectory;
    try {
      const started = start(directory, scheduleCheck);
      watcher = started;
      started.on("error", (err: unknown) => {
        // The directory went away or inotify gave up: the poll still sees changes.
        if (watcher === started) watcher = undefined;
        started.close();
        if (!closed) trouble("stopped", err);
      });
    } catch (err) {
      trouble("unwatchable", err);
    }
  }
  if (pollInterval > 0) {
    poller = setInterval(() => void check(), pollInterval);
    poller.unref();
  }

  return {
    ready,
    seen(stats) {
      lastSeen = signature(stats);
    },
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
