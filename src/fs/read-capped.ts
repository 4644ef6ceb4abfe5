/**
 * Reading a small file (the config, a secret, a key file) without trusting what is at the path: at
 * most a given number of bytes are read, so a device or a huge file cannot exhaust the process. By
 * default the open never blocks, so a FIFO without a writer cannot hold a libuv thread, and anything
 * that is not a regular file is refused.
 */
import { constants, type Stats } from "node:fs";
import { open } from "node:fs/promises";
import { errnoCode } from "../errno.ts";

export type CappedRead =
  | { readonly ok: true; readonly bytes: Buffer; readonly stats: Stats }
  /** `code` is the errno code of the failed open (`stage: "open"`), or of the stat or read. */
  | { readonly ok: false; readonly why: "unreadable"; readonly stage: "open" | "read"; readonly code: string }
  | { readonly ok: false; readonly why: "not_a_file" }
  | { readonly ok: false; readonly why: "too_large" }
  | { readonly ok: false; readonly why: "aborted" };

export interface CappedReadOptions {
  /** Return the first `maxBytes` bytes of a larger file instead of refusing it. Default false. */
  readonly truncate?: boolean;
  /** Checked between reads. */
  readonly signal?: AbortSignal;
  /**
   * Also read what is not a regular file (a pipe such as `/dev/stdin`, a device), with a blocking
   * open. For the short-lived processes that validate a config (`check`, the reload validator),
   * which a timeout ends. Default false.
   */
  readonly anyFile?: boolean;
}

/**
 * Reads `file` whole when it holds at most `maxBytes` bytes. The size is checked on the bytes read,
 * not only on `fstat`: a file can grow between the two, and a device reports no size at all.
 */
export async function readCapped(file: string, maxBytes: number, options: CappedReadOptions = {}): Promise<CappedRead> {
  const anyFile = options.anyFile === true;
  let handle;
  try {
    handle = await open(file, anyFile ? constants.O_RDONLY : constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (err) {
    return { ok: false, why: "unreadable", stage: "open", code: errnoCode(err) };
  }
  try {
    const stats = await handle.stat();
    if (!anyFile && !stats.isFile()) return { ok: false, why: "not_a_file" };
    const truncate = options.truncate === true;
    if (!truncate && stats.isFile() && stats.size > maxBytes) return { ok: false, why: "too_large" };
    // One byte more than allowed, to notice a file that grew past the limit.
    const buffer = Buffer.alloc(truncate ? maxBytes : maxBytes + 1);
    let used = 0;
    while (used < buffer.length) {
      if (options.signal?.aborted === true) return { ok: false, why: "aborted" };
      // No position for what is not a regular file: a pipe or a device cannot seek.
      const { bytesRead } = await handle.read(buffer, used, buffer.length - used, stats.isFile() ? used : null);
      if (bytesRead === 0) break;
      used += bytesRead;
    }
    if (used > maxBytes) {
      buffer.fill(0);
      return { ok: false, why: "too_large" };
    }
    return { ok: true, bytes: buffer.subarray(0, used), stats };
  } catch (err) {
    return { ok: false, why: "unreadable", stage: "read", code: errnoCode(err) };
  } finally {
    await handle.close().catch(() => undefined);
  }
}
