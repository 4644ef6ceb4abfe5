/**
 * One request of the soak through Node's HTTP client, and what became of it: the status and
 * `reason` the caller saw, the `x-request-id` (to find its audit line), whether the body arrived
 * whole, or which error ended it. Streamed and slow bodies are written with backpressure; a slow
 * reader pauses the response; an aborting caller destroys the request after a delay.
 */
import http from "node:http";

export interface Outcome {
  readonly status: number | undefined;
  readonly reason: string | undefined;
  readonly requestId: string | undefined;
  /** Set when no complete response arrived: the error code or a short description. */
  readonly error: string | undefined;
  /** A response started and did not end cleanly. */
  readonly truncated: boolean;
  readonly bodyBytes: number;
  /** The body, when it is at most KEEP_BYTES. */
  readonly body: Buffer | undefined;
  /** The request reached the proxy (the connection was established and the head written). */
  readonly sent: boolean;
  /** Milliseconds on the soak's clock. */
  readonly startedAt: number;
  readonly endedAt: number;
}

export interface StreamedBody {
  readonly chunk: Buffer;
  readonly chunks: number;
  /** Pause between chunks (a slow uploader); 0 = as fast as backpressure allows. */
  readonly delayMs: number;
  /** Send `content-length` (else chunked). */
  readonly withLength: boolean;
}

export interface RequestSpec {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer | StreamedBody;
  readonly agent: http.Agent | false;
  readonly localAddress?: string;
  /** Destroy the request this long after it started (a caller that gives up). */
  readonly abortAfterMs?: number;
  /** A slow reader: pause this long after every `every` bytes of the response. */
  readonly slowRead?: { readonly every: number; readonly pauseMs: number };
  /** Gives up (and reports `client timeout`) after this long. */
  readonly timeoutMs: number;
}

const KEEP_BYTES = 64 * 1024;

export function send(port: number, spec: RequestSpec, now: () => number): Promise<Outcome> {
  return new Promise((resolve) => {
    const startedAt = now();
    let sent = false;
    let settled = false;
    let status: number | undefined;
    let requestId: string | undefined;
    let bodyBytes = 0;
    const kept: Buffer[] = [];
    let timers: NodeJS.Timeout[] = [];

    const finish = (fields: { error?: string; truncated?: boolean }): void => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      timers = [];
      const body = bodyBytes <= KEEP_BYTES ? Buffer.concat(kept) : undefined;
      let reason: string | undefined;
      if (status !== undefined && status >= 400 && body !== undefined) {
        try {
          const parsed = JSON.parse(body.toString("utf8")) as { reason?: unknown };
          if (typeof parsed.reason === "string") reason = parsed.reason;
        } catch {
          // Not the proxy's JSON: a pass-through body.
        }
      }
      resolve({
        status,
        reason,
        requestId,
        error: fields.error,
        truncated: fields.truncated ?? false,
        bodyBytes,
        body,
        sent,
        startedAt,
        endedAt: now(),
      });
    };

    const headers: Record<string, string> = { ...spec.headers };
    const body = spec.body;
    if (Buffer.isBuffer(body)) headers["content-length"] = String(body.length);
    else if (body !== undefined && body.withLength) headers["content-length"] = String(body.chunk.length * body.chunks);

    const req = http.request({
      host: "127.0.0.1",
      port,
      method: spec.method,
      path: spec.path,
      headers,
      agent: spec.agent,
      ...(spec.localAddress === undefined ? {} : { localAddress: spec.localAddress }),
    });
    req.on("socket", (socket) => {
      // A pooled socket is connected already; a new one is "sent" once it connects.
      if (!socket.connecting) sent = true;
      else socket.once("connect", () => (sent = true));
    });
    req.on("error", (err: NodeJS.ErrnoException) => {
      finish({ error: err.code ?? err.message, truncated: status !== undefined });
    });
    req.on("response", (res) => {
      status = res.statusCode;
      const id = res.headers["x-request-id"];
      requestId = typeof id === "string" ? id : undefined;
      let sincePause = 0;
      res.on("data", (chunk: Buffer) => {
        bodyBytes += chunk.length;
        if (bodyBytes <= KEEP_BYTES) kept.push(chunk);
        if (spec.slowRead !== undefined) {
          sincePause += chunk.length;
          if (sincePause >= spec.slowRead.every) {
            sincePause = 0;
            res.pause();
            timers.push(setTimeout(() => res.resume(), spec.slowRead.pauseMs));
          }
        }
      });
      res.on("error", (err: NodeJS.ErrnoException) => finish({ error: err.code ?? err.message, truncated: true }));
      res.on("close", () => {
        if (res.complete) finish({});
        else finish({ error: "response cut", truncated: true });
      });
    });

    timers.push(setTimeout(() => {
      req.destroy();
      finish({ error: "client timeout", truncated: status !== undefined });
    }, spec.timeoutMs));
    if (spec.abortAfterMs !== undefined) {
      timers.push(setTimeout(() => {
        req.destroy();
        finish({ error: "aborted by client", truncated: status !== undefined });
      }, spec.abortAfterMs));
    }

    if (body === undefined) {
      req.end();
    } else if (Buffer.isBuffer(body)) {
      req.end(body);
    } else {
      let left = body.chunks;
      const pump = (): void => {
        while (left > 0 && !settled) {
          left -= 1;
          const more = req.write(body.chunk);
          if (left === 0) {
            req.end();
            return;
          }
          if (body.delayMs > 0) {
            timers.push(setTimeout(pump, body.delayMs));
            return;
          }
          if (!more) {
            req.once("drain", pump);
            return;
          }
        }
      };
      pump();
    }
  });
}
