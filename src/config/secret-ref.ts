/**
 * Secret references (SPEC §3): a secret is never written inline in the config, it is `{env: NAME}`
 * or `{file: PATH}`. This file validates the reference's shape, checks at start-up that each one
 * can be resolved, and resolves them. No message or error here ever contains a secret's value.
 */
import { accessSync, constants, statSync } from "node:fs";
import { errnoCode } from "../errno.ts";
import { readCapped } from "../fs/read-capped.ts";
import type { ProxyConfig, SecretRef } from "./types.ts";
import type { Check } from "./formats.ts";
import { checkEnvName } from "./formats.ts";
import type { ConfigPath, Problem } from "./problems.ts";
import { formatPath } from "./problems.ts";

/** Largest secret file read: 64 KiB. Secrets are short; this stops `/dev/zero` or a log file being slurped. */
export const MAX_SECRET_FILE_BYTES = 64 * 1024;

const REF_SHAPE = "{env: NAME} or {file: PATH}";

/**
 * Validates a secret reference. An inline string is refused without being quoted back: it is
 * probably the secret itself.
 */
export function checkSecretRef(v: unknown): Check<SecretRef> {
  if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") {
    return {
      ok: false,
      message: `must be a secret reference ${REF_SHAPE}, not an inline value (secrets never go in the config file; if one was written here, treat it as exposed)`,
    };
  }
  if (v === null || v === undefined || typeof v !== "object" || Array.isArray(v)) {
    return { ok: false, message: `must be a secret reference ${REF_SHAPE}` };
  }
  const keys = Object.keys(v);
  const rec = v as Record<string, unknown>;
  if (keys.length !== 1 || (keys[0] !== "env" && keys[0] !== "file")) {
    return { ok: false, message: `must be exactly one of ${REF_SHAPE}` };
  }
  if (keys[0] === "env") {
    if (typeof rec.env !== "string") return { ok: false, message: "env: must be the name of an environment variable" };
    const name = checkEnvName(rec.env);
    return name.ok ? { ok: true, value: { env: name.value } } : { ok: false, message: `env: ${name.message}` };
  }
  // eslint-disable-next-line no-control-regex -- a path with control characters is a mistake or an attack
  if (typeof rec.file !== "string" || rec.file === "" || /[\u0000-\u001f]/.test(rec.file)) {
    return { ok: false, message: "file: must be a file path" };
  }
  return { ok: true, value: { file: rec.file } };
}

/** Human name of a reference for messages: `environment variable X` / `file /x`. Never the value. */
export function describeRef(ref: SecretRef): string {
  return "env" in ref ? `environment variable ${ref.env}` : `file ${ref.file}`;
}

/** Drops exactly one trailing `\n` or `\r\n` (what `echo` and editors add). */
export function dropTrailingNewline(s: string): string {
  if (s.endsWith("\r\n")) return s.slice(0, -2);
  if (s.endsWith("\n")) return s.slice(0, -1);
  return s;
}

/**
 * Resolves a reference: the environment variable's value, or the file's content read as UTF-8 (at
 * most 64 KiB); one trailing newline dropped. Rejects with an Error that names the reference, never
 * the value, when it is unset, unreadable, too large, not UTF-8 or empty.
 * `env` defaults to `process.env`. A relative file path is relative to the working directory.
 */
export async function readSecret(ref: SecretRef, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if ("env" in ref) {
    const raw = env[ref.env];
    if (raw === undefined) throw new Error(`secret ${describeRef(ref)} is not set`);
    const value = dropTrailingNewline(raw);
    if (value === "") throw new Error(`secret ${describeRef(ref)} is empty`);
    return value;
  }
  const bytes = await readBounded(ref.file, MAX_SECRET_FILE_BYTES);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw new Error(`secret ${describeRef(ref)} is not valid UTF-8`, { cause: err });
  }
  const value = dropTrailingNewline(text);
  if (value === "") throw new Error(`secret ${describeRef(ref)} is empty`);
  return value;
}

/** Reads at most `cap` bytes; errors name the file and the errno code only. */
async function readBounded(file: string, cap: number): Promise<Buffer> {
  const what = `secret file ${file}`;
  const read = await readCapped(file, cap);
  if (read.ok) return read.bytes;
  switch (read.why) {
    case "not_a_file":
      throw new Error(`${what} is not a regular file`);
    case "too_large":
      throw new Error(`${what} is larger than ${cap} bytes`);
    default:
      throw new Error(`${what} cannot be read (${read.why === "unreadable" ? read.code : read.why})`);
  }
}

/** Where each secret reference of a config sits, with the reference. */
export function secretRefsOf(config: ProxyConfig): { path: ConfigPath; ref: SecretRef }[] {
  const out: { path: ConfigPath; ref: SecretRef }[] = [];
  for (const [name, key] of Object.entries(config.keys)) {
    if (key.source !== "vault") continue;
    const auth = key.vault.auth;
    const base = ["keys", name, "vault", "auth"];
    if (auth.method === "approle") {
      out.push({ path: [...base, "role_id"], ref: auth.role_id }, { path: [...base, "secret_id"], ref: auth.secret_id });
    } else if (auth.method === "token") {
      out.push({ path: [...base, "token"], ref: auth.token });
    }
  }
  const jwtSecret = config.sessions?.jwt.secret;
  if (jwtSecret) out.push({ path: ["sessions", "jwt", "secret"], ref: jwtSecret });
  const redis = config.limits.redis;
  if (config.limits.store === "redis" && redis !== undefined) {
    if (redis.url !== undefined && typeof redis.url !== "string") out.push({ path: ["limits", "redis", "url"], ref: redis.url });
    if (redis.password !== undefined) out.push({ path: ["limits", "redis", "password"], ref: redis.password });
    if (redis.sentinel_password !== undefined) {
      out.push({ path: ["limits", "redis", "sentinel_password"], ref: redis.sentinel_password });
    }
  }
  for (const [name, ref] of Object.entries(config.tracing?.headers ?? {})) out.push({ path: ["tracing", "headers", name], ref });
  return out;
}

/** The part of a successful load that `checkSecretRefs` needs. */
export interface LoadedForRefs {
  readonly file: string;
  readonly config: ProxyConfig;
  locate(path: (string | number)[]): { line: number; col: number } | undefined;
}

/**
 * Start-up check: every `{env}` reference is set and non-empty, every `{file}` reference is a
 * readable regular file. Problems point at the reference in the config; values are never read
 * into a message (files are only checked for access, not read). Key sources (`source: env|file`)
 * are the keyring's business and are not checked here. `env` defaults to `process.env`.
 */
export function checkSecretRefs(result: LoadedForRefs, env: NodeJS.ProcessEnv = process.env): Problem[] {
  const problems: Problem[] = [];
  for (const { path, ref } of secretRefsOf(result.config)) {
    let why: string | undefined;
    if ("env" in ref) {
      const v = env[ref.env];
      if (v === undefined) why = "is not set";
      else if (dropTrailingNewline(v) === "") why = "is empty";
    } else {
      try {
        accessSync(ref.file, constants.R_OK);
        if (!statSync(ref.file).isFile()) why = "is not a regular file";
      } catch (err) {
        why = `cannot be read (${errnoCode(err)})`;
      }
    }
    if (why) {
      const inner = "env" in ref ? "env" : "file";
      const at = result.locate([...path, inner]) ?? result.locate([...path]) ?? { line: 1, col: 1 };
      problems.push({ file: result.file, ...at, message: `${formatPath(path)}: ${describeRef(ref)} ${why}` });
    }
  }
  return problems;
}
