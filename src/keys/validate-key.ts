/**
 * What a MythIQ key may look like before the proxy holds it (SPEC §4: "a key fetched with CR/LF,
 * spaces or control bytes is rejected").
 *
 * The value ends up in an `authorization` header: a CR/LF would split the request (header
 * injection, Envoy CVE-2023-27493) and Node would throw `ERR_INVALID_CHAR` with the value in the
 * message. Stray whitespace is the usual sign of a copy-paste or `echo` accident, and a key that is
 * silently trimmed would make the fingerprint disagree with the one the operator computed. So the
 * value is refused, never repaired, and the reason names the problem, never the value.
 */
import { createHash } from "node:crypto";

/** Shortest accepted key, in characters. Also the logger's minimum for redaction. */
export const KEY_MIN_LENGTH = 8;
/** Longest accepted key, in characters: far above any real API key, far below a header limit. */
export const KEY_MAX_LENGTH = 4096;

export type KeyCheck = { readonly ok: true } | { readonly ok: false; readonly reason: string };

const OK: KeyCheck = { ok: true };

function refuse(reason: string): KeyCheck {
  return { ok: false, reason };
}

/**
 * Checks a fetched value: printable ASCII without spaces (0x21–0x7E), 8 to 4096 characters.
 * The reason, when refused, is safe to log: it never quotes the value or any part of it.
 */
export function validateKey(value: unknown): KeyCheck {
  if (typeof value !== "string") return refuse("the value is not a string");
  if (value.length === 0) return refuse("the value is empty");
  // Length first so a hostile multi-megabyte value costs no more than one comparison.
  if (value.length > KEY_MAX_LENGTH) return refuse(`the value is longer than ${KEY_MAX_LENGTH} characters`);
  // Whitespace at the ends is checked first: "a trailing newline" tells the operator more than
  // "contains CR or LF" when a Vault field was written with `echo`.
  if (/^\s|\s$/u.test(value)) return refuse("the value has leading or trailing whitespace");
  if (/[\r\n]/.test(value)) return refuse("the value contains CR or LF");
  if (/[ \t]/.test(value)) return refuse("the value contains spaces or tabs");
  // eslint-disable-next-line no-control-regex -- finding control bytes is the point
  if (/[\x00-\x1f\x7f]/.test(value)) return refuse("the value contains control bytes");
  if (/[^\x21-\x7e]/.test(value)) return refuse("the value contains non-ASCII characters");
  if (value.length < KEY_MIN_LENGTH) return refuse(`the value is shorter than ${KEY_MIN_LENGTH} characters`);
  return OK;
}

/** First 8 hex digits of sha256(value): identifies a key in logs and metrics without revealing it. */
export function fingerprint(value: string): string {
  return createHash("sha256").update(value, "utf8").digest("hex").slice(0, 8);
}
