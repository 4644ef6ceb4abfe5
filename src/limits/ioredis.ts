/**
 * ioredis, loaded on first use: a proxy with in-memory limits never holds it (about 20 MB resident).
 * The same lazy pattern as src/rules/jose.ts.
 */
import type * as Ioredis from "ioredis";

export type IoredisModule = typeof Ioredis;

let loading: Promise<IoredisModule> | undefined;

export function loadIoredis(): Promise<IoredisModule> {
  loading ??= import("ioredis");
  return loading;
}
