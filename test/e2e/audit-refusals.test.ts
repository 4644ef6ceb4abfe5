// Audit lines of refusals (SPEC §11): every refusal names the check that refused (docs/observability.md
// lists the values), and a model_not_allowed or budget_exhausted line names the model asked for,
// cut to 128 characters. Over real sockets; MythIQ receives nothing for a refusal, and no byte of
// the key comes back.
import t from "tap";
import { hashToken } from "../../src/cli/hash-token.ts";
import { builtinSources } from "../../src/keys/sources.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { send } from "../helpers/forward-harness.ts";
import { createScriptedSource } from "../helpers/keys-fakes.ts";
import { configHead, startTestProxy, TEST_KEY, TOKEN, TOKEN_HASH, type LogLine } from "../helpers/proxy-harness.ts";
import { sendRaw } from "../helpers/raw-http.ts";

const LIMITED = "tok-limited-0011223344556677";
const STUCK = "tok-stuck-8899aabbccddeeff";
const WALLED = "tok-walled-1357924680abcdef";

void t.test("every refusal names its check; model refusals name the model asked for", async (t) => {
  const upstream = await startFakeUpstream();
  const proxy = await startTestProxy({
    yaml: `${configHead(upstream.url)}  stuck:
    source: vault
    vault: { address: http://127.0.0.1:8200, auth: { method: token, token: { env: VAULT_TOKEN } }, path: p, field: f }
clients:
  - id: web
    auth: { tokens: ["${TOKEN_HASH}"] }
    origins: [https://app.example.com]
    routes: [GET /v1/models, POST /v1/images/generations]
    models: [stability/sdxl]
    max_body: 1KiB
    budget: { daily_usd: 0.005 }
  - id: limited
    auth: { tokens: ["${hashToken(LIMITED)}"] }
    networks: [127.0.0.0/8]
    routes: [GET /v1/models]
    rate_limit: { requests: 1, per: 1h }
  - id: walled
    auth: { tokens: ["${hashToken(WALLED)}"] }
    networks: [192.0.2.0/24]
    routes: [GET /v1/models]
  - id: stuck
    key: stuck
    auth: { tokens: ["${hashToken(STUCK)}"] }
    routes: [GET /v1/models]
pricing: { stability/sdxl: 0.004, default: 0.01 }
`,
    env: { MYTHIQ_API_KEY: TEST_KEY, VAULT_TOKEN: "hvs.x" },
    // The `stuck` key is never fetched: its clients get 503 key_unavailable.
    sources: { ...builtinSources, vault: () => createScriptedSource("vault", "hang") },
  });
  t.teardown(async () => {
    await proxy.close();
    await upstream.close();
  });
  // Readiness waits for the stuck key too; wait for the default key instead.
  await proxy.waitForLog((l) => l["msg"] === "key loaded" && l["key"] === "default");

  const auth = { authorization: `Bearer ${TOKEN}` };
  const json = (body: unknown) => ({ headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify(body) });
  const asked = `openai/${"d".repeat(500)}`;

  // The one allowed request spends 0.004 of the 0.005 budget.
  t.equal((await send(proxy.port, { method: "POST", path: "/v1/images/generations", ...json({ model: "stability/sdxl", prompt: "p" }) })).status, 200);
  t.equal((await send(proxy.port, { path: "/v1/models", headers: { authorization: `Bearer ${LIMITED}` } })).status, 200, "spends the one rate token");
  const forwarded = upstream.requests.length;

  const cases: Array<{ label: string; check: string; reason: string; model?: string; run: () => Promise<{ status: number; id: string | undefined; raw: string }> }> = [
    { label: "no credential", check: "identity", reason: "missing_credentials", run: () => call({ path: "/v1/models" }) },
    { label: "wrong origin", check: "origin", reason: "origin_not_allowed", run: () => call({ path: "/v1/models", headers: { ...auth, origin: "https://evil.example" } }) },
    { label: "wrong network", check: "network", reason: "network_not_allowed", run: () => call({ path: "/v1/models", headers: { authorization: `Bearer ${WALLED}` } }) },
    { label: "wrong route", check: "route", reason: "route_not_allowed", run: () => call({ method: "DELETE", path: "/v1/models", headers: auth }) },
    { label: "query not listed", check: "route", reason: "query_not_allowed", run: () => call({ path: "/v1/models?x=1", headers: auth }) },
    { label: "rate limited", check: "rate_limit", reason: "rate_limited", run: () => call({ path: "/v1/models", headers: { authorization: `Bearer ${LIMITED}` } }) },
    { label: "key not held", check: "key", reason: "key_unavailable", run: () => call({ path: "/v1/models", headers: { authorization: `Bearer ${STUCK}` } }) },
    { label: "model not allowed", check: "body", reason: "model_not_allowed", model: `${asked.slice(0, 114)}...[truncated]`, run: () => call({ method: "POST", path: "/v1/images/generations", ...json({ model: asked, prompt: "p" }) }) },
    { label: "too large", check: "body", reason: "body_too_large", run: () => call({ method: "POST", path: "/v1/images/generations", ...json({ model: "stability/sdxl", prompt: "p".repeat(2000) }) }) },
    { label: "budget exhausted", check: "budget", reason: "budget_exhausted", model: "stability/sdxl", run: () => call({ method: "POST", path: "/v1/images/generations", ...json({ model: "stability/sdxl", prompt: "p" }) }) },
    { label: "preflight from an unknown origin", check: "preflight", reason: "origin_not_allowed", run: () => call({ method: "OPTIONS", path: "/v1/models", headers: { origin: "https://evil.example", "access-control-request-method": "GET" } }) },
    { label: "bad target", check: "target", reason: "invalid_path", run: () => call({ path: "/v1/../v1/models", headers: auth }) },
    { label: "TRACE", check: "framing", reason: "method_not_allowed", run: () => call({ method: "TRACE", path: "/v1/models", headers: auth }) },
    { label: "an upgrade", check: "listener", reason: "method_not_allowed", run: () => raw("GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n") },
  ];

  async function call(options: Parameters<typeof send>[1]) {
    const res = await send(proxy.port, options);
    return { status: res.status, id: res.headers["x-request-id"] as string | undefined, raw: res.raw.toString("latin1") };
  }
  async function raw(data: string) {
    const res = await sendRaw(proxy.port, data, { finals: 1 });
    const final = res.responses.find((r) => r.status >= 200);
    return { status: final?.status ?? 0, id: final?.headers["x-request-id"], raw: res.raw };
  }

  for (const c of cases) {
    const res = await c.run();
    const audit: LogLine | undefined = proxy.logs.find((l) => l["request_id"] === res.id && !("msg" in l));
    if (audit === undefined) {
      t.fail(`${c.label}: no audit line (status ${res.status})`);
      continue;
    }
    t.equal(audit["reason"], c.reason, `${c.label}: reason`);
    t.equal(audit["check"], c.check, `${c.label}: check`);
    if (c.model !== undefined) t.equal(audit["model"], c.model, `${c.label}: the model asked for`);
    t.notOk(res.raw.includes(TEST_KEY), `${c.label}: no byte of the key came back`);
  }
  t.equal(upstream.requests.length, forwarded, "MythIQ received none of the refused requests");
  const models = proxy.logs.filter((l) => !("msg" in l) && typeof l["model"] === "string").map((l) => l["model"] as string);
  t.ok(models.every((m) => m.length <= 128), "no audit line holds a model over 128 characters");
  const allowed = proxy.logs.filter((l) => !("msg" in l) && l["status"] === 200);
  for (const a of allowed) t.equal(a["check"], null, "an answered request names no check");
});
