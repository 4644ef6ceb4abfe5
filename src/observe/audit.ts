/**
 * The audit record: one JSON line per request (SPEC §7).
 *
 * The record is built from named fields only, never by copying the request context or its headers,
 * so a token, cookie, JWT or key has no way in: the caller's credentials stay in `ctx.headers`, which
 * is not read here, and the key appears only as its name and fingerprint. The query string is not
 * logged either (it may carry data the caller did not mean for a log); `path` is the path alone.
 * Values the caller chose (path, origin, model, subject) are cut to a bounded length (the model to
 * 128 characters, marker included) so one request cannot blow up a log line; JSON escaping keeps
 * every record on one line whatever bytes they hold.
 */
import type { Reason } from "../errors.ts";
import type { HeldKey } from "../keys/types.ts";
import type { OwnershipNote, RequestContext } from "../pipeline/types.ts";
import { fingerprintLabel, routeLabel } from "./labels.ts";
import type { Logger } from "./log.ts";

/** Longest caller-chosen value kept in a record, in UTF-16 code units, before the marker. */
export const AUDIT_VALUE_MAX = 512;
/** Appended to a value that was cut. */
export const TRUNCATED = "...[truncated]";
/** Longest `model` written, marker included (SPEC §11: a refusal names the model asked for, at most 128 characters). */
export const AUDIT_MODEL_MAX = 128;

// A type alias, not an interface: `Logger.audit` takes a string-indexed record, which only an
// alias is assignable to.
export type AuditRecord = {
  /** ISO 8601, when the request ended. */
  readonly time: string;
  readonly request_id: string;
  readonly client: string | null;
  /** Present only with `audit.include_subject`. */
  readonly subject?: string | null;
  readonly ip: string;
  readonly origin: string | null;
  readonly method: string;
  /** Matched route template without its query list; null when no route matched. */
  readonly route: string | null;
  /** Path without the query string. */
  readonly path: string;
  readonly model: string | null;
  readonly status: number;
  readonly reason: Reason | null;
  /** Name of the key injected, or that would have been (the client's key). */
  readonly key: string | null;
  /** First 8 hex of sha256 of the key sent; null when none was sent. */
  readonly key_fingerprint: string | null;
  readonly duration_ms: number;
  /** Until the upstream's response headers; null when not forwarded. */
  readonly upstream_ms: number | null;
  readonly bytes_in: number;
  readonly bytes_out: number;
  /** The check that refused (SPEC §11; `Ending.check`, docs/observability.md lists them); null when not refused. */
  readonly check: string | null;
  /** 32 hex digits; only when tracing is on (SPEC §11). */
  readonly trace_id?: string;
  /** What ownership decided (README "Ownership"); only on its routes. */
  readonly ownership?: OwnershipNote;
};

/** The request as far as it is known when no context exists: the same names as RequestContext's. */
export interface AuditFallback {
  readonly id: string;
  readonly method: string;
  /** The raw request target; its query string is dropped here. */
  readonly path: string;
  readonly ip: string;
  readonly origin?: string | undefined;
}

export interface AuditInput {
  /** `audit.include_subject`. */
  readonly includeSubject: boolean;
  /** Undefined when the request was refused before a context existed (framing, target). */
  readonly ctx: RequestContext | undefined;
  /**
   * What is known without a context: our request id and the raw request line and peer. Called only
   * when `ctx` is undefined, so a request that has one does not pay for it (normalising the peer
   * address again, for one).
   */
  readonly fallback: () => AuditFallback;
  readonly status: number;
  readonly reason?: Reason | undefined;
  /** The key sent upstream; only its name and fingerprint are read. */
  readonly key?: Pick<HeldKey, "name" | "fingerprint"> | undefined;
  /** Milliseconds. */
  readonly durationMs: number;
  /** Milliseconds; undefined when not forwarded. */
  readonly upstreamMs?: number | undefined;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** The check that refused the request; undefined when it was not refused. */
  readonly check?: string | undefined;
  /** The request's trace id; undefined when tracing is off. */
  readonly traceId?: string | undefined;
  /** Default `new Date()`. */
  readonly now?: () => Date;
}

/** Cuts `value` to `max` code units plus a marker, never splitting a surrogate pair. */
export function bounded(value: string, max: number = AUDIT_VALUE_MAX): string {
  if (value.length <= max) return value;
  let end = max;
  const last = value.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return value.slice(0, end) + TRUNCATED;
}

/** `value` unchanged up to `max` code units; longer, cut so that it, marker included, is `max` long. */
export function boundedWithin(value: string, max: number): string {
  return value.length <= max ? value : bounded(value, max - TRUNCATED.length);
}

/**
 * The path part of a request target, for the log: the query string and fragment dropped, and the
 * userinfo of an absolute-form target (`http://user:pass@host/`, refused but still logged) masked.
 */
export function pathForLog(target: string): string {
  let path = target;
  const q = path.search(/[?#]/);
  if (q !== -1) path = path.slice(0, q);
  path = path.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/]*@/i, "$1[redacted]@");
  return bounded(path);
}

function millis(value: number): number {
  return Number.isFinite(value) ? Math.round(value * 1000) / 1000 : 0;
}

function count(value: number): number {
  return Number.isFinite(value) && value >= 0 ? value : 0;
}

function optional(value: string | undefined, max: number = AUDIT_VALUE_MAX): string | null {
  return value === undefined ? null : bounded(value, max);
}

/** Builds the audit record of one finished request. */
export function auditRecord(input: AuditInput): AuditRecord {
  const { ctx } = input;
  const known: AuditFallback = ctx ?? input.fallback();
  const time = (input.now ?? (() => new Date()))().toISOString();
  // Field order is the order SPEC §7 lists them, which is the order people read them in.
  const head = {
    time,
    request_id: bounded(known.id, 128),
    client: ctx?.client?.id ?? null,
  };
  const subject = input.includeSubject ? { subject: optional(ctx?.subject) } : {};
  return {
    ...head,
    ...subject,
    ip: bounded(known.ip, 64),
    origin: optional(known.origin),
    method: bounded(known.method, 32),
    route: ctx?.route === undefined ? null : routeLabel(ctx.route),
    path: pathForLog(known.path),
    model: ctx?.model === undefined ? null : boundedWithin(ctx.model, AUDIT_MODEL_MAX),
    status: input.status,
    reason: input.reason ?? null,
    key: input.key?.name ?? ctx?.client?.key ?? null,
    key_fingerprint: input.key === undefined ? null : fingerprintLabel(input.key.fingerprint),
    duration_ms: millis(input.durationMs),
    upstream_ms: input.upstreamMs === undefined ? null : millis(input.upstreamMs),
    bytes_in: count(input.bytesIn),
    bytes_out: count(input.bytesOut),
    check: input.check ?? null,
    ...(input.traceId === undefined ? {} : { trace_id: input.traceId }),
    ...(ctx?.ownership === undefined ? undefined : { ownership: ctx.ownership }),
  };
}

/** Writes the record through `logger.audit` when `audit.enabled`. */
export function writeAudit(logger: Logger, audit: { readonly enabled: boolean; readonly include_subject: boolean }, input: Omit<AuditInput, "includeSubject">): void {
  if (!audit.enabled) return;
  logger.audit(auditRecord({ ...input, includeSubject: audit.include_subject }));
}
