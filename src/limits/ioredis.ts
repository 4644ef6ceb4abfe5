/**
 * ioredis, loaded on first use: a proxy with in-memory limits never holds it (about 20 MB resident).
 * The same lazy pattern as src/rules/jose.ts (src/lazy-import.ts).
 */
import type * as Ioredis from "ioredis";
import { lazyImport } from "../lazy-import.ts";

export type IoredisModule = typeof Ioredis;

export const loadIoredis: () => Promise<IoredisModule> = lazyImport("ioredis", () => import("ioredis"));
