/**
 * Ownership records (README "Ownership"): which ids of a kind belong to which owner, for `ttl`. They
 * live where the limits live (SPEC §3 `limits.store`): in this process's memory, or in Redis so that
 * every replica agrees. One owner's ids of one kind are one entry (a Redis sorted set of id → expiry),
 * so every operation touches exactly one key, and the key carries a hash tag (`{own:KIND:OWNER}`)
 * so it also lives in one slot of a Redis Cluster.
 *
 * Owners are hashed before they become part of a key: a session subject is a caller-chosen string
 * of any length and may be personal data (the same reasoning as src/limits/rate-limit.ts).
 */
import { createHash } from "node:crypto";

export interface OwnershipRecords {
  /** Records `ids` under `key` for `ttlMs`, keeping the newest `maxItems` of the key. */
  record(key: string, ids: readonly string[], ttlMs: number, maxItems: number): Promise<void>;
  /** For each of `ids` (in order), whether it is recorded under `key` and not expired. */
  owned(key: string, ids: readonly string[]): Promise<boolean[]>;
}

/** Longest id recorded or looked up; a longer one is never owned. */
export const MAX_ID_LENGTH = 256;

/** Most ids recorded from one create response; the rest are not recorded. */
export const MAX_IDS_PER_RESPONSE = 1000;

/**
 * The key of one owner's ids of one kind. `owner` is `s:<subject>` or `c:<client id>` (owner.ts);
 * the whole key is the hash tag, so Redis Cluster puts it in one slot.
 */
export function recordsKey(kind: string, owner: string): string {
  return `{own:${kind}:${createHash("sha256").update(owner).digest("hex").slice(0, 32)}}`;
}

/**
 * An id as the records hold it: a non-empty string of at most `MAX_ID_LENGTH` code units, or a
 * non-negative safe integer in decimal (so `123` in JSON is the id in `/v1/media/123`); anything
 * else is no id.
 */
export function canonicalId(value: unknown): string | undefined {
  if (typeof value === "string") return value.length > 0 && value.length <= MAX_ID_LENGTH ? value : undefined;
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return String(value);
  return undefined;
}
