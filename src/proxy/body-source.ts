/**
 * Where the upstream request body comes from: held bytes replayed from memory, or the caller's
 * stream piped through a counter that stops at the client's `max_body`.
 */
import { Readable, Transform } from "node:stream";

/**
 * The body of a request without one, shared: a zero-length Buffer holds nothing to change, and
 * `Buffer.alloc(0)` is a native allocation per request.
 */
export const NO_BODY: Buffer = Buffer.alloc(0);

/** A fresh readable of `bytes` (one per attempt, so a 401 retry can replay the same body). */
export function heldSource(bytes: Buffer): Readable {
  const source = new Readable({ read() {} });
  // An empty body is no chunk at all: a zero-length write would make Node start chunked framing.
  if (bytes.length > 0) source.push(bytes);
  source.push(null);
  return source;
}

export interface LimiterOptions {
  /** The most body bytes let through; one more and `onOverflow` runs. */
  readonly maxBytes: number;
  /** Called with the size of each chunk passed on. */
  readonly onBytes: (bytes: number) => void;
  /** Called once, when the body passes `maxBytes`; nothing more is passed on after that. */
  readonly onOverflow: () => void;
}

/**
 * A pass-through that counts body bytes and stops at `maxBytes`. Backpressure is the stream
 * machinery's: at most a high-water mark is ever buffered here. After an overflow the limiter never
 * ends, so the upstream never sees a cut body as a complete one; the caller aborts the upstream
 * request instead.
 */
export function createBodyLimiter(options: LimiterOptions): Transform {
  let total = 0;
  let overflowed = false;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (overflowed) return callback();
      total += chunk.length;
      if (total > options.maxBytes) {
        overflowed = true;
        options.onOverflow();
        return callback();
      }
      options.onBytes(chunk.length);
      callback(null, chunk);
    },
    flush(callback) {
      // A body that overflowed must not be ended upstream as if it were whole.
      if (!overflowed) callback();
    },
  });
}
