/**
 * Reads a request body into memory, never past a byte limit. Used only for bodies that must be
 * checked (the model allowlist) or replayed (a retry after the upstream refused a rotated key); all
 * other bodies stream through.
 */
import type { IncomingMessage } from "node:http";

export type BodyRead =
  | { readonly ok: true; readonly bytes: Buffer }
  | { readonly ok: false; readonly why: "too_large" | "aborted" };

/** Resolves once the whole body is in, or as soon as it passes `maxBytes` (then reading stops). */
export function readBodyBounded(req: IncomingMessage, maxBytes: number): Promise<BodyRead> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (result: BodyRead): void => {
      if (settled) return;
      settled = true;
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onAbort);
      req.off("close", onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        // Stop reading at once: the rest of an oversized body is never buffered.
        req.pause();
        settle({ ok: false, why: "too_large" });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => settle({ ok: true, bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
    const onAbort = (): void => settle({ ok: false, why: "aborted" });
    const onClose = (): void => {
      if (!req.complete) onAbort();
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onAbort);
    req.on("close", onClose);
  });
}
