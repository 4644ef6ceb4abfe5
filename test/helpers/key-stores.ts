/**
 * The secret stores behind the whole-proxy key tests, one shape for both: a fake Vault (approle
 * login, KV v2) or a fake AWS Secrets Manager (environment credentials, checked signatures), with
 * the YAML of the `default` key that reads from it and the knobs a test turns (rotate, down,
 * stall). `secrets()` lists everything secret on the wire — keys, tokens, secret ids, AWS secret
 * keys — for the leak scans.
 *
 * ```ts
 * const store = await startVaultStore(KEY);      // or startAwsStore(KEY) (sets process.env AWS_*)
 * const proxy = await startTestProxy({ yaml: withKey(configYaml(upstream.url), store.keyYaml({ interval: "1s" })), env: store.env });
 * store.rotate(NEW_KEY); store.mode("down"); store.reads()
 * ```
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isolateAwsEnv } from "./aws-env.ts";
import { startFakeAws, type FakeAws } from "./fake-aws.ts";
import { startFakeVault, type FakeVault } from "./fake-vault.ts";

export type StoreMode = "up" | "down" | "stall";

export interface RefreshYaml {
  readonly interval?: string;
  readonly timeout?: string;
  readonly max_stale?: string;
}

export interface KeyStore {
  readonly name: "vault" | "aws";
  /** The YAML flow mapping of a key named `default` reading from this store. */
  keyYaml(refresh?: RefreshYaml): string;
  /** Environment the proxy needs for the key's secret references. */
  readonly env: Record<string, string>;
  /** Stores a new value (a new KV version / a new AWSCURRENT version). */
  rotate(value: string): void;
  mode(mode: StoreMode): void;
  /** Secret reads the store has received so far (not logins or credential calls). */
  reads(): number;
  /** Everything secret this store handed out or accepted. */
  secrets(): string[];
  close(): Promise<void>;
}

const ROLE_ID = "e2e-role-id-4f0c9a7e";
const SECRET_ID = "e2e-secret-id-8b1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5";
const AWS_ACCESS_KEY_ID = "AKIAE2ETESTKEY000001";
const AWS_SECRET_ACCESS_KEY = "e2e-aws-secret-access-key-ZYXWVUTSRQPONMLK";

/** Replaces the `default` key of `configYaml`'s output with `keyYaml`. */
export function withKey(yaml: string, keyYaml: string): string {
  const line = "  default: { source: env, env: MYTHIQ_API_KEY }";
  if (!yaml.includes(line)) throw new Error("configYaml no longer has the expected default key line");
  return yaml.replace(line, `  default: ${keyYaml}`);
}

function refreshPart(refresh: RefreshYaml = {}): string {
  const entries = Object.entries(refresh).map(([k, v]) => `${k}: ${v}`);
  return entries.length === 0 ? "" : `, refresh: { ${entries.join(", ")} }`;
}

export async function startVaultStore(initial: string): Promise<KeyStore & { readonly vault: FakeVault }> {
  const vault = await startFakeVault();
  vault.approle("approle", { role_id: ROLE_ID, secret_id: SECRET_ID });
  vault.kv("secret", 2);
  vault.put("secret", "mythiq/production", { api_key: initial });
  const dir = mkdtempSync(join(tmpdir(), "mythiq-e2e-vault-"));
  const secretIdFile = join(dir, "secret-id");
  writeFileSync(secretIdFile, `${SECRET_ID}\n`);
  const isRead = (path: string): boolean => path.startsWith("/v1/secret/");
  return {
    name: "vault",
    vault,
    keyYaml: (refresh) =>
      `{ source: vault, vault: { address: "${vault.url}", auth: { method: approle, role_id: { env: VAULT_ROLE_ID }, secret_id: { file: "${secretIdFile}" } }, kv_version: 2, mount: secret, path: mythiq/production, field: api_key }${refreshPart(refresh)} }`,
    env: { VAULT_ROLE_ID: ROLE_ID },
    rotate: (value) => vault.put("secret", "mythiq/production", { api_key: value }),
    mode(mode) {
      vault.mode = mode === "stall" ? "up" : mode;
      vault.readDelayMs = mode === "stall" ? 60_000 : 0;
    },
    reads: () => vault.count((r) => isRead(r.path)),
    secrets: () => [ROLE_ID, SECRET_ID, ...vault.issued],
    async close() {
      await vault.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Sets `process.env` for the AWS SDK's credential chain (restored by `close`). */
export async function startAwsStore(initial: string): Promise<KeyStore & { readonly aws: FakeAws }> {
  const aws = await startFakeAws();
  aws.allow(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY);
  aws.put("mythiq/analytics", JSON.stringify({ api_key: initial }));
  const restore = isolateAwsEnv({ AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY });
  return {
    name: "aws",
    aws,
    keyYaml: (refresh) =>
      `{ source: aws, aws: { region: eu-west-1, secret_id: mythiq/analytics, field: api_key, endpoint: "${aws.url}" }${refreshPart(refresh)} }`,
    env: {},
    rotate: (value) => void aws.put("mythiq/analytics", JSON.stringify({ api_key: value })),
    mode(mode) {
      aws.mode = mode;
    },
    reads: () => aws.sm.length,
    secrets: () => [AWS_SECRET_ACCESS_KEY],
    async close() {
      await aws.close();
      restore();
    },
  };
}
