/**
 * A check either lets the request continue or ends it with a local reply carrying a stable reason
 * (Envoy's filter-chain model). A deny is a value, never an exception: exceptions are reserved for
 * technical failures.
 */
import type { Reason } from "../errors.ts";

export interface Deny {
  readonly ok: false;
  readonly reason: Reason;
  /** For the log only, never sent to the caller. Must not contain secrets. */
  readonly detail?: string;
  /** Seconds; becomes `Retry-After`. */
  readonly retryAfterSeconds?: number;
}

export type Verdict = { readonly ok: true } | Deny;

export const CONTINUE: Verdict = Object.freeze({ ok: true });

export function deny(reason: Reason, detail?: string, retryAfterSeconds?: number): Deny {
  const verdict: { ok: false; reason: Reason; detail?: string; retryAfterSeconds?: number } = { ok: false, reason };
  if (detail !== undefined) verdict.detail = detail;
  if (retryAfterSeconds !== undefined) verdict.retryAfterSeconds = retryAfterSeconds;
  return verdict;
}
