// The container image's runtime stage, reproduced without Docker: a fresh directory with only
// package.json, package-lock.json, config/ and a dist/ built as the Dockerfile's build stage builds
// it, then `npm ci --omit=dev --ignore-scripts` exactly as its deps stage runs it. That install
// must hold no dev dependency, pass `check`, proxy a request with the key injected, reload on
// SIGHUP (the reload validator is a separate file in dist/), drain on SIGTERM with exit 0, and
// write nothing to its directory (the image runs with a read-only root file system).
//
// Needs the npm registry (or a warm npm cache): CI has both. Slow by nature (an install and a
// TypeScript build), so this file has a longer timeout than the others.
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { request } from "../helpers/ops.ts";
import { configYaml, TEST_KEY, TOKEN } from "../helpers/proxy-harness.ts";
import { freePort } from "../helpers/free-port.ts";

t.setTimeout(600_000);

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const app = mkdtempSync(join(tmpdir(), "mythiq-proxy-image-"));
t.teardown(() => rmSync(app, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const guard = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 300_000);
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr });
    });
  });
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.push(`${relative(app, path)}:${statSync(path).mtimeMs}`);
    }
  };
  walk(dir);
  return out.sort();
}


t.test("build and production-only install, as the Dockerfile does", async (t) => {
  for (const file of ["package.json", "package-lock.json"]) cpSync(join(ROOT, file), join(app, file));
  cpSync(join(ROOT, "config"), join(app, "config"), { recursive: true });

  const build = await run(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json", "--outDir", join(app, "dist")], { cwd: ROOT });
  t.equal(build.code, 0, `tsc build: ${build.stdout}${build.stderr}`);
  t.ok(existsSync(join(app, "dist/main.js")) && existsSync(join(app, "dist/config/validate-child.js")), "dist/ has the entry and the reload validator");

  const install = await run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], {
    cwd: app,
    env: { ...process.env, npm_config_update_notifier: "false" },
  });
  t.equal(install.code, 0, `npm ci --omit=dev: ${install.stderr.slice(-2000)}`);

  const modules = join(app, "node_modules");
  for (const dev of ["typescript", "tap", "eslint", "node", "@types/node", "typescript-eslint"]) {
    t.notOk(existsSync(join(modules, dev)), `no dev dependency: ${dev}`);
  }
  for (const dep of ["http-proxy-3", "yaml", "zod", "prom-client", "node-vault", "@aws-sdk/client-secrets-manager", "jose", "ioredis"]) {
    t.ok(existsSync(join(modules, dep)), `runtime dependency present: ${dep}`);
  }
});

t.test("the production install checks configs, proxies, reloads and drains", async (t) => {
  const main = join(app, "dist/main.js");
  const env = { PATH: process.env["PATH"], NODE_ENV: "production" };

  const ok = await run(process.execPath, [main, "check", "--config", "config/proxy.yaml"], { cwd: app, env });
  t.equal(ok.code, 0, `check passes: ${ok.stderr}`);
  writeFileSync(join(app, "bad.yaml"), "clients: 3\n");
  const bad = await run(process.execPath, [main, "check", "--config", "bad.yaml"], { cwd: app, env });
  t.equal(bad.code, 78, "check refuses a bad config with 78");

  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const [port, adminPort] = [await freePort(), await freePort()];
  const yaml = configYaml(upstream.url).replace("port: 8080", `port: ${port}`).replace("port: 9090", `port: ${adminPort}`);
  const configFile = join(app, "run.yaml");
  writeFileSync(configFile, yaml);
  const before = listFiles(app);

  const child = spawn(process.execPath, [main, "--config", configFile], { cwd: app, env: { ...env, MYTHIQ_API_KEY: TEST_KEY }, stdio: ["ignore", "pipe", "pipe"] });
  const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
  t.teardown(() => {
    clearTimeout(guard);
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  let stdout = "";
  const waiters = new Set<() => void>();
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
    for (const wake of [...waiters]) wake();
  });
  child.stderr.resume();
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const logged = (msg: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (stdout.includes(`"msg":"${msg}"`)) {
          waiters.delete(check);
          resolve();
        } else if (child.exitCode !== null) {
          waiters.delete(check);
          reject(new Error(`exited before "${msg}": ${stdout}`));
        }
      };
      waiters.add(check);
      check();
    });

  await logged("key loaded");
  const res = await request(port, { path: "/v1/models", headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(res.status, 200, "a request is proxied");
  t.equal(upstream.requests[0]?.headers["authorization"], `Bearer ${TEST_KEY}`, "with the key injected");
  t.equal((await request(adminPort, { path: "/readyz" })).status, 200);

  writeFileSync(configFile, yaml.replace("idle_timeout: 5s", "idle_timeout: 6s"));
  child.kill("SIGHUP");
  await logged("config reloaded");
  t.pass("SIGHUP reloaded through dist/config/validate-child.js");
  const changed = listFiles(app).filter((f) => !before.includes(f) && !f.startsWith("run.yaml:"));

  child.kill("SIGTERM");
  t.equal(await exited, 0, "SIGTERM: exit 0");
  t.same(changed, [], "nothing was written next to the app");
  t.notOk(stdout.includes(TEST_KEY), "the key is never logged");
});
