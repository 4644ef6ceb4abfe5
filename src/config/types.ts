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
}

export interface LimitsConfig {
  readonly store: "memory" | "redis";
  /** Set when `store: redis`. */
  readonly redis?: { readonly url: SecretRef | string; readonly prefix: string };
  readonly on_store_error: "local" | "deny";
  readonly auth_failures: { readonly requests: number; readonly per: Millis };
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
  readonly server: ServerConfig;
  readonly audit: { readonly enabled: boolean; readonly include_subject: boolean };
  readonly tracing?: TracingConfig;
}
