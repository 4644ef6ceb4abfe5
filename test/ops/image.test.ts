// The container image itself, as built from the Dockerfile by `npm run image:build` (podman,
// deploy/image/build.sh), run as a container runtime runs it (deploy/image/run.sh): the image's own
// file system as a read-only root, its USER, ENV, WORKDIR and ENTRYPOINT, PID 1 of its namespace,
// the config directory mounted read-only at /etc/mythiq-proxy and no writable volume. Not dist/.
//
// .ci/run builds the image before `npm test`, and with CI set a missing or stale image fails this
// file. Elsewhere (no podman, not root, image not built or built from other sources) it is skipped
// with the reason; `npm run image` builds the image and runs this file.
import { chmodSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { IMAGE, imageSize, imageUnavailable, inspectImage, mountImage, runImage, startImage } from "../helpers/container-image.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { freePort } from "../helpers/free-port.ts";
import { request } from "../helpers/ops.ts";
import { configYaml, TEST_KEY, TOKEN } from "../helpers/proxy-harness.ts";
import { connectRaw } from "../helpers/raw-http.ts";

t.setTimeout(300_000);

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CONFIG_PATH = "/etc/mythiq-proxy/proxy.yaml";

const unavailable = imageUnavailable();
if (unavailable !== undefined) {
  if (process.env["CI"] !== undefined && process.env["CI"] !== "" && process.env["CI"] !== "false") {
    t.fail(`the image test cannot run in CI: ${unavailable}`);
  } else {
    t.plan(0, `skipped: ${unavailable}`);
  }
} else {
  imageTests();
}

/** Every entry below `dir`, as `path size mtime mode uid`: what a write anywhere would change. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      const stat = lstatSync(path);
      out.set(relative(dir, path), `${stat.size} ${stat.mtimeMs} ${stat.mode} ${stat.uid}`);
      if (stat.isDirectory()) walk(path);
    }
  };
  walk(dir);
  return out;
}

function differences(before: Map<string, string>, after: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [path, facts] of after) if (before.get(path) !== facts) changed.push(path);
  for (const path of before.keys()) if (!after.has(path)) changed.push(`${path} (removed)`);
  return changed;
}

/** A config directory on this machine, mounted into the image at /etc/mythiq-proxy. */
function configDir(yaml: string): { dir: string; write(yaml: string): void } {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-image-config-"));
  chmodSync(dir, 0o755); // readable by the image's user, as a ConfigMap volume is
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const write = (text: string): void => {
    // Replaced in one rename, as an editor or the kubelet would: never read half written.
    writeFileSync(join(dir, ".proxy.yaml.new"), text);
    renameSync(join(dir, ".proxy.yaml.new"), join(dir, "proxy.yaml"));
  };
  write(yaml);
  return { dir, write };
}

function imageTests(): void {
  const config = inspectImage();
  const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };

  t.test("the image's configuration: non-root USER, ENTRYPOINT with npm start's flags, ENV", async (t) => {
    const user = /^USER (\S+)$/m.exec(dockerfile)?.[1];
    t.equal(config.User, user, "USER as the Dockerfile sets it");
    t.match(config.User, /^[1-9]\d*:[1-9]\d*$/, "a numeric UID:GID, not root");

    const start = /^node (.*) dist\/main\.js --config config\/proxy\.yaml$/.exec(pkg.scripts["start"] ?? "");
    t.ok(start, "npm start runs node FLAGS dist/main.js");
    t.same(config.Entrypoint, ["node", ...(start?.[1] ?? "").split(" "), "dist/main.js"], "ENTRYPOINT: the same node flags as npm start");
    t.notOk(config.Cmd?.length, "no CMD: `docker run IMAGE` runs the proxy, `docker run IMAGE check` checks");
    t.equal(config.WorkingDir, "/app");
    t.ok(config.Env?.includes("NODE_ENV=production"));
    t.ok(config.Env?.includes(`MYTHIQ_PROXY_CONFIG=${CONFIG_PATH}`), "the config path defaults to the mount point");
    t.same(Object.keys(config.ExposedPorts ?? {}).sort(), ["8080/tcp", "9090/tcp"]);
  });

  t.test("/app holds the built proxy and its production dependencies, nothing else", async (t) => {
    const root = mountImage(t);
    const app = join(root, "app");
    t.same(readdirSync(app).sort(), ["config", "dist", "node_modules", "package.json"]);
    t.ok(existsSync(join(app, "dist/main.js")) && existsSync(join(app, "dist/config/validate-child.js")), "dist/ has the entry and the reload validator");

    // Exactly the packages `npm ci --omit=dev` installs: every one the lock file needs at run time,
    // no dev dependency, nothing the lock file does not name.
    const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as {
      packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean }>;
    };
    const packages: string[] = [];
    const visit = (modules: string): void => {
      for (const name of readdirSync(join(app, modules))) {
        if (name.startsWith(".")) continue; // .bin, .package-lock.json
        const names = name.startsWith("@") ? readdirSync(join(app, modules, name)).map((scoped) => `${name}/${scoped}`) : [name];
        for (const n of names) {
          packages.push(`${modules}/${n}`);
          if (existsSync(join(app, modules, n, "node_modules"))) visit(`${modules}/${n}/node_modules`);
        }
      }
    };
    visit("node_modules");
    const runtime = Object.entries(lock.packages).filter(([path, entry]) => path !== "" && entry.dev !== true && entry.devOptional !== true);
    const devOnly = Object.entries(lock.packages).filter(([, entry]) => entry.dev === true).map(([path]) => path);
    t.same(packages.filter((p) => devOnly.includes(p)), [], "no dev dependency");
    t.same(packages.filter((p) => lock.packages[p] === undefined), [], "nothing the lock file does not name");
    t.same(runtime.filter(([path, entry]) => entry.optional !== true && !packages.includes(path)).map(([path]) => path), [], "every runtime dependency");
    for (const dev of ["typescript", "tap", "eslint", "node", "@types/node"]) t.notOk(existsSync(join(app, "node_modules", dev)), `no ${dev}`);

    const files = [...snapshot(app).keys()];
    t.same(files.filter((f) => /\.[cm]?tsx?$/.test(f)), [], "no TypeScript source, ours or a dependency's");
    t.same(files.filter((f) => /(^|\/)(test|tests|__tests__)\/|\.(test|spec)\.[cm]?[jt]s$/.test(f) && !f.startsWith("node_modules/")), [], "no test file");
    t.same(files.filter((f) => f.endsWith(".map")), [], "no source map");

    // Credentials: none anywhere in the image's file system.
    const everything = [...snapshot(root).keys()];
    const secretish = /(^|\/)(\.npmrc|\.yarnrc(\.yml)?|\.netrc|\.git-credentials|\.env(\..*)?|\.git|\.npm|\.docker|id_rsa.*|id_ed25519.*)$/;
    t.same(everything.filter((f) => secretish.test(f)), [], "no .npmrc, npm cache, .env, git or ssh credentials");
    const ours = files.filter((f) => !f.startsWith("node_modules/")).map((f) => join(app, f)).filter((f) => lstatSync(f).isFile());
    t.same(ours.filter((f) => /_authToken|_auth\s*=|registry\.npmjs\.org\/:/.test(readFileSync(f, "utf8"))), [], "no npm auth in /app");

    // The code is root-owned and read-only to the image's user; that user owns nothing at all.
    const uid = Number(config.User?.split(":")[0]);
    const owned = everything.filter((f) => lstatSync(join(root, f)).uid === uid);
    t.same(owned, [], "the image's user owns no file");
    t.same(files.filter((f) => (lstatSync(join(app, f)).mode & 0o022) !== 0 && !lstatSync(join(app, f)).isSymbolicLink()), [], "nothing in /app is writable but by root");

    // The README states the size; this keeps the proxy's share from growing unnoticed.
    const appBytes = files.reduce((sum, f) => sum + lstatSync(join(app, f)).size, 0);
    t.ok(appBytes < 32 * 1024 * 1024, `/app is ${(appBytes / 1024 / 1024).toFixed(1)} MiB (under 32 MiB; the README says the size)`);
    t.comment(`${IMAGE}: ${(imageSize() / 1e6).toFixed(0)} MB, /app ${(appBytes / 1e6).toFixed(1)} MB`);
  });

  t.test("check: 0 on the mounted config, 78 with FILE:LINE:COL on a broken one", async (t) => {
    const good = configYaml("http://127.0.0.1:1");
    const mounted = configDir(good);
    const ok = await runImage(["check"], { configDir: mounted.dir });
    t.equal(ok.code, 0, `check passes: ${ok.stdout}${ok.stderr}`);
    t.match(ok.stdout, `${CONFIG_PATH}: ok`, "it read the mounted file, by the image's default path");

    const broken = good.replace("idle_timeout: 5s", "idle_timeout: soon");
    mounted.write(broken);
    const lines = broken.split("\n");
    const line = lines.findIndex((l) => l.includes("idle_timeout: soon")) + 1;
    const column = (lines[line - 1] ?? "").indexOf("soon") + 1;
    const bad = await runImage(["check"], { configDir: mounted.dir });
    t.equal(bad.code, 78, "exit 78");
    t.match(bad.stderr, `${CONFIG_PATH}:${line}:${column}: upstream.idle_timeout:`, "the problem at FILE:LINE:COL");
  });

  t.test("the root file system is read-only, even to root, and /tmp with it", async (t) => {
    const asUser = await runImage(["/tmp/probe", "/app/probe"], { entrypoint: "/usr/bin/touch" });
    t.not(asUser.code, 0);
    t.match(asUser.stderr, /cannot touch '\/tmp\/probe': Read-only file system/, "the image's user cannot write /tmp");
    const asRoot = await runImage(["/app/probe", "/etc/mythiq-proxy/probe"], { entrypoint: "/usr/bin/touch", user: "0:0" });
    t.not(asRoot.code, 0);
    t.match(asRoot.stderr, /cannot touch '\/app\/probe': Read-only file system/, "not even root can write the root");
    t.match(asRoot.stderr, /cannot touch '\/etc\/mythiq-proxy\/probe': Read-only file system/, "the config mount is read-only too");
  });

  t.test("serves as the image's user: ready, proxies with the key once, reloads on SIGHUP, drains on SIGTERM", async (t) => {
    const root = mountImage(t);
    const before = snapshot(root);
    const upstream = await startFakeUpstream();
    t.teardown(() => upstream.close());
    const [port, adminPort] = [await freePort(), await freePort()];
    const yaml = configYaml(upstream.url).replace("port: 8080", `port: ${port}`).replace("port: 9090", `port: ${adminPort}`);
    const mounted = configDir(yaml);
    const proxy = await startImage(t, { configDir: mounted.dir, env: { MYTHIQ_API_KEY: TEST_KEY } });

    await proxy.waitFor("key loaded");
    // As a container: PID 1 of its own namespace, the image's user with no capability, exactly the
    // image's environment plus what was passed, and no writable mount.
    const status = readFileSync(`/proc/${proxy.pid}/status`, "utf8");
    const [uid, gid] = (config.User ?? "").split(":");
    t.match(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, "m"), "runs as the image's UID");
    t.match(status, new RegExp(`^Gid:\\s+${gid}\\s+${gid}\\s+${gid}\\s+${gid}$`, "m"), "and GID");
    t.match(status, /^CapEff:\s+0+$/m, "with no capability");
    t.match(status, /^NSpid:\s+\d+\s+1$/m, "PID 1 in its namespace");
    t.equal(readFileSync(`/proc/${proxy.pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" "), (config.Entrypoint ?? []).join(" "), "the ENTRYPOINT");
    const environ = readFileSync(`/proc/${proxy.pid}/environ`, "utf8").split("\0").filter(Boolean).sort();
    t.same(environ, [...(config.Env ?? []), `MYTHIQ_API_KEY=${TEST_KEY}`].sort(), "the image's ENV and MYTHIQ_API_KEY, nothing else");
    const mounts = readFileSync(`/proc/${proxy.pid}/mountinfo`, "utf8").trim().split("\n").map((l) => l.split(" "));
    const writable = mounts.filter((m) => !(m[5] ?? "").split(",").includes("ro")).map((m) => m[4]);
    t.same(writable.sort(), ["/dev/full", "/dev/null", "/dev/random", "/dev/urandom", "/dev/zero", "/proc"], "every mount read-only but /proc and the device nodes");

    let ready = await request(adminPort, { path: "/readyz" });
    for (let i = 0; i < 100 && ready.status !== 200; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      ready = await request(adminPort, { path: "/readyz" });
    }
    t.equal(ready.status, 200, "/readyz turns ready");

    const res = await request(port, { path: "/v1/models", headers: { authorization: `Bearer ${TOKEN}` } });
    t.equal(res.status, 200, "a request is proxied");
    const received = upstream.requests[0];
    t.equal(received?.count("authorization"), 1, "one Authorization header upstream");
    t.equal(received?.headers["authorization"], `Bearer ${TEST_KEY}`, "carrying the key");
    t.notOk(received?.head.toString("latin1").includes(TOKEN), "the client's token did not travel on");
    t.notOk(res.body.includes(TEST_KEY) || JSON.stringify(res.headers).includes(TEST_KEY), "no byte of the key came back");

    // SIGHUP with a changed mounted file: the route GET /v1/models/{id} is gone after the reload.
    t.equal((await request(port, { path: "/v1/models/stability-sdxl", headers: { authorization: `Bearer ${TOKEN}` } })).status, 200, "GET /v1/models/{id} is allowed before");
    const upstreamBefore = upstream.requests.length;
    mounted.write(yaml.replace("      - GET /v1/models/{id}\n", ""));
    proxy.signal("SIGHUP");
    const reloaded = await proxy.waitFor("config reloaded");
    t.equal(reloaded["trigger"], "SIGHUP", "reloaded on SIGHUP");
    const refused = await request(port, { path: "/v1/models/stability-sdxl", headers: { authorization: `Bearer ${TOKEN}` } });
    t.equal(refused.status, 403, "the new config is in force");
    t.equal((JSON.parse(refused.body) as { reason?: string }).reason, "route_not_allowed");
    t.equal(upstream.requests.length, upstreamBefore, "the refused request never reached upstream");
    t.notOk(refused.body.includes(TEST_KEY));

    // SIGTERM with a Server-Sent Events stream in flight: it runs to its end, then exit 0.
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    upstream.reply({ type: "sse", events: [{ data: "one" }, { data: "two", until: gate }, { data: "[DONE]" }] });
    const sse = await connectRaw(port, 30_000);
    sse.write(`GET /v1/generations?limit=1 HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
    await sse.until((raw) => raw.includes("data: one"));
    proxy.signal("SIGTERM");
    const draining = await proxy.waitFor("draining");
    t.equal(draining["in_flight"], 1, "draining with the stream in flight");
    t.equal((await request(adminPort, { path: "/readyz" })).status, 503, "not ready while draining");
    openGate();
    const streamed = await sse.closed;
    t.match(streamed, /data: one[\s\S]*data: two[\s\S]*data: \[DONE\]/, "every event arrived");
    t.ok(streamed.endsWith("0\r\n\r\n"), "the stream ended properly, not cut");
    t.equal(await proxy.exited, 0, "exit 0", { output: proxy.output().slice(-3000) });
    t.equal(proxy.lines.find((l) => l["msg"] === "stopped")?.["cut"], 0, "nothing was cut");

    t.notOk(proxy.output().includes(TEST_KEY), "the key is never logged");
    t.same(differences(before, snapshot(root)), [], "nothing was written to the image's file system");
  });
}
