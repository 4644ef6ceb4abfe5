/**
 * What the request path sees of tracing (SPEC §11): a tracer begins one trace per request, the
 * forwarder opens one client span per upstream attempt, and the request's accounting ends the
 * server span and writes its trace id into the audit line.
 *
 * Nothing here imports OpenTelemetry: with tracing off there is no tracer at all, so the request
 * path does one `undefined` check per hook and the OpenTelemetry packages are never loaded
 * (`otel-tracer.ts` is imported only when `tracing` is configured).
 */
import type { Reason } from "../../errors.ts";
import type { HeldKey } from "../../keys/types.ts";
import type { RequestContext, RequestHead } from "../../pipeline/types.ts";
import type { Logger } from "../log.ts";
import type { SpanDropReason } from "../metrics.ts";

/**
 * Whether a request's incoming `traceparent` may be continued (`tracing.trust_incoming`, compiled
 * once per config). Asked once per request, when its server span starts: at its first upstream
 * attempt or when it ends, so a trust by client id sees the identified client.
 */
export type TrustIncoming = (ctx: RequestContext) => boolean;

/** The key a span names: never its value. */
export type SpanKey = Pick<HeldKey, "name" | "fingerprint">;

/** How a request ended, in the terms of its server span. */
export interface ServerSpanEnd {
  /** The status sent; 0 when none was (the connection was reset). */
  readonly status: number;
  readonly reason: Reason | undefined;
  /** The check that refused the request. */
  readonly check: string | undefined;
  /** The key sent upstream. */
  readonly key: SpanKey | undefined;
  /** A broken invariant or a bug reset the connection. */
  readonly failed: boolean;
}

/** One upstream attempt, as its client span starts. */
export interface AttemptStart {
  readonly method: string;
  /** The upstream URL without the query string (a query value is never recorded). */
  readonly url: string;
  readonly key: SpanKey;
}

/** How an upstream attempt ended. */
export interface AttemptEnd {
  /** The upstream's status, when it answered. */
  readonly upstreamStatus: number | undefined;
  /** Set when the attempt failed (`upstream_*`) or the proxy replied itself. */
  readonly reason: Reason | undefined;
}

/** The client span of one upstream attempt. */
export interface AttemptSpan {
  /** Sets this span's `traceparent` (and the trusted caller's `tracestate`) on the outgoing headers, replacing the caller's. */
  inject(headers: Record<string, string | string[]>): void;
  /** Ends the span; later calls do nothing. */
  end(outcome: AttemptEnd): void;
}

/** The trace of one request. */
export interface RequestTrace {
  /** Starts the client span of the next upstream attempt (a 401 retry is a second one). */
  attempt(ctx: RequestContext, start: AttemptStart): AttemptSpan;
  /**
   * Ends the server span (`ctx` undefined when the request ended before it had a context) and
   * returns the trace id (32 hex digits) for the audit line; undefined only if tracing itself
   * failed. Call once.
   */
  finish(ctx: RequestContext | undefined, end: ServerSpanEnd): string | undefined;
}

export interface RequestTracer {
  /** Begins the trace of the request `id` (our `x-request-id`) that arrives now. Never throws. */
  begin(id: string, head: RequestHead, trust: TrustIncoming): RequestTrace;
  /** Exports what is queued (bounded by `timeoutMs`) and stops; spans begun later are not exported. */
  shutdown(timeoutMs: number): Promise<void>;
}

/** The settings a tracer is built from: `tracing` with its header secrets resolved. */
export interface TracerSettings {
  /** The OTLP/HTTP traces URL. */
  readonly endpoint: string;
  /** Resolved header values: secrets, handed to the exporter only. */
  readonly headers: Readonly<Record<string, string>>;
  readonly serviceName: string;
  /** 0..1: share of new traces recorded; a continued trace follows its parent's sampled flag. */
  readonly sampleRatio: number;
  readonly logger: Logger;
  /** Spans dropped (`trace_spans_dropped_total`). */
  readonly onDropped: (reason: SpanDropReason, count: number) => void;
}
