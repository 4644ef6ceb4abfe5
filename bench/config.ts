/**
 * The mythiq-proxy configs the benchmark runs: a realistic one (token auth, five routes, a model
 * allowlist, rate limits set high, metrics and audit on) and a wide one for the `/metrics` scrape
 * (50 clients × 10 routes × 20 models).
 */
import { createHash, randomBytes } from "node:crypto";

/** The environment variable the proxy reads its MythIQ key from (`source: env`). */
export const KEY_ENV = "BENCH_MYTHIQ_KEY";

/** A fresh random client token and its `tokens:` entry (what `mythiq-proxy hash-token` prints). */
export function newToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString("base64url");
  return { token, hash: `sha256:${createHash("sha256").update(token, "utf8").digest("hex")}` };
}

/** Models in the main client's allowlist; the POST runs ask for the first. */
export const APP_MODELS = [
  "stability/sdxl",
  "stability/sd3.5-large",
  "black-forest-labs/flux-schnell",
  "black-forest-labs/flux-dev",
  "openai/dall-e-3",
];

export interface Ports {
  readonly listen: number;
  readonly admin: number;
  readonly upstream: number;
}

// Limits set high so they cost their bookkeeping but never refuse: the benchmark measures what a
// check costs, not what it refuses. `concurrency` and `max_sockets` allow the 2,000-request run.
const HIGH_LIMITS = `    rate_limit: { requests: 1000000, per: 1s, burst: 1000000 }
    concurrency: 100000`;

function common(ports: Ports): string {
  return `listen: { host: 127.0.0.1, port: ${ports.listen} }
admin: { host: 127.0.0.1, port: ${ports.admin} }

upstream:
  url: http://127.0.0.1:${ports.upstream}
  allow_insecure_upstream: true
  connect_timeout: 5s
  response_timeout: 60s
  idle_timeout: 60s
  max_sockets: 4096

keys:
  default:
    source: env
    env: ${KEY_ENV}

server:
  headers_timeout: 30s
  request_timeout: 300s
  keep_alive_timeout: 60s
  max_connections: 10000
  drain_timeout: 1s

audit: { enabled: true, include_subject: true }
`;
}

/**
 * The realistic config. `bench-app` is the frontend's server: a token, five routes, a model
 * allowlist. `bench-bulk` holds the streaming routes (uploads, downloads, events, the slow call)
 * and is the POST fallback while a client with `models` cannot send bodies. `bench-browser` is an
 * anonymous page client, so identity checks have more than one client to look at.
 */
export function mainConfig(ports: Ports, tokens: { app: string; bulk: string }): string {
  return `${common(ports)}
pricing:
  stability/sdxl: 0.004
  default: 0.01

clients:
  - id: bench-app
    auth: { tokens: ["${tokens.app}"] }
    routes:
      - GET /v1/models
      - GET /v1/models/{id}
      - POST /v1/images/generations
      - POST /v1/images/edits
      - GET /v1/generations?limit&after
    models: [${APP_MODELS.map((m) => `"${m}"`).join(", ")}]
    max_body: 1MiB
${HIGH_LIMITS}

  - id: bench-bulk
    auth: { tokens: ["${tokens.bulk}"] }
    routes:
      - POST /v1/images/generations
      - POST /v1/uploads
      - GET /v1/files/{id}/content
      - GET /v1/events
      - GET /v1/slow
    max_body: 100MiB
${HIGH_LIMITS}

  - id: bench-browser
    auth: { anonymous: true }
    origins: [http://localhost:3000]
    networks: [127.0.0.0/8]
    routes:
      - GET /v1/models
`;
}

export const WIDE = {
  clients: 50,
  routes: [
    "POST /v1/images/generations",
    "POST /v1/images/edits",
    "POST /v1/images/variations",
    "POST /v1/images/upscale",
    "POST /v1/videos/generations",
    "POST /v1/audio/speech",
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/embeddings",
    "POST /v1/moderations",
  ],
  models: Array.from({ length: 20 }, (_, i) => `vendor-${i % 4}/model-${String(i).padStart(2, "0")}`),
} as const;

/** The wide config for the scrape run: every client may call every route with every model. */
export function wideConfig(ports: Ports, hashes: readonly string[]): string {
  const models = WIDE.models.map((m) => `"${m}"`).join(", ");
  const clients = hashes
    .map(
      (hash, i) => `  - id: tenant-${String(i).padStart(2, "0")}
    auth: { tokens: ["${hash}"] }
    routes: [${WIDE.routes.map((r) => `"${r}"`).join(", ")}]
    models: [${models}]
${HIGH_LIMITS}`,
    )
    .join("\n");
  return `${common(ports)}
clients:
${clients}
`;
}
