// `mythiq-proxy test-policy`: the shipped examples pass, wrong expectations fail with a readable
// diff, bad case files are reported with positions, and a bad config exits 78.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { runTestPolicy } from "../../src/cli/test-policy.ts";

const EXAMPLES = ["public-spa", "server-rendered", "sessions", "multi-app", "private-media"];

async function run(config: string, cases: string): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await runTestPolicy(config, cases, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) }, {});
  return { code, stdout, stderr };
}

const dir = mkdtempSync(join(tmpdir(), "mythiq-policy-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

for (const example of EXAMPLES) {
  t.test(`config/examples/${example}: every case passes`, async (t) => {
    const res = await run(`config/examples/${example}.yaml`, `config/examples/${example}.cases.yaml`);
    t.equal(res.stderr, "");
    t.equal(res.code, 0);
    t.match(res.stdout, /^\d+ passed, 0 failed\n$/m);
    t.notMatch(res.stdout, /^not ok/m);
  });
}

t.test("wrong expectations fail with a diff of the fields that differ", async (t) => {
  const cases = join(dir, "wrong.yaml");
  writeFileSync(
    cases,
    `- name: right
  request: { method: GET, path: /v1/models, origin: "https://shop.example.com" }
  expect: { allow: true, client: storefront, key: storefront }
- name: expects an allow the proxy refuses
  request: { method: GET, path: /v1/models, origin: "https://evil.example" }
  expect: { allow: true, client: storefront }
- name: expects the wrong reason
  request: { method: GET, path: /v1/models/x, origin: "https://shop.example.com" }
  expect: { status: 403, reason: model_not_allowed }
- name: expects the wrong key
  request: { method: GET, path: /v1/models, origin: "https://shop.example.com" }
  expect: { key: admin }
`,
  );
  const res = await run("config/examples/multi-app.yaml", cases);
  t.equal(res.code, 1);
  t.equal(
    res.stdout,
    `ok 1 - right
not ok 2 - expects an allow the proxy refuses
    ${cases}:4:3: the proxy refused 401 missing_credentials
    - allow: true
    + allow: false
    - client: storefront
    + client: (none)
not ok 3 - expects the wrong reason
    ${cases}:7:3: the proxy refused 403 route_not_allowed (client storefront)
    - reason: model_not_allowed
    + reason: route_not_allowed
not ok 4 - expects the wrong key
    ${cases}:10:3: the proxy allowed (client storefront, key storefront)
    - key: admin
    + key: storefront
1 passed, 3 failed
`,
  );
});

t.test("a case file with mistakes is reported with line and column, and nothing runs", async (t) => {
  const cases = join(dir, "bad.yaml");
  writeFileSync(
    cases,
    `- name: typo in a field
  request: { methd: GET, path: /v1/models }
  expect: { allow: true }
- name: contradiction
  request: { path: /v1/models }
  expect: { allow: true, reason: route_not_allowed }
- name: unknown reason
  request: { path: /v1/models }
  expect: { reason: nope }
- name: nothing expected
  request: { path: /v1/models }
  expect: {}
`,
  );
  const res = await run("config/examples/multi-app.yaml", cases);
  t.equal(res.code, 1);
  t.equal(res.stdout, "");
  const lines = res.stderr.trim().split("\n");
  t.equal(lines.length, 4);
  t.match(lines[0], `${cases}:2:14: [0].request.methd: unknown key (did you mean method?)`);
  t.match(lines[1], `${cases}:6:11: [1].expect: allow: true cannot also expect a refusal status or reason`);
  t.match(lines[2], new RegExp(`^${cases.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:9:21: \\[2\\]\\.expect\\.reason: must be one of: `));
  t.match(lines[3], `${cases}:12:11: [3].expect: says nothing`);
});

t.test("an invalid config exits 78 with its problems", async (t) => {
  const config = join(dir, "bad-config.yaml");
  writeFileSync(config, "clients: []\n");
  const res = await run(config, "config/examples/multi-app.cases.yaml");
  t.equal(res.code, 78);
  t.match(res.stderr, `${config}:`);
});

t.test("claims without sessions in the config fail the case with a clear error", async (t) => {
  const cases = join(dir, "claims.yaml");
  writeFileSync(cases, `- name: claims\n  request: { path: /v1/models, claims: { sub: u } }\n  expect: { allow: true }\n`);
  const res = await run("config/examples/multi-app.yaml", cases);
  t.equal(res.code, 1);
  t.match(res.stdout, "error: the case gives claims, but the config has no sessions.jwt");
});
