/**
 * Validates a config file for a reload in a separate, short-lived Node process.
 *
 * Why not in-process, although the loader is bounded: bounded is not free. Measured on Node
 * 24.21 (`test/ops/reload-hostile.test.ts` keeps one such file): a 1 MiB file of 85 000 `pricing`
 * entries keeps the loader busy for about a second, a 1 MiB list of 260 000 values about two (and
 * before the duplicate-key check was made linear, minutes). In the proxy's process that would stop
 * every request for as long. In a child, the event
 * loop that serves requests never runs the parser; a validator that takes longer than
 * `timeoutMs` is killed and the file rejected. The child also contains what no bound can rule
 * out: on Node 20 a 2 KB nesting bomb aborted the whole process from inside V8 (docs/security.md
 * §7); a crash there now rejects one file instead of ending the proxy.
 *
 * The child reports the validated config as JSON. Objects without a prototype (the config's
 * maps: `keys`, `pricing`, …) are marked so that they come back without one: the config the
 * parent applies has exactly the shape of the one the loader builds at start-up.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { errnoCode } from "../errno.ts";
import type { ProxyConfig } from "./types.ts";
import { deepFreeze } from "./file-facts.ts";

/** What the validator found. `problems` and `warnings` are `FILE:LINE:COL: message` lines. */
export type Validation =
  | { readonly ok: true; readonly hash: string; readonly config: ProxyConfig; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly problems: readonly string[]; readonly warnings: readonly string[]; readonly hash?: string };

export interface IsolatedOptions {
  /** Environment of the validator: secret references (`{env: NAME}`) are checked against it. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Milliseconds before the validator is killed and the file rejected; default 10 000. */
  readonly timeoutMs?: number;
  /** Heap limit of the validator in MiB (`--max-old-space-size`); default 128. */
  readonly maxHeapMiB?: number;
  /** Aborting kills the validator (the proxy is stopping); the promise then resolves rejected. */
  readonly signal?: AbortSignal;
}

/** Default time a reload's validation may take, in ms. A real config validates in well under 1 s. */
export const VALIDATE_TIMEOUT_MS = 10_000;
/**
 * Default heap limit of the validator, in MiB. A real config validates in about 75 MiB of RSS;
 * a file that needs more than this is refused rather than allowed to press on the pod's memory.
 */
export const VALIDATE_MAX_HEAP_MIB = 128;
/** Most bytes read from the validator's stdout: a 1 MiB config is a few MiB of JSON at most. */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/** Marks an object that has no prototype; a NUL can never be a key of a loaded config. */
const NULL_PROTO = "\u0000";

/** The child's stdout for `validation` (used by `validate-child.ts`). */
export function encodeValidation(validation: Validation): string {
  return JSON.stringify(validation, (_key, value: unknown) => {
    if (value !== null && typeof value === "object" && !Array.isArray(value) && Object.getPrototypeOf(value) === null) {
      return { [NULL_PROTO]: 1, ...(value as Record<string, unknown>) };
    }
    return value;
  });
}

/** Parses the child's stdout; undefined when it is not a validation. The config comes back frozen. */
export function decodeValidation(text: string): Validation | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text, (_key, value: unknown) => {
      if (value !== null && typeof value === "object" && !Array.isArray(value) && Object.hasOwn(value, NULL_PROTO)) {
        const bare = Object.create(null) as Record<string, unknown>;
        for (const [k, v] of Object.entries(value)) if (k !== NULL_PROTO) bare[k] = v;
        return bare;
      }
      return value;
    });
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== "object") return undefined;
  const v = parsed as Record<string, unknown>;
  const lines = (x: unknown): x is string[] => Array.isArray(x) && x.every((l) => typeof l === "string");
  if (!lines(v["warnings"])) return undefined;
  if (v["ok"] === true && typeof v["hash"] === "string" && v["config"] !== null && typeof v["config"] === "object") {
    return { ok: true, hash: v["hash"], config: deepFreeze(v["config"] as ProxyConfig), warnings: v["warnings"] };
  }
  if (v["ok"] === false && lines(v["problems"])) {
    return { ok: false, problems: v["problems"], warnings: v["warnings"], ...(typeof v["hash"] === "string" ? { hash: v["hash"] } : {}) };
  }
  return undefined;
}

/** The child entry next to this module: `.ts` when running from source (tests), `.js` from `dist/`. */
function childScript(): string {
  const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  return fileURLToPath(new URL(`./validate-child${ext}`, import.meta.url));
}

function failed(file: string, why: string): Validation {
  return { ok: false, problems: [`${file}:1:1: ${why}`], warnings: [] };
}

/**
 * Loads and validates `file` (as `loadConfigFile` + `checkSecretRefs` would) in a child process
 * running this Node binary. Never rejects: every failure, including a validator that crashed,
 * timed out or was aborted, is `{ ok: false }` with one line saying so.
 */
export function validateIsolated(file: string, options: IsolatedOptions): Promise<Validation> {
  const timeoutMs = options.timeoutMs ?? VALIDATE_TIMEOUT_MS;
  const heap = options.maxHeapMiB ?? VALIDATE_MAX_HEAP_MIB;
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(options.env)) if (value !== undefined) env[name] = value;

  return new Promise((resolve) => {
    if (options.signal?.aborted) {
      resolve(failed(file, "validation cancelled: the proxy is stopping"));
      return;
    }
    let settled = false;
    let why: string | undefined;
    const chunks: Buffer[] = [];
    let size = 0;

    const child = spawn(process.execPath, [`--max-old-space-size=${heap}`, childScript(), file], {
      env,
      stdio: ["ignore", "pipe", "ignore"],
      windowsHide: true,
    });

    const kill = (reason: string): void => {
      why ??= reason;
      child.kill("SIGKILL");
    };
    const timer = setTimeout(() => kill(`validation did not finish within ${timeoutMs} ms (the file may be hostile); the file was rejected`), timeoutMs);
    const onAbort = (): void => kill("validation cancelled: the proxy is stopping");
    options.signal?.addEventListener("abort", onAbort, { once: true });

    const finish = (result: Validation): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      resolve(result);
    };

    child.stdout.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_OUTPUT_BYTES) kill("the validator's answer was too large");
      else chunks.push(chunk);
    });
    child.on("error", (err: Error) => {
      // The process could not be started (EAGAIN, ENOMEM…): nothing was validated.
      finish(failed(file, `the validator could not be started (${errnoCode(err)}); the file was rejected`));
    });
    child.on("close", (code, signal) => {
      if (why !== undefined) return finish(failed(file, why));
      if (code !== 0) {
        const how = signal === null ? `exited with code ${code}` : `was killed by ${signal}`;
        return finish(failed(file, `the validator ${how} (the file may be hostile, or memory ran out); the file was rejected`));
      }
      const validation = decodeValidation(Buffer.concat(chunks).toString("utf8"));
      finish(validation ?? failed(file, "the validator gave no answer; the file was rejected"));
    });
  });
}
