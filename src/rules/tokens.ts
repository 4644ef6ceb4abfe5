/**
 * Static client tokens (SPEC §3 `auth.tokens`, §4 step 3): the `Authorization: Bearer` parser, the
 * hash format shared with `mythiq-proxy hash-token`, and a constant-time lookup.
 *
 * The config holds only `sha256:<hex>` digests, so a leaked config file does not leak tokens.
 * Tokens are meant to be long random strings (no salt or slow hash is needed for those); a
 * guessable token is not made safe by any hash.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { ClientConfig } from "../config/types.ts";

/** A configured token digest: `sha256:` and 64 lower-case hex digits. */
export const TOKEN_HASH = /^sha256:[0-9a-f]{64}$/;

/**
 * The `tokens:` entry for a token: `sha256:` + hex SHA-256 of its UTF-8 bytes.
 * (Tokens the proxy accepts are visible ASCII, see `parseAuthorization`.)
 */
export function hashToken(token: string): string {
  return `sha256:${createHash("sha256").update(token, "utf8").digest("hex")}`;
}

export type AuthorizationHeader =
  | { readonly kind: "none" }
  | { readonly kind: "malformed" }
  | { readonly kind: "bearer"; readonly token: string };

// Scheme case-insensitive (RFC 9110 §11.1), exactly one SP, then one or more visible ASCII
// characters. Tabs, a second space, trailing junk or non-ASCII bytes make the header malformed,
// never "trimmed until it fits": what we compare is exactly what was sent.
const BEARER = /^bearer ([\x21-\x7e]+)$/i;

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
 * Compiles every client's `auth.tokens`. Throws on an entry that is not `sha256:<64 hex>`
 * (config validation refuses it first). A digest listed by two clients matches neither
 * (`ambiguous`): config validation should refuse that too.
 */
export function compileTokens(clients: readonly ClientConfig[]): TokenIndex {
  const byHex = new Map<string, { digest: Buffer; client: ClientConfig | undefined }>();
  clients.forEach((client, c) => {
    client.auth.tokens.forEach((text, t) => {
      const normalised = text.toLowerCase();
      if (!TOKEN_HASH.test(normalised)) throw new Error(`clients[${c}].auth.tokens[${t}] is not sha256:<64 hex>`);
      const hex = normalised.slice("sha256:".length);
      const existing = byHex.get(hex);
      if (existing === undefined) byHex.set(hex, { digest: Buffer.from(hex, "hex"), client });
      else if (existing.client !== client) existing.client = undefined;
    });
  });
  const entries: readonly TokenEntry[] = [...byHex.values()];

  return {
    match(token: string): TokenMatch {
      const digest = createHash("sha256").update(token, "utf8").digest();
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
