/**
 * Keys: where a MythIQ key comes from (`KeySource`) and where the proxy holds it (`Keyring`).
 *
 * The hot path only ever calls the synchronous `Keyring.current()`: it never waits on a secret store.
 */
import type { KeySourceKind } from "../config/types.ts";

/** What a source returns; the keyring validates it before use. */
export interface SourceValue {
  readonly value: string;
  /** The store's own version label (KV v2 version, AWS VersionId, file mtime); "" when the store has none. */
  readonly version: string;
}

export interface KeySource {
  readonly kind: KeySourceKind;
  /** One attempt; must give up promptly when `signal` aborts. Errors must not contain the secret. */
  fetch(signal: AbortSignal): Promise<SourceValue>;
  /** Tells the keyring the source changed (a watched file): it should fetch now. */
  onChange?(listener: () => void): void;
  close?(): void;
}

/**
 * A held key. `value` is not enumerable, so `JSON.stringify` and `util.inspect` of this object
 * never print it; read it only where the `authorization` header is built.
 */
export interface HeldKey {
  readonly name: string;
  readonly source: KeySourceKind;
  readonly value: string;
  readonly version: string;
  /** First 8 hex digits of sha256(value): safe to log and to use as a metric label. */
  readonly fingerprint: string;
  /** Epoch ms of the last successful fetch. */
  readonly fetchedAt: number;
}

export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

export interface Keyring {
  /** The key to inject now, or undefined when none is held or it is older than `max_stale`. */
  current(name: string): HeldKey | undefined;
  /** Readiness of the named keys (the ones clients use). */
  readiness(names: Iterable<string>): Readiness;
  /**
   * An upstream 401 says `refused` (default: the key held now) was refused: fetch the key again
   * now. Shared by concurrent callers, at most once per refused value per 30 s; when another value
   * is held already, resolves with it without fetching. Resolves with the key held afterwards
   * (maybe the refused one).
   */
  refreshNow(name: string, refused?: HeldKey): Promise<HeldKey | undefined>;
  /** Starts background refresh of every key. */
  start(): void;
  close(): void;
}
