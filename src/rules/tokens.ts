/**
 * Static client tokens (SPEC §3 `auth.tokens`, §4 step 3): the `Authorization: Bearer` parser, the
 * hash format shared with `mythiq-proxy hash-token`, and a constant-time lookup.
 *
 * The config holds only `sha256:<hex>` digests, so a leaked config file does not leak tokens.
 * Tokens are meant to be long random strings (no salt or slow hash is needed for those); a
 * guessable token is not made safe by any hash.
 */
import { hash, timingSafeEqual } from "node:crypto";
import type { ClientConfig } from "../config/types.ts";

/** A configured token digest: `sha256:` and 64 lower-case hex digits. */
export const TOKEN_HASH = /^sha256:[0-9a-f]{64}$/;

/** `parseTokenHash`'s answer: the digest's 32 bytes, or a message that never quotes the entry. */
export type ParsedTokenHash = { readonly ok: true; readonly value: Buffer } | { readonly ok: false; readonly message: string };

/**
 * The one grammar for `auth.tokens` entries: config validation reports its messages,
 * `compileTokens` compiles what it returns. Exactly `hashToken`'s output: `sha256:` and 64
 * lower-case hex digits (one spelling per digest, so the duplicate check compares strings).
 * The entry is never quoted back, because the usual mistake is pasting the raw token itself.
 */
export function parseTokenHash(text: string): ParsedTokenHash {
  if (TOKEN_HASH.test(text)) return { ok: true, value: Buffer.from(text.slice("sha256:".length), "hex") };
  if (/^sha256:[0-9a-fA-F]{64}$/.test(text)) return { ok: false, message: "the hex digits of a token hash must be lower case" };
  if (text.startsWith("sha256:")) return { ok: false, message: "a token hash is sha256: followed by exactly 64 lower-case hex digits" };
  return {
    ok: false,
    message:
      "is not a token hash (sha256:<64 lower-case hex>). If this is a raw client token, treat it as exposed: " +
      "remove it, create a new token, and list the output of `mythiq-proxy hash-token` instead",
  };
}

/**
 * The `tokens:` entry for a token: `sha256:` + hex SHA-256 of its UTF-8 bytes.
 * (Tokens the proxy accepts are visible ASCII, see `isBearerToken`.)
 */
export function hashToken(token: string): string {
  return `sha256:${hash("sha256", token, "hex")}`;
}

// One or more visible ASCII characters: what may follow "Bearer " (see BEARER below).
const TOKEN_CHARS = "[\\x21-\\x7e]+";
const TOKEN = new RegExp(`^${TOKEN_CHARS}$`);

/**
 * True when `token` could arrive as `Authorization: Bearer <token>` byte for byte, i.e. when
 * `parseAuthorization` can ever return it (`hash-token` refuses to hash anything else).
 */
export function isBearerToken(token: string): boolean {
  return TOKEN.test(token);
}

export type AuthorizationHeader =
  | { readonly kind: "none" }
  | { readonly kind: "malformed" }
  | { readonly kind: "bearer"; readonly token: string };

// Scheme case-insensitive (RFC 9110 §11.1), exactly one SP, then one or more visible ASCII
// characters. Tabs, a second space, trailing junk or non-ASCII bytes make the header malformed,
// never "trimmed until it fits": what we compare is exactly what was sent.
const BEARER = new RegExp(`^bearer (${TOKEN_CHARS})$`, "i");

/**
 * Reads the `Authorization` header: absent → `none`; `Bearer <token>` → `bearer`; anything else
 * (another scheme, empty value, wrong spacing, several values) → `malformed`.
 */
export function parseAuthorization(value: string | readonly string[] | undefined): AuthorizationHeader {
  if (value === undefined) return { kind: "none" };
  if (typeof value !== "string") return { kind: "malformed" };
  const match = BEARER.exec(value);
  const token = match?.[1];
  return token === undefined ? { kind: "malformed" } : { kind: "bearer", token };
}

export type TokenMatch =
  | { readonly kind: "client"; readonly client: ClientConfig }
  | { readonly kind: "none" }
  /** The digest is listed by several clients: which one is meant cannot be known. */
  | { readonly kind: "ambiguous" };

export interface TokenIndex {
  /** The client whose `tokens` list the digest of `token`. Takes the same time whichever entry matches, or none. */
  match(token: string): TokenMatch;
}

interface TokenEntry {
  readonly digest: Buffer;
  /** Undefined when several clients list this digest. */
  readonly client: ClientConfig | undefined;
}

/**
 * Compiles every client's `auth.tokens`. Throws on an entry `parseTokenHash` refuses (config
 * validation refuses it first, with the same function). A digest listed by two clients matches
 * neither (`ambiguous`): config validation refuses that too.
 */
export function compileTokens(clients: readonly ClientConfig[]): TokenIndex {
  const byText = new Map<string, { digest: Buffer; client: ClientConfig | undefined }>();
  clients.forEach((client, c) => {
    client.auth.tokens.forEach((text, t) => {
      const parsed = parseTokenHash(text);
      if (!parsed.ok) throw new Error(`clients[${c}].auth.tokens[${t}] is not sha256:<64 hex>`);
      const existing = byText.get(text);
      if (existing === undefined) byText.set(text, { digest: parsed.value, client });
      else if (existing.client !== client) existing.client = undefined;
    });
  });
  const entries: readonly TokenEntry[] = [...byText.values()];

  return {
    match(token: string): TokenMatch {
      // The one-shot hash, as hex and then into a pooled Buffer: asking `hash` for a Buffer
      // allocates a native ArrayBuffer per request, which took 6 µs under load (GC sweeps included).
      const digest = Buffer.from(hash("sha256", token, "hex"), "hex");
      // Compare against every entry, with no early exit and no Map lookup keyed by the
      // secret-derived digest, so the time taken does not depend on which entry (if any) matches.
      // We compare digests, not tokens: even a timing leak would reveal bits of a hash.
      let found: TokenEntry | undefined;
      for (const entry of entries) {
        const equal = timingSafeEqual(entry.digest, digest);
        found = equal ? entry : found;
      }
      if (found === undefined) return { kind: "none" };
      return found.client === undefined ? { kind: "ambiguous" } : { kind: "client", client: found.client };
    },
  };
}
