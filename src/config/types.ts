/**
 * The validated, defaulted, frozen configuration (SPEC §3).
 *
 * Keys keep their YAML spelling so a problem path (`clients[0].rate_limit.per`) reads the same in
 * code, in the file and in error messages. Units are normalised once at load time:
 * every duration is a number of milliseconds, every size a number of bytes.
 */

/** Milliseconds. */
export type Millis = number;
/** Bytes. */
export type Bytes = number;

/** A secret is never written inline: it names an environment variable or a file (trailing newline dropped). */
export type SecretRef = { readonly env: string } | { readonly file: string };

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface UpstreamConfig {
  /** Origin (and optional base path, no trailing slash) of the MythIQ API, e.g. `https://api.mythiq.ai`. */
  readonly url: string;
  readonly allow_insecure_upstream: boolean;
  readonly connect_timeout: Millis;
  readonly response_timeout: Millis;
  readonly idle_timeout: Millis;
  readonly max_sockets: number;
}

export interface RefreshConfig {
  readonly interval: Millis;
  readonly timeout: Millis;
  /** 0 = serve the last good key for ever while the source is down. */
  readonly max_stale: Millis;
}

interface KeyCommon {
  /** The key's own refresh settings: `key_refresh` with this key's overrides applied. */
  readonly refresh: RefreshConfig;
}

export interface EnvKeyConfig extends KeyCommon {
  readonly source: "env";
  readonly env: string;
}

export interface FileKeyConfig extends KeyCommon {
  readonly source: "file";
  readonly file: string;
}

export type VaultAuthConfig =
  | { readonly method: "kubernetes"; readonly role: string; readonly mount: string; readonly jwt_file: string }
  | { readonly method: "approle"; readonly role_id: SecretRef; readonly secret_id: SecretRef; readonly mount: string }
  | { readonly method: "token"; readonly token: SecretRef };

export interface VaultKeyConfig extends KeyCommon {
  readonly source: "vault";
  readonly vault: {
    readonly address: string;
    /** "" = no namespace. */
    readonly namespace: string;
    readonly ca_file?: string;
    readonly auth: VaultAuthConfig;
    readonly kv_version: 1 | 2;
    readonly mount: string;
    readonly path: string;
    readonly field: string;
  };
}

export interface AwsKeyConfig extends KeyCommon {
  readonly source: "aws";
  readonly aws: {
    readonly region: string;
    readonly secret_id: string;
    /** Absent when SecretString is the bare key. */
    readonly field?: string;
    readonly version_stage: string;
    /** "" = the SDK's default endpoint. */
    readonly endpoint: string;
  };
}

export type KeyConfig = EnvKeyConfig | FileKeyConfig | VaultKeyConfig | AwsKeyConfig;
export type KeySourceKind = KeyConfig["source"];

export interface JwtSessionConfig {
  readonly issuer: string;
  readonly audience: string;
  /** Exactly one of `jwks_url` and `secret` is set. */
  readonly jwks_url?: string;
  readonly secret?: SecretRef;
  readonly algorithms: readonly string[];
  readonly cookie?: string;
  readonly client_claim: string;
  readonly subject_claim: string;
  readonly clock_skew: Millis;
}

export interface RateLimitConfig {
  readonly requests: number;
  readonly per: Millis;
  /** Bucket size; defaults to `requests`. */
  readonly burst: number;
  readonly by: "client" | "subject" | "ip";
}

/** A value a field policy allows; compared with a body's JSON value by type and value (SPEC §11). */
export type FieldValue = string | number | boolean;

/** One named top-level body field of a client's `fields` (SPEC §11; README "Field policies"). */
export interface FieldPolicyConfig {
  /** The values allowed; undefined = any value (then `required` is true). `[]` = the field must not be sent. */
  readonly allowed?: readonly FieldValue[];
  /** Absent is refused (400 `field_required`). */
  readonly required: boolean;
  /** Route entries of the client the policy applies to; undefined = every route of the client. */
  readonly routes?: readonly string[];
}

export interface ClientConfig {
  readonly id: string;
  /** Name of the entry in `keys` whose value is injected. Default "default". */
  readonly key: string;
  readonly auth: {
    /** `sha256:<64 lowercase hex>` entries. */
    readonly tokens: readonly string[];
    readonly jwt: boolean;
    readonly anonymous: boolean;
  };
  /** Undefined = any Origin accepted, no CORS headers. */
  readonly origins?: readonly string[];
  /** Undefined = any network; [] = none. CIDR strings (bare addresses are normalised to /32 or /128). */
  readonly networks?: readonly string[];
  /** `METHOD /path` with `{name}` segments and an optional `?a&b` list of allowed query names. */
  readonly routes: readonly string[];
  /** Undefined = any model. */
  readonly models?: readonly string[];
  readonly max_body: Bytes;
  readonly rate_limit?: RateLimitConfig;
  readonly concurrency?: number;
  readonly budget?: { readonly daily_usd: number };
  /** Field policies by top-level field name; undefined = none. */
  readonly fields?: Readonly<Record<string, FieldPolicyConfig>>;
}

/**
 * `limits.redis`: exactly one of `url` (one Redis), `sentinels` with `name` (a primary and its
 * replicas behind Sentinel) and `cluster` (Redis Cluster) is set (cross-checks.ts).
 */
export interface RedisConfig {
  /** `redis://` or `rediss://`; inline only without a password. */
  readonly url?: SecretRef | string;
  /** Sentinel addresses; ioredis asks them for the current primary of `name`. */
  readonly sentinels?: readonly HostPort[];
  /** The master group the sentinels watch. */
  readonly name?: string;
  /** Some nodes of the cluster; the others are discovered. */
  readonly cluster?: readonly HostPort[];
  /** ACL user on Redis (and on every cluster node). */
  readonly username?: string;
  readonly password?: SecretRef;
  /** ACL user and password on the sentinels themselves, when they ask for one. */
  readonly sentinel_username?: string;
  readonly sentinel_password?: SecretRef;
  /** TLS to Redis (and to the sentinels); absent = plain TCP, unless the url is `rediss://`. */
  readonly tls?: { readonly ca_file?: string; readonly server_name?: string };
  readonly prefix: string;
  /** Longest wait for one Redis call on a request's path. */
  readonly timeout: Millis;
}

export interface LimitsConfig {
  readonly store: "memory" | "redis";
  /** Set when `store: redis`. */
  readonly redis?: RedisConfig;
  readonly on_store_error: "local" | "deny";
  readonly auth_failures: { readonly requests: number; readonly per: Millis };
}

/** A route that creates a resource, and where its id sits in the JSON response (`data[].id`). */
export interface OwnershipCreateConfig {
  readonly route: string;
  readonly id: string;
}

/** A route that uses one resource; `param` names the route placeholder holding the id. */
export interface OwnershipUseConfig {
  readonly route: string;
  /** Undefined when the route has exactly one placeholder. */
  readonly param?: string;
}

/** A route whose JSON response lists resources, filtered to the caller's own. */
export interface OwnershipListConfig {
  readonly route: string;
  /** Path of the array of items, e.g. `result.medias`. */
  readonly items: string;
  /** Path of an item's id inside the item; default `id`. */
  readonly id: string;
  /** Path of the count set to the number of items kept, e.g. `result.total`; undefined = none. */
  readonly count?: string;
}

/** One resource kind of `ownership` (SPEC §11; README "Ownership"). */
export interface OwnershipKindConfig {
  /** `session`: the session subject when there is one, else the client; `client`: always the client. */
  readonly owner: "session" | "client";
  readonly ttl: Millis;
  /** Most ids remembered per owner; the oldest are forgotten first. */
  readonly max_items: number;
  /** Client ids the kind applies to; undefined = every client. */
  readonly clients?: readonly string[];
  readonly create: readonly OwnershipCreateConfig[];
  readonly use: readonly OwnershipUseConfig[];
  readonly list: readonly OwnershipListConfig[];
}

export interface ServerConfig {
  readonly headers_timeout: Millis;
  readonly request_timeout: Millis;
  readonly keep_alive_timeout: Millis;
  readonly max_connections: number;
  readonly max_header_count: number;
  readonly drain_timeout: Millis;
}

/**
 * Whose W3C trace context (`traceparent`/`tracestate`) the proxy continues: `false` nobody (every
 * request starts a new trace); `trusted_proxies` requests whose TCP peer is in `trusted_proxies`;
 * a list of client ids: requests identified as one of these clients.
 */
export type TraceTrust = false | "trusted_proxies" | readonly string[];

/** `tracing:` (SPEC §11): OpenTelemetry spans exported over OTLP/HTTP. Absent = tracing off. */
export interface TracingConfig {
  /** The OTLP/HTTP traces URL, e.g. `http://otel-collector:4318/v1/traces`. */
  readonly endpoint: string;
  /** Headers sent with every export (an API key for a vendor's endpoint), as secret references. */
  readonly headers: Readonly<Record<string, SecretRef>>;
  /** `service.name` of the spans. */
  readonly service_name: string;
  /** Share of new traces recorded, 0..1; a continued trace follows its caller's decision. */
  readonly sample_ratio: number;
  readonly trust_incoming: TraceTrust;
}

export interface ProxyConfig {
  readonly listen: HostPort;
  readonly admin: HostPort;
  /** CIDR strings. */
  readonly trusted_proxies: readonly string[];
  readonly upstream: UpstreamConfig;
  readonly keys: Readonly<Record<string, KeyConfig>>;
  readonly key_refresh: RefreshConfig;
  readonly sessions?: { readonly jwt: JwtSessionConfig };
  readonly clients: readonly ClientConfig[];
  /** USD per image (times `n`) or per request, by model; `default` for any other model. */
  readonly pricing: Readonly<Record<string, number>>;
  readonly limits: LimitsConfig;
  /** Resource kinds whose ids belong to the caller that created them; {} = none. */
  readonly ownership: Readonly<Record<string, OwnershipKindConfig>>;
  readonly server: ServerConfig;
  readonly audit: { readonly enabled: boolean; readonly include_subject: boolean };
  readonly tracing?: TracingConfig;
}
