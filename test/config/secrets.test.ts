import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import type { Test } from "tap";
import { checkSecretRefs, parseConfig, readSecret } from "../../src/config/load.ts";
import { formatProblem } from "../../src/config/problems.ts";
import { MAX_SECRET_FILE_BYTES } from "../../src/config/secret-ref.ts";

const SECRET = "s3cr3t-value-that-must-not-leak";

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-secret-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Resolves to the error's message; fails the test when `p` resolves. */
async function rejection(t: Test, p: Promise<string>): Promise<string> {
  try {
    await p;
    t.fail("expected a rejection");
    return "";
  } catch (err) {
    t.ok(err instanceof Error);
    return err instanceof Error ? err.message : String(err);
  }
}

t.test("readSecret: env values, one trailing newline dropped", async (t) => {
  const env = { A: `${SECRET}\n`, B: `${SECRET}\r\n`, C: `${SECRET}\n\n`, D: SECRET, E: "", F: "\n" };
  t.equal(await readSecret({ env: "A" }, env), SECRET);
  t.equal(await readSecret({ env: "B" }, env), SECRET);
  t.equal(await readSecret({ env: "C" }, env), `${SECRET}\n`, "only one newline is dropped");
  t.equal(await readSecret({ env: "D" }, env), SECRET);
  t.equal(await rejection(t, readSecret({ env: "E" }, env)), "secret environment variable E is empty");
  t.equal(await rejection(t, readSecret({ env: "F" }, env)), "secret environment variable F is empty");
  t.equal(await rejection(t, readSecret({ env: "MISSING" }, env)), "secret environment variable MISSING is not set");
});

t.test("readSecret: files, trailing newline dropped, errors name the file only", async (t) => {
  const dir = tempDir(t);
  const f = (name: string, content: string | Buffer) => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  t.equal(await readSecret({ file: f("lf", `${SECRET}\n`) }), SECRET);
  t.equal(await readSecret({ file: f("crlf", `${SECRET}\r\n`) }), SECRET);
  t.equal(await readSecret({ file: f("none", SECRET) }), SECRET);
  t.equal(await readSecret({ file: f("two", `${SECRET}\n\n`) }), `${SECRET}\n`);

  const missing = join(dir, "missing");
  t.equal(await rejection(t, readSecret({ file: missing })), `secret file ${missing} cannot be read (ENOENT)`);
  t.equal(await rejection(t, readSecret({ file: dir })), `secret file ${dir} is not a regular file`);
  t.equal(await rejection(t, readSecret({ file: f("empty", "\n") })), `secret file ${join(dir, "empty")} is empty`);
  const big = f("big", Buffer.alloc(MAX_SECRET_FILE_BYTES + 1, 0x61));
  t.equal(await rejection(t, readSecret({ file: big })), `secret file ${big} is larger than ${MAX_SECRET_FILE_BYTES} bytes`);
  const bin = f("bin", Buffer.from([0x61, 0xff, 0x62]));
  const binMessage = await rejection(t, readSecret({ file: bin }));
  t.equal(binMessage, `secret file ${bin} is not valid UTF-8`);

  // A file that exists but cannot be read (skipped when running as root, which reads anything).
  if (process.getuid?.() !== 0) {
    const locked = f("locked", SECRET);
    chmodSync(locked, 0o000);
    const m = await rejection(t, readSecret({ file: locked }));
    t.equal(m, `secret file ${locked} cannot be read (EACCES)`);
    t.notMatch(m, SECRET);
  }
  // What start-up refuses (checkSecretRefs) is refused at every later read too: only regular files.
  t.equal(await rejection(t, readSecret({ file: "/dev/null" })), "secret file /dev/null is not a regular file");
});

t.test("readSecret never reads an endless device", async (t) => {
  const m = await rejection(t, readSecret({ file: "/dev/zero" }));
  t.equal(m, "secret file /dev/zero is not a regular file");
});

const CONFIG = `keys:
  default: { source: env, env: MYTHIQ_API_KEY }
  approle:
    source: vault
    vault:
      address: https://vault.example.com
      auth: { method: approle, role_id: {env: ROLE_ID}, secret_id: {file: SECRET_ID_FILE} }
      path: p
      field: f
  token:
    source: vault
    vault:
      address: https://vault.example.com
      auth: { method: token, token: {env: VAULT_TOKEN} }
      path: p
      field: f
sessions:
  jwt:
    issuer: https://auth.example.com
    audience: proxy
    secret: {env: JWT_SECRET}
    algorithms: [HS256]
clients:
  - id: web
    auth: { jwt: true }
    routes: ["GET /v1/models"]
limits:
  store: redis
  redis: { url: {file: REDIS_FILE} }
`;

t.test("checkSecretRefs: every unresolvable reference, at its position, values never printed", async (t) => {
  const dir = tempDir(t);
  const secretIdFile = join(dir, "secret-id");
  writeFileSync(secretIdFile, SECRET);
  const redisFile = join(dir, "redis-url");
  mkdirSync(redisFile);
  const text = CONFIG.replace("SECRET_ID_FILE", secretIdFile).replace("REDIS_FILE", redisFile);
  const result = parseConfig(text, "refs.yaml");
  t.ok(result.ok, result.ok ? "valid" : result.problems.map(formatProblem).join("\n"));
  if (!result.ok) return;

  const env = { ROLE_ID: SECRET, VAULT_TOKEN: "\n", MYTHIQ_API_KEY: SECRET };
  const problems = checkSecretRefs(result, env).map(formatProblem);
  t.strictSame(problems, [
    "refs.yaml:14:43: keys.token.vault.auth.token: environment variable VAULT_TOKEN is empty",
    "refs.yaml:21:19: sessions.jwt.secret: environment variable JWT_SECRET is not set",
    `refs.yaml:29:24: limits.redis.url: file ${redisFile} is not a regular file`,
  ]);
  for (const p of problems) t.notMatch(p, SECRET);

  const all = { ...env, VAULT_TOKEN: "tok", JWT_SECRET: "x" };
  const dirLess = parseConfig(text.replace(redisFile, secretIdFile), "refs.yaml");
  t.ok(dirLess.ok);
  if (dirLess.ok) t.strictSame(checkSecretRefs(dirLess, all), [], "all resolvable: no problems");

  const gone = parseConfig(text.replace(secretIdFile, join(dir, "gone")), "refs.yaml");
  t.ok(gone.ok);
  if (gone.ok) {
    t.strictSame(checkSecretRefs(gone, { ...all }).map(formatProblem), [
      `refs.yaml:7:75: keys.approle.vault.auth.secret_id: file ${join(dir, "gone")} cannot be read (ENOENT)`,
      `refs.yaml:29:24: limits.redis.url: file ${redisFile} is not a regular file`,
    ]);
  }
});

t.test("checkSecretRefs ignores the redis reference while store is memory", async (t) => {
  const text = CONFIG.replace("store: redis", "store: memory");
  const result = parseConfig(text, "refs.yaml");
  t.ok(result.ok);
  if (!result.ok) return;
  const problems = checkSecretRefs(result, { ROLE_ID: "a", VAULT_TOKEN: "b", JWT_SECRET: "c" });
  t.strictSame(problems.map((p) => p.message), [`keys.approle.vault.auth.secret_id: file SECRET_ID_FILE cannot be read (ENOENT)`]);
});

t.test("checkSecretRefs: tracing header references are checked at start-up like the others", async (t) => {
  const text = `keys:
  default: { source: env, env: MYTHIQ_API_KEY }
clients:
  - id: web
    auth: { anonymous: true }
    networks: [127.0.0.1]
    routes: ["GET /v1/models"]
tracing:
  endpoint: https://otlp.example.com/v1/traces
  headers:
    x-api-key: {env: OTLP_KEY}
    x-tenant: {file: /nonexistent/tenant}
`;
  const result = parseConfig(text, "tracing.yaml");
  t.ok(result.ok);
  if (!result.ok) return;
  t.strictSame(checkSecretRefs(result, {}).map(formatProblem), [
    'tracing.yaml:11:22: tracing.headers["x-api-key"]: environment variable OTLP_KEY is not set',
    'tracing.yaml:12:22: tracing.headers["x-tenant"]: file /nonexistent/tenant cannot be read (ENOENT)',
  ]);
});
