/**
 * The checks of SPEC §4 steps 3–5, compiled from the config once (token hashes, origins, CIDRs,
 * route templates). Their order is not decided here: `src/pipeline/pipeline.ts` runs them.
 */
import type { ProxyConfig } from "../config/types.ts";
import type { IdentityRule, Rule } from "../pipeline/types.ts";
import { createIdentityCheck, type AuthFailures, type SessionVerifier } from "./identity-check.ts";
import { createNetworkCheck } from "./network-check.ts";
import { createOriginCheck } from "./origin-check.ts";
import { createRouteCheck } from "./route-check.ts";

export interface CallerRuleDeps {
  readonly authFailures?: AuthFailures;
  readonly sessions?: SessionVerifier;
}

/** Steps 3–5, compiled from the config. */
export interface CallerRules {
  readonly identity: IdentityRule;
  readonly origin: Rule;
  readonly network: Rule;
  readonly route: Rule;
}

/**
 * Compiles the caller checks. This is the part of compiling a config that can fail, so it runs
 * before anything is taken over from the compiled config a reload replaces.
 */
export function compileCallerRules(config: ProxyConfig, deps: CallerRuleDeps): CallerRules {
  const identityDeps = {
    ...(deps.authFailures === undefined ? {} : { authFailures: deps.authFailures }),
    ...(deps.sessions === undefined ? {} : { sessions: deps.sessions }),
  };
  return {
    identity: createIdentityCheck(config.clients, identityDeps),
    origin: createOriginCheck(config.clients),
    network: createNetworkCheck(config.clients),
    route: createRouteCheck(config.clients),
  };
}
