/**
 * Session JWTs (SPEC §3 `sessions.jwt`, §4 step 3). Not implemented yet: with `sessions` configured,
 * every session is refused (fail closed) until the verifier lands.
 */
import type { ProxyConfig } from "../config/types.ts";
import type { SessionVerifier } from "./identity-check.ts";
import { deny } from "./verdict.ts";

export function createSessionVerifier(config: ProxyConfig): SessionVerifier | undefined {
  if (config.sessions === undefined) return undefined;
  return {
    verify: (_ctx, bearer) => (bearer === undefined ? undefined : deny("invalid_credentials", "session JWTs are not supported yet")),
  };
}
