/**
 * jose, loaded on first use: a proxy without session JWTs never holds it (a few MB resident).
 */
import type * as Jose from "jose";

let loading: Promise<typeof Jose> | undefined;

export function loadJose(): Promise<typeof Jose> {
  loading ??= import("jose");
  return loading;
}
