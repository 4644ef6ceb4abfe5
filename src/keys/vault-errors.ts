/**
 * Turns what node-vault throws into one safe line for the refresh log: the action, the HTTP status
 * and Vault's own first error message (cut down by `safeStoreText`), never a token, a secret id or a
 * request body.
 */
import { safeStoreText } from "./store-text.ts";

/** The HTTP status of a Vault error response (node-vault's `ApiResponseError`), else undefined. */
export function vaultStatus(err: unknown): number | undefined {
  const status = (err as { response?: { statusCode?: unknown } } | null)?.response?.statusCode;
  return typeof status === "number" ? status : undefined;
}

/**
 * `${action} failed: HTTP 403: permission denied`, `${action} failed: vault request timed out after 5s`.
 * `secrets` are replaced if Vault's message quotes one of them.
 */
export function describeVaultError(err: unknown, action: string, secrets: ReadonlyArray<string | undefined>): Error {
  const status = vaultStatus(err);
  if (status !== undefined) {
    const message = err instanceof Error ? safeStoreText(err.message, secrets) : "";
    const detail = message === "" || message === `Status ${status}` ? "" : `: ${message}`;
    const hint = status >= 300 && status < 400 ? " (redirects are not followed: point address at the active node or a load balancer)" : "";
    return new Error(`${action} failed: HTTP ${status}${detail}${hint}`);
  }
  if (err instanceof Error && err.message.startsWith("vault ")) {
    // The transport's and our own messages: fixed text, no server content.
    return new Error(`${action} failed: ${err.message}`);
  }
  // tv4 argument errors and anything else: their text may quote the arguments.
  return new Error(`${action} failed: ${err instanceof Error ? err.name : "unexpected error"}`);
}
