/**
 * Notices when the config file changes, so the proxy can reload it (SPEC §8).
 *
 * Kubernetes updates a mounted ConfigMap by swapping the `..data` symlink, which no event names:
 * `watchFile` watches the directory, polls the file, and debounces bursts (see there). The
 * kubelet's renames come in a burst, hence the longer debounce than for key files.
 *
 * The watcher says "maybe changed"; the reload compares content hashes, so a touch or a rewrite
 * with the same bytes is still a no-op there.
 */
import { watchFile, type WatchDirectory } from "../fs/watch-file.ts";
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
  /** Watch the directory with `fs.watch`; default true; `false` polls only; tests may pass their own. */
  readonly watch?: boolean | WatchDirectory;
}

export interface ConfigWatcher {
  /** Resolves once the first look at the file is recorded: changes from then on are reported. */
  readonly ready: Promise<void>;
  close(): void;
}

const TROUBLE_MESSAGES = {
  unwatchable: "config directory cannot be watched; polling only",
  stopped: "config watch stopped; polling only",
  listener: "config change listener failed",
} as const;

/**
 * Starts watching `file`. The first check only records the current state; changes after that call
 * `onChange`. Timers and the watcher never keep the process alive.
 */
export function watchConfigFile(file: string, options: ConfigWatchOptions): ConfigWatcher {
  const { logger } = options;
  const watcher = watchFile(file, {
    onChange: options.onChange,
    pollInterval: options.pollInterval ?? CONFIG_POLL_INTERVAL_MS,
    debounce: options.debounce ?? CONFIG_DEBOUNCE_MS,
    ...(options.watch === undefined ? {} : { watch: options.watch }),
    onTrouble: ({ kind, directory, error }) =>
      logger?.warn(TROUBLE_MESSAGES[kind], { config: file, ...(kind === "unwatchable" ? { directory } : {}), error }),
  });
  return { ready: watcher.ready, close: () => watcher.close() };
}
