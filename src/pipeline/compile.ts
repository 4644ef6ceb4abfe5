/**
 * A compiled config: everything derived from one version of the config file — the compiled rules
 * the pipeline runs, the keyring and the forwarder. The listen handler reads the compiled config
 * once per request, so a reload (which compiles a new one and swaps it) never changes the rules
 * under a request already in flight.
 */
import type { ProxyConfig } from "../config/types.ts";
import { createCors } from "../http/cors.ts";
import type { Target } from "../http/target.ts";
import type { Environment } from "../keys/env-source.ts";
import { createKeyring, type ManagedKeyring } from "../keys/keyring.ts";
import { buildLimits, type Limits } from "../limits/limits.ts";
import { builtinSources, createSource, type SourceDeps, type SourceRegistry } from "../keys/sources.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import { compileOwnership, type Ownership } from "../ownership/ownership.ts";
import { createForwarder, type Forwarder } from "../proxy/forward.ts";
import { createAuthFailureLimiter } from "../rules/auth-failures.ts";
import { createBodyPolicy, type BodyPolicy } from "../rules/body-check.ts";
import { compileCallerRules } from "../rules/caller-rules.ts";
import { compileCidrs, normalizeIp, resolveCallerIp, UNKNOWN_IP } from "../rules/ip.ts";
import { createSessionVerifier, type SessionDeps } from "../rules/sessions.ts";
import type { IdentityRule, Preflight, RequestContext, RequestHead, Rule } from "./types.ts";

export interface CompiledConfig {
  readonly config: ProxyConfig;
  /** First 12 hex of sha256 of the config file (`config_info{hash}`). */
  readonly hash: string;
  /** The context of a request whose framing and target passed (step 1). */
  createContext(id: string, head: RequestHead, target: Target & { ok: true }, cleanups: RequestContext["cleanups"]): RequestContext;
  /** Step 2: undefined when the request is not a CORS preflight. */
  preflight(ctx: RequestContext): Preflight | undefined;
  /** Step 3. */
  readonly identity: IdentityRule;
  /** Step 4. */
  readonly origin: Rule;
  readonly network: Rule;
  /** Step 5. */
  readonly route: Rule;
  /** Step 6 (rate limit, concurrency) and the daily budget after step 7; the stores they count in. */
  readonly limits: Limits;
  /** Step 7: content type allowed, whether to hold the body, and the checks on a held body (model, field policies). */
  readonly body: BodyPolicy;
  /** `ownership`: the use check before step 7, the response plans of create and list routes; undefined without kinds. */
  readonly ownership: Ownership | undefined;
  /** Headers added to every response once the caller is known (CORS for allowed origins). */
  responseHeaders(ctx: RequestContext): Readonly<Record<string, string>>;
  readonly keyring: ManagedKeyring;
  readonly forwarder: Forwarder;
  /**
   * Stops the keyring, closes the upstream pool and the limit stores. Only for a compiled config
   * no later one adopted (the proxy stopping, a `test-policy` case): a reload retires the old one
   * piece by piece instead.
   */
  close(): Promise<void>;
}

export interface CompileDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Environment for `source: env` keys (scrubbed once read). */
  readonly env: Environment;
  /** Key source factories (vault and aws register here). */
  readonly sources?: SourceRegistry;
  /** Tuning for file key sources (tests). */
  readonly fileSources?: SourceDeps["file"];
  /** The compiled config being replaced by a reload: its held keys and limit stores are adopted when their settings did not change. */
  readonly previous?: CompiledConfig;
  /** Use this keyring instead of fetching keys (`test-policy`: every key counts as held). */
  readonly keyring?: ManagedKeyring;
  /** No network from limits (in-memory stores whatever `limits.store` says): `test-policy`. */
  readonly offline?: boolean;
  /** Overrides for the session verifier (`test-policy` serves its own key set to the real JWKS client). */
  readonly sessions?: Pick<SessionDeps, "jwks" | "clock">;
}

/**
 * Compiles a validated config. Does not start anything: call `keyring.start()` once the compiled
 * config is in force.
 */
export function compileConfig(config: ProxyConfig, hash: string, deps: CompileDeps): CompiledConfig {
  const { logger, metrics } = deps;
  const sourceDeps: SourceDeps = {
    env: deps.env,
    logger,
    ...(deps.fileSources === undefined ? {} : { file: deps.fileSources }),
  };
  // First everything that can fail on this config; only then take over the previous config's
  // limit stores and keys, so a reload that fails here leaves the running one untouched.
  const authFailures = createAuthFailureLimiter({
    requests: config.limits.auth_failures.requests,
    per: config.limits.auth_failures.per,
  });
  const sessions = createSessionVerifier(config, { env: deps.env, logger, ...deps.sessions });
  const callerRules = compileCallerRules(config, { authFailures, ...(sessions === undefined ? {} : { sessions }) });
  const trustedProxies = compileCidrs(config.trusted_proxies);
  const cors = createCors(config);
  const body = createBodyPolicy(config.clients);
  const forwarder = createForwarder({
    upstream: config.upstream,
    logger,
    // The forwarder retries only when the key that comes back differs from the refused one.
    refreshKey: (name, refused) => keyring.refreshNow(name, refused),
    onUpstreamError: (reason) => metrics.upstreamError(reason),
  });

  // Adopts the previous config's limit stores, or starts retiring them.
  const limits = buildLimits(config, {
    logger,
    metrics,
    env: deps.env,
    memoryOnly: deps.offline === true,
    ...(deps.previous === undefined ? {} : { previous: deps.previous.limits }),
  });
  // Ownership records live beside the limits, in the stores just built or adopted.
  const ownership = compileOwnership(config, { stores: limits.stores, registry: metrics.registry });
  // Adopts the previous config's held keys (see keyring.ts); last, because from here on the
  // previous keyring forwards those keys to this one.
  const keyring =
    deps.keyring ??
    createKeyring({
      keys: config.keys,
      createSource: (_name, keyConfig) => createSource(keyConfig, sourceDeps, deps.sources ?? builtinSources),
      logger,
      events: {
        refreshed(event) {
          if (event.result === "failed") metrics.keyFetchFailed(event.name, event.source);
          else if (event.key !== undefined) metrics.keyFetched(event.key);
        },
      },
      ...(deps.previous === undefined ? {} : { previous: deps.previous.keyring }),
    });
  return Object.freeze({
    config,
    hash,
    createContext(id, head, target, cleanups) {
      const origin = head.headers.origin;
      const socketIp = normalizeIp(head.socketAddress) ?? UNKNOWN_IP;
      return {
        id,
        method: head.method ?? "",
        path: target.path,
        query: target.query,
        queryNames: target.queryNames,
        headers: head.headers,
        socketIp,
        // The caller every check and the audit log talk about: the socket peer, or the right-most
        // untrusted X-Forwarded-For hop behind a trusted proxy (a hop that is not an address makes
        // it UNKNOWN_IP, which no `networks` list contains). Resolved before the preflight step so
        // even preflights are audited with the real caller.
        ip: resolveCallerIp(socketIp, head.headers["x-forwarded-for"], trustedProxies),
        origin: typeof origin === "string" ? origin : undefined,
        client: undefined,
        credential: undefined,
        subject: undefined,
        route: undefined,
        model: undefined,
        imageCount: 1,
        costUsd: 0,
        cleanups,
      };
    },
    preflight: cors.preflight,
    identity: callerRules.identity,
    origin: callerRules.origin,
    network: callerRules.network,
    route: callerRules.route,
    limits,
    body,
    ownership,
    responseHeaders: cors.responseHeaders,
    keyring,
    forwarder,
    async close() {
      keyring.close();
      forwarder.close();
      await limits.close();
    },
  } satisfies CompiledConfig);
}
