/**
 * `source: aws` — the key is an AWS Secrets Manager secret (SPEC §3): its SecretString is the bare
 * key, or a JSON object whose `field` is the key.
 *
 * - The SDK (17 MB, ~45 ms to import) is loaded with `import()` at the first fetch of an `aws` key,
 *   so a proxy without one never loads it.
 * - Credentials come from the SDK's default chain: environment, web identity (IRSA:
 *   `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), the container endpoint (EKS Pod Identity:
 *   `AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`), … The chain
 *   caches them and refreshes them before they expire; the proxy never sees or logs them.
 * - One HTTP attempt per fetch (`maxAttempts: 1`): retries, with backoff, are the keyring's, so
 *   `refresh.timeout` bounds exactly one request. The SDK has no timeouts by default; here both the
 *   connection and the response are bounded by `refresh.timeout`, with `throwOnRequestTimeout`
 *   (without it the SDK only logs a warning and keeps waiting), and the keyring's AbortSignal is
 *   passed on so an aborted fetch closes its socket.
 * - Error messages are cut down to the error's name, the HTTP status and AWS's message with quoted
 *   parts removed: the SDK's parse errors quote the body they choke on, which holds the secret.
 */
import type * as SecretsManager from "@aws-sdk/client-secrets-manager";
import { lazyImport } from "../lazy-import.ts";
import type { AwsKeyConfig } from "../config/types.ts";
import { silentLogger, type Logger } from "../observe/log.ts";
import { parseJsonQuietly, pickField, safeStoreText } from "./store-text.ts";
import type { KeySource, SourceValue } from "./types.ts";

// A type-only import: erased at build time, so nothing loads the SDK until `import()` below.
type SecretsManagerModule = typeof SecretsManager;

/** Loads the SDK; replaceable in tests. */
export type LoadSdk = () => Promise<SecretsManagerModule>;

/** The SDK, imported once, on first use. A failed import is retried on the next fetch. */
export const loadSecretsManagerSdk: LoadSdk = lazyImport("the AWS SDK", () => import("@aws-sdk/client-secrets-manager"));

export interface AwsSourceOptions {
  readonly logger?: Logger;
  /** Default: a dynamic `import("@aws-sdk/client-secrets-manager")`, once per process. */
  readonly loadSdk?: LoadSdk;
}

type Client = InstanceType<SecretsManagerModule["SecretsManagerClient"]>;

/** One line for the refresh log, without anything the SDK or AWS quoted. */
export function describeAwsError(err: unknown, what: string): Error {
  if (!(err instanceof Error)) return new Error(`${what} failed`);
  const meta = (err as { $metadata?: { httpStatusCode?: unknown } }).$metadata;
  const status = typeof meta?.httpStatusCode === "number" ? ` (HTTP ${meta.httpStatusCode})` : "";
  const name = /^[A-Za-z0-9_.:-]{1,80}$/.test(err.name) ? err.name : "Error";
  if (name === "AbortError") return new Error(`${what} aborted`);
  // A body that failed to parse may be the secret: its text is never kept.
  if (name === "SyntaxError") return new Error(`${what} failed: the response could not be parsed${status}`);
  const message = safeStoreText(err.message);
  return new Error(`${what} failed: ${name}${status}${message === "" ? "" : `: ${message}`}`);
}

/** Creates an AWS Secrets Manager source. Nothing is loaded or sent until `fetch`. */
export function createAwsSource(config: AwsKeyConfig, options: AwsSourceOptions = {}): KeySource {
  const aws = config.aws;
  const logger = options.logger ?? silentLogger;
  const loadSdk = options.loadSdk ?? loadSecretsManagerSdk;
  const timeout = config.refresh.timeout;
  const what = `aws secret ${aws.secret_id} (${aws.version_stage})`;

  let client: Client | undefined;
  let closed = false;

  async function connect(): Promise<{ client: Client; module: SecretsManagerModule }> {
    const module = await loadSdk();
    if (closed) throw new Error("aws source closed");
    client ??= new module.SecretsManagerClient({
      region: aws.region,
      ...(aws.endpoint === "" ? {} : { endpoint: aws.endpoint }),
      maxAttempts: 1,
      requestHandler: { connectionTimeout: timeout, requestTimeout: timeout, throwOnRequestTimeout: true },
    });
    return { client, module };
  }

  async function fetchOnce(signal: AbortSignal): Promise<SourceValue> {
    if (closed) throw new Error("aws source closed");
    const { client: sm, module } = await connect();
    let output;
    try {
      output = await sm.send(new module.GetSecretValueCommand({ SecretId: aws.secret_id, VersionStage: aws.version_stage }), {
        abortSignal: signal,
      });
    } catch (err) {
      throw describeAwsError(err, `${what} GetSecretValue`);
    }
    const text = output.SecretString;
    if (typeof text !== "string") {
      throw new Error(
        output.SecretBinary === undefined
          ? `${what} has no SecretString`
          : `${what} holds SecretBinary; store the key as SecretString`,
      );
    }
    if (aws.field === undefined && text.trimStart().startsWith("{")) {
      // Held as is, the whole JSON document would be sent to MythIQ as the key.
      throw new Error(`${what} SecretString is a JSON object: set \`field\` to the name of the key's field`);
    }
    const value = aws.field === undefined ? text : pickField(parseJsonQuietly(text, `${what} SecretString`), aws.field, what);
    const version = typeof output.VersionId === "string" ? output.VersionId : "";
    logger.debug("aws secret read", { secret_id: aws.secret_id, version_stage: aws.version_stage, version });
    return { value, version };
  }

  return {
    kind: "aws",
    fetch: fetchOnce,
    close(): void {
      closed = true;
      client?.destroy();
      client = undefined;
    },
  };
}
