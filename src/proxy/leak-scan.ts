/**
 * Finding the MythIQ key in what the upstream sends back (SPEC §4 step 9).
 *
 * OpenAI-compatible APIs echo (masked) keys in error bodies and a debugging or misconfigured
 * upstream can echo request headers verbatim (docs/security.md §6). Error
 * bodies are therefore scanned for the exact key bytes before the client gets them; a body the
 * proxy cannot decode is treated as if it contained the key (fail closed).
 */
import { createRequire } from "node:module";
import type * as Zlib from "node:zlib";

// zlib is needed only to decode an encoded error body: loaded then, not at start (about 2 MB).
const require = createRequire(import.meta.url);
let zlibModule: typeof Zlib | undefined;
const loadZlib = (): typeof Zlib => (zlibModule ??= require("node:zlib") as typeof Zlib);

/** Error bodies are held up to this many bytes before anything is sent. */
export const ERROR_BODY_HOLD_BYTES = 64 * 1024;

/** Decoded output allowed for one held error body: a compression bomb is withheld, not inflated. */
export const MAX_DECODED_BYTES = 1024 * 1024;

/** At most this many stacked content codings are undone. */
const MAX_CODINGS = 3;

/** The `content-encoding` codings in the order they were applied, `identity` left out; lower-case. */
export function contentCodings(header: string | string[] | undefined): string[] {
  const raw = Array.isArray(header) ? header.join(",") : (header ?? "");
  return raw
    .split(",")
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== "" && coding !== "identity");
}

function decodeOne(coding: string, body: Buffer): Buffer | undefined {
  const zlib = loadZlib();
  const zlibOptions = { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: MAX_DECODED_BYTES };
  switch (coding) {
    case "gzip":
    case "x-gzip":
      return zlib.gunzipSync(body, zlibOptions);
    case "deflate":
      // RFC 9110 says zlib-wrapped; some servers send raw deflate, which clients accept too.
      try {
        return zlib.inflateSync(body, zlibOptions);
      } catch {
        return zlib.inflateRawSync(body, zlibOptions);
      }
    case "br":
      return zlib.brotliDecompressSync(body, {
        finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH,
        maxOutputLength: MAX_DECODED_BYTES,
      });
    case "zstd":
      return zlib.zstdDecompressSync(body, { maxOutputLength: MAX_DECODED_BYTES });
    default:
      return undefined;
  }
}

/**
 * The held body with its content codings undone, for scanning only (the client gets the bytes as
 * they came). `undefined` when it cannot be decoded: an unknown coding, more than three codings,
 * corrupt data or more than `MAX_DECODED_BYTES` of output. A truncated stream decodes as far as it
 * goes, which is as far as the client could decode it too.
 */
export function decodeForScan(body: Buffer, codings: readonly string[]): Buffer | undefined {
  if (codings.length > MAX_CODINGS) return undefined;
  let current = body;
  // Codings are listed in the order applied, so they are undone from the last one.
  for (let i = codings.length - 1; i >= 0; i--) {
    try {
      const decoded = decodeOne(codings[i]!, current);
      if (decoded === undefined) return undefined;
      current = decoded;
    } catch {
      return undefined;
    }
  }
  return current;
}

/** True when any raw header name or value contains the key. */
export function headersContain(rawHeaders: readonly string[], needle: Buffer): boolean {
  const text = needle.toString("latin1");
  // Node decodes header bytes as latin1, so comparing latin1 strings compares the wire bytes.
  return rawHeaders.some((field) => field.includes(text));
}

/**
 * Scans an identity-coded body that streams past the held part, chunk by chunk, without letting a
 * single byte of a key occurrence out: the last `key.length - 1` bytes are always kept back until
 * the bytes after them show they do not start the key.
 */
export interface RollingScanner {
  /** The bytes that are safe to send now, or "leak" when the key has appeared. */
  push(chunk: Buffer): Buffer | "leak";
  /** The bytes kept back, to send once the body has ended. */
  flush(): Buffer;
}

export function createRollingScanner(needle: Buffer): RollingScanner {
  const keep = Math.max(0, needle.length - 1);
  let pending = Buffer.alloc(0);
  return {
    push(chunk) {
      const window = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      if (window.includes(needle)) return "leak";
      const cut = Math.max(0, window.length - keep);
      // Copy the kept tail so a large chunk is not retained through a small slice of it.
      pending = Buffer.from(window.subarray(cut));
      return window.subarray(0, cut);
    },
    flush() {
      const rest = pending;
      pending = Buffer.alloc(0);
      return rest;
    },
  };
}
