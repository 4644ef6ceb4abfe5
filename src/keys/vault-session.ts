/**
 * The Vault token of one key source: logging in (kubernetes, approle) or taking a given token, and
 * keeping it alive (SPEC §8: "Vault tokens are renewed before they expire and re-obtained by logging
 * in again when renewal fails").
 *
 * - A token with a lease is renewed at two thirds of it, in the background, so a refresh never
 *   finds it expired; a lease that renewal no longer extends (the role's `max_ttl` is near), a
 *   token that is not renewable, and a failed renewal all lead to a fresh login instead.
 * - Login material is read at every login, never cached: projected service-account tokens rotate
 *   hourly, AppRole secret ids and token files are rotated by their own tooling.
 * - Logins and renewals run one at a time; a refresh that needs a token waits for one in progress.
 * - Tokens, secret ids and JWTs are registered with the logger for redaction (the previous value is
 *   forgotten when this session replaces it, so frequent logins do not grow the set) and never put
 *   into a message.
 */
import { readSecret } from "../config/secret-ref.ts";
import type { VaultAuthConfig } from "../config/types.ts";
import type { Logger } from "../observe/log.ts";
import type { Environment } from "./env-source.ts";
import { describeVaultError } from "./vault-errors.ts";

/** Fraction of a token's lease after which it is renewed (or replaced by a fresh login). */
export const VAULT_RENEW_AT = 2 / 3;
/** Shortest delay before a renewal or a scheduled login, in ms: a 0-second lease must not spin. */
export const VAULT_MIN_RENEW_DELAY_MS = 500;

/** The part of a node-vault client this module uses. */
export interface VaultClient {
  token?: string | undefined;
  kubernetesLogin(args: object): Promise<unknown>;
  approleLogin(args: object): Promise<unknown>;
  tokenLookupSelf(args?: object): Promise<unknown>;
  tokenRenewSelf(args?: object): Promise<unknown>;
}

/** Timers, injectable for tests; real ones are `unref`ed. */
export interface SessionTimers {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const systemTimers: SessionTimers = {
  now: () => Date.now(),
  setTimeout(callback, ms) {
    const handle = setTimeout(callback, ms);
    handle.unref();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface VaultSessionOptions {
  readonly client: VaultClient;
  readonly auth: VaultAuthConfig;
  /** Where `{env: NAME}` references are read. */
  readonly env: Environment;
  readonly logger: Logger;
  /** Names the Vault and secret in log lines (`https://vault:8200 secret/mythiq/prod`). */
  readonly label: string;
  /** Bound on a background renewal or login, in ms. */
  readonly callTimeout: number;
  readonly timers?: SessionTimers;
}

export interface VaultSession {
  /**
   * Makes sure the client holds a usable token, logging in first when there is none or it is about
   * to expire. Resolves true when it logged in just now.
   */
  ensure(signal: AbortSignal): Promise<boolean>;
  /** Vault refused the token (revoked, expired early): the next `ensure` logs in again. */
  invalidate(): void;
  /** The secrets in play now (token, secret id, JWT), to scrub from Vault's error messages. */
  secrets(): string[];
  close(): void;
}

interface TokenState {
  /** Epoch ms; undefined = the token does not expire. */
  readonly expiresAt: number | undefined;
  readonly leaseMs: number;
  /** What to do at two thirds of the lease. */
  readonly next: "renew" | "login";
}

interface Grant {
  readonly token: string;
  readonly leaseSeconds: number;
  readonly renewable: boolean;
}

function authDescription(auth: VaultAuthConfig): string {
  return auth.method === "token" ? "token" : `${auth.method} login (mount ${auth.mount})`;
}

/** Reads `auth` of a login or renewal answer; the token itself is checked, never quoted. */
function grantFrom(response: unknown, what: string): Grant {
  const auth = (response as { auth?: unknown } | null)?.auth as
    | { client_token?: unknown; lease_duration?: unknown; renewable?: unknown }
    | null
    | undefined;
  if (auth === null || typeof auth !== "object") throw new Error(`vault ${what} answered without auth`);
  if (typeof auth.client_token !== "string" || auth.client_token === "") {
    throw new Error(`vault ${what} answered without a client token`);
  }
  const lease = typeof auth.lease_duration === "number" && auth.lease_duration > 0 ? auth.lease_duration : 0;
  return { token: auth.client_token, leaseSeconds: lease, renewable: auth.renewable === true };
}

/** Reads a login secret; the error names the reference, never the value. */
async function material(read: Promise<string>, what: string): Promise<string> {
  try {
    return await read;
  } catch (err) {
    // readSecret's messages name the reference, never the value, so the cause is safe to keep.
    throw new Error(`vault ${what} unavailable: ${err instanceof Error ? err.message : "unreadable"}`, { cause: err });
  }
}

export function createVaultSession(options: VaultSessionOptions): VaultSession {
  const { client, auth, env, logger, label, callTimeout } = options;
  const timers = options.timers ?? systemTimers;
  const action = `vault ${authDescription(auth)}`;

  let state: TokenState | undefined;
  let pending: Promise<unknown> | undefined;
  let timer: unknown;
  let closed = false;
  const closing = new AbortController();

  // Secrets registered with the logger, by kind; a replaced value is forgotten.
  const held = new Map<string, string>();
  function remember(kind: "token" | "secret_id" | "jwt", value: string): void {
    const old = held.get(kind);
    if (old === value) return;
    logger.registerSecret(value);
    if (old !== undefined) logger.forgetSecret(old);
    held.set(kind, value);
  }

  /** Runs `task` after whatever login or renewal is in progress; one at a time. */
  function exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = (pending ?? Promise.resolve()).catch(() => undefined).then(task);
    const tracked = run.finally(() => {
      if (pending === tracked) pending = undefined;
    });
    // The caller handles `run`'s rejection; this branch only keeps the queue going.
    tracked.catch(() => undefined);
    pending = tracked;
    return run;
  }

  function usable(): boolean {
    if (state === undefined || typeof client.token !== "string" || client.token === "") return false;
    if (state.expiresAt === undefined) return true;
    // A token in its last moments could expire between this check and the read.
    const margin = Math.min(1_000, state.leaseMs / 10);
    return timers.now() < state.expiresAt - margin;
  }

  function schedule(delay: number | undefined): void {
    if (timer !== undefined) timers.clearTimeout(timer);
    timer = undefined;
    if (delay === undefined || closed) return;
    timer = timers.setTimeout(() => {
      timer = undefined;
      exclusive(background).catch(() => undefined);
    }, Math.max(VAULT_MIN_RENEW_DELAY_MS, Math.round(delay)));
  }

  /** Takes a new token (login or renewal) and plans what to do before it expires. */
  function adopt(grant: Grant, renewedFromLeaseMs?: number): void {
    remember("token", grant.token);
    client.token = grant.token;
    const leaseMs = grant.leaseSeconds * 1000;
    // Renewal capped by max_ttl answers with what is left; renewing again would only shrink it.
    const shrinking = renewedFromLeaseMs !== undefined && leaseMs < renewedFromLeaseMs / 2;
    state = {
      expiresAt: leaseMs > 0 ? timers.now() + leaseMs : undefined,
      leaseMs,
      next: grant.renewable && !shrinking ? "renew" : "login",
    };
    schedule(leaseMs > 0 ? leaseMs * VAULT_RENEW_AT : undefined);
  }

  /**
   * A login request carries no token (node-vault would send the current one along). If the login
   * fails or answers without a token, the previous token is put back: it may still be valid until
   * it expires.
   */
  async function withoutToken(call: () => Promise<unknown>): Promise<Grant> {
    const previous = client.token;
    client.token = undefined;
    try {
      return grantFrom(await call(), "login");
    } catch (err) {
      if (client.token === undefined) client.token = previous;
      throw describeVaultError(err, action, secrets());
    }
  }

  async function login(signal: AbortSignal): Promise<void> {
    if (closed) throw new Error("vault client closed");
    const requestOptions = { signal };
    let grant: Grant;
    switch (auth.method) {
      case "kubernetes": {
        const jwt = await material(readSecret({ file: auth.jwt_file }, env), "service account token");
        remember("jwt", jwt);
        // mount_point always: without it node-vault 0.12 posts to /v1/auth//login (node-vault#300).
        grant = await withoutToken(() =>
          client.kubernetesLogin({ role: auth.role, jwt, mount_point: auth.mount, requestOptions }),
        );
        break;
      }
      case "approle": {
        const roleId = await material(readSecret(auth.role_id, env), "approle role_id");
        const secretId = await material(readSecret(auth.secret_id, env), "approle secret_id");
        remember("secret_id", secretId);
        grant = await withoutToken(() =>
          client.approleLogin({ role_id: roleId, secret_id: secretId, mount_point: auth.mount, requestOptions }),
        );
        break;
      }
      case "token": {
        const token = await material(readSecret(auth.token, env), "token");
        remember("token", token);
        client.token = token;
        // The lookup proves the token works and tells its remaining TTL and whether it renews.
        const response = await client.tokenLookupSelf({ requestOptions }).catch((err: unknown) => {
          throw describeVaultError(err, "vault token lookup", secrets());
        });
        const data = (response as { data?: { ttl?: unknown; renewable?: unknown } } | null)?.data;
        const ttl = typeof data?.ttl === "number" && data.ttl > 0 ? data.ttl : 0;
        grant = { token, leaseSeconds: ttl, renewable: data?.renewable === true };
        break;
      }
    }
    if (closed) return;
    adopt(grant);
    logger.info("vault token obtained", {
      vault: label,
      auth: auth.method,
      lease_seconds: grant.leaseSeconds,
      renewable: grant.renewable,
    });
  }

  /** The timer's job: renew (or log in again when renewal is not possible or fails). */
  async function background(): Promise<void> {
    if (closed || state === undefined) return;
    const signal = AbortSignal.any([closing.signal, AbortSignal.timeout(callTimeout)]);
    if (state.next === "renew") {
      const before = state.leaseMs;
      try {
        const response = await client.tokenRenewSelf({ requestOptions: { signal } }).catch((err: unknown) => {
          throw describeVaultError(err, "vault token renewal", secrets());
        });
        if (closed) return;
        const grant = grantFrom(response, "token renewal");
        adopt(grant, before);
        logger.debug("vault token renewed", { vault: label, lease_seconds: grant.leaseSeconds });
        return;
      } catch (err) {
        if (closed) return;
        logger.warn("vault token renewal failed; logging in again", { vault: label, error: messageOf(err) });
      }
    }
    try {
      await login(signal);
    } catch (err) {
      if (closed) return;
      // The old token may still work until it expires; the next refresh logs in if it does not.
      logger.warn("vault login failed", { vault: label, auth: auth.method, error: messageOf(err) });
    }
  }

  function secrets(): string[] {
    return [...held.values(), ...(typeof client.token === "string" ? [client.token] : [])];
  }

  return {
    ensure(signal) {
      if (closed) return Promise.reject(new Error("vault client closed"));
      return exclusive(async () => {
        if (usable()) return false;
        await login(signal);
        return true;
      });
    },
    invalidate() {
      state = undefined;
      schedule(undefined);
    },
    secrets,
    close() {
      closed = true;
      closing.abort();
      schedule(undefined);
      client.token = undefined;
      // The secrets stay registered with the logger: another key may log in with the same ones.
    },
  };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : "unknown error";
}
