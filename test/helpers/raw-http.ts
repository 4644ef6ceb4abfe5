/**
 * Raw HTTP/1.x over TCP for tests: send exact bytes (no client library normalising them) and parse
 * what comes back. Strings are latin1 so every byte value 0x00–0xFF round-trips unchanged.
 */
import net from "node:net";

export interface RawResponse {
  readonly status: number;
  /** Lower-cased names; a repeated header keeps its last value. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface RawConnection {
  write(data: string | Buffer): void;
  /** Everything received so far. */
  received(): string;
  /** Resolves with the bytes received once `test` holds; rejects if the server closes first or on timeout. */
  until(test: (received: string) => boolean): Promise<string>;
  /** Resolves with everything received when the server closes (FIN or reset). */
  readonly closed: Promise<string>;
  /** True once the server ended or reset the connection. */
  serverClosed(): boolean;
  destroy(): void;
  /** Closes with a TCP reset (RST) instead of a FIN. */
  reset(): void;
}

/** Opens a connection; every wait on it fails after `timeoutMs` so a hung server fails the test. */
export async function connectRaw(port: number, timeoutMs = 5000): Promise<RawConnection> {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  let data = "";
  let closedByServer = false;
  let destroyedByUs = false;
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const waiter of [...waiters]) waiter();
  };
  socket.on("data", (chunk: Buffer) => {
    data += chunk.toString("latin1");
    notify();
  });
  // A reset (ECONNRESET) counts as a close: some refusals cut the connection on purpose.
  socket.on("error", () => undefined);
  const closed = new Promise<string>((resolve) => {
    socket.on("end", () => {
      closedByServer = true;
    });
    socket.on("close", () => {
      if (!destroyedByUs) closedByServer = true;
      notify();
      resolve(data);
    });
  });
  const guard = setTimeout(() => {
    destroyedByUs = true;
    socket.destroy();
  }, timeoutMs);
  guard.unref();
  socket.once("close", () => clearTimeout(guard));

  return {
    write(chunk) {
      socket.write(typeof chunk === "string" ? Buffer.from(chunk, "latin1") : chunk);
    },
    received: () => data,
    until(test) {
      return new Promise<string>((resolve, reject) => {
        const check = (): void => {
          if (test(data)) {
            waiters.delete(check);
            resolve(data);
          } else if (socket.destroyed) {
            waiters.delete(check);
            reject(new Error(`connection closed before the expected bytes; got ${JSON.stringify(data)}`));
          }
        };
        waiters.add(check);
        check();
      });
    },
    closed,
    serverClosed: () => closedByServer,
    destroy() {
      destroyedByUs = true;
      socket.destroy();
    },
    reset() {
      destroyedByUs = true;
      socket.resetAndDestroy();
    },
  };
}

/** Parses consecutive responses (1xx interim ones included). `head` marks a HEAD request (no bodies). */
export function parseResponses(raw: string, options: { head?: boolean } = {}): { responses: RawResponse[]; rest: string } {
  const responses: RawResponse[] = [];
  let rest = raw;
  for (;;) {
    const end = rest.indexOf("\r\n\r\n");
    if (end === -1) break;
    const lines = rest.slice(0, end).split("\r\n");
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
    if (match === null) break;
    const status = Number(match[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    let after = rest.slice(end + 4);
    let body = "";
    if (status >= 200 && options.head !== true) {
      const length = headers["content-length"];
      if (length !== undefined) {
        const n = Number(length);
        if (after.length < n) break;
        body = after.slice(0, n);
        after = after.slice(n);
      } else if (headers["transfer-encoding"]?.toLowerCase() === "chunked") {
        const decoded = decodeChunked(after);
        if (decoded === undefined) break;
        body = decoded.body;
        after = decoded.rest;
      } else {
        body = after;
        after = "";
      }
    }
    responses.push({ status, headers, body });
    rest = after;
  }
  return { responses, rest };
}

function decodeChunked(raw: string): { body: string; rest: string } | undefined {
  let body = "";
  let at = 0;
  for (;;) {
    const eol = raw.indexOf("\r\n", at);
    if (eol === -1) return undefined;
    const size = parseInt(raw.slice(at, eol), 16);
    if (Number.isNaN(size)) return undefined;
    at = eol + 2;
    if (size === 0) {
      const end = raw.indexOf("\r\n", at);
      if (end === -1) return undefined;
      return { body, rest: raw.slice(end + 2) };
    }
    if (raw.length < at + size + 2) return undefined;
    body += raw.slice(at, at + size);
    at += size + 2;
  }
}

/** Number of complete final (status ≥ 200) responses in `raw`. */
export function finalResponses(raw: string, options: { head?: boolean } = {}): RawResponse[] {
  return parseResponses(raw, options).responses.filter((r) => r.status >= 200);
}

export interface SendResult {
  readonly raw: string;
  readonly responses: RawResponse[];
  /** True when the server closed the connection (rather than the helper, after the last response). */
  readonly serverClosed: boolean;
}

/**
 * Writes `data` in one go and collects the answer. Resolves when the server closes the connection,
 * or, with `finals`, as soon as that many complete final responses arrived and the server is
 * keeping the connection open (the helper then closes it).
 */
export async function sendRaw(
  port: number,
  data: string | Buffer,
  options: { head?: boolean; finals?: number; timeoutMs?: number } = {},
): Promise<SendResult> {
  const conn = await connectRaw(port, options.timeoutMs);
  conn.write(data);
  const finals = options.finals;
  if (finals !== undefined) {
    // until() rejects once the connection closes; the race has settled by then.
    const enough = conn.until((raw) => finalResponses(raw, options).length >= finals).catch(() => "");
    await Promise.race([conn.closed, enough]);
  } else {
    await conn.closed;
  }
  const serverClosed = conn.serverClosed();
  conn.destroy();
  const raw = conn.received();
  return { raw, responses: parseResponses(raw, options).responses, serverClosed };
}
