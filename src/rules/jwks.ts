/**
 * The signing keys of session JWTs, fetched from the identity provider's `jwks_url` (SPEC §3
 * `sessions.jwt.jwks_url`).
 *
 * jose picks and imports the key for a token (`createLocalJWKSet`: `kid`, `alg`, `kty`, `use`,
 * public keys only); this file decides *when* the set is fetched. jose's own remote set does not
 * fit a sidecar: once its cache expires it retries on every request while the provider is down
 * (each request waiting for the timeout) and it throws away nothing it could keep serving. Here:
 *
 * - fetched on first use, then kept; refetched in the background once older than `maxAgeMs`,
 *   while requests go on using the set in hand (fail static, like the MythIQ key);
 * - a token with an unknown `kid` triggers one refetch, at most once per `cooldownMs` whatever the
 *   callers send, so random `kid`s cannot make the proxy hammer the provider;
 * - one fetch in flight at a time, bounded by `timeoutMs` (body included), `maxBytes` and
 *   `maxKeys`; redirects are not followed;
 * - a failed fetch keeps the previous set; with no set at all, tokens are refused until a fetch
 *   succeeds (fail closed).
 */
import type { createLocalJWKSet, JSONWebKeySet, JWTVerifyGetKey } from "jose";
import { loadJose } from "./jose.ts";
import { errorFields, type Logger } from "../observe/log.ts";

export interface JwksOptions {
  readonly url: URL;
  /** Per fetch, connect to last body byte; default 5 000 ms. */
  readonly timeoutMs?: number;
  /** Least time between two fetches triggered by unknown `kid`s or after a failure; default 30 000 ms. */
  readonly cooldownMs?: number;
  /** Age after which the set is refetched in the background; default 600 000 ms (10 min). */
  readonly maxAgeMs?: number;
  /** Largest JWKS document accepted; default 256 KiB. */
  readonly maxBytes?: number;
  /** Most keys accepted in the set; default 100. */
  readonly maxKeys?: number;
  /** Monotonic milliseconds; default `performance.now`. */
  readonly now?: () => number;
  /** HTTP client; default the global `fetch`. */
  readonly fetch?: typeof fetch;
  readonly logger: Logger;
}

export interface Jwks {
  /** For `jwtVerify`. Rejects with `JwksUnavailable` when no key set could be fetched yet. */
  readonly getKey: JWTVerifyGetKey;
  /** Fetches now (single flight); resolves true when a set is held afterwards. */
  refresh(): Promise<boolean>;
  /** Fetches done so far, successful or not (tests, metrics). */
  readonly fetches: number;
}

/** No key set is held and none could be fetched: the token cannot be checked, so it is refused. */
export class JwksUnavailable extends Error {
  constructor() {
    super("no JWKS held: the jwks_url could not be fetched");
    this.name = "JwksUnavailable";
  }
}

type LocalSet = ReturnType<typeof createLocalJWKSet>;

/** GET with redirects refused and the body read up to `maxBytes`; throws a message without body content. */
async function fetchJwks(fetchImpl: typeof fetch, url: URL, timeoutMs: number, maxBytes: number, maxKeys: number): Promise<JSONWebKeySet> {
  const signal = AbortSignal.timeout(timeoutMs);
  const response = await fetchImpl(url, { method: "GET", redirect: "manual", signal, headers: { accept: "application/jwk-set+json, application/json" } });
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => undefined);
    throw new Error(`jwks_url answered ${response.status}`);
  }
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new Error(`jwks_url document larger than ${maxBytes} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (response.body !== null) {
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new Error(`jwks_url document larger than ${maxBytes} bytes`);
      }
      chunks.push(value);
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new Error("jwks_url document is not JSON");
  }
  const keys = (json as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error("jwks_url document has no keys array");
  if (keys.length > maxKeys) throw new Error(`jwks_url document has more than ${maxKeys} keys`);
  return json as JSONWebKeySet;
}

export function createJwks(options: JwksOptions): Jwks {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const cooldownMs = options.cooldownMs ?? 30_000;
  const maxAgeMs = options.maxAgeMs ?? 600_000;
  const maxBytes = options.maxBytes ?? 256 * 1024;
  const maxKeys = options.maxKeys ?? 100;
  const now = options.now ?? (() => performance.now());
  const fetchImpl = options.fetch ?? fetch;
  const { logger, url } = options;
  // Where the keys come from is not secret; a query string might be, so it is left out.
  const where = `${url.protocol}//${url.host}${url.pathname}`;

  let local: LocalSet | undefined;
  let fetchedAt = Number.NEGATIVE_INFINITY;
  let attemptedAt = Number.NEGATIVE_INFINITY;
  let pending: Promise<boolean> | undefined;
  let fetches = 0;

  function refresh(): Promise<boolean> {
    if (pending !== undefined) return pending;
    attemptedAt = now();
    fetches += 1;
    pending = Promise.all([fetchJwks(fetchImpl, url, timeoutMs, maxBytes, maxKeys), loadJose()])
      .then(([json, jose]) => {
        local = jose.createLocalJWKSet(json);
        fetchedAt = now();
        logger.info("session signing keys fetched", { jwks_url: where, keys: json.keys.length });
        return true;
      })
      .catch((err: unknown) => {
        logger.warn("session signing keys could not be fetched; keeping the previous set", { jwks_url: where, held: local !== undefined, ...errorFields(err) });
        return local !== undefined;
      })
      .finally(() => {
        pending = undefined;
      });
    return pending;
  }

  const coolingDown = (): boolean => now() - attemptedAt < cooldownMs;

  async function current(): Promise<LocalSet> {
    if (local === undefined) {
      // Never fetched, or every fetch failed: try again, but not more than once per cool-down.
      if (pending !== undefined || !coolingDown()) await refresh();
      if (local === undefined) throw new JwksUnavailable();
      return local;
    }
    if (now() - fetchedAt > maxAgeMs && !coolingDown()) void refresh();
    return local;
  }

  return {
    getKey: async (header, token) => {
      const set = await current();
      try {
        return await set(header, token);
      } catch (err) {
        // A key rotated in at the provider: refetch once, unless one was tried moments ago.
        const { errors } = await loadJose();
        if (!(err instanceof errors.JWKSNoMatchingKey) || coolingDown()) throw err;
        await refresh();
        const again = local ?? set;
        return again(header, token);
      }
    },
    refresh,
    get fetches() {
      return fetches;
    },
  };
}
