/**
 * Maps a failure talking to MythIQ before its response headers onto SPEC §5's reasons.
 *
 * Only error *codes* are ever looked at or logged: Node's messages for header errors can quote
 * header names and, for some errors, values.
 */
import type { Reason } from "../errors.ts";
import { errnoCode } from "../errno.ts";

/** Name resolution and routing failures: nothing answered at that address. */
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EAI_FAIL",
  "EAI_NONAME",
  "EAI_NODATA",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "EADDRNOTAVAIL",
  "EPROTO",
]);

/** `ECONNECT_TIMEOUT` is http-proxy-3's `connectTimeout`. */
const TIMEOUT = new Set(["ECONNECT_TIMEOUT", "ETIMEDOUT", "ESOCKETTIMEDOUT"]);

/** Certificate and handshake failures (OpenSSL verify codes and Node's TLS/SSL errors). */
function isTlsFailure(code: string): boolean {
  return (
    code.startsWith("ERR_TLS_") ||
    code.startsWith("ERR_SSL_") ||
    code.includes("CERT") ||
    code.startsWith("UNABLE_TO_") ||
    code === "HOSTNAME_MISMATCH"
  );
}

/**
 * The reason for an upstream failure before response headers. `connected` tells whether the
 * connection (TCP, and TLS for https) was up: a reset before that is a failed connection attempt
 * (TLS failures count as unreachable, SPEC §4 step 9), a reset after it is `upstream_reset`.
 */
export function classifyUpstreamError(err: unknown, connected: boolean): Reason {
  const code = errnoCode(err, "unknown");
  if (TIMEOUT.has(code)) return "upstream_timeout";
  if (UNREACHABLE.has(code) || isTlsFailure(code)) return "upstream_unreachable";
  return connected ? "upstream_reset" : "upstream_unreachable";
}
