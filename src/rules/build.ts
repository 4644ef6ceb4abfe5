/**
 * The order of the admission checks (SPEC §4 steps 3–6). The order is a security property, so it is
 * fixed here in code, one comment per step, and never taken from the YAML.
 */
import type { ProxyConfig } from "../config/types.ts";
import type { Keyring } from "../keys/types.ts";
import { createIdentityCheck, type AuthFailures, type SessionVerifier } from "./identity-check.ts";
import { createNetworkCheck } from "./network-check.ts";
import { createOriginCheck } from "./origin-check.ts";
import { createRouteCheck } from "./route-check.ts";
import type { Rule } from "./rule.ts";
import { CONTINUE, deny, type Verdict } from "./verdict.ts";

/** Seconds a caller is told to wait while a key is not held yet. */
export const KEY_UNAVAILABLE_RETRY_SECONDS = 5;

export interface CallerRuleDeps {
  readonly authFailures?: AuthFailures;
  readonly sessions?: SessionVerifier;
}

/** Steps 3–5, compiled from the config (token hashes, origins, CIDRs, route templates). */
export interface CallerRules {
  readonly identity: Rule;
  readonly origin: Rule;
  readonly network: Rule;
  readonly route: Rule;
}

/**
 * Compiles the caller checks. This is the part of building a runtime that can fail on a config, so
 * it runs before anything is taken over from the runtime a reload replaces.
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

/**
 * Refuses with 503 `key_unavailable` while the client's key is not held (or is older than
 * `max_stale`). It runs after the route check, so only a caller that would be allowed learns that
 * the proxy has no key, and before the limits, so such a request spends none of the caller's quota.
 */
export function createKeyAvailableCheck(keyring: Pick<Keyring, "current">): Rule {
  return {
    name: "key-available",
    check(ctx): Verdict {
      const keyName = ctx.client?.key;
      if (keyName === undefined) return deny("missing_credentials", "no client identified before the key check");
      return keyring.current(keyName) === undefined
        ? deny("key_unavailable", `key ${keyName} not held`, KEY_UNAVAILABLE_RETRY_SECONDS)
        : CONTINUE;
    },
  };
}

/**
 * The admission rules in order. The caller IP (`ctx.ip`) is already resolved when the context is
 * built (runtime.ts), so every rule talks about the caller, never the raw `X-Forwarded-For`.
 */
export function admissionOrder(caller: CallerRules, keyring: Pick<Keyring, "current">, limits: readonly Rule[]): readonly Rule[] {
  return Object.freeze([
    // Step 3, who is calling: a static token, a session JWT, or an anonymous client whose origins /
    // networks match. Failed attempts count against limits.auth_failures per caller IP.
    caller.identity,
    // Step 4, origin: a listed client's browser Origin must match (cookie sessions always need one),
    // so another site cannot ride on a user's cookie or a public client.
    caller.origin,
    // Step 4, network: the caller IP must be in the client's networks when it lists them.
    caller.network,
    // Step 5, route: METHOD + canonical path must match one of the client's routes exactly, and
    // every query parameter must be listed for that route.
    caller.route,
    // The key must be held before any quota is spent or any body byte is read.
    createKeyAvailableCheck(keyring),
    // Step 6, limits: rate, then concurrency (the budget runs after the body step).
    ...limits,
  ]);
}
