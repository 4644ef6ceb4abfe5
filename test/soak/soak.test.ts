// CI's soak: `node bench/soak/main.ts --duration 60s --rate 150` (what `npm run soak` runs, minus
// the build that `npm test` has done already, at half the default rate because CI's two cores also
// run other test files) against the built proxy, a local MythIQ and a real redis-server, with every
// fault of the schedule. The soak's exit code is the verdict; its JSON result is checked too, so
// that a soak that silently skipped a fault, or sent next to nothing, cannot pass.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SOAK = join(ROOT, "bench", "soak", "main.ts");

t.setTimeout(300_000);

t.test("a 60 s soak under faults: nothing unexpected, nothing lost, nothing growing", async (t) => {
  t.ok(existsSync(join(ROOT, "dist", "main.js")), "dist/main.js is built (npm test builds it first)");
  const dir = mkdtempSync(join(tmpdir(), "mythiq-soak-test-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, "result.json");
  // The soak measures the proxy, not coverage hooks: no NODE_V8_COVERAGE or NODE_OPTIONS from tap,
  // and coverage off for the processes tap's spawn hook still follows (otherwise the soak's own
  // code and dist/ would count in the coverage report).
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== "NODE_V8_COVERAGE" && name !== "NODE_OPTIONS")),
    _TAPJS_PROCESSINFO_COVERAGE_: "0",
  };
  const child = spawn(process.execPath, [SOAK, "--duration", "60s", "--rate", "150", "--json", json], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  t.teardown(() => {
    if (child.exitCode === null) child.kill("SIGTERM");
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  t.equal(code, 0, "the soak passed", { output: output.slice(-6000) });
  if (!existsSync(json)) return;

  const r = JSON.parse(readFileSync(json, "utf8"));
  // A held body answered 502 upstream_auth_failed after a rotation is one of these.
  t.equal(r.requests.unexpectedCount, 0, "no unexpected response");
  t.ok(r.requests.sent > 5_000, `${r.requests.sent} requests sent`);
  t.equal(r.accounting.quietAudit, r.accounting.quietSent, "audit lines = requests sent (before the drain)");
  t.equal(r.accounting.quietRequestsTotal, r.accounting.quietSent, "requests_total = requests sent (before the drain)");
  t.equal(r.accounting.auditLines, r.accounting.sent, "audit lines = requests sent (after the drain)");
  t.equal(r.accounting.missingIds, 0, "every response's x-request-id is in the audit log");

  const f = r.faults;
  t.ok(f.rotations >= 3 && f.rapidRotations >= 1, `${f.rotations} rotations, ${f.rapidRotations} within 30 s of the previous`);
  t.equal(f.rotationsSeen, f.rotations, "key_rotations_total counted each");
  t.ok(f.upstream.refused > 0, `MythIQ refused revoked keys ${f.upstream.refused} times (the 401 path ran)`);
  t.ok(f.reloadsApplied >= 3 && f.reloadsRejected >= 1, `reloads applied ${f.reloadsApplied}, rejected ${f.reloadsRejected}`);
  t.ok(f.redisKills >= 1 && f.redisStarts >= 1 && f.storeDownSamples >= 1, "Redis was killed, seen down, and started again");
  t.ok(f.upstream.faults.reset > 0 && f.upstream.faults.stall > 0, "MythIQ reset and stalled requests");

  // RSS is judged from 4-minute runs on (RSS_JUDGED_FROM_MS in bench/soak/main.ts: V8 is still
  // sizing its heap in the first minute); a minute is enough for file descriptors.
  t.notOk(r.growth.fds.growing, "fds (other than open connections) not growing over the second half");
  t.equal(r.drain.exitCode, 0, "SIGTERM drain: exit 0");
  t.ok(r.drain.readyz503, "/readyz said 503 while draining");
  t.same(r.leaks, [], "no secret in the proxy's log");
  t.same(r.violations, [], "nothing reached MythIQ that must not");
});
