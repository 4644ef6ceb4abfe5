// The command line as users run it: a child process per command, exit codes and output checked.
// src/main.ts runs directly under Node's type stripping (the code uses only erasable syntax).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { configYaml, TEST_KEY } from "../helpers/proxy-harness.ts";
import { freePort } from "../helpers/free-port.ts";

const MAIN = fileURLToPath(new URL("../../src/main.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], options: { stdin?: string; env?: NodeJS.ProcessEnv; until?: (out: string) => boolean; signal?: NodeJS.Signals } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      cwd: ROOT,
      env: { PATH: process.env["PATH"], ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let signalled = false;
    const guard = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (!signalled && options.until?.(stdout) === true) {
        signalled = true;
        child.kill(options.signal ?? "SIGTERM");
      }
    });
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("close", (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(options.stdin ?? "");
  });
}

const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-cli-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test("--version prints the package version", async (t) => {
  const res = await run(["--version"]);
  t.equal(res.code, 0);
  t.match(res.stdout, /^\d+\.\d+\.\d+\n$/);
});

t.test("usage errors exit 2 with the usage text", async (t) => {
  const res = await run(["frobnicate"]);
  t.equal(res.code, 2);
  t.match(res.stderr, /unknown command "frobnicate"/);
  t.match(res.stderr, /Usage:/);
});

t.test("check: the shipped configs are valid", async (t) => {
  for (const file of ["config/proxy.yaml", "config/reference.yaml", "config/demo.yaml"]) {
    const res = await run(["check", "--config", file]);
    t.equal(res.code, 0, `${file} is valid`);
    t.match(res.stdout, `${file}: ok`);
  }
});

t.test("check: an invalid config exits 78 and prints FILE:LINE:COL for every problem", async (t) => {
  const file = join(dir, "bad.yaml");
  writeFileSync(file, "listen: { host: 127.0.0.1, port: 99999 }\nkeys: {}\nclients: []\nbogus: 1\n");
  const res = await run(["check", "--config", file]);
  t.equal(res.code, 78);
  const lines = res.stderr.trim().split("\n");
  t.ok(lines.length >= 3, "several problems reported at once");
  for (const line of lines) t.match(line, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:\\d+:\\d+: `));
  t.match(res.stderr, /:4:1: .*bogus/);
});

t.test("hash-token hashes stdin without its trailing newline", async (t) => {
  const res = await run(["hash-token"], { stdin: "tok-web-0123456789abcdef\n" });
  t.equal(res.code, 0);
  t.equal(res.stdout.trim(), "sha256:" + (await import("node:crypto")).createHash("sha256").update("tok-web-0123456789abcdef").digest("hex"));
});

t.test("run: an invalid config exits 78 listing the problems, without starting", async (t) => {
  const file = join(dir, "run-bad.yaml");
  writeFileSync(file, "clients: 3\n");
  const res = await run(["--config", file]);
  t.equal(res.code, 78);
  t.match(res.stderr, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:1:\\d+: `));
});

t.test("run: a missing secret reference exits 78 pointing at it", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const file = join(dir, "run-ref.yaml");
  writeFileSync(file, configYaml(upstream.url, "limits:\n  store: redis\n  redis: { url: { env: REDIS_URL_NOT_SET } }\n"));
  const res = await run(["--config", file]);
  t.equal(res.code, 78);
  t.match(res.stderr, /REDIS_URL_NOT_SET/);
});

t.test("run: a port in use exits 1", async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as net.AddressInfo).port;
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const file = join(dir, "run-port.yaml");
  writeFileSync(file, configYaml(upstream.url).replace("port: 8080", `port: ${port}`));
  const res = await run(["--config", file], { env: { MYTHIQ_API_KEY: TEST_KEY } });
  t.equal(res.code, 1);
  t.match(res.stdout, /"msg":"start failed"/);
  t.notOk(res.stdout.includes(TEST_KEY));
});


t.test("run: starts, logs JSON lines, and exits 0 on SIGTERM", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const file = join(dir, "run-ok.yaml");
  const [listen, admin] = [await freePort(), await freePort()];
  writeFileSync(file, configYaml(upstream.url).replace("port: 8080", `port: ${listen}`).replace("port: 9090", `port: ${admin}`));
  const res = await run(["--config", file], { env: { MYTHIQ_API_KEY: TEST_KEY }, until: (out) => out.includes('"msg":"key loaded"') });
  t.equal(res.code, 0);
  const lines = res.stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
  t.ok(lines.some((l) => l["msg"] === "started"));
  t.ok(lines.some((l) => l["msg"] === "stopped"));
  t.notOk(res.stdout.includes(TEST_KEY), "the key is never logged");
});

t.test("run: MYTHIQ_PROXY_CONFIG names the config when --config is absent", async (t) => {
  const res = await run(["check"], { env: { MYTHIQ_PROXY_CONFIG: "config/demo.yaml" } });
  t.equal(res.code, 0);
  t.match(res.stdout, "config/demo.yaml: ok");
});
