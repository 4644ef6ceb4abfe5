/**
 * A fake identity provider for session-JWT tests: a JWKS endpoint over real HTTP on 127.0.0.1:0,
 * signing keys, and token builders (well-formed and forged).
 *
 * ```ts
 * const idp = await startFakeJwks();
 * const rsa = await makeSigningKey("RS256", "rsa-1");
 * idp.publish([rsa]);                          // the JWKS served at idp.url
 * const token = await signSession(rsa, { client: "spa", sub: "user-1" });
 * idp.requests                                  // GETs served so far
 * idp.mode = "fail" | "stall" | "redirect" | "huge" | "ok"
 * await idp.close();
 * ```
 */
import { createHmac } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from "jose";

export const ISSUER = "https://auth.example.com";
export const AUDIENCE = "mythiq-proxy";

export interface SigningKey {
  readonly alg: "RS256" | "ES256";
  readonly kid: string;
  readonly privateKey: CryptoKey;
  /** The public JWK as published (with kid, alg, use). */
  readonly publicJwk: JWK;
}

export async function makeSigningKey(alg: "RS256" | "ES256", kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { alg, kid, privateKey, publicJwk };
}

/** Default claims: iss, aud, iat now, exp in 5 minutes, plus `claims`. `now` in seconds. */
export function sessionClaims(claims: JWTPayload = {}, now = Math.floor(Date.now() / 1000)): JWTPayload {
  return { iss: ISSUER, aud: AUDIENCE, iat: now, exp: now + 300, ...claims };
}

/** A token signed with `key`; `claims` override the defaults (set one to `undefined` to drop it). */
export async function signSession(key: SigningKey, claims: JWTPayload = {}, header: Record<string, unknown> = {}): Promise<string> {
  const payload = Object.fromEntries(Object.entries(sessionClaims(claims)).filter(([, v]) => v !== undefined));
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey);
}

const b64 = (value: unknown): string => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** An HS-signed token built by hand (any header, any key bytes): for HS256 sessions and for forgeries. */
export function hmacToken(secret: string | Buffer, payload: JWTPayload, header: Record<string, unknown> = { alg: "HS256", typ: "JWT" }): string {
  const alg = typeof header["alg"] === "string" ? header["alg"] : "HS256";
  const hash = alg === "HS512" ? "sha512" : alg === "HS384" ? "sha384" : "sha256";
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac(hash, secret).update(input).digest("base64url")}`;
}

/** A token with `alg: none` (or any header) and the given signature segment. */
export function unsignedToken(payload: JWTPayload, header: Record<string, unknown> = { alg: "none", typ: "JWT" }, signature = ""): string {
  return `${b64(header)}.${b64(payload)}.${signature}`;
}

/** Replaces the payload of a signed token, keeping its header and signature (a forgery). */
export function withPayload(token: string, payload: JWTPayload): string {
  const [header, , signature] = token.split(".");
  return `${header}.${b64(payload)}.${signature}`;
}

export type JwksMode = "ok" | "fail" | "stall" | "redirect" | "huge";

export interface FakeJwks {
  readonly url: string;
  /** GET requests received so far. */
  readonly requests: number;
  mode: JwksMode;
  publish(keys: readonly (SigningKey | JWK)[]): void;
  /** Resolves once `n` requests have arrived. */
  waitForRequests(n: number): Promise<void>;
  close(): Promise<void>;
}

export async function startFakeJwks(): Promise<FakeJwks> {
  let keys: JWK[] = [];
  let requests = 0;
  const waiters: Array<() => void> = [];
  const stalled = new Set<http.ServerResponse>();
  const fake = {
    url: "",
    mode: "ok" as JwksMode,
    get requests() {
      return requests;
    },
    publish(list: readonly (SigningKey | JWK)[]) {
      keys = list.map((k) => ("publicJwk" in k ? k.publicJwk : k));
    },
    waitForRequests(n: number) {
      return new Promise<void>((resolve) => {
        const check = () => {
          if (requests >= n) resolve();
          else waiters.push(check);
        };
        check();
      });
    },
    close: async () => {
      for (const res of stalled) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((req, res) => {
    requests += 1;
    for (const waiter of waiters.splice(0)) waiter();
    switch (fake.mode) {
      case "fail":
        res.writeHead(503).end("down");
        return;
      case "stall":
        stalled.add(res);
        return;
      case "redirect":
        res.writeHead(302, { location: `${fake.url}/elsewhere` }).end();
        return;
      case "huge":
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ keys, padding: "x".repeat(300 * 1024) }));
        return;
      case "ok":
        res.writeHead(200, { "content-type": "application/jwk-set+json" }).end(JSON.stringify({ keys }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  return fake;
}
