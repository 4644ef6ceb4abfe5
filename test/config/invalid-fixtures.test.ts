// Every file in test/fixtures/config/invalid/NAME.yaml must produce exactly the lines in NAME.expected:
// errors as `FILE:LINE:COL: message`, then warnings as `FILE:LINE:COL: warning: message`.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import t from "tap";
import { formatWarning } from "../../src/cli/check.ts";
import { loadConfigFile } from "../../src/config/load.ts";
import { formatProblem } from "../../src/config/problems.ts";

const dir = join(import.meta.dirname, "..", "fixtures", "config", "invalid");
const names = readdirSync(dir)
  .filter((f) => f.endsWith(".yaml"))
  .map((f) => f.slice(0, -".yaml".length))
  .sort();

t.ok(names.length >= 25, `at least 25 invalid fixtures (${names.length})`);

for (const name of names) {
  t.test(name, async (t) => {
    // The path is shown as the caller passed it; fixtures are written relative to the repo root.
    const file = relative(process.cwd(), join(dir, `${name}.yaml`));
    t.equal(file, `test/fixtures/config/invalid/${name}.yaml`, "tests run from the repo root");
    const expected = readFileSync(join(dir, `${name}.expected`), "utf8").trimEnd().split("\n");
    const result = await loadConfigFile(file);
    t.equal(result.ok, false, "the config is refused");
    if (result.ok) return;
    const actual = [...result.problems.map(formatProblem), ...result.warnings.map(formatWarning)];
    t.strictSame(actual, expected);
    for (const p of result.problems) {
      t.ok(p.line >= 1 && p.col >= 1, "positions are 1-based");
    }
  });
}

t.test("secrets pasted into the config never appear in the messages", async (t) => {
  const cases: [string, string[]][] = [
    ["raw-token", ["tok-web-3f9a8b7c6d5e4f3a2b1c", "8675309123456"]],
    ["redis-password", ["Sup3rS3cretPass"]],
    ["redis-inline-passwords", ["Inline-Redis-Pass-1", "Inline-Sentinel-Pass-2"]],
    ["redis-bad-host-port", ["S3ntinelPass"]],
    ["bad-secret-refs", ["hvs.CAESIJ-inline-vault-token"]],
    ["jwt-secret-asymmetric", ["my-inline-hmac-secret"]],
    ["url-parts", ["hunter2"]],
    ["many-problems", ["my-raw-token-value"]],
    ["tracing", ["inline-otlp-api-key-do-not-print"]],
  ];
  for (const [name, secrets] of cases) {
    const text = readFileSync(join(dir, `${name}.expected`), "utf8");
    for (const s of secrets) {
      t.ok(readFileSync(join(dir, `${name}.yaml`), "utf8").includes(s), `${name} holds the secret`);
      t.notOk(text.includes(s), `${name} does not print it`);
    }
  }
});

t.test("the many-problems fixture reports every problem at once", async (t) => {
  const text = readFileSync(join(dir, "many-problems.expected"), "utf8");
  t.ok(text.trimEnd().split("\n").length >= 15);
});
