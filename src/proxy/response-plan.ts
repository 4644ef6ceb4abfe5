/**
 * A response the pipeline wants to see before the client does (SPEC §4 step 9, with ownership:
 * README "Ownership"). The forwarder asks the plan about a 2xx head, holds the body when told to
 * (never more than the plan's limit), and then sends it as it came, sends a replacement, or answers
 * with a refusal of its own. Every other response — and every response of a request without a plan,
 * which is nearly all of them — streams through as before, unheld.
 *
 * This module knows nothing of ownership: src/ownership/ implements the plans, forward.ts runs them.
 */
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import type { Reason } from "../errors.ts";
import { relayedHeaders } from "./response.ts";

/** How a held body ended. */
export type HeldEnd =
  /** The whole body is in `body`. */
  | "complete"
  /** More than the plan's limit: `body` holds the first bytes, the rest waits (paused). */
  | "over_limit"
  /** The upstream broke off before the end: `body` holds what came. */
  | "broken";

export interface HeldResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The bytes as they came (content codings not undone). */
  readonly body: Buffer;
  readonly end: HeldEnd;
}

export type ResponseDecision =
  /** Send the response as it came (for a held body: what was held, then whatever follows). */
  | { readonly kind: "pass" }
  /** Send this JSON instead of the upstream's body (same status, rewritten headers). Only for a complete body. */
  | { readonly kind: "replace"; readonly json: Buffer }
  /** Send nothing of the upstream's response: answer with this reason. */
  | { readonly kind: "refuse"; readonly reason: Reason };

/** What a plan decides on a 2xx head: read the body first, or pass or refuse the response as it is. */
export type HeadDecision = "hold" | Exclude<ResponseDecision, { readonly kind: "replace" }>;

export interface ResponsePlan {
  /** Most body bytes held before `decide`. */
  readonly holdBytes: number;
  /** Called with a 2xx head. */
  head(status: number, headers: IncomingHttpHeaders): HeadDecision;
  /** Called once with the held body (never after the client went away). */
  decide(held: HeldResponse): Promise<ResponseDecision>;
}

/**
 * Reads `pr` into memory until it ends, breaks off, or passes `limit` bytes (then it is paused with
 * its listeners removed, so the relay can take over). `onData` is called for every chunk (idle timer).
 */
export function holdBody(pr: IncomingMessage, limit: number, onData: () => void): Promise<{ body: Buffer; end: HeldEnd }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (end: HeldEnd): void => {
      pr.off("data", onChunk);
      pr.off("end", onEnd);
      pr.off("error", onBroken);
      pr.off("close", onClose);
      resolve({ body: Buffer.concat(chunks, size), end });
    };
    const onChunk = (chunk: Buffer): void => {
      onData();
      chunks.push(chunk);
      size += chunk.length;
      if (size > limit) {
        pr.pause();
        done("over_limit");
      }
    };
    const onEnd = (): void => done("complete");
    const onBroken = (): void => done("broken");
    const onClose = (): void => {
      if (!pr.complete) done("broken");
    };
    pr.on("data", onChunk);
    pr.once("end", onEnd);
    pr.once("error", onBroken);
    pr.once("close", onClose);
    pr.resume();
  });
}

/** Upstream headers that describe the upstream's bytes, not a replacement body. */
const DESCRIBES_BODY = ["content-length", "content-encoding", "content-md5", "digest", "repr-digest", "content-digest", "etag", "last-modified", "cache-control", "expires"];

/**
 * The headers of a replaced body: as relayed (response.ts), minus what described the upstream's
 * bytes, with the new length. `cache-control: private, no-store`: the body is cut to one caller, and
 * no shared cache may hand it to another.
 */
export function replacedHeaders(
  rawHeaders: readonly string[],
  extra: Readonly<Record<string, string>>,
  length: number,
): Record<string, string | string[]> {
  const headers = relayedHeaders(rawHeaders, extra);
  for (const name of DESCRIBES_BODY) delete headers[name];
  headers["content-length"] = String(length);
  headers["cache-control"] = "private, no-store";
  return headers;
}
