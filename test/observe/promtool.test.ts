// `promtool check metrics` is Prometheus's own parser and linter (counters end in _total, base
// units, help text, reserved suffixes). CI installs it (Debian's `prometheus` package); a missing
// promtool fails this test rather than skipping it, so the check cannot silently stop running.
import t from "tap";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createMetrics } from "../../src/observe/metrics.ts";
import { REASONS } from "../../src/errors.ts";

const PROMTOOL = process.env["PROMTOOL"] ?? "/usr/bin/promtool";

function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}

void t.test("a scrape after realistic traffic passes promtool check metrics with no problem reported", async (t) => {
  t.ok(existsSync(PROMTOOL), `promtool at ${PROMTOOL} (install Debian's prometheus package, or set PROMTOOL)`);
  let clock = Date.now();
  const m = createMetrics({ version: "0.1.0", now: () => clock });
  m.setLabelSets({
    clients: ["web-app", "batch", 'odd "quoted" \\ client'],
    routes: ["GET /v1/models", "GET /v1/models/{id}", "POST /v1/images/generations", "GET /v1/generations?limit&after"],
    models: ["stability/sdxl", "openai/dall-e-3"],
    keys: ["default", "production", "analytics"],
  });
  m.configLoaded("3f2a9c01b7de");
  m.keyFetched({ name: "default", source: "env", fingerprint: "0a1b2c3d", version: "", fetchedAt: clock });
  m.keyFetched({ name: "production", source: "vault", fingerprint: "9f8e7d6c", version: "12", fetchedAt: clock });
  m.keyFetchFailed("analytics", "aws");
  m.keyFetched({ name: "production", source: "vault", fingerprint: "11223344", version: "13", fetchedAt: clock });
  for (let i = 0; i < 500; i++) {
    const client = ["web-app", "batch", 'odd "quoted" \\ client', "stranger"][i % 4];
    const route = ["GET /v1/models", "GET /v1/models/{id}", "POST /v1/images/generations", "GET /v1/generations?limit&after", "GET /etc/passwd"][i % 5];
    const model = route === "POST /v1/images/generations" ? ["stability/sdxl", "openai/dall-e-3", "mystery"][i % 3] : undefined;
    const status = [200, 200, 200, 401, 403, 429, 502, 504, 0][i % 9]!;
    m.inflight(client, 1);
    m.upstreamDuration(route, model === undefined ? 0.01 + (i % 7) / 100 : 2 + (i % 40));
    m.requestFinished({ client, route, model, status, durationSeconds: model === undefined ? 0.02 : 3 + (i % 50), bytesIn: 200, bytesOut: 4096 });
    m.cost(client, model, model === undefined ? 0 : 0.004);
    if (status >= 400) m.denied(client, REASONS[i % REASONS.length]!);
    if (status === 502) m.upstreamError("upstream_unreachable");
    if (i % 3 !== 0) m.inflight(client, -1);
  }
  m.configReloaded("applied");
  m.configReloaded("rejected");
  clock += 90_000;

  const text = await m.metricsText();
  const { code, output } = await promtoolCheck(text);
  t.equal(output, "", "promtool reports nothing");
  t.equal(code, 0, "promtool exits 0");
});

void t.test("promtool does catch a broken exposition (the check can fail)", async (t) => {
  const { code, output } = await promtoolCheck("# TYPE foo counter\nfoo 1\n");
  t.not(code, 0);
  t.match(output, /_total/);
});
