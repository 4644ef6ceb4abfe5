/**
 * Where the shared limits live (SPEC §3, §11 `limits.redis`), with its secrets read: one Redis
 * (`url`), a primary and its replicas behind Sentinel (`sentinels` + `name`), or a Redis Cluster
 * (`cluster`). The secrets ({env}/{file} references) and the CA file are read when the store is
 * created, held in memory only, and listed by `secretsOf` so that no log line can carry them.
 */
import { readFile } from "node:fs/promises";
import type { HostPort, RedisConfig, SecretRef } from "../config/types.ts";
import { readSecret } from "../config/secret-ref.ts";
import type { Environment } from "../keys/env-source.ts";

/** TLS settings handed to ioredis (Node's `tls.connect` options). */
export interface RedisTls {
  readonly ca?: Buffer;
  readonly servername?: string;
}

/** What every mode shares: the ACL user and TLS. */
interface Auth {
  readonly username?: string;
  readonly password?: string;
  readonly tls?: RedisTls;
}

export type RedisTarget =
  | (Auth & { readonly mode: "standalone"; readonly url: string })
  | (Auth & {
      readonly mode: "sentinel";
      readonly sentinels: readonly HostPort[];
      readonly name: string;
      readonly sentinelUsername?: string;
      readonly sentinelPassword?: string;
    })
  | (Auth & { readonly mode: "cluster"; readonly nodes: readonly HostPort[] });

export type RedisMode = RedisTarget["mode"];

/** The mode a validated `limits.redis` describes (cross-checks.ts makes exactly one of them set). */
export function modeOf(config: RedisConfig): RedisMode {
  if (config.sentinels !== undefined) return "sentinel";
  if (config.cluster !== undefined) return "cluster";
  return "standalone";
}

const optional = async (ref: SecretRef | undefined, env: Environment): Promise<string | undefined> =>
  ref === undefined ? undefined : readSecret(ref, env);

/**
 * Reads the references and the CA file of `config`. Rejects with an error that names the reference
 * or file, never a secret's value.
 */
export async function resolveRedisTarget(config: RedisConfig, env: Environment): Promise<RedisTarget> {
  const [password, sentinelPassword, ca] = await Promise.all([
    optional(config.password, env),
    optional(config.sentinel_password, env),
    config.tls?.ca_file === undefined
      ? undefined
      : readFile(config.tls.ca_file).catch((err: unknown) => {
          const code = (err as { code?: unknown } | null)?.code;
          throw new Error(`limits.redis.tls.ca_file ${config.tls?.ca_file ?? ""} cannot be read (${typeof code === "string" ? code : "error"})`);
        }),
  ]);
  const tls: RedisTls | undefined =
    config.tls === undefined
      ? undefined
      : { ...(ca === undefined ? {} : { ca }), ...(config.tls.server_name === undefined ? {} : { servername: config.tls.server_name }) };
  const auth: Auth = {
    ...(config.username === undefined ? {} : { username: config.username }),
    ...(password === undefined ? {} : { password }),
    ...(tls === undefined ? {} : { tls }),
  };
  if (config.sentinels !== undefined) {
    return {
      ...auth,
      mode: "sentinel",
      sentinels: config.sentinels,
      name: config.name ?? "",
      ...(config.sentinel_username === undefined ? {} : { sentinelUsername: config.sentinel_username }),
      ...(sentinelPassword === undefined ? {} : { sentinelPassword }),
    };
  }
  if (config.cluster !== undefined) return { ...auth, mode: "cluster", nodes: config.cluster };
  const url = config.url === undefined ? "" : typeof config.url === "string" ? config.url : await readSecret(config.url, env);
  return { ...auth, mode: "standalone", url };
}

/** Every string of `target` that must never reach a log line: the URL, its password, the passwords. */
export function secretsOf(target: RedisTarget): string[] {
  const parts: string[] = [];
  if (target.password !== undefined) parts.push(target.password);
  if (target.mode === "sentinel" && target.sentinelPassword !== undefined) parts.push(target.sentinelPassword);
  if (target.mode === "standalone") {
    parts.push(target.url);
    try {
      const parsed = new URL(target.url);
      if (parsed.password !== "") parts.push(parsed.password, decodeURIComponent(parsed.password));
    } catch {
      // ioredis reports an unparsable URL itself; there is nothing more to hide.
    }
  }
  // Longest first, so a password inside the URL is not cut out of it before the URL itself.
  return [...new Set(parts.filter((p) => p !== ""))].sort((a, b) => b.length - a.length);
}
