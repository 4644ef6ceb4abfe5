/**
 * The built container image (deploy/image/build.sh), read and run the way a container runtime
 * would (deploy/image/run.sh): its own file system as a read-only root, its USER, ENV, WORKDIR and
 * ENTRYPOINT, the config directory mounted read-only at /etc/mythiq-proxy.
 *
 * ```ts
 * const missing = imageUnavailable();          // why the image cannot be tested here, or undefined
 * const config = inspectImage();               // { User, Env, Entrypoint, Cmd, WorkingDir, ... }
 * const root = mountImage(t);                  // the image's file system (unmounted in teardown)
 * const done = await runImage(["check"], { configDir });
 * const proxy = await startImage(t, { configDir, env: { MYTHIQ_API_KEY: key } });
 * await proxy.waitFor("key loaded"); proxy.signal("SIGHUP"); await proxy.exited;
 * ```
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Test } from "tap";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const RUN = join(ROOT, "deploy/image/run.sh");
const BUILD = join(ROOT, "deploy/image/build.sh");

export const IMAGE = process.env["MYTHIQ_IMAGE"] ?? "localhost/mythiq-proxy:latest";
/** The label build.sh puts on the image: the hash of the build context it was built from. */
const CONTEXT_LABEL = "io.mythiq-proxy.context";

export interface ImageConfig {
  readonly User?: string;
  readonly Env?: string[];
  readonly Entrypoint?: string[];
  readonly Cmd?: string[] | null;
  readonly WorkingDir?: string;
  readonly ExposedPorts?: Record<string, unknown>;
  readonly Labels?: Record<string, string>;
}

function podman(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync("podman", ["--storage-driver", "vfs", ...args], { encoding: "utf8" });
  return { status: result.error === undefined ? result.status : null, stdout: result.stdout ?? "", stderr: result.stderr ?? result.error?.message ?? "" };
}

/** Why the image cannot be tested on this machine (no podman, not root, not built, stale), or undefined. */
export function imageUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "the image test needs root (mount and PID namespaces, chroot)";
  const version = podman(["--version"]);
  if (version.status !== 0) return "podman is not installed (apt-get install podman buildah debootstrap)";
  if (podman(["image", "exists", IMAGE]).status !== 0) return `no image ${IMAGE}: run \`npm run image:build\` first`;
  const built = inspectImage().Labels?.[CONTEXT_LABEL];
  const source = spawnSync("bash", [BUILD, "--context-hash"], { encoding: "utf8" }).stdout.trim();
  if (built !== source) return `${IMAGE} was built from other sources than this work tree: run \`npm run image:build\` again`;
  return undefined;
}

export function inspectImage(): ImageConfig {
  const out = podman(["image", "inspect", "--format", "{{json .Config}}", IMAGE]);
  if (out.status !== 0) throw new Error(`podman image inspect ${IMAGE}: ${out.stderr}`);
  return JSON.parse(out.stdout) as ImageConfig;
}

/** Size in bytes of an image as podman counts it (uncompressed). */
export function imageSize(image = IMAGE): number {
  return Number(podman(["image", "inspect", "--format", "{{.Size}}", image]).stdout.trim());
}

/** The image's file system, read-only by convention: mounted for the test, unmounted in its teardown. */
export function mountImage(t: Test): string {
  const out = podman(["image", "mount", IMAGE]);
  if (out.status !== 0) throw new Error(`podman image mount ${IMAGE}: ${out.stderr}`);
  t.teardown(() => void podman(["image", "unmount", IMAGE]));
  return out.stdout.trim();
}

export interface RunOptions {
  /** Host directory mounted read-only at /etc/mythiq-proxy. */
  readonly configDir?: string;
  /** Variables added to the image's ENV (handed over as run.sh -e NAME, never in argv). */
  readonly env?: Readonly<Record<string, string>>;
  readonly user?: string;
  readonly entrypoint?: string;
}

function runArgs(options: RunOptions, pidfile: string | undefined, args: readonly string[]): string[] {
  const out = [RUN];
  if (options.configDir !== undefined) out.push("-v", `${options.configDir}:/etc/mythiq-proxy`);
  for (const name of Object.keys(options.env ?? {})) out.push("-e", name);
  if (options.user !== undefined) out.push("--user", options.user);
  if (options.entrypoint !== undefined) out.push("--entrypoint", options.entrypoint);
  if (pidfile !== undefined) out.push("--pidfile", pidfile);
  return [...out, "--", ...args];
}

function runEnv(options: RunOptions): NodeJS.ProcessEnv {
  return { PATH: process.env["PATH"], MYTHIQ_IMAGE: IMAGE, ...options.env };
}

/** Runs the image to completion (`docker run --rm IMAGE ARGS`). */
export function runImage(args: readonly string[], options: RunOptions = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", runArgs(options, undefined, args), { env: runEnv(options), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface ImageProcess {
  /** The proxy's PID as this machine sees it (PID 1 in its own namespace). */
  readonly pid: number;
  /** Every JSON line it wrote on stdout, parsed. */
  readonly lines: Array<Record<string, unknown>>;
  /** stdout and stderr as written. */
  output(): string;
  /** Resolves with the first line whose msg is `msg` (already logged or still to come). */
  waitFor(msg: string, match?: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** A signal to the proxy itself, as the container runtime sends it to PID 1. */
  signal(signal: NodeJS.Signals): void;
  /** The exit code of run.sh, which is the proxy's. */
  readonly exited: Promise<number | null>;
}

/** Starts the image's ENTRYPOINT (the proxy) and waits until its PID is known. Killed in teardown. */
export async function startImage(t: Test, options: RunOptions, args: readonly string[] = []): Promise<ImageProcess> {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-image-run-"));
  const pidfile = join(dir, "pid");
  const child = spawn("bash", runArgs(options, pidfile, args), { env: runEnv(options), stdio: ["ignore", "pipe", "pipe"] });
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let output = "";
  let buffered = "";
  child.stdout.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
    buffered += chunk.toString("utf8");
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // Not a log line; it stays in output() for the failure message.
      }
    }
    for (const wake of [...waiters]) wake();
  });
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  let running = true;
  const exited = new Promise<number | null>((resolve) =>
    child.on("close", (code) => {
      running = false;
      for (const wake of [...waiters]) wake();
      resolve(code);
    }),
  );

  const readPid = (): number => {
    try {
      return Number(readFileSync(pidfile, "utf8").trim());
    } catch {
      return 0;
    }
  };
  const deadline = Date.now() + 30_000;
  let pid = readPid();
  while (pid === 0 && running && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    pid = readPid();
  }
  rmSync(dir, { recursive: true, force: true });
  if (pid === 0) throw new Error(`the image did not start: ${output}`);

  const kill = (signal: NodeJS.Signals): void => {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  };
  const guard = setTimeout(() => kill("SIGKILL"), 90_000);
  t.teardown(async () => {
    clearTimeout(guard);
    if (running) {
      // The proxy is PID 1 of its namespace: killing it ends the namespace, unshare and run.sh.
      kill("SIGKILL");
      await exited;
    }
  });

  return {
    pid,
    lines,
    output: () => output,
    waitFor: (msg, match = () => true) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const line = lines.find((l) => l["msg"] === msg && match(l));
          if (line !== undefined) {
            waiters.delete(check);
            resolve(line);
          } else if (!running) {
            waiters.delete(check);
            reject(new Error(`the proxy exited before logging "${msg}": ${output}`));
          }
        };
        waiters.add(check);
        check();
      }),
    signal: kill,
    exited,
  };
}
