/**
 * Sessions for policy cases that give `claims`: `test-policy` issues a real signed JWT and the
 * proxy's own session verifier checks it, so claim mapping, `exp`/`nbf`, issuer, audience and the
 * client's `jwt: true` are all exercised for real. Offline:
 * - HS* configs: the token is signed with the configured secret (read from its `{env}`/`{file}`
 *   reference, as the proxy would).
 * - `jwks_url` configs: the token is signed with a key pair made for this run, and the verifier's
 *   JWKS client is handed that public key instead of fetching the URL. Only the key source differs
 *   from production; everything the verifier decides is the same.
 */
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import type { ProxyConfig } from "../config/types.ts";
import { readSecret } from "../config/secret-ref.ts";
import type { SessionDeps } from "../rules/sessions.ts";

export interface SessionIssuer {
  /** Verifier overrides for `buildRuntime` (the local key set), when the config uses `jwks_url`. */
  readonly compileDeps: { readonly sessions?: Pick<SessionDeps, "jwks"> };
  /** A signed JWT carrying `claims`; `iss`, `aud`, `iat` and `exp` (+1 h) are filled in unless given (null removes one). */
  issue(claims: Readonly<Record<string, unknown>>): Promise<string>;
}

const NO_SESSIONS: SessionIssuer = {
  compileDeps: {},
  issue: () => Promise.reject(new Error("the case gives claims, but the config has no sessions.jwt")),
};

function withDefaults(claims: Readonly<Record<string, unknown>>, issuer: string, audience: string): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  const full: Record<string, unknown> = { iss: issuer, aud: audience, iat: now, exp: now + 3600, ...claims };
  for (const [name, value] of Object.entries(full)) if (value === null) delete full[name];
  return full;
}

export async function createSessionIssuer(config: ProxyConfig, env: NodeJS.ProcessEnv): Promise<SessionIssuer> {
  const jwt = config.sessions?.jwt;
  if (jwt === undefined) return NO_SESSIONS;
  const alg = jwt.algorithms[0] ?? "RS256";

  if (jwt.secret !== undefined) {
    const secret = new TextEncoder().encode(await readSecret(jwt.secret, env));
    return {
      compileDeps: {},
      issue: (claims) => new SignJWT(withDefaults(claims, jwt.issuer, jwt.audience)).setProtectedHeader({ alg, typ: "JWT" }).sign(secret),
    };
  }

  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = "mythiq-proxy-test-policy";
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  const body = JSON.stringify({ keys: [jwk] });
  const localFetch: typeof fetch = () => Promise.resolve(new Response(body, { status: 200, headers: { "content-type": "application/json" } }));
  return {
    compileDeps: { sessions: { jwks: { fetch: localFetch } } },
    issue: (claims) => new SignJWT(withDefaults(claims, jwt.issuer, jwt.audience)).setProtectedHeader({ alg, kid, typ: "JWT" }).sign(privateKey),
  };
}
