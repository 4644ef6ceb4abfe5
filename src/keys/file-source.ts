/**
 * `source: file` — the key is the content of a file, typically a mounted Kubernetes Secret (SPEC §3).
 *
 * Reading is bounded and refuses anything but a regular file: a key path pointing at a FIFO would
 * otherwise block a libuv thread for ever (four of those and every `fs` and DNS call in the process
 * stalls), and `/dev/zero` would be read until memory runs out.
 *
 * A rotated Secret is picked up without waiting for the refresh interval: once the keyring listens
 * (`onChange`), `watchFile` watches the file's directory (the kubelet swaps a `..data` symlink that
 * no event names) and `stat`s the file on a timer (inotify is lost on some filesystems), calling
 * the listener only when the file's identity or times changed, so unrelated activity in the
 * directory costs one `stat`, not a re-read.
 */
import { dropTrailingNewline } from "../config/secret-ref.ts";
import { readCapped } from "../fs/read-capped.ts";
import { watchFile, type FileWatch, type WatchDirectory } from "../fs/watch-file.ts";
import type { Logger } from "../observe/log.ts";
import type { KeySource, SourceValue } from "./types.ts";

/** Largest key file accepted, in bytes (16 KiB). */
export const FILE_MAX_BYTES = 16 * 1024;
/** Default period of the `stat` poll, in ms. */
export const FILE_POLL_INTERVAL_MS = 2_000;
/** Default delay between a directory event and the check it triggers, in ms. */
export const FILE_DEBOUNCE_MS = 100;

export interface FileSourceOptions {
  /** Largest file accepted, in bytes; default 16 KiB. */
  readonly maxBytes?: number;
  /** Period of the `stat` poll in ms; default 2000; 0 turns polling off. */
  readonly pollInterval?: number;
  /** Delay in ms from a directory event to the check; default 100. */
  readonly debounce?: number;
  /** Watch the directory with `fs.watch`; default true; `false` polls only; tests may pass their own. */
  readonly watch?: boolean | WatchDirectory;
  /** Where watcher trouble is reported (debug/warn); default none. */
  readonly logger?: Logger;
}

/**
 * Creates a file source. `version` is the file's mtime in whole ms — never anything derived from the
 * content. Watching and polling start when a listener is registered with `onChange`.
 */
export function createFileSource(config: { readonly file: string }, options: FileSourceOptions = {}): KeySource {
  const path = config.file;
  const maxBytes = options.maxBytes ?? FILE_MAX_BYTES;
  const pollInterval = options.pollInterval ?? FILE_POLL_INTERVAL_MS;
  const debounce = options.debounce ?? FILE_DEBOUNCE_MS;
  const logger = options.logger;

  let listener: (() => void) | undefined;
  let watcher: FileWatch | undefined;
  let closed = false;

  async function read(signal: AbortSignal): Promise<SourceValue> {
    const result = await readCapped(path, maxBytes, { signal });
    if (!result.ok) {
      switch (result.why) {
        case "not_a_file":
          throw new Error(`key file ${path} is not a regular file`);
        case "too_large":
          throw new Error(`key file ${path} is larger than ${maxBytes} bytes`);
        case "aborted":
          throw new Error("fetch aborted");
        case "unreadable":
          throw new Error(`cannot read key file ${path}: ${result.code}`);
      }
    }
    const text = result.bytes.toString("utf8");
    result.bytes.fill(0);
    // What was read is the baseline for change detection: a change after this point is noticed.
    watcher?.seen(result.stats);
    return { value: dropTrailingNewline(text), version: String(Math.trunc(result.stats.mtimeMs)) };
  }

  function notify(): void {
    listener?.();
  }

  function startWatching(): void {
    logger?.debug("watching key file", { file: path });
    watcher = watchFile(path, {
      onChange: notify,
      pollInterval,
      debounce,
      ...(options.watch === undefined ? {} : { watch: options.watch }),
      onTrouble: ({ kind, directory, error }) => {
        if (kind === "unwatchable") logger?.warn("key file cannot be watched; polling only", { file: path, directory, error });
        else if (kind === "stopped") logger?.warn("key file watch stopped; polling only", { file: path, error });
        else logger?.warn("key file change listener failed", { file: path, error });
      },
    });
  }

  return {
    kind: "file",
    fetch(signal: AbortSignal): Promise<SourceValue> {
      if (signal.aborted) return Promise.reject(new Error("fetch aborted"));
      return read(signal);
    },
    /** One listener: a later call replaces it (the keyring that adopted this source on a reload). */
    onChange(next: () => void): void {
      listener = next;
      if (closed || watcher !== undefined) return;
      startWatching();
    },
    close(): void {
      closed = true;
      listener = undefined;
      watcher?.close();
    },
  };
}
