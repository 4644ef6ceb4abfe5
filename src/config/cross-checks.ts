/**
 * Rules that relate two places of the config, checked on the raw parsed data so they are reported
 * together with every schema problem (zod skips refinements of an object that has any other issue).
 *
 * Each rule looks only at values of the right type and stays silent otherwise: the schema already
 * reports a value of the wrong type.
 */
import { parseCidr } from "../rules/ip.ts";
import { parseRouteTemplate } from "../rules/routes.ts";
import { checkName, checkUrl, isHmacAlgorithm } from "./formats.ts";
import { checkFieldPolicies, checkOwnership } from "./policy-checks.ts";
import type { ConfigPath, PathIssue } from "./problems.ts";
import { parseDuration } from "./units.ts";

export interface CrossResult {
  readonly errors: PathIssue[];
  readonly warnings: PathIssue[];
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const has = (o: Obj, k: string): boolean => Object.hasOwn(o, k) && o[k] !== undefined;
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const list = (v: unknown): unknown[] | undefined => (Array.isArray(v) ? v : undefined);
const dur = (v: unknown): number | undefined => (typeof v === "string" ? parseDuration(v) : undefined);

/** Runs every cross-field rule over the parsed YAML data. */
export function crossCheck(data: unknown): CrossResult {
  const errors: PathIssue[] = [];
  const warnings: PathIssue[] = [];
  const err = (path: ConfigPath, message: string, at: "key" | "value" = "value") => errors.push({ path, message, at });
  const warn = (path: ConfigPath, message: string, at: "key" | "value" = "value") => warnings.push({ path, message, at });
  if (!isObj(data)) return { errors, warnings };

  const keys = isObj(data.keys) ? data.keys : undefined;
  const sessions = isObj(data.sessions) ? data.sessions : undefined;
  const jwt = sessions && isObj(sessions.jwt) ? sessions.jwt : undefined;
  const pricing = isObj(data.pricing) ? data.pricing : undefined;
  const clients = list(data.clients) ?? [];

  checkKeys(keys, data.key_refresh, err, warn);
  checkListeners(data, err);
  checkUpstream(data, clients, err, warn);
  if (jwt) checkJwt(jwt, err, warn);
  checkClients({ clients, keys, jwt, pricing }, err, warn);
  checkLimits(data.limits, err, warn);
  checkFieldPolicies(clients, err);
  checkOwnership(data.ownership, clients, err, warn);
  checkServer(data.server, err);
  checkUnusedKeys(keys, clients, warn);
  if (isObj(data.tracing)) checkTracing(data.tracing, data, clients, err, warn);

  return { errors, warnings };
}

type Report = (path: ConfigPath, message: string, at?: "key" | "value") => void;

function checkKeys(keys: Obj | undefined, keyRefresh: unknown, err: Report, warn: Report): void {
  if (!keys) return;
  if (Object.keys(keys).length === 0) err(["keys"], "must name at least one key", "key");
  const defaults = isObj(keyRefresh) ? keyRefresh : {};
  checkRefresh(["key_refresh"], defaults, {}, err);
  for (const [name, key] of Object.entries(keys)) {
    const n = checkName(name);
    if (!n.ok) err(["keys", name], `key name ${n.message}`, "key");
    if (!isObj(key)) continue;
    if (isObj(key.refresh)) checkRefresh(["keys", name, "refresh"], defaults, key.refresh, err);
    if (key.source === "vault" && isObj(key.vault)) {
      insecureUrlWarning(["keys", name, "vault", "address"], key.vault.address, "the vault address", warn);
    }
    if (key.source === "aws" && isObj(key.aws)) {
      insecureUrlWarning(["keys", name, "aws", "endpoint"], key.aws.endpoint, "the aws endpoint", warn);
    }
  }
}

/** Vault, AWS endpoint and JWKS over http: are allowed (tests, in-cluster) but deserve a warning. */
function insecureUrlWarning(path: ConfigPath, v: unknown, what: string, warn: Report): void {
  const s = str(v);
  if (s?.startsWith("http://") && checkUrl(s, { what, form: "any" }).ok) {
    warn(path, `${what} uses http://: traffic to it is not encrypted and the server is not authenticated`);
  }
}

/**
 * A fetch attempt must end before the next one is due, and a non-zero `max_stale` shorter than the
 * refresh interval would make a healthy key go stale between two successful refreshes.
 */
function checkRefresh(path: ConfigPath, defaults: Obj, own: Obj, err: Report): void {
  const pick = (k: string) => (has(own, k) ? { v: dur(own[k]), own: true } : { v: dur(defaults[k] ?? DEFAULT_REFRESH[k]), own: false });
  const interval = pick("interval");
  const timeout = pick("timeout");
  const maxStale = pick("max_stale");
  const isDefaults = path.length === 1;
  if (interval.v !== undefined && timeout.v !== undefined && timeout.v > interval.v && (isDefaults || timeout.own || interval.own)) {
    err([...path, timeout.own || isDefaults ? "timeout" : "interval"], "timeout must not be longer than interval");
  }
  if (
    interval.v !== undefined &&
    maxStale.v !== undefined &&
    maxStale.v !== 0 &&
    maxStale.v <= interval.v &&
    (isDefaults || maxStale.own || interval.own)
  ) {
    err(
      [...path, maxStale.own || isDefaults ? "max_stale" : "interval"],
      "max_stale must be 0 (never stale) or longer than interval, or the key would expire between two refreshes",
    );
  }
}

const DEFAULT_REFRESH: Obj = { interval: "5m", timeout: "5s", max_stale: "0s" };

function checkListeners(data: Obj, err: Report): void {
  const listen = isObj(data.listen) ? data.listen : {};
  const admin = isObj(data.admin) ? data.admin : {};
  const lp = listen.port ?? 8080;
  const ap = admin.port ?? 9090;
  const lh = str(listen.host) ?? "0.0.0.0";
  const ah = str(admin.host) ?? "0.0.0.0";
  const wildcard = (h: string) => h === "0.0.0.0" || h === "::";
  if (typeof lp === "number" && lp === ap && (lh === ah || wildcard(lh) || wildcard(ah))) {
    err(has(admin, "port") ? ["admin", "port"] : ["listen", "port"], "the admin port must differ from the listen port (metrics and health are never served on the proxy port)");
  }
}

function checkUpstream(data: Obj, clients: unknown[], err: Report, warn: Report): void {
  const upstream = isObj(data.upstream) ? data.upstream : undefined;
  if (!upstream) return;
  const url = str(upstream.url);
  if (url === undefined) return;
  const checked = checkUrl(url, { what: "the upstream url", form: "path" });
  if (!checked.ok) return;
  if (checked.value.insecure && upstream.allow_insecure_upstream !== true) {
    err(
      ["upstream", "url"],
      "http:// would send the MythIQ key unencrypted: use https://, or set allow_insecure_upstream: true (tests and local demos only)",
    );
  } else if (checked.value.insecure) {
    warn(["upstream", "url"], "uses http:// (allow_insecure_upstream: true): the MythIQ key travels unencrypted; for tests and local demos only");
  }
  if (checked.value.href.endsWith("/v1")) {
    const v1Route = clients.some(
      (c) => isObj(c) && (list(c.routes) ?? []).some((r) => typeof r === "string" && / \/v1(\/|$|\?)/.test(r)),
    );
    if (v1Route) {
      warn(["upstream", "url"], "ends in /v1 while routes already start with /v1: requests would go to /v1/v1/...; use https://api.mythiq.ai");
    }
  }
}

function checkJwt(jwt: Obj, err: Report, warn: Report): void {
  const hasJwks = has(jwt, "jwks_url");
  const hasSecret = has(jwt, "secret");
  if (hasJwks === hasSecret) {
    err(
      ["sessions", "jwt", hasJwks ? "secret" : "jwks_url"],
      hasJwks
        ? "set exactly one of jwks_url and secret, not both"
        : "set exactly one of jwks_url (asymmetric keys) and secret (HS256/384/512)",
      hasJwks ? "key" : "value",
    );
  }
  const jwks = str(jwt.jwks_url);
  if (jwks?.startsWith("http://") && checkUrl(jwks, { what: "jwks_url", form: "any" }).ok) {
    warn(["sessions", "jwt", "jwks_url"], "uses http://: anyone on the path could substitute signing keys");
  }
  const algorithms = list(jwt.algorithms) ?? [];
  algorithms.forEach((alg, i) => {
    if (typeof alg !== "string") return;
    const path = ["sessions", "jwt", "algorithms", i];
    if (isHmacAlgorithm(alg) && hasJwks && !hasSecret) {
      err(path, `${alg} is a shared-secret algorithm: it needs secret, not jwks_url`);
    } else if (!isHmacAlgorithm(alg) && hasSecret && !hasJwks && /^(RS|PS|ES|Ed)/.test(alg)) {
      err(path, `${alg} is an asymmetric algorithm: it needs jwks_url, not secret`);
    }
  });
}

interface ClientsContext {
  readonly clients: unknown[];
  readonly keys: Obj | undefined;
  readonly jwt: Obj | undefined;
  readonly pricing: Obj | undefined;
}

function checkClients(ctx: ClientsContext, err: Report, warn: Report): void {
  const ids = new Map<string, number>();
  const tokens = new Map<string, string>();
  let anyJwtClient = false;

  ctx.clients.forEach((c, i) => {
    if (!isObj(c)) return;
    const base: ConfigPath = ["clients", i];
    const id = str(c.id);
    if (id !== undefined) {
      const first = ids.get(id);
      if (first !== undefined) err([...base, "id"], `${JSON.stringify(id)} is already the id of clients[${first}]`);
      else ids.set(id, i);
      if (id === "unknown") err([...base, "id"], `"unknown" is reserved: metrics label unidentified callers with it`);
    }

    // The key a client injects must exist; "default" is what an omitted `key` means.
    const keyName = has(c, "key") ? str(c.key) : "default";
    if (keyName !== undefined && ctx.keys && checkName(keyName).ok && !Object.hasOwn(ctx.keys, keyName)) {
      const known = Object.keys(ctx.keys).join(", ") || "none";
      err(
        [...base, "key"],
        has(c, "key")
          ? `names key ${JSON.stringify(keyName)}, which is not defined under keys (defined: ${known})`
          : `uses key "default" (key is not set), but keys has no "default" (defined: ${known}): set key`,
      );
    }

    const auth = isObj(c.auth) ? c.auth : {};
    const jwtOn = auth.jwt === true;
    const anonymous = auth.anonymous === true;
    const tokenList = list(auth.tokens) ?? [];
    if (jwtOn) anyJwtClient = true;
    if (jwtOn && !ctx.jwt) err([...base, "auth", "jwt"], "jwt: true needs sessions.jwt to say how session tokens are verified");

    tokenList.forEach((t, j) => {
      if (typeof t !== "string") return;
      const where = `clients[${i}].auth.tokens[${j}]`;
      const first = tokens.get(t);
      if (first !== undefined) err([...base, "auth", "tokens", j], `the same token hash is already listed at ${first}: a token must identify one client`);
      else tokens.set(t, where);
    });

    const origins = list(c.origins);
    const networks = list(c.networks);
    if (anonymous && (origins === undefined || origins.length === 0) && networks === undefined) {
      err(
        [...base, "auth", "anonymous"],
        "an anonymous client must set origins or networks; otherwise anyone who can reach the proxy could use the key",
      );
    }
    // Every spelling of "everyone": 0.0.0.0/0, ::/0, 0:0::/0, ::ffff:0:0/96 (all IPv4 callers)...
    if (anonymous && networks?.some((n) => typeof n === "string" && isEveryAddress(n))) {
      warn([...base, "networks"], "an anonymous client open to every address (0.0.0.0/0 or ::/0) lets anyone use the key");
    }
    // Stay quiet when the auth block is malformed: the schema already says what is wrong there.
    const authMalformed = (has(c, "auth") && !isObj(c.auth)) || (has(auth, "tokens") && !Array.isArray(auth.tokens));
    if (!anonymous && !jwtOn && tokenList.length === 0 && !authMalformed) {
      const path = has(c, "auth") ? [...base, "auth"] : base;
      warn(path, "no way to authenticate: set auth.tokens, auth.jwt: true or auth.anonymous: true; this client can never be used", has(c, "auth") ? "key" : "value");
    }

    const rate = isObj(c.rate_limit) ? c.rate_limit : undefined;
    if (rate?.by === "subject" && !jwtOn) {
      err([...base, "rate_limit", "by"], "by: subject needs auth.jwt: true (only sessions carry a subject)");
    }

    if (has(c, "budget") && !(ctx.pricing && Object.hasOwn(ctx.pricing, "default"))) {
      err(
        [...base, "budget"],
        "a budget needs pricing.default: the estimated USD for models not listed in pricing, so that every request has a cost",
        "key",
      );
    }

    const models = list(c.models);
    if (models?.length === 0) warn([...base, "models"], "is empty: every request body naming a model will be refused");

    // "The same route" is what compileRoutes refuses twice: the same label (METHOD /path).
    const seen = new Map<string, number>();
    (list(c.routes) ?? []).forEach((r, j) => {
      if (typeof r !== "string") return;
      const parsed = parseRouteTemplate(r);
      if (!parsed.ok) return;
      const k = parsed.value.label;
      const first = seen.get(k);
      if (first !== undefined) err([...base, "routes", j], `${k} is already listed at routes[${first}]`);
      else seen.set(k, j);
    });
  });

  if (ctx.jwt && !anyJwtClient && ctx.clients.length > 0) {
    warn(["sessions", "jwt"], "no client sets auth.jwt: true, so no session will be accepted", "key");
  }
}

/**
 * A key no client names is fetched (and readiness ignores it) but never sent: a leftover from a
 * rotation or a removed application, which MythIQ's guide says to revoke.
 */
function checkUnusedKeys(keys: Obj | undefined, clients: unknown[], warn: Report): void {
  if (!keys) return;
  const used = new Set<string>();
  for (const c of clients) {
    if (!isObj(c)) continue;
    const name = has(c, "key") ? str(c.key) : "default";
    if (name !== undefined) used.add(name);
  }
  for (const name of Object.keys(keys)) {
    if (!used.has(name)) {
      warn(["keys", name], `no client uses key ${JSON.stringify(name)}: if no application needs it any more, remove it here and revoke it at MythIQ`, "key");
    }
  }
}

/** Header names an export may carry: HTTP tokens, minus the ones the exporter sets itself. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$/;
const EXPORTER_HEADERS = new Set(["content-type", "content-length", "content-encoding", "transfer-encoding", "host", "connection", "user-agent"]);

function checkTracing(tracing: Obj, data: Obj, clients: unknown[], err: Report, warn: Report): void {
  const headers = isObj(tracing.headers) ? tracing.headers : {};
  for (const name of Object.keys(headers)) {
    if (!HEADER_NAME.test(name)) err(["tracing", "headers", name], `${JSON.stringify(name)} is not an HTTP header name`, "key");
    else if (EXPORTER_HEADERS.has(name.toLowerCase())) err(["tracing", "headers", name], `${name} is set by the exporter itself`, "key");
  }
  const endpoint = str(tracing.endpoint);
  const checked = endpoint === undefined ? undefined : checkUrl(endpoint, { what: "the tracing endpoint", form: "path" });
  if (checked?.ok) {
    if (checked.value.insecure && Object.keys(headers).length > 0) {
      warn(["tracing", "endpoint"], "uses http:// while headers are set: they travel unencrypted (use https://, or keep the collector on the pod's network)");
    }
    if (!checked.value.href.endsWith("/v1/traces")) {
      warn(["tracing", "endpoint"], "does not end in /v1/traces, where OTLP/HTTP collectors receive traces: write the full traces URL");
    }
  }
  const trust = tracing.trust_incoming;
  if (trust === "trusted_proxies" && (list(data.trusted_proxies) ?? []).length === 0) {
    warn(["tracing", "trust_incoming"], "trusted_proxies is empty, so no caller's trace is continued");
  }
  const clientIds = list(trust);
  if (clientIds) {
    const ids = new Set(clients.filter(isObj).map((c) => str(c.id)));
    clientIds.forEach((id, i) => {
      if (typeof id === "string" && checkName(id).ok && !ids.has(id)) {
        err(["tracing", "trust_incoming", i], `${JSON.stringify(id)} is not the id of a client`);
      }
    });
  }
}

function isEveryAddress(text: string): boolean {
  const parsed = parseCidr(text);
  return parsed.ok && parsed.value.prefix === 0;
}

function checkLimits(limits: unknown, err: Report, warn: Report): void {
  if (!isObj(limits)) return;
  const redis = isObj(limits.redis) ? limits.redis : undefined;
  if (limits.store === "redis" && !has(limits, "redis")) {
    err(["limits", "store"], "store: redis needs redis.url, redis.sentinels (with name) or redis.cluster (e.g. redis: { url: {env: REDIS_URL} })");
  }
  if (redis && (limits.store ?? "memory") === "memory") {
    warn(["limits", "redis"], "is ignored while store is memory", "key");
  }
  if (redis) checkRedisTopology(redis, err);
}

/** Where the shared limits live: exactly one of one Redis, Sentinel, or Cluster, with what each needs. */
function checkRedisTopology(redis: Obj, err: Report): void {
  const base = ["limits", "redis"];
  const modes = (["url", "sentinels", "cluster"] as const).filter((k) => has(redis, k));
  if (modes.length === 0) {
    err(base, "needs one of url (one Redis), sentinels with name (Sentinel) or cluster (Redis Cluster)", "key");
  }
  for (const extra of modes.slice(1)) {
    err([...base, extra], "url, sentinels and cluster are alternatives: give exactly one (url for one Redis, sentinels with name for Sentinel, cluster for Redis Cluster)", "key");
  }
  const sentinels = has(redis, "sentinels");
  if (sentinels && !has(redis, "name")) {
    err([...base, "sentinels"], "needs name: the master group the sentinels watch (e.g. name: mymaster)", "key");
  }
  for (const key of ["name", "sentinel_username", "sentinel_password"]) {
    if (has(redis, key) && !sentinels) err([...base, key], "is for Sentinel only: it goes with sentinels", "key");
  }
}

function checkServer(server: unknown, err: Report): void {
  if (!isObj(server)) return;
  const headers = dur(server.headers_timeout ?? "10s");
  const request = dur(server.request_timeout ?? "60s");
  if (headers !== undefined && request !== undefined && headers > request) {
    err(
      has(server, "headers_timeout") ? ["server", "headers_timeout"] : ["server", "request_timeout"],
      "headers_timeout must not be longer than request_timeout (Node refuses to start otherwise)",
    );
  }
}
