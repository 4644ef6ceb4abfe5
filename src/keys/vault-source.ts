/**
 * `source: vault` — the key is a field of a KV secret in HashiCorp Vault (SPEC §3), read with
 * node-vault.
 *
 * How node-vault is used, and why:
 * - node-vault is loaded on the first fetch (`import()`), so a proxy without Vault keys never pays
 *   for it (or for axios under it).
 * - Its HTTP layer is replaced through its `request-promise` option by `vault-transport.ts` (no
 *   proxy from the environment, no redirects, a timeout and an AbortSignal on every call, bounded
 *   bodies); its `debug` option gets a function that prints nothing, so `DEBUG=node-vault`, which
 *   would print login bodies with secret ids and JWTs, shows nothing either.
 * - Defaults node-vault takes from the environment (`VAULT_TOKEN`, `VAULT_NAMESPACE`,
 *   `VAULT_PREFIX`, `VAULT_SKIP_VERIFY`) are overridden: only the config counts.
 * - Auth mounts are always passed as `mount_point` (node-vault#300).
 *
 * A fetch: make sure the session holds a token (logging in if needed), read the secret, and if
 * Vault answers 403 with a token that was not fresh (revoked, expired early), log in once more and
 * read again.
 */
import { readFile } from "node:fs/promises";
import { lazyImport } from "../lazy-import.ts";
import type NodeVault from "node-vault";
import type { VaultKeyConfig } from "../config/types.ts";
import { silentLogger, type Logger } from "../observe/log.ts";
import type { Environment } from "./env-source.ts";
import { pickField } from "./store-text.ts";
import type { KeySource, SourceValue } from "./types.ts";
import { describeVaultError, vaultStatus } from "./vault-errors.ts";
import { createVaultSession, type SessionTimers, type VaultClient, type VaultSession } from "./vault-session.ts";
import { createVaultTransport } from "./vault-transport.ts";

/** Largest `ca_file` accepted, in bytes (1 MiB). */
export const VAULT_CA_MAX_BYTES = 1024 * 1024;

export interface VaultSourceOptions {
  /** Where `{env: NAME}` references of the auth config are read; default `process.env`. */
  readonly env?: Environment;
  readonly logger?: Logger;
  /** Timers of the token renewal (tests). */
  readonly timers?: SessionTimers;
}

// A type-only import: erased at build time, so node-vault is loaded by `import()` below, on first use.
type NodeVaultModule = typeof NodeVault;

/** node-vault, imported once, on first use. A failed import is retried on the next fetch. */
const loadNodeVault = lazyImport<NodeVaultModule>("node-vault", async () => (await import("node-vault")).default);

/** The part of a node-vault client a fetch uses beyond the session's. */
interface KvClient extends VaultClient {
  namespace?: string;
  pathPrefix: string;
  read(path: string, requestOptions?: object): Promise<unknown>;
}

/**
 * Splits a mount or path into URL-encoded segments. Empty, `.` and `..` segments are refused: they
 * would address another secret than the one configured once a server normalises the path.
 */
function segments(text: string, what: string): string {
  const parts = text.replace(/^\/+|\/+$/g, "").split("/");
  if (parts.some((part) => part === "" || part === "." || part === "..")) {
    throw new Error(`vault ${what} ${JSON.stringify(text)} has an empty, "." or ".." segment`);
  }
  return parts.map((part) => encodeURIComponent(part)).join("/");
}

/** An auth mount goes through node-vault's mustache template, which HTML-escapes other characters. */
function authMount(mount: string): string {
  const trimmed = mount.replace(/^\/+|\/+$/g, "");
  if (!/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(trimmed) || trimmed.split("/").some((s) => s === "." || s === "..")) {
    throw new Error(`vault auth mount ${JSON.stringify(mount)} may only contain letters, digits, "_", ".", "-" and "/"`);
  }
  return trimmed;
}

/**
 * Creates a Vault source. Throws (the registry turns it into a failing source with this message)
 * when the mount or path cannot address a secret. Nothing touches the network until `fetch`.
 */
export function createVaultSource(config: VaultKeyConfig, options: VaultSourceOptions = {}): KeySource {
  const vault = config.vault;
  const logger = options.logger ?? silentLogger;
  const env = options.env ?? process.env;
  const timeout = config.refresh.timeout;
  const mount = segments(vault.mount, "mount");
  const path = segments(vault.path, "path");
  const readPath = vault.kv_version === 2 ? `${mount}/data/${path}` : `${mount}/${path}`;
  const auth = vault.auth.method === "token" ? vault.auth : { ...vault.auth, mount: authMount(vault.auth.mount) };
  const where = `vault secret ${mount}/${path}`;
  const label = `${vault.address.replace(/\/+$/, "")} ${mount}/${path}`;
  const transport = createVaultTransport({ timeout });

  let client: KvClient | undefined;
  let session: VaultSession | undefined;
  let ca: Buffer | undefined;
  let closed = false;
  // Errors of reads that Vault refused with 403 (a revoked token looks like this).
  const forbidden = new WeakSet<Error>();

  async function connect(): Promise<{ client: KvClient; session: VaultSession }> {
    if (client !== undefined && session !== undefined) return { client, session };
    const NodeVault = await loadNodeVault();
    if (closed) throw new Error("vault client closed");
    const created = NodeVault({
      endpoint: vault.address,
      apiVersion: "v1",
      "request-promise": transport.requestPromise,
      // node-vault's own debug output prints request bodies (secret ids, JWTs): never enabled.
      debug: () => undefined,
    }) as unknown as KvClient;
    // node-vault fills these from VAULT_TOKEN, VAULT_NAMESPACE and VAULT_PREFIX: only the config counts.
    created.token = undefined;
    created.namespace = vault.namespace;
    created.pathPrefix = "";
    client = created;
    session = createVaultSession({
      client: created,
      auth,
      env,
      logger,
      label,
      callTimeout: timeout,
      ...(options.timers === undefined ? {} : { timers: options.timers }),
    });
    return { client, session };
  }

  /** Re-reads `ca_file` at every fetch so a rotated CA is trusted without a restart. */
  async function loadCa(): Promise<void> {
    if (vault.ca_file === undefined) return;
    let bytes: Buffer;
    try {
      bytes = await readFile(vault.ca_file);
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      throw new Error(`vault ca_file ${vault.ca_file} cannot be read (${typeof code === "string" ? code : "error"})`, { cause: err });
    }
    if (bytes.length > VAULT_CA_MAX_BYTES) throw new Error(`vault ca_file ${vault.ca_file} is larger than ${VAULT_CA_MAX_BYTES} bytes`);
    if (!bytes.toString("latin1").includes("-----BEGIN CERTIFICATE-----")) {
      throw new Error(`vault ca_file ${vault.ca_file} holds no PEM certificate`);
    }
    if (ca !== undefined && ca.equals(bytes)) return;
    ca = bytes;
    transport.setCa(bytes);
  }

  async function read(kv: KvClient, secrets: string[], signal: AbortSignal): Promise<SourceValue> {
    const response = await kv.read(readPath, { signal }).catch((err: unknown) => {
      const described = describeVaultError(err, `vault read ${readPath}`, secrets);
      if (vaultStatus(err) === 403) forbidden.add(described);
      throw described;
    });
    const data = (response as { data?: unknown } | null)?.data;
    if (vault.kv_version === 1) return { value: pickField(data, vault.field, where), version: "" };
    const v2 = data as { data?: unknown; metadata?: { version?: unknown } } | null | undefined;
    if (v2 === null || typeof v2 !== "object") throw new Error(`${where} answered without data (is it a KV v2 mount?)`);
    if (v2.data === null || v2.data === undefined) {
      throw new Error(`${where} has no data (its current version is deleted or destroyed)`);
    }
    const version = v2.metadata?.version;
    return {
      value: pickField(v2.data, vault.field, where),
      version: typeof version === "number" && Number.isSafeInteger(version) ? String(version) : "",
    };
  }

  async function fetchOnce(signal: AbortSignal): Promise<SourceValue> {
    if (closed) throw new Error("vault source closed");
    await loadCa();
    const { client: kv, session: auth } = await connect();
    const fresh = await auth.ensure(signal);
    try {
      return await read(kv, auth.secrets(), signal);
    } catch (err) {
      // A token that worked before may have been revoked: one fresh login, then one more read.
      if (fresh || signal.aborted || !(err instanceof Error && forbidden.has(err))) throw err;
      logger.info("vault refused the token; logging in again", { vault: label });
      auth.invalidate();
      await auth.ensure(signal);
      return read(kv, auth.secrets(), signal);
    }
  }

  return {
    kind: "vault",
    fetch(signal: AbortSignal): Promise<SourceValue> {
      return fetchOnce(signal);
    },
    close(): void {
      closed = true;
      session?.close();
      transport.close();
    },
  };
}
