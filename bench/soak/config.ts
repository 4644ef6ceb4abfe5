/**
 * What the proxy under soak runs on: its config (valid variants for reloads, one invalid), the
 * callers' credentials (two client tokens, HS256 session tokens) and the MythIQ keys it is given.
 */
import { createHmac, randomBytes } from "node:crypto";
import { newToken } from "../config.ts";

export const SESSION_ISSUER = "https://auth.soak.invalid";
export const SESSION_AUDIENCE = "mythiq-proxy";
export const WEB_ORIGIN = "https://app.soak.invalid";
export const ALLOWED_MODEL = "stability/sdxl";
export const REFUSED_MODEL = "openai/not-on-the-list";

export interface Credentials {
  /** Token of `soak-app` (short requests with a model allowlist: bodies held and checked). */
  readonly app: string;
  /** Token of `soak-bulk` (uploads, downloads, events: bodies streamed). */
  readonly bulk: string;
  readonly appHash: string;
  readonly bulkHash: string;
  /** HS256 secret of `sessions.jwt` (passed to the proxy as SOAK_SESSION_SECRET). */
  readonly sessionSecret: string;
}

export function newCredentials(): Credentials {
  const app = newToken();
  const bulk = newToken();
  return { app: app.token, bulk: bulk.token, appHash: app.hash, bulkHash: bulk.hash, sessionSecret: randomBytes(48).toString("base64url") };
}

/** A MythIQ key as the store would hold it: printable, no whitespace. */
export function newKey(): string {
  return `mq-soak-${randomBytes(24).toString("hex")}`;
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");

/** A session JWT for `soak-web`, signed HS256, valid for an hour. */
export function sessionToken(secret: string, subject: string, nowMs = Date.now()): string {
  const now = Math.floor(nowMs / 1000);
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ iss: SESSION_ISSUER, aud: SESSION_AUDIENCE, sub: subject, client: "soak-web", iat: now, exp: now + 3600 })}`;
  return `${head}.${createHmac("sha256", secret).update(head).digest("base64url")}`;
}

export interface ConfigPorts {
  readonly listen: number;
  readonly admin: number;
  readonly upstream: number;
}

/**
 * The proxy config. `generation` changes `pricing.default` only, so every valid reload is a real
 * change (applied and counted) that leaves every decision the traffic depends on as it was.
 */
export function soakConfig(ports: ConfigPorts, keyFile: string, creds: Credentials, generation: number): string {
  const price = (0.01 + generation * 0.001).toFixed(3);
  return `# mythiq-proxy soak config, generation ${generation}
listen: { host: 127.0.0.1, port: ${ports.listen} }
admin: { host: 127.0.0.1, port: ${ports.admin} }

upstream:
  url: http://127.0.0.1:${ports.upstream}
  allow_insecure_upstream: true
  connect_timeout: 2s
  response_timeout: 10s
  idle_timeout: 5s
  max_sockets: 1024

keys:
  default: { source: file, file: ${JSON.stringify(keyFile)} }

key_refresh: { interval: 5m, timeout: 2s }

sessions:
  jwt:
    issuer: ${SESSION_ISSUER}
    audience: ${SESSION_AUDIENCE}
    secret: { env: SOAK_SESSION_SECRET }
    algorithms: [HS256]
    cookie: session
    client_claim: client
    subject_claim: sub

clients:
  - id: soak-app
    auth: { tokens: ["${creds.appHash}"] }
    routes:
      - GET /v1/models
      - GET /v1/models/{id}
      - POST /v1/images/generations
    models: ["${ALLOWED_MODEL}", "black-forest-labs/flux-schnell"]
    max_body: 64KiB
    rate_limit: { requests: 1000000, per: 1s }
    concurrency: 100000

  - id: soak-web
    auth: { jwt: true }
    origins: ["${WEB_ORIGIN}"]
    routes:
      - GET /v1/models
      - POST /v1/images/generations
      - GET /v1/events
    models: ["${ALLOWED_MODEL}"]
    max_body: 64KiB
    rate_limit: { requests: 1000000, per: 1s, by: subject }

  - id: soak-bulk
    auth: { tokens: ["${creds.bulkHash}"] }
    routes:
      - POST /v1/uploads
      - GET /v1/files/{id}/content
      - GET /v1/events
      - GET /v1/slow
    max_body: 4MiB
    rate_limit: { requests: 1000000, per: 1s }

pricing:
  ${ALLOWED_MODEL}: 0.004
  default: ${price}

limits:
  store: redis
  redis: { url: { env: REDIS_URL }, prefix: "mythiq-soak:" }
  on_store_error: local
  auth_failures: { requests: 20, per: 1m }

server:
  headers_timeout: 10s
  request_timeout: 30s
  keep_alive_timeout: 30s
  drain_timeout: 20s

audit: { enabled: true, include_subject: true }
`;
}

/** A config the proxy must refuse (an unknown key): the running one stays. */
export function invalidConfig(valid: string): string {
  return `${valid}\nsurprise_setting: true\n`;
}
