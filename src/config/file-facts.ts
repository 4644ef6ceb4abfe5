/**
 * Small facts about config files that the running proxy needs without loading the YAML parser or
 * the schema library (the serving process validates nothing itself: see validate-isolated.ts).
 */
import { createHash } from "node:crypto";

/** Largest accepted config file: 1 MiB. A real config is a few KiB. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** First 12 hex digits of sha256 over the file's bytes (the `config_info{hash}` label). */
export function configHash(text: string | Uint8Array): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

/** Freezes every object and array reachable from `v` (the config is shared by every request). */
export function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v)) deepFreeze(child);
  }
  return v;
}
