// The Vault source driven through the real node-vault client against a fake Vault speaking Vault's
// HTTP API: every auth method and KV version, namespaces, ca_file, timeouts that really close the
// connection, token renewal and re-login, and no token, secret id, JWT or key in any error or log.
import t, { type Test } from "tap";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { VaultAuthConfig, VaultKeyConfig } from "../../src/config/types.ts";
import { createSource } from "../../src/keys/sources.ts";
import { createVaultSource } from "../../src/keys/vault-source.ts";
import type { KeySource } from "../../src/keys/types.ts";
import { startFakeVault, type FakeVault, type VaultRecorded } from "../helpers/fake-vault.ts";
import { createFakeClock, createRecordingLogger, refresh, type RecordingLogger } from "../helpers/keys-fakes.ts";

const KEY = "mq-vault-0f1e2d3c4b5a69788796a5b4";
const KEY2 = "mq-vault-rotated-11223344556677889900";
const JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpteXRoaXEifQ.c2lnbmF0dXJlLXBhcnQ";
const ROLE_ID = "role-id-7f3a9c1e-aaaa";
const SECRET_ID = "secret-id-5b2d8e4f-9c1a-4d7e-b6f0-c3a2e1d0f9e8";
const STATIC_TOKEN = "hvs.STATICtoken0123456789abcdefghij";
const TLS_DIR = new URL("./fixtures/tls/", import.meta.url);

const never = (): AbortSignal => new AbortController().signal;
const isLogin = (r: VaultRecorded): boolean => r.path.endsWith("/login");
const isRenew = (r: VaultRecorded): boolean => r.path === "/v1/auth/token/renew-self";
const isRead = (r: VaultRecorded): boolean => !r.path.startsWith("/v1/auth/");

const dir = mkdtempSync(join(tmpdir(), "mythiq-vault-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const jwtFile = join(dir, "sa-token");
writeFileSync(jwtFile, `${JWT}\n`);
const secretIdFile = join(dir, "secret-id");
writeFileSync(secretIdFile, `${SECRET_ID}\n`);
const tokenFile = join(dir, "vault-token");
writeFileSync(tokenFile, STATIC_TOKEN);

/** Every secret a test may have put on the wire: none may appear in an error or a log line. */
function secretsOf(vault: FakeVault): string[] {
  return [KEY, KEY2, JWT, ROLE_ID, SECRET_ID, STATIC_TOKEN, ...vault.issued];
}

function assertNoSecrets(t: Test, vault: FakeVault, texts: string[]): void {
  const all = texts.join("\n");
  const leaked = secretsOf(vault).filter((secret) => all.includes(secret));
  t.same(leaked, [], "no key, token, secret id or JWT in errors or logs");
}

function keyConfig(address: string, auth: VaultAuthConfig, overrides: Partial<VaultKeyConfig["vault"]> = {}, timeout = 2_000): VaultKeyConfig {
  return {
    source: "vault",
    refresh: refresh({ timeout }),
    vault: { address, namespace: "", auth, kv_version: 2, mount: "secret", path: "mythiq/production", field: "api_key", ...overrides },
  };
}

const k8s = (mount = "kubernetes"): VaultAuthConfig => ({ method: "kubernetes", role: "mythiq-proxy", mount, jwt_file: jwtFile });

async function setup(t: Test, options: Parameters<typeof startFakeVault>[0] = {}): Promise<{ vault: FakeVault; logger: RecordingLogger; open: (config: VaultKeyConfig, env?: Record<string, string>) => KeySource }> {
  const vault = await startFakeVault(options);
  t.teardown(() => vault.close());
  vault.kubernetes("kubernetes", { role: "mythiq-proxy", jwt: JWT });
  vault.kv("secret", 2);
  vault.put("secret", "mythiq/production", { api_key: KEY, other: "x" });
  const logger = createRecordingLogger();
  const open = (config: VaultKeyConfig, env: Record<string, string> = {}): KeySource => {
    const source = createVaultSource(config, { logger, env });
    t.teardown(() => source.close?.());
    return source;
  };
  return { vault, logger, open };
}

/** Polls a condition that no event announces (timers planned inside the source). */
async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in 2 s");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

t.test("kubernetes auth with its mount and jwt_file, then a KV v2 read with the token", async (t) => {
  const { vault, logger, open } = await setup(t);
  vault.kubernetes("k8s-prod", { role: "mythiq-proxy", jwt: JWT });
  const source = open(keyConfig(vault.url, k8s("k8s-prod")));
  t.same(await source.fetch(never()), { value: KEY, version: "1" });
  t.same(
    vault.requests.map((r) => `${r.method} ${r.path}`),
    ["POST /v1/auth/k8s-prod/login", "GET /v1/secret/data/mythiq/production"],
  );
  const [login, read] = vault.requests as [VaultRecorded, VaultRecorded];
  t.same(login.body, { role: "mythiq-proxy", jwt: JWT }, "the JWT from the file, trailing newline dropped");
  t.equal(login.headers["x-vault-token"], undefined, "a login carries no token");
  t.equal(read.headers["x-vault-token"], vault.issued[0], "the read carries the token the login returned");
  t.equal(read.headers["x-vault-request"], "true");
  t.equal(read.headers["x-vault-namespace"], undefined);

  // A second fetch reuses the token; a new version is picked up.
  vault.put("secret", "mythiq/production", { api_key: KEY2 });
  t.same(await source.fetch(never()), { value: KEY2, version: "2" }, "a rotated secret is read by the next fetch");
  t.equal(vault.count(isLogin), 1, "no second login while the token is valid");
  t.same(logger.secrets.has(vault.issued[0]!), true, "the token is registered for log redaction");
  assertNoSecrets(t, vault, [logger.text()]);
});

t.test("the default kubernetes mount is sent explicitly: never /v1/auth//login", async (t) => {
  const { vault, open } = await setup(t);
  const source = open(keyConfig(vault.url, k8s()));
  await source.fetch(never());
  t.equal(vault.requests[0]?.path, "/v1/auth/kubernetes/login");
  t.equal(vault.count((r) => r.path.includes("//")), 0);
});

t.test("the service-account token is read again at every login (projected tokens rotate)", async (t) => {
  const { vault, open } = await setup(t);
  const file = join(dir, "rotating-token");
  writeFileSync(file, JWT);
  const source = open(keyConfig(vault.url, { method: "kubernetes", role: "mythiq-proxy", mount: "kubernetes", jwt_file: file }));
  await source.fetch(never());
  const rotated = `${JWT}.rotated`;
  writeFileSync(file, rotated);
  vault.kubernetes("kubernetes", { role: "mythiq-proxy", jwt: rotated });
  vault.revoke(vault.issued[0]!);
  t.same(await source.fetch(never()), { value: KEY, version: "1" }, "a revoked token leads to one fresh login and a read");
  t.same(
    vault.requests.map((r) => `${r.method} ${r.path}`),
    ["POST /v1/auth/kubernetes/login", "GET /v1/secret/data/mythiq/production", "GET /v1/secret/data/mythiq/production", "POST /v1/auth/kubernetes/login", "GET /v1/secret/data/mythiq/production"],
  );
  t.same((vault.requests[3]?.body as { jwt: string }).jwt, rotated);
});

t.test("approle with role_id from {env} and secret_id from {file}, on its default and a custom mount", async (t) => {
  const { vault, logger, open } = await setup(t);
  vault.approle("approle", { role_id: ROLE_ID, secret_id: SECRET_ID });
  vault.approle("apps/approle", { role_id: ROLE_ID, secret_id: SECRET_ID });
  for (const mount of ["approle", "apps/approle"]) {
    const before = vault.requests.length;
    const source = open(
      keyConfig(vault.url, { method: "approle", role_id: { env: "VAULT_ROLE_ID" }, secret_id: { file: secretIdFile }, mount }),
      { VAULT_ROLE_ID: ROLE_ID },
    );
    t.same(await source.fetch(never()), { value: KEY, version: "1" }, mount);
    const login = vault.requests[before]!;
    t.equal(login.path, `/v1/auth/${mount}/login`);
    t.same(login.body, { role_id: ROLE_ID, secret_id: SECRET_ID });
  }
  t.ok(logger.secrets.has(SECRET_ID), "the secret id is registered for log redaction");

  // A wrong secret id: Vault's message, the status, and no secret in the error.
  writeFileSync(join(dir, "wrong-secret-id"), "wrong-secret-id-000000000");
  const wrong = open(keyConfig(vault.url, { method: "approle", role_id: { env: "VAULT_ROLE_ID" }, secret_id: { file: join(dir, "wrong-secret-id") }, mount: "approle" }), {
    VAULT_ROLE_ID: ROLE_ID,
  });
  const err = await failure(wrong.fetch(never()));
  t.equal(err.message, "vault approle login (mount approle) failed: HTTP 400: invalid secret id");
  // A reference that cannot be resolved names the reference, not a value.
  const unset = open(keyConfig(vault.url, { method: "approle", role_id: { env: "NOT_SET" }, secret_id: { file: secretIdFile }, mount: "approle" }));
  t.equal((await failure(unset.fetch(never()))).message, "vault approle role_id unavailable: secret environment variable NOT_SET is not set");
  assertNoSecrets(t, vault, [logger.text(), err.message, err.stack ?? ""]);
});

t.test("token auth from {file}: looked up, then used for reads", async (t) => {
  const { vault, open } = await setup(t);
  vault.addToken(STATIC_TOKEN, { ttl: 0 });
  const source = open(keyConfig(vault.url, { method: "token", token: { file: tokenFile } }));
  t.same(await source.fetch(never()), { value: KEY, version: "1" });
  t.same(
    vault.requests.map((r) => `${r.method} ${r.path} ${String(r.headers["x-vault-token"])}`),
    [`GET /v1/auth/token/lookup-self ${STATIC_TOKEN}`, `GET /v1/secret/data/mythiq/production ${STATIC_TOKEN}`],
  );
  await source.fetch(never());
  t.equal(vault.count((r) => r.path.includes("lookup-self")), 1, "a token without a TTL is looked up once");

  const bad = open(keyConfig(vault.url, { method: "token", token: { env: "VAULT_TOKEN" } }), { VAULT_TOKEN: "hvs.not-a-known-token-000000" });
  t.equal((await failure(bad.fetch(never()))).message, "vault token lookup failed: HTTP 403: permission denied");
});

t.test("KV v1: the secret is the data itself and has no version", async (t) => {
  const { vault, open } = await setup(t);
  vault.kv("kv", 1);
  vault.put("kv", "mythiq/production", { api_key: KEY });
  const source = open(keyConfig(vault.url, k8s(), { kv_version: 1, mount: "kv" }));
  t.same(await source.fetch(never()), { value: KEY, version: "" });
  t.equal(vault.requests[1]?.path, "/v1/kv/mythiq/production");
});

t.test("namespace: sent on every call; without it the mount is not found", async (t) => {
  const { vault, open } = await setup(t, { namespace: "team-a/mythiq" });
  const saved = { ns: process.env["VAULT_NAMESPACE"], token: process.env["VAULT_TOKEN"], prefix: process.env["VAULT_PREFIX"] };
  // node-vault would take these from the environment: only the config may count.
  process.env["VAULT_NAMESPACE"] = "from-environment";
  process.env["VAULT_TOKEN"] = "hvs.from-environment-000000000";
  process.env["VAULT_PREFIX"] = "/prefix";
  t.teardown(() => {
    for (const [name, value] of [["VAULT_NAMESPACE", saved.ns], ["VAULT_TOKEN", saved.token], ["VAULT_PREFIX", saved.prefix]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
  const source = open(keyConfig(vault.url, k8s(), { namespace: "team-a/mythiq" }));
  t.same(await source.fetch(never()), { value: KEY, version: "1" });
  t.same(
    vault.requests.map((r) => [r.path, r.headers["x-vault-namespace"]]),
    [
      ["/v1/auth/kubernetes/login", "team-a/mythiq"],
      ["/v1/secret/data/mythiq/production", "team-a/mythiq"],
    ],
  );
  t.equal(vault.requests[0]?.headers["x-vault-token"], undefined, "VAULT_TOKEN from the environment is not sent");

  const none = open(keyConfig(vault.url, k8s()));
  const err = await failure(none.fetch(never()));
  t.match(err.message, /^vault kubernetes login \(mount kubernetes\) failed: HTTP 404/);
  t.equal(vault.requests.at(-1)?.headers["x-vault-namespace"], undefined, "no namespace from the environment");
});

t.test("ca_file: a TLS Vault signed by a private CA is trusted with it and refused without it", async (t) => {
  const tls = { key: readFileSync(new URL("vault.key", TLS_DIR)), cert: readFileSync(new URL("vault.crt", TLS_DIR)) };
  const { vault, open } = await setup(t, { tls });
  t.match(vault.url, /^https:/);
  const trusted = open(keyConfig(vault.url, k8s(), { ca_file: new URL("ca.crt", TLS_DIR).pathname }));
  t.same(await trusted.fetch(never()), { value: KEY, version: "1" });

  const saved = process.env["VAULT_SKIP_VERIFY"];
  process.env["VAULT_SKIP_VERIFY"] = "1";
  t.teardown(() => {
    if (saved === undefined) delete process.env["VAULT_SKIP_VERIFY"];
    else process.env["VAULT_SKIP_VERIFY"] = saved;
  });
  const before = vault.requests.length;
  const untrusted = open(keyConfig(vault.url, k8s()));
  const err = await failure(untrusted.fetch(never()));
  t.equal(err.message, "vault kubernetes login (mount kubernetes) failed: vault request failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE");
  t.equal(vault.requests.length, before, "VAULT_SKIP_VERIFY does not turn verification off: nothing reached Vault");

  const missing = open(keyConfig(vault.url, k8s(), { ca_file: join(dir, "no-such-ca.crt") }));
  t.equal((await failure(missing.fetch(never()))).message, `vault ca_file ${join(dir, "no-such-ca.crt")} cannot be read (ENOENT)`);
  const notPem = open(keyConfig(vault.url, k8s(), { ca_file: secretIdFile }));
  t.equal((await failure(notPem.fetch(never()))).message, `vault ca_file ${secretIdFile} holds no PEM certificate`);
});

t.test("every call is bounded by refresh.timeout even when the caller never aborts, and the socket is closed", async (t) => {
  const { vault, open } = await setup(t);
  vault.mode = "stall";
  const source = open(keyConfig(vault.url, k8s(), {}, 300));
  const started = performance.now();
  const err = await failure(source.fetch(never()));
  const elapsed = performance.now() - started;
  t.equal(err.message, "vault kubernetes login (mount kubernetes) failed: vault request timed out after 300ms");
  t.ok(elapsed >= 280 && elapsed < 1_500, `gave up after ${Math.round(elapsed)} ms`);
  await vault.idle();
  t.equal(vault.openConnections, 0, "the stalled connection was closed by the client");
});

t.test("an aborted fetch stops its call at once", async (t) => {
  const { vault, open } = await setup(t);
  vault.readDelayMs = 10_000;
  const source = open(keyConfig(vault.url, k8s(), {}, 5_000));
  const controller = new AbortController();
  const pending = failure(source.fetch(controller.signal));
  await vault.waitFor(isRead);
  controller.abort(new Error("keyring timeout"));
  t.equal((await pending).message, "vault read secret/data/mythiq/production failed: vault request aborted");
  await vault.idle();
  t.pass("the read's connection was closed");
});

// The real-time tests below use 3 s leases: renewal is due at 2 s, which leaves a loaded machine a
// whole second of timer lag before the token would expire.
t.test("the token is renewed before it expires, in the background", async (t) => {
  const { vault, open } = await setup(t);
  vault.lease = { seconds: 3, renewable: true };
  const source = open(keyConfig(vault.url, k8s()));
  await source.fetch(never());
  const login = vault.requests[0]!;
  const renewal = await vault.waitFor(isRenew);
  t.ok(renewal.at - login.at < 3_000, `renewed ${renewal.at - login.at} ms after a 3 s lease began`);
  t.equal(renewal.headers["x-vault-token"], vault.issued[0]);
  t.same(await source.fetch(never()), { value: KEY, version: "1" });
  t.equal(vault.count(isLogin), 1, "the renewed token is still used: no new login");
  t.equal(vault.requests.at(-1)?.headers["x-vault-token"], vault.issued[0]);
});

t.test("a failed renewal leads to a fresh login, whose token the next read uses", async (t) => {
  const { vault, logger, open } = await setup(t);
  vault.lease = { seconds: 3, renewable: true };
  vault.renew = "fail";
  const source = open(keyConfig(vault.url, k8s()));
  await source.fetch(never());
  const renewal = await vault.waitFor(isRenew);
  const relogin = await vault.waitFor(isLogin, vault.requests.indexOf(renewal));
  t.ok(relogin.at - vault.requests[0]!.at < 3_000, "the new login happened before the old token expired");
  vault.lease = { seconds: 3600, renewable: true };
  await source.fetch(never());
  t.equal(vault.issued.length, 2);
  t.equal(vault.requests.at(-1)?.headers["x-vault-token"], vault.issued[1], "the read used the new token");
  t.ok(logger.records.some((r) => r.msg === "vault token renewal failed; logging in again" && r.fields["error"] === "vault token renewal failed: HTTP 500: internal error"));
  assertNoSecrets(t, vault, [logger.text()]);
});

t.test("a renewal capped by max_ttl (the lease shrinks) is followed by a fresh login, not another renewal", async (t) => {
  const { vault, logger } = await setup(t);
  vault.lease = { seconds: 3, renewable: true };
  const clock = createFakeClock(Date.now());
  const source = createVaultSource(keyConfig(vault.url, k8s()), { logger, env: {}, timers: clock });
  t.teardown(() => source.close?.());
  await source.fetch(never());
  t.same(clock.pending(), [2_000], "renewal planned at two thirds of the 3 s lease");
  // Vault caps the renewal at what is left before max_ttl: 1 s.
  vault.once(isRenew, 200, { auth: { client_token: vault.issued[0], lease_duration: 1, renewable: true } });
  await clock.advance(2_000);
  await vault.waitFor(isRenew);
  await until(() => clock.pending().length === 1);
  t.same(clock.pending(), [667], "the next step is planned at two thirds of the shrunken lease");
  await clock.advance(667);
  await vault.waitFor(isLogin, 2);
  t.equal(vault.count(isRenew), 1, "no second renewal of a token at its max_ttl");
  t.equal(vault.count(isLogin), 2);
});

t.test("a token that is not renewable is replaced by a fresh login before it expires", async (t) => {
  const { vault, open } = await setup(t);
  vault.lease = { seconds: 3, renewable: false };
  const source = open(keyConfig(vault.url, k8s()));
  await source.fetch(never());
  const second = await vault.waitFor(isLogin, 1);
  t.ok(second.at - vault.requests[0]!.at < 3_000);
  t.equal(vault.count(isRenew), 0, "no renewal of a token that cannot be renewed");
});

t.test("a token refused with 403 leads to one fresh login; a fresh token refused is not retried", async (t) => {
  const { vault, open } = await setup(t);
  const source = open(keyConfig(vault.url, k8s()));
  await source.fetch(never());
  vault.revoke(vault.issued[0]!);
  t.same(await source.fetch(never()), { value: KEY, version: "1" });
  t.equal(vault.count(isLogin), 2);
  // Vault refusing every read (a policy without the path): one login and one read per fetch, no loop.
  const before = vault.requests.length;
  vault.once((r) => isRead(r), 403, { errors: ["permission denied"] });
  vault.once((r) => isRead(r), 403, { errors: ["permission denied"] });
  const err = await failure(source.fetch(never()));
  t.equal(err.message, "vault read secret/data/mythiq/production failed: HTTP 403: permission denied");
  t.same(
    vault.requests.slice(before).map((r) => `${r.method} ${r.path}`),
    ["GET /v1/secret/data/mythiq/production", "POST /v1/auth/kubernetes/login", "GET /v1/secret/data/mythiq/production"],
  );
});

t.test("malformed secrets and answers are refused with messages that never quote a value", async (t) => {
  const { vault, logger, open } = await setup(t);
  const source = open(keyConfig(vault.url, k8s()));
  const cases: Array<[string, () => void, string]> = [
    ["missing field", () => vault.put("secret", "mythiq/production", { other: KEY }), 'vault secret secret/mythiq/production has no field "api_key"'],
    ["field not a string", () => vault.put("secret", "mythiq/production", { api_key: { nested: KEY } }), 'field "api_key" of vault secret secret/mythiq/production is not a string'],
    ["deleted version", () => vault.softDelete("secret", "mythiq/production"), "vault secret secret/mythiq/production has no data (its current version is deleted or destroyed)"],
    [
      "a 404",
      () => vault.once((r) => isRead(r), 404, { errors: [] }),
      "vault read secret/data/mythiq/production failed: HTTP 404",
    ],
    [
      "an error quoting the token",
      () => vault.once((r) => isRead(r), 500, { errors: [`backend failed for token ${vault.issued[0]!} "${KEY}"`] }),
      'vault read secret/data/mythiq/production failed: HTTP 500: backend failed for token [redacted] "…"',
    ],
    [
      "a body over 1 MiB",
      () => vault.once((r) => isRead(r), 200, { data: { data: { api_key: KEY, pad: "x".repeat(1_100_000) } } }),
      "vault read secret/data/mythiq/production failed: vault response is larger than 1048576 bytes",
    ],
    [
      "a redirect",
      () => vault.once((r) => isRead(r), 307, undefined, { location: "http://127.0.0.1:9/v1/secret/data/mythiq/production" }),
      "vault read secret/data/mythiq/production failed: HTTP 307 (redirects are not followed: point address at the active node or a load balancer)",
    ],
  ];
  const messages: string[] = [];
  for (const [name, arrange, expected] of cases) {
    arrange();
    const err = await failure(source.fetch(never()));
    t.equal(err.message, expected, name);
    messages.push(err.message, err.stack ?? "");
  }
  vault.once(isLogin, 200, { auth: null });
  const noAuth = await failure(open(keyConfig(vault.url, k8s())).fetch(never()));
  t.equal(noAuth.message, "vault kubernetes login (mount kubernetes) failed: vault login answered without auth");
  assertNoSecrets(t, vault, [...messages, logger.text()]);
});

t.test("a mount or path with empty, . or .. segments cannot be configured", async (t) => {
  const logger = createRecordingLogger();
  for (const [overrides, message] of [
    [{ path: "mythiq/../admin" }, 'vault path "mythiq/../admin" has an empty, "." or ".." segment'],
    [{ mount: "secret//x" }, 'vault mount "secret//x" has an empty, "." or ".." segment'],
  ] as const) {
    const source = createSource(keyConfig("http://127.0.0.1:1", k8s(), overrides), { env: {}, logger });
    t.equal((await failure(source.fetch(never()))).message, `key source "vault" could not be created: ${message}`);
  }
  const badMount = createSource(keyConfig("http://127.0.0.1:1", k8s("k8s&prod")), { env: {}, logger });
  t.match((await failure(badMount.fetch(never()))).message, /vault auth mount "k8s&prod" may only contain/);
});

t.test("HTTP_PROXY from the environment is never used for Vault", async (t) => {
  const { vault, open } = await setup(t);
  let trapped = 0;
  const trap = http.createServer((_req, res) => {
    trapped += 1;
    res.writeHead(502).end();
  });
  await new Promise<void>((resolve) => trap.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => trap.close(() => resolve())));
  const proxyUrl = `http://127.0.0.1:${(trap.address() as AddressInfo).port}`;
  const saved = { HTTP_PROXY: process.env["HTTP_PROXY"], http_proxy: process.env["http_proxy"], NO_PROXY: process.env["NO_PROXY"] };
  process.env["HTTP_PROXY"] = proxyUrl;
  process.env["http_proxy"] = proxyUrl;
  delete process.env["NO_PROXY"];
  t.teardown(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
  const source = open(keyConfig(vault.url, k8s()));
  t.same(await source.fetch(never()), { value: KEY, version: "1" });
  t.equal(trapped, 0, "the proxy trap received nothing");
  t.equal(vault.requests.length, 2);
});

t.test("a closed source refuses to fetch and leaves no renewal timer behind", async (t) => {
  const { vault, logger } = await setup(t);
  vault.lease = { seconds: 3600, renewable: true };
  const live = new Set<unknown>();
  const timers = {
    now: () => Date.now(),
    setTimeout(callback: () => void, ms: number): unknown {
      const handle = setTimeout(() => {
        live.delete(handle);
        callback();
      }, ms);
      live.add(handle);
      return handle;
    },
    clearTimeout(handle: unknown): void {
      live.delete(handle);
      clearTimeout(handle as NodeJS.Timeout);
    },
  };
  const source = createVaultSource(keyConfig(vault.url, k8s()), { logger, env: {}, timers });
  await source.fetch(never());
  t.equal(live.size, 1, "a renewal is scheduled");
  source.close?.();
  t.equal(live.size, 0, "close() cancelled it");
  t.equal((await failure(source.fetch(never()))).message, "vault source closed");
  t.ok(logger.secrets.has(vault.issued[0]!), "the token stays registered for redaction");
});
