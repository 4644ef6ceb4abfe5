/**
 * `mythiq-proxy hash-token` (SPEC §2): turns a client token read on stdin into the
 * `sha256:<64 hex>` line that goes into a client's `auth.tokens`, so the config never holds the
 * token itself. The token is never printed or put into an error message.
 */
import { hashToken as digestToken, isBearerToken } from "../rules/tokens.ts";

/** Longest token accepted on stdin: 4 KiB. A header line could not carry much more anyway. */
export const MAX_TOKEN_BYTES = 4096;

/** Tokens shorter than this are guessable; hashing still works, with a warning. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * `sha256:<64 lowercase hex>` of `input` with exactly one trailing `\n` or `\r\n` dropped (the
 * digest and the token grammar are `rules/tokens.ts`'s, so what this prints is what the proxy matches).
 * Throws when what is left is empty or is not printable ASCII without spaces: such a token could
 * not be sent as `Authorization: Bearer <token>` byte for byte, so its hash would never match.
 */
export function hashToken(input: string): string {
  const token = input.endsWith("\r\n") ? input.slice(0, -2) : input.endsWith("\n") ? input.slice(0, -1) : input;
  if (token === "") throw new Error("the token is empty");
  if (!isBearerToken(token)) {
    throw new Error(
      "the token must be printable ASCII without spaces (check for a second trailing newline, spaces or non-ASCII characters)",
    );
  }
  return digestToken(token);
}

/** Where `runHashToken` writes; each call gets whole lines ending in "\n". */
export interface HashTokenOutput {
  stdout(s: string): void;
  stderr(s: string): void;
}

/**
 * Reads one token from `stdin` (at most 4 KiB), prints its hash to stdout and returns 0; on a bad
 * token prints the reason to stderr and returns 1. When stdin is a terminal, a prompt goes to stderr.
 */
export async function runHashToken(stdin: NodeJS.ReadableStream, out: HashTokenOutput): Promise<number> {
  if ((stdin as { isTTY?: boolean }).isTTY === true) {
    out.stderr("Type or paste the client token, then press Enter and Ctrl-D:\n");
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : Buffer.from(chunk);
    size += buf.length;
    if (size > MAX_TOKEN_BYTES) {
      out.stderr(`hash-token: the input is longer than ${MAX_TOKEN_BYTES} bytes; expected one token\n`);
      return 1;
    }
    chunks.push(buf);
  }
  let hash: string;
  let length: number;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
    hash = hashToken(text);
    length = text.replace(/\r?\n$/, "").length;
  } catch (err) {
    const why = err instanceof TypeError ? "the input is not valid UTF-8" : err instanceof Error ? err.message : "bad input";
    out.stderr(`hash-token: ${why}\n`);
    return 1;
  }
  if (length < MIN_TOKEN_LENGTH) {
    out.stderr(`hash-token: warning: the token is only ${length} characters; use at least 32 random characters (e.g. openssl rand -hex 32)\n`);
  }
  out.stdout(`${hash}\n`);
  return 0;
}
