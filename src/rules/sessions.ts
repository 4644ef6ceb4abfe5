/**
 * Session JWTs (SPEC §3 `sessions.jwt`, §4 step 3): the verifier the identity check calls with the
 * bearer (when it is not a static client token) and the session cookie.
 *
 * Verification is jose's `jwtVerify` with everything pinned by the config, never by the token:
 * - algorithms: only `sessions.jwt.algorithms` (`none` is never in it: config validation refuses
 *   it, and jose never accepts it for a verified JWT). Shared-secret and asymmetric algorithms
 *   cannot be mixed (validation again), so a token cannot pick HS256 and have the proxy use an RSA
 *   public key as an HMAC secret (algorithm confusion). The token's `jwk`, `jku`, `x5u`, `x5c`
 *   headers are never used to find a key.
 * - key: the HS secret from the secret reference, or the provider's keys from `jwks_url` (jwks.ts);
 * - claims: `iss` and `aud` must match, `exp` must be present and not past, `nbf` not in the
 *   future, each with `clock_skew` of tolerance; `client_claim` must name a client with
 *   `auth.jwt: true`; `subject_claim`, when present, becomes `ctx.subject`.
 *
 * The HS secret is read when the verifier is created, asynchronously; a request that arrives before
 * it is read waits for it (milliseconds), so no request is ever judged without it. A secret that
 * cannot be read, or is shorter than the algorithm's hash (RFC 7518 §3.2), makes every session
 * invalid (fail closed) and is logged once as an error.
 */
import type { JWTPayload, JWTVerifyGetKey } from "jose";
import { loadJose } from "./jose.ts";
import { readSecret } from "../config/secret-ref.ts";
import type { ClientConfig, JwtSessionConfig, ProxyConfig } from "../config/types.ts";
import { errorFields, silentLogger, type Logger } from "../observe/log.ts";
import { type RequestContext, deny, type Deny } from "../pipeline/types.ts";
import { readCookie } from "./cookies.ts";
import type { Session, SessionResult, SessionVerifier } from "./identity-check.ts";
import { createJwks, JwksUnavailable, type JwksOptions } from "./jwks.ts";

/** Longest JWT looked at, in characters; identity providers' tokens are a few KiB at most. */
export const MAX_JWT_LENGTH = 8 * 1024;

/** Longest subject kept: it reaches the audit log and rate-limit keys. */
export const MAX_SUBJECT_LENGTH = 256;

// Three base64url segments; an empty signature is let through to be refused by jose as such.
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Smallest HMAC secret per algorithm, in bytes: the hash output size (RFC 7518 §3.2). */
const HMAC_MIN_BYTES: Readonly<Record<string, number>> = { HS256: 32, HS384: 48, HS512: 64 };

// eslint-disable-next-line no-control-regex -- control characters are what this refuses
const CONTROL = /[\u0000-\u001f\u007f]/;

export interface SessionDeps {
  /** Where `{env: NAME}` secret references are read; default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  readonly logger?: Logger;
  /** Wall-clock milliseconds since the epoch, for `exp`/`nbf`; default `Date.now`. */
  readonly clock?: () => number;
  /** JWKS fetching (timeouts, cool-down, monotonic clock, fetch implementation) for tests. */
  readonly jwks?: Partial<Omit<JwksOptions, "url" | "logger">>;
}

type Verified = { readonly client: ClientConfig; readonly subject: string | undefined } | Deny;

type KeySource =
  | { readonly kind: "secret"; readonly key: Promise<Uint8Array | Deny> }
  | { readonly kind: "jwks"; readonly getKey: JWTVerifyGetKey };

function secretKey(jwt: JwtSessionConfig, env: NodeJS.ProcessEnv, logger: Logger): Promise<Uint8Array | Deny> {
  const ref = jwt.secret;
  if (ref === undefined) return Promise.resolve(deny("invalid_credentials", "no session secret configured"));
  return readSecret(ref, env).then(
    (secret) => {
      const bytes = new TextEncoder().encode(secret);
      const needed = Math.max(0, ...jwt.algorithms.map((alg) => HMAC_MIN_BYTES[alg] ?? 0));
      if (bytes.length < needed) {
        logger.error("sessions.jwt.secret is too short for its algorithms; every session is refused", { bytes: bytes.length, needed });
        return deny("invalid_credentials", "session secret too short");
      }
      return bytes;
    },
    (err: unknown) => {
      // readSecret's messages name the reference, never the value.
      logger.error("sessions.jwt.secret could not be read; every session is refused", errorFields(err));
      return deny("invalid_credentials", "session secret unreadable");
    },
  );
}

function claimString(payload: JWTPayload, claim: string): string | undefined {
  const value = payload[claim];
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return String(value);
  return undefined;
}

/**
 * The verifier for `config.sessions`, or `undefined` when sessions are not configured. Starts
 * reading the HS secret at once; JWKS are fetched on first use.
 */
export function createSessionVerifier(config: ProxyConfig, deps: SessionDeps = {}): SessionVerifier | undefined {
  if (config.sessions === undefined) return undefined;
  const jwt: JwtSessionConfig = config.sessions.jwt;
  const logger = deps.logger ?? silentLogger;
  const clock = deps.clock ?? (() => Date.now());
  const clients = new Map(config.clients.map((client) => [client.id, client]));

  let keys: KeySource;
  if (jwt.jwks_url !== undefined) {
    keys = { kind: "jwks", getKey: createJwks({ ...deps.jwks, url: new URL(jwt.jwks_url), logger }).getKey };
  } else {
    const key = secretKey(jwt, deps.env ?? process.env, logger);
    keys = { kind: "secret", key };
  }

  const verifyOptions = {
    algorithms: [...jwt.algorithms],
    issuer: jwt.issuer,
    audience: jwt.audience,
    requiredClaims: ["exp"],
    clockTolerance: Math.floor(jwt.clock_skew / 1000),
  };

  async function verifyToken(token: string): Promise<Verified> {
    if (token.length > MAX_JWT_LENGTH || !JWT_SHAPE.test(token)) return deny("invalid_credentials", "session token is not a JWT");
    const { errors, jwtVerify } = await loadJose();
    let payload: JWTPayload;
    try {
      const options = { ...verifyOptions, currentDate: new Date(clock()) };
      if (keys.kind === "secret") {
        const key = await keys.key;
        if (!(key instanceof Uint8Array)) return key;
        ({ payload } = await jwtVerify(token, key, options));
      } else {
        ({ payload } = await jwtVerify(token, keys.getKey, options));
      }
    } catch (err) {
      if (err instanceof errors.JOSEError) return deny("invalid_credentials", `session jwt refused (${err.code})`);
      if (err instanceof JwksUnavailable) return deny("invalid_credentials", "session jwt refused: no signing keys held");
      throw err;
    }
    const clientId = payload[jwt.client_claim];
    const client = typeof clientId === "string" ? clients.get(clientId) : undefined;
    if (client === undefined) return deny("invalid_credentials", "session names no known client");
    if (!client.auth.jwt) return deny("invalid_credentials", "session names a client without auth.jwt");
    let subject: string | undefined;
    if (payload[jwt.subject_claim] !== undefined) {
      subject = claimString(payload, jwt.subject_claim);
      if (subject === undefined || subject === "" || subject.length > MAX_SUBJECT_LENGTH || CONTROL.test(subject)) {
        return deny("invalid_credentials", "session subject is not a short printable string");
      }
    }
    return { client, subject };
  }

  return {
    async verify(ctx: RequestContext, bearer: string | undefined): Promise<SessionResult> {
      const cookie = jwt.cookie === undefined ? ({ kind: "none" } as const) : readCookie(ctx.headers.cookie, jwt.cookie);
      if (bearer === undefined && cookie.kind === "none") return undefined;
      if (cookie.kind === "conflict") return deny("invalid_credentials", "session cookie sent twice with different values");

      // Every credential presented must hold: a bad bearer next to a good cookie is refused, not
      // skipped, and a stale cookie next to a good bearer too (the caller should drop it).
      let fromBearer: Session | undefined;
      if (bearer !== undefined) {
        const verified = await verifyToken(bearer);
        if ("ok" in verified) return verified;
        fromBearer = { ...verified, credential: "jwt" };
      }
      let fromCookie: Session | undefined;
      if (cookie.kind === "value") {
        const verified = await verifyToken(cookie.value);
        if ("ok" in verified) return verified;
        fromCookie = { ...verified, credential: "cookie" };
      }
      if (fromBearer !== undefined && fromCookie !== undefined && fromBearer.client !== fromCookie.client) {
        return deny("ambiguous_credentials", "bearer session and cookie session name different clients");
      }
      // A bearer cannot be attached by another site, so with one the request needs no Origin check
      // for CSRF even when the cookie came along.
      return fromBearer ?? fromCookie;
    },
  };
}
