/**
 * The one way an error from the file system, a socket or the HTTP parser is named in a message or
 * a log line: its errno-style code (`ENOENT`, `ECONNRESET`, `HPE_INVALID_METHOD`), never its
 * message, which can quote a path, a header or, for some libraries, the content that failed to
 * parse. A code that does not look like one is not trusted either.
 */

const CODE = /^[A-Za-z0-9_]{1,64}$/;

/** `err.code` when it is a short identifier, else `fallback`. */
export function errnoCode(err: unknown, fallback = "error"): string {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" && CODE.test(code) ? code : fallback;
}
