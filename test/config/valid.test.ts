import { readFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { configHash, loadConfigFile, parseConfig } from "../../src/config/load.ts";
import type { ProxyConfig } from "../../src/config/types.ts";
import { SCHEMA_MATCHES_TYPES } from "../../src/config/schema.ts";

const root = join(import.meta.dirname, "..", "..");
const valid = join(root, "test", "fixtures", "config", "valid");
const HASH = "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

/** Plain copies, so deep comparison ignores the null prototypes of `keys` and `pricing`. */
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

async function load(name: string): Promise<ProxyConfig> {
  const result = await loadConfigFile(join(valid, name));
  if (!result.ok) throw new Error(result.problems.map((p) => p.message).join("\n"));
  return result.config;
}

const DEFAULT_REFRESH = { interval: 300_000, timeout: 5_000, max_stale: 0 };

t.test("minimal config: every default applied", async (t) => {
  const config = await load("minimal.yaml");
  const expected: ProxyConfig = {
    listen: { host: "0.0.0.0", port: 8080 },
    admin: { host: "0.0.0.0", port: 9090 },
    trusted_proxies: [],
    upstream: {
      url: "https://api.mythiq.ai",
      allow_insecure_upstream: false,
      connect_timeout: 5_000,
      response_timeout: 180_000,
      idle_timeout: 60_000,
      max_sockets: 256,
    },
    keys: { default: { source: "env", env: "MYTHIQ_API_KEY", refresh: DEFAULT_REFRESH } },
    key_refresh: DEFAULT_REFRESH,
    clients: [
      {
        id: "web",
        key: "default",
        auth: { tokens: [HASH], jwt: false, anonymous: false },
        routes: ["GET /v1/models"],
        max_body: 1024 * 1024,
      },
    ],
    pricing: {},
    limits: { store: "memory", on_store_error: "local", auth_failures: { requests: 20, per: 60_000 } },
    ownership: {},
    server: {
      headers_timeout: 10_000,
      request_timeout: 60_000,
      keep_alive_timeout: 5_000,
      max_connections: 10_000,
      max_header_count: 100,
      drain_timeout: 25_000,
    },
    audit: { enabled: true, include_subject: true },
  };
  t.strictSame(plain(config), expected);
  t.notOk("origins" in config.clients[0]!, "optional keys left out are absent, not undefined");
  t.notOk("sessions" in config);
});

t.test("full config: units converted, per-key refresh merged, defaults filled in", async (t) => {
  const config = await load("full.yaml");
  const refresh = { interval: 600_000, timeout: 10_000, max_stale: 0 };
  const expected: ProxyConfig = {
    listen: { host: "::", port: 8081 },
    admin: { host: "127.0.0.1", port: 9091 },
    trusted_proxies: ["10.0.0.0/8", "192.0.2.10/32", "2001:db8::/32", "::1/128"],
    upstream: {
      url: "https://api.mythiq.ai",
      allow_insecure_upstream: false,
      connect_timeout: 500,
      response_timeout: 180_000,
      idle_timeout: 3_600_000,
      max_sockets: 64,
    },
    keys: {
      default: { source: "env", env: "MYTHIQ_API_KEY", refresh },
      legacy: { source: "file", file: "/run/secrets/mythiq", refresh: { ...refresh, interval: 30_000 } },
      production: {
        source: "vault",
        vault: {
          address: "https://vault.vault.svc:8200",
          namespace: "",
          auth: {
            method: "kubernetes",
            role: "mythiq-proxy",
            mount: "kubernetes",
            jwt_file: "/var/run/secrets/kubernetes.io/serviceaccount/token",
          },
          kv_version: 2,
          mount: "secret",
          path: "mythiq/production",
          field: "api_key",
        },
        refresh: { interval: 600_000, timeout: 2_000, max_stale: 86_400_000 },
      },
      staging: {
        source: "vault",
        vault: {
          address: "https://vault.vault.svc:8200",
          namespace: "team-a",
          ca_file: "/vault/ca.crt",
          auth: { method: "approle", role_id: { env: "VAULT_ROLE_ID" }, secret_id: { file: "/vault/secret-id" }, mount: "ar" },
          kv_version: 1,
          mount: "kv",
          path: "mythiq/staging",
          field: "key",
        },
        refresh,
      },
      ci: {
        source: "vault",
        vault: {
          address: "https://vault.example.com",
          namespace: "",
          auth: { method: "token", token: { env: "VAULT_TOKEN" } },
          kv_version: 2,
          mount: "secret",
          path: "mythiq/ci",
          field: "api_key",
        },
        refresh,
      },
      analytics: {
        source: "aws",
        aws: { region: "eu-west-1", secret_id: "mythiq/analytics", version_stage: "AWSCURRENT", endpoint: "" },
        refresh,
      },
    },
    key_refresh: refresh,
    sessions: {
      jwt: {
        issuer: "https://auth.example.com",
        audience: "mythiq-proxy",
        jwks_url: "https://auth.example.com/.well-known/jwks.json",
        algorithms: ["RS256", "ES256"],
        cookie: "session",
        client_claim: "client",
        subject_claim: "sub",
        clock_skew: 30_000,
      },
    },
    clients: [
      {
        id: "web-app",
        key: "production",
        auth: { tokens: [HASH], jwt: true, anonymous: false },
        origins: ["https://app.example.com", "https://*.example.com", "http://localhost:5173"],
        networks: ["10.0.0.0/8", "203.0.113.7/32", "fd00::/8"],
        routes: ["GET /v1/models", "GET /v1/models/{id}", "POST /v1/images/generations", "GET /v1/generations?limit&after"],
        models: ["stability/sdxl", "1.10"],
        max_body: 20 * 1024 * 1024,
        rate_limit: { requests: 60, per: 60_000, burst: 10, by: "subject" },
        concurrency: 8,
        budget: { daily_usd: 25.5 },
        fields: {
          public: { allowed: [false], required: true, routes: ["POST /v1/images/generations"] },
          provider: { allowed: ["stability", "1.10", 2], required: false },
        },
      },
      {
        id: "public-demo",
        key: "default",
        auth: { tokens: [], jwt: false, anonymous: true },
        origins: ["https://demo.example.com"],
        routes: ["GET /v1/models"],
        max_body: 0,
        rate_limit: { requests: 5, per: 3_600_000, burst: 5, by: "client" },
      },
    ],
    pricing: { "stability/sdxl": 0.004, default: 0.01 },
    limits: {
      store: "redis",
      redis: { url: { env: "REDIS_URL" }, prefix: "mythiq-proxy:", timeout: 250 },
      on_store_error: "deny",
      auth_failures: { requests: 5, per: 60_000 },
    },
    ownership: {
      generations: {
        owner: "session",
        ttl: 720 * 3_600_000,
        max_items: 10_000,
        create: [{ route: "POST /v1/images/generations", id: "data[].id" }],
        use: [{ route: "GET /v1/models/{id}" }],
        list: [{ route: "GET /v1/generations", items: "data", id: "id" }],
      },
      shared: { owner: "client", ttl: 3_600_000, max_items: 50, clients: ["web-app"], create: [], use: [], list: [] },
    },
    server: {
      headers_timeout: 5_000,
      request_timeout: 120_000,
      keep_alive_timeout: 65_000,
      max_connections: 500,
      max_header_count: 50,
      drain_timeout: 0,
    },
    audit: { enabled: true, include_subject: false },
  };
  t.strictSame(plain(config), expected);
});

t.test("the returned config is deeply frozen", async (t) => {
  const config = await load("full.yaml");
  t.ok(Object.isFrozen(config));
  t.ok(Object.isFrozen(config.clients));
  t.ok(Object.isFrozen(config.clients[0]!.routes));
  t.ok(Object.isFrozen(config.keys.staging));
  t.ok(Object.isFrozen(config.pricing));
  t.throws(() => {
    (config.clients as unknown as unknown[]).push({});
  });
  t.throws(() => {
    (config.upstream as { url: string }).url = "http://evil.example";
  });
});

t.test("keys and pricing have no prototype: lookups of inherited names miss", async (t) => {
  const config = await load("full.yaml");
  t.equal(Object.getPrototypeOf(config.keys), null);
  t.equal(Object.getPrototypeOf(config.pricing), null);
  t.equal(Reflect.get(config.pricing, "constructor"), undefined);
  t.equal(Reflect.get(config.keys, "toString"), undefined);
});

t.test("an http upstream is an error unless allowed, and then still a warning", async (t) => {
  const base = readFileSync(join(valid, "minimal.yaml"), "utf8");
  const refused = parseConfig(`${base}upstream: { url: "http://127.0.0.1:4010" }\n`, "u.yaml");
  t.ok(!refused.ok && refused.problems.some((p) => p.line === 8 && p.col === 18 && /allow_insecure_upstream/.test(p.message)));
  const allowed = parseConfig(`${base}upstream: { url: "http://127.0.0.1:4010", allow_insecure_upstream: true }\n`, "u.yaml");
  t.ok(allowed.ok);
  if (!allowed.ok) return;
  t.equal(allowed.config.upstream.url, "http://127.0.0.1:4010");
  t.strictSame(allowed.warnings.map((w) => `${w.line}:${w.col}: ${w.message}`), [
    "8:18: upstream.url: uses http:// (allow_insecure_upstream: true): the MythIQ key travels unencrypted; for tests and local demos only",
  ]);
});

t.test("a valid config can still carry warnings, with positions", async (t) => {
  const text = [
    "upstream: { url: https://api.mythiq.ai/v1 }",
    "keys:",
    "  default: { source: env, env: K }",
    "sessions:",
    "  jwt: { issuer: i, audience: a, secret: {env: S}, algorithms: [HS256] }",
    "clients:",
    "  - id: web",
    "    auth: { tokens: [\"sha256:" + "0".repeat(64) + "\"] }",
    "    routes: [GET /v1/models]",
    "  - id: idle",
    "    routes: [GET /v1/models]",
    "",
  ].join("\n");
  const result = parseConfig(text, "w.yaml");
  t.ok(result.ok);
  t.strictSame(
    result.warnings.map((w) => `${w.line}:${w.col}: ${w.message}`),
    [
      "1:18: upstream.url: ends in /v1 while routes already start with /v1: requests would go to /v1/v1/...; use https://api.mythiq.ai",
      "5:3: sessions.jwt: no client sets auth.jwt: true, so no session will be accepted",
      "10:5: clients[1]: no way to authenticate: set auth.tokens, auth.jwt: true or auth.anonymous: true; this client can never be used",
    ],
  );
});

t.test("limits.redis: Sentinel and Cluster forms, with ACL user, secret passwords and TLS", async (t) => {
  const base = readFileSync(join(valid, "minimal.yaml"), "utf8");
  const sentinel = parseConfig(
    `${base}limits:
  store: redis
  redis:
    sentinels: ["redis-sentinel-0.redis:26379", "10.0.0.7:26379", "[fd00::7]:26380"]
    name: mymaster
    username: mythiq-proxy
    password: {env: REDIS_PASSWORD}
    sentinel_password: {file: /var/run/secrets/sentinel/password}
    tls: true
    timeout: 100ms
`,
    "s.yaml",
  );
  t.ok(sentinel.ok, "sentinel form");
  if (!sentinel.ok) return;
  t.strictSame(sentinel.warnings, []);
  t.strictSame(plain(sentinel.config.limits.redis), {
    sentinels: [
      { host: "redis-sentinel-0.redis", port: 26379 },
      { host: "10.0.0.7", port: 26379 },
      { host: "fd00::7", port: 26380 },
    ],
    name: "mymaster",
    username: "mythiq-proxy",
    password: { env: "REDIS_PASSWORD" },
    sentinel_password: { file: "/var/run/secrets/sentinel/password" },
    tls: {},
    prefix: "mythiq-proxy:",
    timeout: 100,
  });
  const cluster = parseConfig(
    `${base}limits:
  store: redis
  redis:
    cluster: ["redis-cluster-0.redis-cluster:6379", "redis-cluster-1.redis-cluster:6379"]
    password: {env: REDIS_PASSWORD}
    tls: { ca_file: /etc/redis-tls/ca.crt, server_name: redis-cluster.redis.svc }
    prefix: "p:"
`,
    "c.yaml",
  );
  t.ok(cluster.ok, "cluster form");
  if (!cluster.ok) return;
  t.strictSame(plain(cluster.config.limits.redis), {
    cluster: [
      { host: "redis-cluster-0.redis-cluster", port: 6379 },
      { host: "redis-cluster-1.redis-cluster", port: 6379 },
    ],
    password: { env: "REDIS_PASSWORD" },
    tls: { ca_file: "/etc/redis-tls/ca.crt", server_name: "redis-cluster.redis.svc" },
    prefix: "p:",
    timeout: 250,
  });
  const plainTcp = parseConfig(`${base}limits: { store: redis, redis: { url: "redis://r:6379", tls: false } }\n`, "f.yaml");
  t.ok(plainTcp.ok && plainTcp.config.limits.redis?.tls === undefined, "tls: false is no TLS");
});

t.test("tracing: defaults, the three trust_incoming forms, header secrets as references", async (t) => {
  const base = readFileSync(join(valid, "minimal.yaml"), "utf8");
  const parsed = (tracing: string) => {
    const result = parseConfig(`${base}trusted_proxies: [10.0.0.0/8]\ntracing: ${tracing}\n`, "t.yaml");
    if (!result.ok) throw new Error(result.problems.map((p) => p.message).join("\n"));
    return result;
  };
  const minimal = parsed("{ endpoint: http://collector:4318/v1/traces }");
  t.strictSame(plain(minimal.config.tracing), {
    endpoint: "http://collector:4318/v1/traces",
    headers: {},
    service_name: "mythiq-proxy",
    sample_ratio: 1,
    trust_incoming: false,
  });
  t.strictSame(minimal.warnings, [], "http:// without headers is fine (an in-cluster collector)");
  t.equal(parsed("{ endpoint: https://c.example/v1/traces, trust_incoming: trusted_proxies }").config.tracing?.trust_incoming, "trusted_proxies");
  t.strictSame(plain(parsed("{ endpoint: https://c.example/v1/traces, trust_incoming: [web] }").config.tracing?.trust_incoming), ["web"]);
  const full = parsed("{ endpoint: https://c.example/v1/traces, headers: { x-api-key: {env: OTLP_KEY} }, service_name: proxy-eu, sample_ratio: 0.25 }");
  t.strictSame(plain(full.config.tracing?.headers), { "x-api-key": { env: "OTLP_KEY" } });
  t.equal(full.config.tracing?.sample_ratio, 0.25);
  t.equal(full.config.tracing?.service_name, "proxy-eu");

  const noProxies = parseConfig(`${base}tracing: { endpoint: https://c.example/v1/traces, trust_incoming: trusted_proxies }\n`, "t.yaml");
  t.ok(noProxies.ok);
  t.match(noProxies.warnings.map((w) => w.message), [/tracing\.trust_incoming: trusted_proxies is empty, so no caller's trace is continued/]);
});

t.test("a key that no client uses is a warning at its name", async (t) => {
  const text = [
    "keys:",
    "  default: { source: env, env: K }",
    "  old: { source: env, env: OLD }",
    "  other: { source: env, env: OTHER }",
    "clients:",
    "  - id: web",
    "    auth: { tokens: [\"sha256:" + "0".repeat(64) + "\"] }",
    "    routes: [GET /v1/models]",
    "  - id: batch",
    "    key: other",
    "    auth: { tokens: [\"sha256:" + "1".repeat(64) + "\"] }",
    "    routes: [GET /v1/models]",
    "",
  ].join("\n");
  const result = parseConfig(text, "k.yaml");
  t.ok(result.ok, "a warning, not an error");
  t.strictSame(
    result.warnings.map((w) => `${w.line}:${w.col}: ${w.message}`),
    ['3:3: keys.old: no client uses key "old": if no application needs it any more, remove it here and revoke it at MythIQ'],
  );
});

t.test("hash: first 12 hex of sha256 of the file bytes", async (t) => {
  const file = join(valid, "minimal.yaml");
  const result = await loadConfigFile(file);
  t.ok(result.ok);
  if (!result.ok) return;
  const bytes = readFileSync(file);
  const { createHash } = await import("node:crypto");
  t.equal(result.hash, createHash("sha256").update(bytes).digest("hex").slice(0, 12));
  t.equal(result.hash, configHash(bytes));
  t.match(result.hash, /^[0-9a-f]{12}$/);
});

t.test("locate points at values in the file; unset values are undefined", async (t) => {
  const text = readFileSync(join(valid, "full.yaml"), "utf8");
  const result = parseConfig(text, "full.yaml");
  t.ok(result.ok);
  if (!result.ok) return;
  t.strictSame(result.locate(["listen", "port"]), { line: 2, col: 29 });
  t.strictSame(result.locate(["clients", 0, "routes", 1]), { line: 61, col: 9 });
  t.strictSame(result.locate(["keys", "staging", "vault", "auth", "role_id"]), { line: 28, col: 41 });
  t.equal(result.locate(["clients", 0, "nothing"]), undefined);
  t.equal(result.locate(["clients", 9]), undefined);
  t.equal(result.file, "full.yaml");
});

t.test("a leading BOM is accepted and does not shift columns; the hash covers it", async (t) => {
  const text = readFileSync(join(valid, "minimal.yaml"), "utf8");
  const withBom = `\uFEFF${text}`;
  const result = parseConfig(withBom, "bom.yaml");
  t.ok(result.ok);
  if (!result.ok) return;
  t.strictSame(result.locate(["keys"]), { line: 3, col: 3 });
  t.not(result.hash, configHash(text));
  const bad = parseConfig(`\uFEFF${text.replace("routes:", "routs:")}`, "bom.yaml");
  t.ok(!bad.ok && bad.problems.some((p) => p.line === 7 && p.col === 5));
});

t.test("CRLF line endings parse the same, with the same positions", async (t) => {
  const text = readFileSync(join(valid, "minimal.yaml"), "utf8").replace(/\n/g, "\r\n");
  const result = parseConfig(text, "crlf.yaml");
  t.ok(result.ok);
  if (result.ok) t.strictSame(result.locate(["clients", 0, "routes", 0]), { line: 7, col: 14 });
  const bad = parseConfig(text.replace("routes:", "routs:"), "crlf.yaml");
  t.ok(!bad.ok && bad.problems.some((p) => p.line === 7 && p.col === 5 && /routs: unknown key/.test(p.message)));
});

t.test("config/proxy.yaml and config/reference.yaml are valid, without warnings", async (t) => {
  for (const name of ["proxy.yaml", "reference.yaml"]) {
    const result = await loadConfigFile(join(root, "config", name));
    t.ok(result.ok, name);
    t.strictSame(result.warnings, [], `${name} has no warnings`);
    if (!result.ok) t.strictSame(result.problems, []);
  }
});

t.test("config/proxy.yaml is the safe newcomer default", async (t) => {
  const config = await load(join("..", "..", "..", "..", "config", "proxy.yaml"));
  t.strictSame(plain(config.listen), { host: "127.0.0.1", port: 8080 });
  t.strictSame(plain(config.admin), { host: "127.0.0.1", port: 9090 });
  t.equal(config.upstream.url, "https://api.mythiq.ai");
  t.strictSame(plain(config.keys.default), { source: "env", env: "MYTHIQ_API_KEY", refresh: DEFAULT_REFRESH });
  const client = config.clients[0]!;
  t.equal(config.clients.length, 1);
  t.equal(client.id, "local-dev");
  t.ok(client.auth.anonymous);
  t.strictSame(plain(client.networks), ["127.0.0.0/8", "::1/128"]);
  t.strictSame(plain(client.origins), ["http://localhost:3000", "http://localhost:5173", "http://127.0.0.1:3000", "http://127.0.0.1:5173"]);
  t.strictSame(plain(client.routes), ["GET /v1/models", "GET /v1/models/{id}", "POST /v1/images/generations", "GET /v1/generations?limit&after"]);
  t.equal(client.max_body, 1024 * 1024);
  t.strictSame(plain(client.rate_limit), { requests: 60, per: 60_000, burst: 10, by: "client" });
  t.equal(client.concurrency, 8);
});

t.test("config/reference.yaml mentions every key the schema knows", async (t) => {
  const text = readFileSync(join(root, "config", "reference.yaml"), "utf8");
  const keys = [
    "listen", "admin", "host", "port", "trusted_proxies", "upstream", "url", "allow_insecure_upstream",
    "connect_timeout", "response_timeout", "idle_timeout", "max_sockets", "keys", "source", "env", "file",
    "vault", "address", "namespace", "ca_file", "auth", "method", "role", "mount", "jwt_file", "role_id",
    "secret_id", "token", "kv_version", "path", "field", "aws", "region", "version_stage", "endpoint",
    "refresh", "key_refresh", "interval", "timeout", "max_stale", "sessions", "jwt", "issuer", "audience",
    "jwks_url", "secret", "algorithms", "cookie", "client_claim", "subject_claim", "clock_skew", "clients",
    "id", "key", "tokens", "anonymous", "origins", "networks", "routes", "models", "max_body", "rate_limit",
    "requests", "per", "burst", "by", "concurrency", "budget", "daily_usd", "pricing", "limits", "store",
    "redis", "sentinels", "name", "cluster", "username", "password", "sentinel_username", "sentinel_password",
    "tls", "server_name", "prefix", "on_store_error", "auth_failures", "server", "headers_timeout", "request_timeout",
    "keep_alive_timeout", "max_connections", "max_header_count", "drain_timeout", "audit", "enabled",
    "include_subject", "fields", "allowed", "required", "ownership", "owner", "ttl", "max_items", "create",
    "use", "list", "param", "items", "count", "tracing", "headers", "service_name", "sample_ratio", "trust_incoming",
  ];
  for (const k of keys) t.match(text, new RegExp(`(^|[\\s{,])${k}:`, "m"), k);
});

t.test("the schema output type is exactly ProxyConfig (checked by tsc)", async (t) => {
  t.equal(SCHEMA_MATCHES_TYPES, true);
  // A literal that must satisfy ProxyConfig: a compile error here means the shared type changed.
  const sample = {
    listen: { host: "h", port: 1 },
    admin: { host: "h", port: 2 },
    trusted_proxies: [],
    upstream: { url: "u", allow_insecure_upstream: false, connect_timeout: 1, response_timeout: 1, idle_timeout: 1, max_sockets: 1 },
    keys: {},
    key_refresh: DEFAULT_REFRESH,
    clients: [],
    pricing: {},
    limits: { store: "memory", on_store_error: "local", auth_failures: { requests: 1, per: 1 } },
    ownership: {},
    server: { headers_timeout: 1, request_timeout: 1, keep_alive_timeout: 1, max_connections: 1, max_header_count: 1, drain_timeout: 0 },
    audit: { enabled: true, include_subject: true },
  } satisfies ProxyConfig;
  t.equal(sample.limits.store, "memory");
});
