/**
 * SPEC §4 step 3: who is calling. Sets `ctx.client`, `ctx.credential` and (for sessions)
 * `ctx.subject` and returns the context as a `CallerContext`, or refuses with 401 (`missing_credentials` / `invalid_credentials`), 400
 * (`ambiguous_credentials`) or 429 (`auth_failures`).
 *
 * Decision order, first that applies:
 * 1. The caller IP is cooling down after too many failures → the limiter's 429 `auth_failures`
 *    (every request from that IP, before any credential is looked at, so guessing costs the same
 *    whether or not the guess would have been right).
 * 2. An `Authorization` header that is not exactly `Bearer <token>` → 401 `invalid_credentials`.
 * 3. A bearer whose digest is one client's static token → that client (`token`).
 * 4. The session verifier (when sessions are configured) sees the bearer if it was not a static
 *    token, and the session cookie. Its deny is returned as is. A session naming a client without
 *    `auth.jwt: true` → 401 `invalid_credentials` (checked here too, as defence in depth).
 * 5. A static token and a session naming different clients → 400 `ambiguous_credentials`; the
 *    same client → the token wins (`token`), the session's subject is kept.
 * 6. A bearer that is neither a static token nor the valid session JWT → 401 `invalid_credentials`
 *    (also when a valid session cookie came with it).
 * 7. No credential at all → the first anonymous client, in config order, that matches (see
 *    `anonymousMatches`). A request that carries a credential never falls back to anonymous.
 * 8. Otherwise → 401 `missing_credentials`.
 * Every 401 is reported to the auth-failure limiter for the caller IP.
 */
import type { ClientConfig } from "../config/types.ts";
import { ERRORS } from "../errors.ts";
import { deny, type CallerContext, type Deny, type IdentityResult, type IdentityRule, type RequestContext } from "../pipeline/types.ts";
import { compileCidrs, type CidrSet } from "./ip.ts";
import { compileOrigins, type OriginMatcher } from "./origins.ts";
import { compileTokens, parseAuthorization } from "./tokens.ts";

/** A caller authenticated by a session JWT. */
export interface Session {
  readonly client: ClientConfig;
  /** The `subject_claim` value, when the token has one. */
  readonly subject: string | undefined;
  /** `jwt` when it came as the bearer, `cookie` when from the session cookie (then Origin is required). */
  readonly credential: "jwt" | "cookie";
}

export type SessionResult = Session | Deny | undefined;

/**
 * The session JWT verifier (SPEC §3 `sessions.jwt`), implemented elsewhere.
 *
 * `bearer` is the `Authorization: Bearer` value when it is not a static client token (it may be a
 * JWT), else `undefined`. Return `undefined` when the request carries no session (no cookie, and no
 * bearer or a bearer that is not a JWT); a `Deny` when a session is present but not acceptable
 * (401 `invalid_credentials`; 400 `ambiguous_credentials` when header and cookie name different
 * clients); otherwise the session. A thrown error or rejected promise is a technical failure and
 * propagates.
 */
export interface SessionVerifier {
  verify(ctx: RequestContext, bearer: string | undefined): SessionResult | Promise<SessionResult>;
}

/** Failed authentications per caller IP (SPEC §3 `limits.auth_failures`); see auth-failures.ts. */
export interface AuthFailures {
  /** A 429 `auth_failures` deny with `retryAfterSeconds` while `ip` may not try again, else `undefined`. */
  blocked(ip: string): Deny | undefined;
  /** Counts one failed attempt from `ip`. */
  failed(ip: string): void;
}

export interface IdentityDeps {
  readonly sessions?: SessionVerifier;
  readonly authFailures?: AuthFailures;
}

/** An anonymous client with its compiled origins and networks. */
export interface AnonymousClient {
  readonly client: ClientConfig;
  readonly origins: OriginMatcher | undefined;
  readonly networks: CidrSet | undefined;
}

/**
 * Whether an anonymous client takes a request with this `Origin` (or none) from this caller IP:
 *
 * - neither `origins` nor `networks` set: never (config validation refuses such a client; an open
 *   client would let anyone spend the key);
 * - `networks` set: the IP must be inside them;
 * - `origins` set and the request has `Origin`: it must match;
 * - `origins` set and no `Origin` (curl, a server): matches only when `networks` is set (and, as
 *   above, contains the IP). An Origin-less request is not a browser, so origins prove nothing
 *   about it, and anyone can call without one.
 */
export function anonymousMatches(anon: AnonymousClient, origin: string | undefined, ip: string): boolean {
  if (anon.origins === undefined && anon.networks === undefined) return false;
  if (anon.networks !== undefined && !anon.networks.contains(ip)) return false;
  if (anon.origins === undefined) return true;
  return origin === undefined ? anon.networks !== undefined : anon.origins.matches(origin);
}

function isPromiseLike<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === "function";
}

/**
 * The identity check for these clients (tokens and anonymous clients compiled once).
 * `deps.sessions`: the session verifier, when `sessions.jwt` is configured. `deps.authFailures`:
 * the per-IP failure limiter. Runs after the caller IP is known (`ctx.ip`).
 */
export function createIdentityCheck(clients: readonly ClientConfig[], deps: IdentityDeps = {}): IdentityRule {
  const tokens = compileTokens(clients);
  const anonymous: readonly AnonymousClient[] = clients
    .filter((client) => client.auth.anonymous)
    .map((client) => ({
      client,
      origins: client.origins === undefined ? undefined : compileOrigins(client.origins),
      networks: client.networks === undefined ? undefined : compileCidrs(client.networks),
    }));
  const { sessions, authFailures } = deps;

  function fail(ctx: RequestContext, verdict: Deny): Deny {
    if (ERRORS[verdict.reason].status === 401) authFailures?.failed(ctx.ip);
    return verdict;
  }

  function accept(ctx: RequestContext, client: ClientConfig, credential: CallerContext["credential"], subject: string | undefined): IdentityResult {
    ctx.client = client;
    ctx.credential = credential;
    ctx.subject = subject;
    return { ok: true, ctx: ctx as CallerContext };
  }

  function decide(ctx: RequestContext, hasBearer: boolean, tokenClient: ClientConfig | undefined, session: SessionResult): IdentityResult {
    if (session !== undefined && "ok" in session) return fail(ctx, session);
    if (session !== undefined && !session.client.auth.jwt) {
      return fail(ctx, deny("invalid_credentials", "session names a client without auth.jwt"));
    }
    if (tokenClient !== undefined) {
      if (session !== undefined && session.client !== tokenClient) {
        return deny("ambiguous_credentials", "client token and session name different clients");
      }
      return accept(ctx, tokenClient, "token", session?.subject);
    }
    // A bearer that is not a static token must be the session itself: a wrong bearer next to a
    // good session cookie is a wrong credential, not a cookie request with noise.
    if (hasBearer && session?.credential !== "jwt") {
      return fail(ctx, deny("invalid_credentials", "bearer is neither a client token nor a valid session"));
    }
    if (session !== undefined) return accept(ctx, session.client, session.credential, session.subject);
    const anon = anonymous.find((candidate) => anonymousMatches(candidate, ctx.origin, ctx.ip));
    if (anon !== undefined) return accept(ctx, anon.client, "anonymous", undefined);
    return fail(ctx, deny("missing_credentials", "no credential and no anonymous client matches"));
  }

  return {
    name: "identity",
    identify(ctx: RequestContext): IdentityResult | Promise<IdentityResult> {
      const blocked = authFailures?.blocked(ctx.ip);
      if (blocked !== undefined) return blocked;

      const header = parseAuthorization(ctx.headers.authorization);
      if (header.kind === "malformed") return fail(ctx, deny("invalid_credentials", "malformed Authorization header"));
      const hasBearer = header.kind === "bearer";
      let tokenClient: ClientConfig | undefined;
      if (header.kind === "bearer") {
        const match = tokens.match(header.token);
        if (match.kind === "ambiguous") return fail(ctx, deny("invalid_credentials", "token digest listed by several clients"));
        if (match.kind === "client") tokenClient = match.client;
      }

      if (sessions === undefined) return decide(ctx, hasBearer, tokenClient, undefined);
      const bearerForSession = header.kind === "bearer" && tokenClient === undefined ? header.token : undefined;
      const result = sessions.verify(ctx, bearerForSession);
      return isPromiseLike(result)
        ? result.then((session) => decide(ctx, hasBearer, tokenClient, session))
        : decide(ctx, hasBearer, tokenClient, result);
    },
  };
}
