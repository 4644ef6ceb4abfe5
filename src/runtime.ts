/**
 * Everything derived from one version of the config: compiled rules, the keyring, the forwarder.
 * The request handler reads the runtime once per request, so a reload (which builds a new runtime
 * and swaps it) never changes the rules under a request already in flight.
 */
import type { ProxyConfig } from "./config/types.ts";
import { createBodyPolicy } from "./rules/body-check.ts";
import { createCors } from "./http/cors.ts";
import type { Target } from "./http/target.ts";
import type { Environment } from "./keys/env-source.ts";
import { createKeyring, type ManagedKeyring } from "./keys/keyring.ts";
import { buildLimits, type Limits } from "./limits/limits.ts";
import { builtinSources, createSource, type SourceDeps, type SourceRegistry } from "./keys/sources.ts";
import type { Logger } from "./observe/log.ts";
import type { Metrics } from "./observe/metrics.ts";
import type { RequestHead } from "./proxy/decide.ts";
import { createForwarder, type Forwarder } from "./proxy/forward.ts";
import { createAuthFailureLimiter } from "./rules/auth-failures.ts";
import { admissionOrder, compileCallerRules } from "./rules/build.ts";
import type { RequestContext } from "./rules/context.ts";
import { compileCidrs, normalizeIp, resolveCallerIp, UNKNOWN_IP } from "./rules/ip.ts";
import { createSessionVerifier, type SessionDeps } from "./rules/sessions.ts";
import type { Rule } from "./rules/rule.ts";
import type { Deny, Verdict } from "./rules/verdict.ts";

export type Preflight = { ok: true; headers: Readonly<Record<string, string>> } | { ok: false; deny: Deny };

/** Whether the body is read into memory before forwarding (checked or replayable) or streamed. */
export type BodyPlan = { ok: true; hold: boolean } | Deny;

export interface Runtime {
  readonly config: ProxyConfig;
  /** First 12 hex of sha256 of the config file (`config_info{hash}`). */
  readonly hash: string;
  createContext(input: { id: string; head: RequestHead; target: Target & { ok: true } }): RequestContext;
  /** Step 2: undefined when the request is not a CORS preflight. */
  preflight(ctx: RequestContext): Preflight | undefined;
  /** Steps 3–6 in order. */
  readonly admission: readonly Rule[];
  /** Headers added to every response once the caller is known (CORS for allowed origins). */
  responseHeaders(ctx: RequestContext): Readonly<Record<string, string>>;
  /** Step 7, before reading: content type allowed, and whether to hold the body. */
  bodyPlan(ctx: RequestContext, hasBody: boolean, declaredLength: number | undefined): BodyPlan;
  /** Step 7, on a held body: the model allowlist. */
  checkBody(ctx: RequestContext, body: Buffer): Verdict;
  /**
   * Checks that need what the body said (the daily budget prices the model and `n`), run after
   * step 7 and before forwarding.
   */
  readonly charge: readonly Rule[];
  /** The limits' stores (adopted by the next runtime on reload); `limits.close()` once at stop. */
  readonly limits: Limits;
  readonly keyring: ManagedKeyring;
  readonly forwarder: Forwarder;
  /**
   * Stops the keyring, closes the upstream pool and the limit stores. Only for a runtime no later
   * runtime adopted (the proxy stopping, a `test-policy` case): a reload retires the old runtime
   * piece by piece instead.
   */
  close(): Promise<void>;
}

export interface RuntimeDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Environment for `source: env` keys (scrubbed once read). */
  readonly env: Environment;
  /** Key source factories (vault and aws register here). */
  readonly sources?: SourceRegistry;
  /** Tuning for file key sources (tests). */
  readonly fileSources?: SourceDeps["file"];
  /** The runtime being replaced by a reload: its held keys are adopted when their settings did not change. */
  readonly previous?: Runtime;
  /** Use this keyring instead of fetching keys (`test-policy`: every key counts as held). */
  readonly keyring?: ManagedKeyring;
  /** No network from limits (in-memory stores whatever `limits.store` says): `test-policy`. */
  readonly offline?: boolean;
  /** Overrides for the session verifier (`test-policy` serves its own key set to the real JWKS client). */
  readonly sessions?: Pick<SessionDeps, "jwks" | "clock">;
}

/**
 * Compiles a validated config into a runtime. Does not start anything: call `keyring.start()`
 * once the runtime is in place.
 */
export function buildRuntime(config: ProxyConfig, hash: string, deps: RuntimeDeps): Runtime {
  const { logger, metrics } = deps;
  const sourceDeps: SourceDeps = {
    env: deps.env,
    logger,
    ...(deps.fileSources === undefined ? {} : { file: deps.fileSources }),
  };
  // First everything that can fail on this config; only then take over the previous runtime's
  // limit stores and keys, so a reload that fails here leaves the running runtime untouched.
  const authFailures = createAuthFailureLimiter({
    requests: config.limits.auth_failures.requests,
    per: config.limits.auth_failures.per,
  });
  const sessions = createSessionVerifier(config, { env: deps.env, logger, ...deps.sessions });
  const callerRules = compileCallerRules(config, { authFailures, ...(sessions === undefined ? {} : { sessions }) });
  const trustedProxies = compileCidrs(config.trusted_proxies);
  const cors = createCors(config);
  const body = createBodyPolicy();
  const forwarder = createForwarder({
    upstream: config.upstream,
    logger,
    // The forwarder retries only when the key that comes back differs from the refused one.
    refreshKey: (name, refused) => keyring.refreshNow(name, refused),
    onUpstreamError: (reason) => metrics.upstreamError(reason),
  });

  // Adopts the previous runtime's limit stores, or starts retiring them.
  const limits = buildLimits(config, {
    logger,
    metrics,
    env: deps.env,
    memoryOnly: deps.offline === true,
    ...(deps.previous === undefined ? {} : { previous: deps.previous.limits }),
  });
  // Adopts the previous runtime's held keys (see keyring.ts); last, because from here on the
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
  const admission = admissionOrder(callerRules, keyring, limits.admission);

  return Object.freeze({
    config,
    hash,
    createContext({ id, head, target }) {
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
        cleanups: [],
      };
    },
    preflight: cors.preflight,
    admission,
    responseHeaders: cors.responseHeaders,
    bodyPlan: body.plan,
    checkBody: body.check,
    charge: limits.charge,
    limits,
    keyring,
    forwarder,
    async close() {
      keyring.close();
      forwarder.close();
      await limits.close();
    },
  } satisfies Runtime);
}
