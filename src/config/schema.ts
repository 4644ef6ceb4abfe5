/**
 * The whole SPEC §3 config as one zod schema: shapes, types, units, ranges and defaults. Its output
 * is exactly `ProxyConfig` (checked at compile time at the bottom of this file).
 *
 * Rules that relate two places of the file (a client naming an unknown key, `jwt: true` without
 * `sessions.jwt`, ...) live in `cross-checks.ts`, because zod skips an object's refinements as soon
 * as anything inside it is wrong, and every problem must be reported at once.
 *
 * Scalars are checked by small functions (see `scalar`) instead of zod's built-ins so that every
 * message names the allowed values and never quotes a value that could be a secret.
 */
import * as z from "zod";
import { parseJsonPath } from "../ownership/json-path.ts";
import type { FieldValue, ProxyConfig, RefreshConfig, SecretRef, TraceTrust } from "./types.ts";
import { typeName } from "./bounded-yaml.ts";
import type { Check, CheckedUrl, UrlRules } from "./formats.ts";
import {
  checkCidr,
  checkCookieName,
  checkEnvName,
  checkHost,
  checkHostPort,
  checkJwtAlgorithm,
  checkName,
  checkOrigin,
  checkRoute,
  checkServerName,
  checkTokenHash,
  checkUrl,
} from "./formats.ts";
import { checkSecretRef } from "./secret-ref.ts";
import {
  DURATION_EXAMPLES,
  durationHint,
  formatDuration,
  formatSize,
  parseDuration,
  parseSize,
  SIZE_EXAMPLES,
  sizeHint,
} from "./units.ts";

// ---------------------------------------------------------------------------------------------
// Scalars

/**
 * A scalar checked by `check`. Marked `params.quote` when the message should be followed by the
 * value's source text (for numbers that were meant as strings: YAML reads `1.10` as 1.1).
 */
function scalar<T>(check: (v: unknown) => Check<T> & { quote?: boolean }) {
  return z.unknown().transform((v, ctx): T => {
    if (v === undefined) {
      ctx.issues.push({ code: "custom", message: "is required", input: v });
      return z.NEVER;
    }
    const r = check(v);
    if (r.ok) return r.value;
    ctx.issues.push({ code: "custom", message: r.message, input: v, params: r.quote ? { quote: true } : undefined });
    return z.NEVER;
  });
}

const fail = (message: string, quote = false): Check<never> & { quote?: boolean } => ({ ok: false, message, quote });
const pass = <T>(value: T): Check<T> => ({ ok: true, value });

// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** A string; numbers and booleans are refused with a hint to quote them. */
function stringCheck(v: unknown, opts: { empty?: boolean } = {}): Check<string> & { quote?: boolean } {
  if (typeof v === "number" || typeof v === "boolean") {
    return fail(`must be a string, but YAML reads this as the ${typeof v} ${String(v)}: quote it`, true);
  }
  if (typeof v !== "string") return fail(`must be a string, got ${typeName(v)}`);
  if (v === "" && !opts.empty) return fail("must not be empty");
  if (CONTROL.test(v)) return fail("must not contain control characters");
  return pass(v);
}

/** A non-empty string without control characters. */
const text = () => scalar((v) => stringCheck(v));
/** A string that may be empty (`""` meaning "none"). */
const optionalText = () => scalar((v) => stringCheck(v, { empty: true }));

/** A string checked by a format function from formats.ts. */
const formatted = <T>(check: (s: string) => Check<T>) =>
  scalar<T>((v) => {
    const s = stringCheck(v);
    return s.ok ? check(s.value) : s;
  });

const bool = () =>
  scalar<boolean>((v) => {
    if (typeof v === "boolean") return pass(v);
    if (typeof v === "string" && /^(true|false)$/i.test(v)) return fail("must be true or false, without quotes");
    if (typeof v === "string" && /^(yes|no|on|off|y|n)$/i.test(v)) {
      return fail(`must be true or false ("${v}" is a string in YAML 1.2, not a boolean)`);
    }
    return fail(`must be true or false, got ${typeName(v)}`);
  });

const int = (min: number, max: number) =>
  scalar<number>((v) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      const got = typeof v === "number" ? String(v) : typeName(v);
      const unquote = typeof v === "string" && /^-?[0-9]+$/.test(v) ? " (write it without quotes)" : "";
      return fail(`must be a whole number from ${min} to ${max}, got ${got}${unquote}`);
    }
    return pass(v);
  });

/** A finite number in [min, max]; `min` excluded when `exclusiveMin`. */
const num = (min: number, max: number, exclusiveMin = false) =>
  scalar<number>((v) => {
    const inRange = typeof v === "number" && Number.isFinite(v) && (exclusiveMin ? v > min : v >= min) && v <= max;
    if (!inRange) {
      const got = typeof v === "number" ? String(v) : typeName(v);
      const lower = exclusiveMin ? `more than ${min}` : `at least ${min}`;
      return fail(`must be a number ${lower} and at most ${max}, got ${got}`);
    }
    return pass(v);
  });

/** One of a fixed set of values. */
const oneOf = <const T extends readonly (string | number)[]>(values: T) =>
  scalar<T[number]>((v) => {
    if ((values as readonly unknown[]).includes(v)) return pass(v as T[number]);
    return fail(`must be one of: ${values.join(", ")}`);
  });

/** A duration in milliseconds, within [min, max] milliseconds. */
const duration = (min: number, max: number) =>
  scalar<number>((v) => {
    if (typeof v === "number") return fail(`is a bare number: add a unit (${DURATION_EXAMPLES})`);
    if (typeof v !== "string") return fail(`must be a duration (${DURATION_EXAMPLES}), got ${typeName(v)}`);
    const ms = parseDuration(v);
    if (ms === undefined) {
      const hint = durationHint(v);
      return fail(`${JSON.stringify(v)} is not a duration (${hint ?? DURATION_EXAMPLES})`);
    }
    if (ms < min || ms > max) return fail(`must be from ${formatDuration(min)} to ${formatDuration(max)}, got ${v}`);
    return pass(ms);
  });

/** A size in bytes, within [min, max] bytes. */
const size = (min: number, max: number) =>
  scalar<number>((v) => {
    if (typeof v !== "string" && typeof v !== "number") return fail(`must be a size (${SIZE_EXAMPLES}), got ${typeName(v)}`);
    const bytes = parseSize(v);
    if (bytes === undefined) {
      const hint = typeof v === "string" ? sizeHint(v) : undefined;
      return fail(`${JSON.stringify(v)} is not a size (${hint ?? SIZE_EXAMPLES})`);
    }
    if (bytes < min || bytes > max) return fail(`must be from ${formatSize(min)} to ${formatSize(max)}, got ${String(v)}`);
    return pass(bytes);
  });

const url = (rules: UrlRules) => formatted<CheckedUrl>((s) => checkUrl(s, rules));
const secretRef = () => scalar(checkSecretRef);

/** A model name as it appears in request bodies; `1.10` unquoted is the classic YAML trap. */
const modelName = () => scalar((v) => stringCheck(v));

/** A list that must not be empty, with a message saying why. */
const nonEmptyList = <T extends z.ZodType>(item: T, why: string) => z.array(item).min(1, { error: why });

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const KIB = 1024;
const MIB = 1024 * KIB;

// ---------------------------------------------------------------------------------------------
// Sections

const hostPort = (host: string, port: number) =>
  z.strictObject({ host: formatted(checkHost).default(host), port: int(1, 65535).default(port) }).prefault({});

const upstreamSchema = z
  .strictObject({
    // http: is judged in cross-checks.ts, which also sees allow_insecure_upstream.
    url: url({ what: "the upstream url", form: "path" })
      .transform((u) => u.href)
      .default("https://api.mythiq.ai"),
    allow_insecure_upstream: bool().default(false),
    connect_timeout: duration(100, 5 * MINUTE).default(5 * SECOND),
    response_timeout: duration(SECOND, HOUR).default(180 * SECOND),
    idle_timeout: duration(SECOND, HOUR).default(60 * SECOND),
    max_sockets: int(1, 10_000).default(256),
  })
  .prefault({});

/** Bounds shared by `key_refresh` and each key's `refresh` overrides. */
const REFRESH_BOUNDS = {
  interval: [SECOND, 24 * HOUR],
  timeout: [100, 5 * MINUTE],
  max_stale: [0, 8760 * HOUR],
} as const;

const refreshSchema = z
  .strictObject({
    interval: duration(...REFRESH_BOUNDS.interval).default(5 * MINUTE),
    timeout: duration(...REFRESH_BOUNDS.timeout).default(5 * SECOND),
    max_stale: duration(...REFRESH_BOUNDS.max_stale).default(0),
  })
  .prefault({});

const refreshOverrides = z
  .strictObject({
    interval: duration(...REFRESH_BOUNDS.interval).optional(),
    timeout: duration(...REFRESH_BOUNDS.timeout).optional(),
    max_stale: duration(...REFRESH_BOUNDS.max_stale).optional(),
  })
  .optional();

const vaultAuthSchema = z.discriminatedUnion("method", [
  z.strictObject({
    method: z.literal("kubernetes"),
    role: text(),
    mount: text().default("kubernetes"),
    jwt_file: text().default("/var/run/secrets/kubernetes.io/serviceaccount/token"),
  }),
  z.strictObject({
    method: z.literal("approle"),
    role_id: secretRef(),
    secret_id: secretRef(),
    mount: text().default("approle"),
  }),
  z.strictObject({ method: z.literal("token"), token: secretRef() }),
]);

const keySchema = z.discriminatedUnion("source", [
  z.strictObject({ source: z.literal("env"), env: formatted(checkEnvName), refresh: refreshOverrides }),
  z.strictObject({ source: z.literal("file"), file: text(), refresh: refreshOverrides }),
  z.strictObject({
    source: z.literal("vault"),
    vault: z.strictObject({
      // http: is allowed with a warning (cross-checks.ts).
      address: url({ what: "the vault address", form: "origin" }).transform((u) => u.href),
      namespace: optionalText().default(""),
      ca_file: text().optional(),
      auth: vaultAuthSchema,
      kv_version: oneOf([1, 2] as const).default(2),
      mount: text().default("secret"),
      path: text(),
      field: text(),
    }),
    refresh: refreshOverrides,
  }),
  z.strictObject({
    source: z.literal("aws"),
    aws: z.strictObject({
      region: formatted((s) =>
        /^[a-z]{2,}(-[a-z0-9]+)+-[0-9]+$/.test(s)
          ? pass(s)
          : fail(`${JSON.stringify(s)} is not an AWS region (e.g. eu-west-1)`),
      ),
      secret_id: text(),
      field: text().optional(),
      version_stage: text().default("AWSCURRENT"),
      endpoint: scalar((v) => {
        if (v === "") return pass("");
        const s = stringCheck(v);
        if (!s.ok) return s;
        const u = checkUrl(s.value, { what: "the aws endpoint", form: "path" });
        return u.ok ? pass(u.value.href) : u;
      }).default(""),
    }),
    refresh: refreshOverrides,
  }),
]);

const jwtSchema = z.strictObject({
  issuer: text(),
  audience: text(),
  jwks_url: url({ what: "jwks_url", form: "any" })
    .transform((u) => u.href)
    .optional(),
  secret: secretRef().optional(),
  algorithms: nonEmptyList(formatted(checkJwtAlgorithm), "must list at least one algorithm (they are pinned, never taken from the token)"),
  cookie: formatted(checkCookieName).optional(),
  client_claim: text().default("client"),
  subject_claim: text().default("sub"),
  clock_skew: duration(0, 5 * MINUTE).default(30 * SECOND),
});

const rateLimitSchema = z
  .strictObject({
    requests: int(1, 1_000_000),
    per: duration(SECOND, 24 * HOUR),
    burst: int(1, 1_000_000).optional(),
    by: oneOf(["client", "subject", "ip"] as const).default("client"),
  })
  .transform((r) => ({ requests: r.requests, per: r.per, burst: r.burst ?? r.requests, by: r.by }));

/** A record whose output has no prototype, so `pricing["constructor"]` is undefined, not a function. */
const nullProtoRecord = <T extends z.ZodType>(value: T) =>
  z.record(z.string(), value).transform((r) => Object.assign(Object.create(null) as Record<string, z.output<T>>, r));

/** A value a field policy allows: compared by type and value with what a body sends. */
const fieldValue = () =>
  scalar<FieldValue>((v) => {
    if (typeof v === "string") return stringCheck(v, { empty: true });
    if (typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))) return pass(v);
    return fail(`must be a string, number or boolean, got ${typeName(v)}`);
  });

const fieldPolicySchema = z.strictObject({
  allowed: z.array(fieldValue()).optional(),
  required: bool().default(false),
  routes: z.array(formatted(checkRoute)).optional(),
});

const clientSchema = z.strictObject({
  id: formatted(checkName),
  key: formatted(checkName).default("default"),
  auth: z
    .strictObject({
      // Not `formatted`: a non-string entry may be a raw numeric token, and must not be echoed.
      tokens: z.array(scalar((v) => checkTokenHash(typeof v === "string" ? v : ""))).default([]),
      jwt: bool().default(false),
      anonymous: bool().default(false),
    })
    .prefault({}),
  origins: z.array(formatted(checkOrigin)).optional(),
  networks: z.array(formatted(checkCidr)).optional(),
  routes: nonEmptyList(
    formatted(checkRoute),
    "must list at least one route (a client without routes could do nothing)",
  ),
  models: z.array(modelName()).optional(),
  max_body: size(0, 100 * MIB).default(MIB),
  rate_limit: rateLimitSchema.optional(),
  concurrency: int(1, 100_000).optional(),
  budget: z.strictObject({ daily_usd: num(0, 1_000_000, true) }).optional(),
  fields: nullProtoRecord(fieldPolicySchema).optional(),
});

/** `tls: true` is TLS with the system's CAs; a map adds a CA file or the name the certificate must carry. */
const redisTlsSchema = z.preprocess(
  (v) => (v === true ? {} : v === false ? undefined : v),
  z
    .strictObject(
      { ca_file: text().optional(), server_name: formatted(checkServerName).optional() },
      { error: (iss) => (iss.code === "invalid_type" ? "must be true, false, or a map with ca_file and/or server_name" : undefined) },
    )
    .optional(),
);

/** `limits.redis`; which of url, sentinels and cluster is set is judged in cross-checks.ts. */
const redisSchema = z.strictObject({
  url: scalar<SecretRef | string>((v) => (typeof v === "string" ? checkRedisUrl(v) : checkSecretRef(v))).optional(),
  sentinels: nonEmptyList(formatted(checkHostPort), "must list at least one sentinel (host:port)").optional(),
  name: text().optional(),
  cluster: nonEmptyList(formatted(checkHostPort), "must list at least one node of the cluster (host:port)").optional(),
  username: text().optional(),
  password: secretRef().optional(),
  sentinel_username: text().optional(),
  sentinel_password: secretRef().optional(),
  tls: redisTlsSchema,
  prefix: optionalText().default("mythiq-proxy:"),
  timeout: duration(10, 10 * SECOND).default(250),
});

const limitsSchema = z
  .strictObject({
    store: oneOf(["memory", "redis"] as const).default("memory"),
    redis: redisSchema.optional(),
    on_store_error: oneOf(["local", "deny"] as const).default("local"),
    auth_failures: z
      .strictObject({ requests: int(1, 1_000_000).default(20), per: duration(SECOND, 24 * HOUR).default(MINUTE) })
      .prefault({}),
  })
  .prefault({});

/** An inline redis URL is fine only without a password; never echoed. */
function checkRedisUrl(s: string): Check<string> {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return fail("must be a redis:// or rediss:// URL, or a secret reference {env: NAME} or {file: PATH}");
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    return fail("must be a redis:// or rediss:// URL, or a secret reference {env: NAME} or {file: PATH}");
  }
  if (u.password !== "") {
    return fail("contains a password: put the whole URL in a secret reference instead, e.g. url: {env: REDIS_URL}");
  }
  return pass(s);
}

/** A path into a JSON response (src/ownership/json-path.ts); `arrays` allows `[]` steps. */
const jsonPath = (arrays: boolean) =>
  formatted((text) => {
    const parsed = parseJsonPath(text, { arrays });
    return parsed.ok ? pass(text) : fail(parsed.message);
  });

const ownershipKindSchema = z.strictObject({
  owner: oneOf(["session", "client"] as const).default("session"),
  ttl: duration(SECOND, 8760 * HOUR).default(720 * HOUR),
  max_items: int(1, 1_000_000).default(10_000),
  clients: z.array(formatted(checkName)).optional(),
  create: z.array(z.strictObject({ route: formatted(checkRoute), id: jsonPath(true) })).default([]),
  use: z.array(z.strictObject({ route: formatted(checkRoute), param: text().optional() })).default([]),
  list: z
    .array(
      z.strictObject({
        route: formatted(checkRoute),
        items: jsonPath(false),
        id: jsonPath(false).default("id"),
        count: jsonPath(false).optional(),
      }),
    )
    .default([]),
});

const serverSchema = z
  .strictObject({
    headers_timeout: duration(SECOND, 5 * MINUTE).default(10 * SECOND),
    request_timeout: duration(SECOND, HOUR).default(60 * SECOND),
    keep_alive_timeout: duration(SECOND, 10 * MINUTE).default(5 * SECOND),
    max_connections: int(1, 1_000_000).default(10_000),
    max_header_count: int(1, 1_000).default(100),
    drain_timeout: duration(0, HOUR).default(25 * SECOND),
  })
  .prefault({});

const auditSchema = z
  .strictObject({ enabled: bool().default(true), include_subject: bool().default(true) })
  .prefault({});

/** `tracing.trust_incoming`: false, `trusted_proxies`, or a list of client ids (cross-checks.ts checks they exist). */
function checkTraceTrust(v: unknown): Check<TraceTrust> {
  if (v === false || v === "trusted_proxies") return pass(v);
  if (v === true) return fail("true would let any caller choose the trace its requests join: use trusted_proxies or a list of client ids");
  if (Array.isArray(v)) {
    const ids: string[] = [];
    for (const item of v) {
      const s = stringCheck(item);
      if (!s.ok) return fail(`a list of client ids: ${s.message}`);
      const name = checkName(s.value);
      if (!name.ok) return fail(`a list of client ids: ${name.message}`);
      ids.push(name.value);
    }
    return pass(ids);
  }
  return fail("must be false, trusted_proxies, or a list of client ids");
}

// SPEC §11 `tracing`: its shape is README's "Tracing"; header names and the ids in trust_incoming
// are checked in cross-checks.ts.
const tracingSchema = z.strictObject({
  endpoint: url({ what: "the tracing endpoint", form: "path" }).transform((u) => u.href),
  headers: nullProtoRecord(secretRef()).default(() => Object.create(null) as Record<string, SecretRef>),
  service_name: text().default("mythiq-proxy"),
  sample_ratio: num(0, 1).default(1),
  trust_incoming: scalar(checkTraceTrust).default(false),
});

/** The config file, before each key's refresh settings are merged with `key_refresh`. */
const documentSchema = z.strictObject({
  listen: hostPort("0.0.0.0", 8080),
  admin: hostPort("0.0.0.0", 9090),
  trusted_proxies: z.array(formatted(checkCidr)).default([]),
  upstream: upstreamSchema,
  keys: nullProtoRecord(keySchema),
  key_refresh: refreshSchema,
  sessions: z.strictObject({ jwt: jwtSchema }).optional(),
  clients: nonEmptyList(clientSchema, "must list at least one client"),
  pricing: nullProtoRecord(num(0, 1_000)).prefault({}),
  limits: limitsSchema,
  ownership: nullProtoRecord(ownershipKindSchema).prefault({}),
  server: serverSchema,
  audit: auditSchema,
  tracing: tracingSchema.optional(),
});

/** The full schema: SPEC §3 YAML (as plain data) in, `ProxyConfig` out. */
export const configSchema = documentSchema.transform((doc) => {
  const keys = Object.create(null) as Record<string, ProxyConfig["keys"][string]>;
  for (const [name, key] of Object.entries(doc.keys)) {
    const refresh: RefreshConfig = { ...doc.key_refresh, ...definedOnly(key.refresh ?? {}) };
    keys[name] = { ...key, refresh };
  }
  return { ...doc, keys };
});

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}


// ---------------------------------------------------------------------------------------------
// Compile-time proof that the schema's output is exactly ProxyConfig (up to readonly).

type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Output = DeepReadonly<z.output<typeof configSchema>>;

/** Fails to compile when the schema output and `ProxyConfig` drift apart in either direction. */
export const SCHEMA_MATCHES_TYPES: Same<Output, DeepReadonly<ProxyConfig>> = true;
