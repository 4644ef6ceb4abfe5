import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import t from "tap";
import { EXIT_BAD_CONFIG, runCheck } from "../../src/cli/check.ts";

const fixtures = join(import.meta.dirname, "..", "fixtures", "config");

function capture() {
  const out = { stdout: "", stderr: "" };
  return {
    out,
    sink: { stdout: (s: string) => void (out.stdout += s), stderr: (s: string) => void (out.stderr += s) },
  };
}

t.test("a valid file: exit 0, `FILE: ok` on stdout, nothing on stderr", async (t) => {
  const file = relative(process.cwd(), join(fixtures, "valid", "minimal.yaml"));
  const { out, sink } = capture();
  t.equal(await runCheck(file, sink), 0);
  t.equal(out.stdout, `${file}: ok\n`);
  t.equal(out.stderr, "");
});

t.test("an invalid file: exit 78, every problem then every warning on stderr", async (t) => {
  const file = relative(process.cwd(), join(fixtures, "invalid", "warnings-and-errors.yaml"));
  const { out, sink } = capture();
  t.equal(await runCheck(file, sink), 78);
  t.equal(EXIT_BAD_CONFIG, 78);
  t.equal(out.stdout, "");
  const lines = out.stderr.trimEnd().split("\n");
  t.equal(lines.length, 8);
  t.match(lines[0], new RegExp(`^${file}:25:15: clients\\[0\\]\\.max_body: `));
  for (const w of lines.slice(1)) t.match(w, new RegExp(`^${file}:\\d+:\\d+: warning: `));
});

t.test("a valid file with warnings: exit 0, warnings on stderr", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-check-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "warn.yaml");
  writeFileSync(
    file,
    [
      "keys:",
      "  default:",
      "    source: vault",
      "    vault: { address: http://vault:8200, auth: { method: kubernetes, role: r }, path: p, field: f }",
      "clients:",
      "  - id: web",
      "    auth: { anonymous: true }",
      "    networks: [127.0.0.1]",
      "    routes: [GET /v1/models]",
      "",
    ].join("\n"),
  );
  const { out, sink } = capture();
  t.equal(await runCheck(file, sink), 0);
  t.equal(out.stdout, `${file}: ok\n`);
  t.equal(
    out.stderr,
    `${file}:4:23: warning: keys.default.vault.address: the vault address uses http://: traffic to it is not encrypted and the server is not authenticated\n`,
  );
});

t.test("a missing file: exit 78 with a problem at 1:1", async (t) => {
  const { out, sink } = capture();
  t.equal(await runCheck("does/not/exist.yaml", sink), 78);
  t.equal(out.stderr, "does/not/exist.yaml:1:1: cannot open the config file (ENOENT)\n");
  t.equal(out.stdout, "");
});

t.test("check reads no environment: a config whose secrets are unset is still valid", async (t) => {
  const file = join(fixtures, "valid", "full.yaml");
  t.notOk(process.env.VAULT_ROLE_ID, "precondition: the referenced variable is unset");
  const { out, sink } = capture();
  t.equal(await runCheck(file, sink), 0);
  t.match(out.stdout, /: ok\n$/);
});
