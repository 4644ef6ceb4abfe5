/**
 * jose, loaded on first use: a proxy without session JWTs never holds it (a few MB resident).
 */
import type * as Jose from "jose";
import { lazyImport } from "../lazy-import.ts";

export const loadJose: () => Promise<typeof Jose> = lazyImport("jose", () => import("jose"));
