// Observability of the whole proxy (SPEC §7), over real sockets: realistic traffic (allowed calls,
// refusals of every stage, upstream failures, a stream, a key that fails and rotates, reloads)
// through `startTestProxy`, then
// - the admin port's scrape passes `promtool check metrics`, has every SPEC metric, and every label
//   value in it comes from the config or a fixed set;
// - the counters agree with what the callers saw (statuses, refusal reasons, upstream reasons);
// - the log has one audit line per request with SPEC's fields, and every other line is an event
//   with `level` and `msg`;
// - no key, client token, cookie, JWT, Vault token or query value appears in the log, the scrape or
//   a response (the harness logger does not redact, so nothing was scrubbed on the way).
import t from "tap";
import { parse } from "yaml";
import { hashToken } from "../../src/cli/hash-token.ts";
import { builtinSources } from "../../src/keys/sources.ts";
import { fingerprint } from "../../src/keys/validate-key.ts";
import { VERSION } from "../../src/version.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { send, type ClientResponse } from "../helpers/forward-harness.ts";
import { createScriptedSource, type ScriptedSource } from "../helpers/keys-fakes.ts";
import { allowedFromConfig, promtool, unboundedLabels } from "../helpers/observe-checks.ts";
import { find, parseScrape, valueOf, type Scrape } from "../helpers/prom-text.ts";
import { startTestProxy, TEST_KEY, TOKEN, TOKEN_HASH, waitReady, type TestProxy } from "../helpers/proxy-harness.ts";
import { sendRaw } from "../helpers/raw-http.ts";

const VAULT_KEY_1 = "mq-vault-first-5b7d9f1a3c5e7b9d1f3a5c7e";
const VAULT_KEY_2 = "mq-vault-second-8e6c4a2f0d8b6f4d2b0e8c6a";
const BATCH_TOKEN = "tok-batch-fedcba9876543210";
const VAULT_TOKEN = "hvs.CAESIvaulttokendonotlog0123456789";
const JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImNsaWVudCI6IndlYiJ9.c2lnbmF0dXJlZG9ub3Rsb2cxMjM0NTY3ODkw";
const CSRF = "csrf-value-do-not-log-4242";
const CALLER_API_KEY = "caller-x-api-key-do-not-log-77";
const PROXY_AUTH = "Basic cHJveHl1c2VyOnByb3h5cGFzc2Rvbm90bG9n";
const QUERY_SECRET = "cursor-do-not-log-9931";
const WRONG_TOKENS = ["tok-wrong-aaaaaaaaaaaaaaaa", "sk-guess-bbbbbbbbbbbbbbbbbbbb"];

/** Every value that must never be written anywhere: whole, and in halves (no partial leak either). */
const SECRETS = [TEST_KEY, VAULT_KEY_1, VAULT_KEY_2, TOKEN, BATCH_TOKEN, VAULT_TOKEN, JWT, ...JWT.split("."), CSRF, CALLER_API_KEY, PROXY_AUTH.slice(6), QUERY_SECRET, ...WRONG_TOKENS];
const SECRET_PIECES = SECRETS.flatMap((s) => [s, s.slice(0, Math.ceil(s.length / 2)), s.slice(Math.floor(s.length / 2))]);

const AUDIT_FIELDS = ["time", "request_id", "client", "subject", "ip", "origin", "method", "route", "path", "model", "status", "reason", "key", "key_fingerprint", "duration_ms", "upstream_ms", "bytes_in", "bytes_out", "check"];

function yaml(upstreamUrl: string, extraRoute = ""): string {
  return `
listen: { host: 127.0.0.1, port: 8080 }
admin: { host: 127.0.0.1, port: 9090 }
trusted_proxies: [127.0.0.0/8]
upstream:
  url: ${upstreamUrl}
  allow_insecure_upstream: true
  connect_timeout: 2s
  response_timeout: 1s
  idle_timeout: 5s
keys:
  default: { source: env, env: MYTHIQ_API_KEY }
  vaulted:
    source: vault
    vault:
      address: http://127.0.0.1:8200
      auth: { method: token, token: { env: VAULT_TOKEN } }
      path: mythiq/batch
      field: api_key
    refresh: { interval: 1h, max_stale: 24h }
clients:
  - id: web
    auth: { tokens: ["${TOKEN_HASH}"] }
    routes:
      - GET /v1/models
      - GET /v1/models/{id}
      - POST /v1/images/generations
      - GET /v1/generations?limit&after${extraRoute}
    max_body: 1KiB
    budget: { daily_usd: 5 }
  - id: batch
    key: vaulted
    auth: { tokens: ["${hashToken(BATCH_TOKEN)}"] }
    routes: [POST /v1/images/generations]
    max_body: 4KiB
  - id: local
    auth: { anonymous: true }
    origins: [http://localhost:3000]
    networks: [127.0.0.0/8, ::1/128]
    routes: [GET /v1/models]
pricing: { stability/sdxl: 0.004, default: 0.01 }
audit: { enabled: true, include_subject: true }
`;
}

let upstream: FakeUpstream;
let vault: ScriptedSource;
let proxy: TestProxy;

/** What a caller saw. `id` is the x-request-id (absent on replies of the HTTP parser itself). */
interface Seen {
  readonly status: number;
  readonly reason: string | undefined;
  readonly id: string | undefined;
  readonly raw: string;
  readonly body: string;
  readonly complete: boolean;
  readonly label: string;
}
const seen: Seen[] = [];

function record(label: string, res: { status: number; headers: Record<string, unknown>; body: string; raw: string; complete: boolean }): Seen {
  let reason: string | undefined;
  try {
    const parsed = JSON.parse(res.body) as { reason?: unknown };
    if (typeof parsed.reason === "string") reason = parsed.reason;
  } catch {
    // Not JSON: an upstream body or a stream.
  }
  const id = res.headers["x-request-id"];
  const entry = { status: res.status, reason, id: typeof id === "string" ? id : undefined, raw: res.raw, body: res.body, complete: res.complete, label };
  seen.push(entry);
  return entry;
}

async function call(label: string, options: Parameters<typeof send>[1]): Promise<Seen> {
  const res: ClientResponse = await send(proxy.port, options);
  return record(label, { status: res.status, headers: res.headers, body: res.body.toString("utf8"), raw: res.raw.toString("latin1"), complete: res.complete });
}

async function callRaw(label: string, data: string): Promise<Seen> {
  const res = await sendRaw(proxy.port, data, { finals: 1 });
  const final = res.responses.find((r) => r.status >= 200);
  return record(label, { status: final?.status ?? 0, headers: final?.headers ?? {}, body: final?.body ?? "", raw: res.raw, complete: final !== undefined });
}

/** Resolves once a log line satisfies `match` (events are written synchronously with the change they report). */
async function logLine(match: (line: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const line = proxy.logs.find(match);
    if (line !== undefined) return line;
    if (Date.now() > deadline) throw new Error(`no log line: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function scrape(): Promise<{ text: string; scrape: Scrape }> {
  const res = await proxy.admin("/metrics");
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return { text: res.body, scrape: parseScrape(res.body) };
}

const auth = { authorization: `Bearer ${TOKEN}` };
const json = (body: unknown) => {
  const text = JSON.stringify(body);
  return { body: text, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(text) } };
};

t.before(async () => {
  upstream = await startFakeUpstream();
  vault = createScriptedSource("vault", { value: VAULT_KEY_1, version: "1" });
  proxy = await startTestProxy({
    yaml: yaml(upstream.url),
    env: { MYTHIQ_API_KEY: TEST_KEY, VAULT_TOKEN },
    sources: { ...builtinSources, vault: () => vault },
  });
  await waitReady(proxy);
});
t.teardown(async () => {
  await proxy.close();
  await upstream.close();
});

void t.test("realistic traffic", async (t) => {
  // Allowed calls, carrying everything a browser or SDK might add that must never be logged.
  const noisy = {
    ...auth,
    cookie: `session=${JWT}; csrftoken=${CSRF}`,
    "x-api-key": CALLER_API_KEY,
    "proxy-authorization": PROXY_AUTH,
    "x-forwarded-for": "198.51.100.1, 203.0.113.7",
  };
  for (let i = 0; i < 3; i++) t.equal((await call("models", { path: "/v1/models", headers: noisy })).status, 200);
  t.equal((await call("one model", { path: "/v1/models/sdxl", headers: auth })).status, 200);
  t.equal((await call("generations with a query", { path: `/v1/generations?limit=5&after=${QUERY_SECRET}`, headers: auth })).status, 200);
  const generation = json({ model: "stability/sdxl", prompt: "a lighthouse at dusk" });
  t.equal((await call("generate", { method: "POST", path: "/v1/images/generations", headers: { ...auth, ...generation.headers }, body: generation.body })).status, 200);
  t.equal(
    (await call("generate (vault key)", { method: "POST", path: "/v1/images/generations", headers: { authorization: `Bearer ${BATCH_TOKEN}`, ...generation.headers }, body: generation.body })).status,
    200,
  );
  t.equal(upstream.requests.at(-1)?.headers["authorization"], `Bearer ${VAULT_KEY_1}`, "the vault key was injected");
  t.equal((await call("anonymous", { path: "/v1/models", headers: { origin: "http://localhost:3000" } })).status, 200);
  upstream.reply({ type: "sse", events: [{ data: '{"progress":0.5}' }, { data: "[DONE]" }] });
  const stream = await call("stream", { method: "POST", path: "/v1/images/generations", headers: { ...auth, ...generation.headers }, body: generation.body });
  t.equal(stream.status, 200);
  t.match(stream.body, /\[DONE\]/);
  const preflight = await call("preflight", {
    method: "OPTIONS",
    path: "/v1/models",
    headers: { origin: "http://localhost:3000", "access-control-request-method": "GET" },
  });
  t.equal(preflight.status, 204);

  // Refusals at every stage.
  for (const wrong of WRONG_TOKENS) t.equal((await call("wrong token", { path: "/v1/models", headers: { authorization: `Bearer ${wrong}` } })).reason, "invalid_credentials");
  t.equal((await call("a JWT as bearer", { path: "/v1/models", headers: { authorization: `Bearer ${JWT}`, cookie: `session=${JWT}` } })).status, 401);
  t.equal((await call("no credential", { path: "/v1/models", headers: { origin: "https://evil.example", cookie: `session=${JWT}` } })).status, 401);
  t.equal((await call("route", { method: "DELETE", path: "/v1/models/sdxl", headers: auth })).reason, "route_not_allowed");
  t.equal((await call("route of another client", { path: "/v1/models", headers: { authorization: `Bearer ${BATCH_TOKEN}` } })).reason, "route_not_allowed");
  t.equal((await call("query", { path: `/v1/generations?debug=${QUERY_SECRET}`, headers: auth })).reason, "query_not_allowed");
  t.equal((await call("preflight from elsewhere", { method: "OPTIONS", path: "/v1/models", headers: { origin: "https://evil.example", "access-control-request-method": "GET" } })).status, 403);
  t.equal(
    (await callRaw("too large", `POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n`)).reason,
    "body_too_large",
  );
  t.equal((await callRaw("path", `GET /v1/models/../admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`)).reason, "invalid_path");
  t.equal((await callRaw("trace", `TRACE /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`)).status, 405);
  t.equal((await callRaw("parser", `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nNot A Header\r\n\r\n`)).reason, "malformed_request");

  // The upstream failing in every way the proxy names, and errors it passes through.
  upstream.reply({ type: "unauthorized", reveal: true });
  t.equal((await call("key refused", { path: "/v1/models", headers: auth })).reason, "upstream_auth_failed");
  upstream.reply({ type: "echo", status: 500 });
  t.equal((await call("leak", { path: "/v1/models", headers: auth })).reason, "upstream_leak");
  upstream.reply({ type: "reset" });
  t.equal((await call("reset", { path: "/v1/models", headers: auth })).reason, "upstream_reset");
  upstream.reply({ type: "redirect", location: "https://elsewhere.example/" });
  t.equal((await call("redirect", { path: "/v1/models", headers: auth })).reason, "upstream_redirect");
  upstream.reply({ type: "stall" });
  t.equal((await call("timeout", { path: "/v1/models", headers: auth })).reason, "upstream_timeout");
  upstream.reply({ type: "json", status: 503, body: { success: false, message: "busy" } });
  t.equal((await call("MythIQ 503", { path: "/v1/models", headers: auth })).status, 503);
  upstream.reply({ type: "json", status: 429, body: { success: false, message: "slow down" } });
  t.equal((await call("MythIQ 429", { path: "/v1/models", headers: auth })).status, 429);
});

void t.test("the vault key fails to refresh, then rotates; requests follow the new key", async (t) => {
  vault.script(new Error("permission denied (403) reading secret/mythiq/batch"));
  vault.change();
  await logLine((l) => l["msg"] === "key refresh failed" && l["key"] === "vaulted", "key refresh failed");
  vault.script({ value: VAULT_KEY_2, version: "2" });
  vault.change();
  const rotated = await logLine((l) => l["msg"] === "key rotated" && l["key"] === "vaulted", "key rotated");
  t.equal(rotated["fingerprint"], fingerprint(VAULT_KEY_2));
  t.equal(rotated["previous_fingerprint"], fingerprint(VAULT_KEY_1));
  const body = json({ model: "stability/sdxl", prompt: "after the rotation" });
  const res = await call("generate (rotated key)", { method: "POST", path: "/v1/images/generations", headers: { authorization: `Bearer ${BATCH_TOKEN}`, ...body.headers }, body: body.body });
  t.equal(res.status, 200);
  t.equal(upstream.requests.at(-1)?.headers["authorization"], `Bearer ${VAULT_KEY_2}`);
});

void t.test("a rejected and an applied reload", async (t) => {
  proxy.writeConfig(yaml(upstream.url) + "\nno_such_key: 1\n");
  t.equal(await proxy.proxy.reload("test"), "rejected");
  proxy.writeConfig(yaml(upstream.url, "\n      - GET /v1/files"));
  t.equal(await proxy.proxy.reload("test"), "applied");
  t.equal((await call("new route", { path: "/v1/files", headers: auth })).status, 200);
});

void t.test("promtool check metrics accepts the scrape", async (t) => {
  const { text } = await scrape();
  const { code, output } = await promtool(["check", "metrics"], text);
  t.equal(output, "", "promtool reports no problem");
  t.equal(code, 0);
});

void t.test("every SPEC metric (and the config gauges) is on the admin port", async (t) => {
  const { scrape: s } = await scrape();
  const expected: Record<string, string> = {
    requests_total: "counter",
    request_duration_seconds: "histogram",
    upstream_duration_seconds: "histogram",
    denied_total: "counter",
    upstream_errors_total: "counter",
    inflight_requests: "gauge",
    request_bytes_total: "counter",
    response_bytes_total: "counter",
    estimated_cost_usd_total: "counter",
    key_refresh_total: "counter",
    key_age_seconds: "gauge",
    key_info: "gauge",
    key_rotations_total: "counter",
    config_reloads_total: "counter",
    config_info: "gauge",
    build_info: "gauge",
    key_refresh_interval_seconds: "gauge",
    key_max_stale_seconds: "gauge",
    budget_daily_usd: "gauge",
    budget_spent_usd: "gauge",
  };
  for (const [name, type] of Object.entries(expected)) t.equal(s.types.get(`mythiq_proxy_${name}`), type, name);
  for (const name of ["process_cpu_user_seconds_total", "process_resident_memory_bytes", "nodejs_eventloop_lag_seconds"]) t.ok(s.types.has(name), name);
});

void t.test("every label value comes from the config or a fixed set", async (t) => {
  const { scrape: s, text } = await scrape();
  const config = proxy.proxy.compiled().config;
  const allowed = allowedFromConfig(config, {
    fingerprints: [fingerprint(TEST_KEY), fingerprint(VAULT_KEY_2)],
    versions: ["", "2"],
    hashes: [proxy.proxy.compiled().hash],
    build: [VERSION, process.version],
  });
  t.same(unboundedLabels(s, allowed), [], "no label value outside the config");
  for (const leaked of ["/v1/models/sdxl", "/admin", "elsewhere.example", "evil.example", "203.0.113.7", "198.51.100.1", "localhost:3000", "DELETE /v1/models/sdxl", "TRACE"]) {
    t.notOk(text.includes(leaked), `${leaked} is not a label`);
  }
});

void t.test("the counters agree with what the callers saw", async (t) => {
  const { scrape: s } = await scrape();
  const handled = seen.filter((x) => x.id !== undefined);
  t.same(seen.filter((x) => x.id === undefined).map((x) => x.label), [], "every response carries a request id, the parser's refusals included");

  const sum = (name: string, match: Record<string, string> = {}) => find(s, name, match).reduce((n, x) => n + x.value, 0);
  t.equal(sum("mythiq_proxy_requests_total"), handled.length, "requests_total counts every request the handler answered");
  const byStatus = new Map<number, number>();
  for (const x of handled) byStatus.set(x.status, (byStatus.get(x.status) ?? 0) + 1);
  for (const [status, n] of byStatus) t.equal(sum("mythiq_proxy_requests_total", { status: String(status) }), n, `status ${status}`);

  const local = seen.filter((x) => x.reason !== undefined && !x.reason.startsWith("upstream_"));
  const byReason = new Map<string, number>();
  for (const x of local) byReason.set(x.reason!, (byReason.get(x.reason!) ?? 0) + 1);
  t.equal(sum("mythiq_proxy_denied_total"), local.length, "denied_total counts every local refusal, parser's included");
  for (const [reason, n] of byReason) t.equal(sum("mythiq_proxy_denied_total", { reason }), n, `denied ${reason}`);
  t.equal(sum("mythiq_proxy_denied_total", { client: "web", reason: "route_not_allowed" }), 1, "refusals of identified callers carry their client");
  t.equal(sum("mythiq_proxy_denied_total", { client: "unknown", reason: "invalid_credentials" }), 3);

  for (const reason of ["upstream_auth_failed", "upstream_leak", "upstream_reset", "upstream_redirect", "upstream_timeout"]) {
    t.equal(valueOf(s, "mythiq_proxy_upstream_errors_total", { reason }), 1, reason);
  }
  t.equal(valueOf(s, "mythiq_proxy_upstream_errors_total", { reason: "upstream_unreachable" }), 0, "known reasons start at 0");
  t.equal(sum("mythiq_proxy_requests_total", { client: "web", route: "GET /v1/models", status: "502" }), 4);
  t.equal(sum("mythiq_proxy_requests_total", { client: "web", route: "GET /v1/files", status: "200" }), 1, "a route added by a reload is a label");
  t.equal(sum("mythiq_proxy_requests_total", { client: "batch", route: "POST /v1/images/generations", status: "200" }), 2);
  t.equal(sum("mythiq_proxy_requests_total", { client: "local", status: "200" }), 1);
  t.equal(sum("mythiq_proxy_request_duration_seconds_count"), handled.length, "one duration per request");
  t.ok(sum("mythiq_proxy_upstream_duration_seconds_count") >= 12, "upstream time of forwarded requests");
  t.ok(sum("mythiq_proxy_request_bytes_total", { client: "web" }) > 0 && sum("mythiq_proxy_response_bytes_total", { client: "web" }) > 0, "bytes");
  t.same(
    find(s, "mythiq_proxy_inflight_requests").map((x) => [x.labels["client"], x.value]),
    [["web", 0], ["batch", 0], ["local", 0]],
    "nothing in flight, one series per client",
  );
});

void t.test("key, config and build series", async (t) => {
  const { scrape: s } = await scrape();
  t.same(
    find(s, "mythiq_proxy_key_info").map((x) => x.labels),
    [
      { key: "default", source: "env", fingerprint: fingerprint(TEST_KEY), version: "" },
      { key: "vaulted", source: "vault", fingerprint: fingerprint(VAULT_KEY_2), version: "2" },
    ],
    "one key_info per key: the value held now",
  );
  t.equal(valueOf(s, "mythiq_proxy_key_rotations_total", { key: "vaulted" }), 1);
  t.equal(valueOf(s, "mythiq_proxy_key_rotations_total", { key: "default" }), 0);
  t.equal(valueOf(s, "mythiq_proxy_key_refresh_total", { key: "vaulted", result: "changed" }), 2);
  t.equal(valueOf(s, "mythiq_proxy_key_refresh_total", { key: "vaulted", result: "failed" }), 1);
  t.ok((valueOf(s, "mythiq_proxy_key_refresh_total", { key: "default", result: "changed" }) ?? 0) >= 1);
  for (const key of ["default", "vaulted"]) {
    const age = valueOf(s, "mythiq_proxy_key_age_seconds", { key }) ?? -1;
    t.ok(age >= 0 && age < 60, `${key} age ${age}`);
  }
  t.equal(valueOf(s, "mythiq_proxy_key_refresh_interval_seconds", { key: "default" }), 300);
  t.equal(valueOf(s, "mythiq_proxy_key_refresh_interval_seconds", { key: "vaulted" }), 3600);
  t.equal(valueOf(s, "mythiq_proxy_key_max_stale_seconds", { key: "default" }), 0);
  t.equal(valueOf(s, "mythiq_proxy_key_max_stale_seconds", { key: "vaulted" }), 86_400);
  t.same(find(s, "mythiq_proxy_budget_daily_usd").map((x) => [x.labels["client"], x.value]), [["web", 5]]);
  t.same(find(s, "mythiq_proxy_budget_spent_usd").map((x) => x.labels["client"]), ["web"]);
  const webCost = find(s, "mythiq_proxy_estimated_cost_usd_total", { client: "web" }).reduce((n, x) => n + x.value, 0);
  t.ok(Math.abs((valueOf(s, "mythiq_proxy_budget_spent_usd", { client: "web" }) ?? -1) - webCost) < 1e-9, "today's spend is the cost counted today");
  t.equal(valueOf(s, "mythiq_proxy_config_reloads_total", { result: "applied" }), 1);
  t.equal(valueOf(s, "mythiq_proxy_config_reloads_total", { result: "rejected" }), 1);
  t.same(find(s, "mythiq_proxy_config_info").map((x) => x.labels["hash"]), [proxy.proxy.compiled().hash], "only the config in force");
  t.equal(valueOf(s, "mythiq_proxy_build_info", { version: VERSION, node: process.version }), 1);
  // SPEC §11: which application used which key, and when each key was last used.
  t.ok((valueOf(s, "mythiq_proxy_key_requests_total", { key: "default", client: "web" }) ?? 0) > 0, "web used the default key");
  t.ok((valueOf(s, "mythiq_proxy_key_requests_total", { key: "vaulted", client: "batch" }) ?? 0) > 0, "batch used the vaulted key");
  t.equal(find(s, "mythiq_proxy_key_requests_total", { key: "vaulted", client: "web" }).length, 0, "no series for a pair the config does not make");
  const sentWithKey = proxy.logs.filter((l) => !("msg" in l) && l["key_fingerprint"] !== null).length;
  t.equal(find(s, "mythiq_proxy_key_requests_total").reduce((n, x) => n + x.value, 0), sentWithKey, "one per audit line whose request was sent with a key");
  const lastUsed = valueOf(s, "mythiq_proxy_key_last_used_timestamp_seconds", { key: "default" }) ?? 0;
  t.ok(Math.abs(lastUsed - Date.now() / 1000) < 120, "the default key was used just now");
  t.equal(valueOf(s, "mythiq_proxy_trace_spans_dropped_total", { reason: "export_failed" }), 0, "tracing off: nothing dropped");
});

void t.test("one audit line per request, with SPEC's fields, matching what the caller saw", (t) => {
  const audits = proxy.logs.filter((l) => !("msg" in l));
  const events = proxy.logs.filter((l) => "msg" in l);
  t.equal(audits.length + events.length, proxy.logs.length);
  for (const a of audits) t.same(Object.keys(a), AUDIT_FIELDS, "exactly SPEC's fields, in SPEC's order, then check (no trace_id: tracing is off)");
  const handled = seen.filter((x) => x.id !== undefined);
  t.equal(audits.length, handled.length, "one audit line per request the handler answered");
  const byId = new Map(audits.map((a) => [a["request_id"] as string, a]));
  t.equal(byId.size, audits.length, "request ids are unique");
  for (const x of handled) {
    const a = byId.get(x.id!);
    if (a === undefined) {
      t.fail(`${x.label}: no audit line for ${x.id}`);
      continue;
    }
    t.equal(a["status"], x.status, `${x.label}: status`);
    t.equal(a["reason"], x.reason ?? null, `${x.label}: reason`);
    if (a["reason"] === null) t.equal(a["check"], null, `${x.label}: no check without a refusal`);
    else t.type(a["check"], "string", `${x.label}: a refusal names its check`);
    t.match(a["time"], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    t.ok(typeof a["duration_ms"] === "number" && (a["duration_ms"]) >= 0, `${x.label}: duration_ms`);
    t.equal(a["subject"], null, "no session, no subject");
    t.notMatch(String(a["path"]), /\?/, `${x.label}: the query string is never logged`);
  }

  const models = handled.filter((x) => x.label === "models").map((x) => byId.get(x.id!)!);
  t.equal(models.length, 3);
  for (const a of models) {
    t.match(a, {
      client: "web",
      ip: "203.0.113.7",
      origin: null,
      method: "GET",
      route: "GET /v1/models",
      path: "/v1/models",
      status: 200,
      reason: null,
      key: "default",
      key_fingerprint: fingerprint(TEST_KEY),
      bytes_in: 0,
    });
    t.type(a["upstream_ms"], "number");
  }
  const forwarded = handled.filter((x) => x.status === 200 && x.complete);
  for (const x of forwarded) t.equal(byId.get(x.id!)!["bytes_out"], Buffer.byteLength(x.body), `${x.label}: bytes_out is the body sent`);
  const generate = byId.get(handled.find((x) => x.label === "generate")!.id!)!;
  t.equal(generate["bytes_in"], Buffer.byteLength(JSON.stringify({ model: "stability/sdxl", prompt: "a lighthouse at dusk" })));
  t.equal(byId.get(handled.find((x) => x.label === "generate (vault key)")!.id!)!["key_fingerprint"], fingerprint(VAULT_KEY_1));
  t.equal(byId.get(handled.find((x) => x.label === "generate (rotated key)")!.id!)!["key_fingerprint"], fingerprint(VAULT_KEY_2), "the audit names the key actually sent");
  t.match(byId.get(handled.find((x) => x.label === "anonymous")!.id!)!, { client: "local", origin: "http://localhost:3000", ip: "127.0.0.1" });
  t.match(byId.get(handled.find((x) => x.label === "route")!.id!)!, { client: "web", key: "default", key_fingerprint: null, upstream_ms: null, route: null, check: "route" });
  t.match(byId.get(handled.find((x) => x.label === "wrong token")!.id!)!, { client: null, key: null, key_fingerprint: null, check: "identity" });
  t.match(byId.get(handled.find((x) => x.label === "trace")!.id!)!, { client: null, method: "TRACE", path: "/v1/models", status: 405, check: "framing" });
  t.match(byId.get(handled.find((x) => x.label === "generations with a query")!.id!)!, { path: "/v1/generations", route: "GET /v1/generations" });
  t.end();
});

void t.test("every other line is an event with time, level and msg", (t) => {
  const events = proxy.logs.filter((l) => "msg" in l);
  for (const e of events) {
    t.match(e["time"], /^\d{4}-\d\d-\d\dT/, "time");
    t.ok(["debug", "info", "warn", "error"].includes(e["level"] as string), `level of "${String(e["msg"])}"`);
    t.type(e["msg"], "string");
  }
  const msgs = events.map((e) => e["msg"]);
  for (const msg of ["started", "key loaded", "key refresh failed", "key rotated", "config reloaded"]) t.ok(msgs.includes(msg), `event "${msg}"`);
  t.ok(
    events.some((e) => e["msg"] === "config reload rejected, keeping the running config" && e["level"] === "error"),
    "a rejected reload is an error event",
  );
  const failed = events.find((e) => e["msg"] === "key refresh failed")!;
  t.match(failed, { level: "warn", key: "vaulted", source: "vault", serving: fingerprint(VAULT_KEY_1) }, "says which key is still served, by fingerprint");
  t.end();
});

void t.test("no secret reached the log, the scrape or a response", async (t) => {
  const { text } = await scrape();
  const log = proxy.rawLog();
  const responses = seen.map((x) => x.raw).join("\n");
  for (const piece of SECRET_PIECES) {
    t.notOk(log.includes(piece), `log: no ${piece.slice(0, 6)}…`);
    t.notOk(text.includes(piece), `scrape: no ${piece.slice(0, 6)}…`);
    t.notOk(responses.includes(piece), `responses: no ${piece.slice(0, 6)}…`);
  }
  t.ok(log.length > 10_000, "the log is not empty (the scan is real)");
});

void t.test("stopping logs draining and stopped, still without secrets", async (t) => {
  await proxy.proxy.stop("SIGTERM");
  const msgs = proxy.logs.filter((l) => "msg" in l).map((l) => l["msg"]);
  t.ok(msgs.includes("draining"));
  t.ok(msgs.includes("stopped"));
  const log = proxy.rawLog();
  for (const piece of SECRET_PIECES) t.notOk(log.includes(piece));
});

void t.test("audit settings: include_subject false drops the field; enabled false writes no audit line", async (t) => {
  const base = parse(yaml(upstream.url)) as Record<string, unknown>;
  for (const audit of [{ enabled: true, include_subject: false }, { enabled: false, include_subject: true }]) {
    const other = await startTestProxy({
      yaml: JSON.stringify({ ...base, audit }),
      env: { MYTHIQ_API_KEY: TEST_KEY, VAULT_TOKEN },
      sources: { ...builtinSources, vault: () => createScriptedSource("vault", { value: VAULT_KEY_1, version: "1" }) },
    });
    try {
      await waitReady(other);
      t.equal((await send(other.port, { path: "/v1/models", headers: auth })).status, 200);
      t.equal((await send(other.port, { path: "/v1/models", headers: { authorization: `Bearer ${WRONG_TOKENS[0]}` } })).status, 401);
      const audits = other.logs.filter((l) => !("msg" in l));
      if (audit.enabled) {
        t.equal(audits.length, 2);
        for (const a of audits) t.same(Object.keys(a), AUDIT_FIELDS.filter((f) => f !== "subject"), "no subject field at all");
      } else {
        t.equal(audits.length, 0, "no audit line");
        const s = parseScrape((await other.admin("/metrics")).body);
        t.equal(find(s, "mythiq_proxy_requests_total").reduce((n, x) => n + x.value, 0), 2, "metrics still count");
      }
    } finally {
      await other.close();
    }
  }
});
