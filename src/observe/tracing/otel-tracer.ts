/**
 * The request tracer on the OpenTelemetry JS SDK (SPEC §11): a server span per request, a client
 * span per upstream attempt, W3C trace context to MythIQ, and spans exported over OTLP/HTTP (JSON)
 * by the SDK's batch processor.
 *
 * The packages are loaded on first use through `lazyImport`, so a proxy without `tracing` never
 * loads them (test/e2e/tracing-off.test.ts checks the process's module loads). Only type imports
 * appear at the top of this file; they are erased at build time.
 *
 * Never blocking or failing a request:
 * - the batch processor's queue is bounded (`maxQueueSize`); a span that finds it full is dropped
 *   and counted (`queue_full`); spans of an export the collector did not take are dropped and
 *   counted (`export_failed`). Both counts arrive through the SDK's own span-processor
 *   self-observability counter (`otel.sdk.processor.span.processed`, whose `error.type` says why),
 *   read by a minimal meter here, so nothing is counted twice or guessed;
 * - exports run on timers, one batch at a time, each bounded by the exporter's timeout;
 * - every call the request path makes is guarded: a failure inside tracing is logged once and the
 *   request goes on untraced.
 * No global tracer provider, propagator or context manager is registered: contexts are passed by
 * hand, so nothing else in the process is affected.
 */
import type { Context, Counter, Meter, MeterProvider, Span } from "@opentelemetry/api";
import { hostname } from "node:os";
import { lazyImport } from "../../lazy-import.ts";
import type { RequestContext } from "../../pipeline/types.ts";
import { VERSION } from "../../version.ts";
import { clientEnd, clientStart, serverAttributes, serverFailed, serverSpanName } from "./attributes.ts";
import type { AttemptSpan, RequestTrace, RequestTracer, TracerSettings } from "./types.ts";

const loadOpenTelemetry = lazyImport("OpenTelemetry", async () => {
  const [api, core, sdk, otlp, resources] = await Promise.all([
    import("@opentelemetry/api"),
    import("@opentelemetry/core"),
    import("@opentelemetry/sdk-trace"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
  ]);
  return { api, core, sdk, otlp, resources };
});

/** The batch processor's bounds. */
export interface BatchSettings {
  /** Spans waiting for export; past this, new spans are dropped (`queue_full`). */
  readonly maxQueueSize: number;
  readonly maxExportBatchSize: number;
  /** Milliseconds between two exports when the batch is not full. */
  readonly scheduledDelayMillis: number;
  /** Milliseconds one export may take, retries included; then its spans are dropped (`export_failed`). */
  readonly exportTimeoutMillis: number;
}

export const DEFAULT_BATCH: BatchSettings = Object.freeze({
  maxQueueSize: 2048,
  maxExportBatchSize: 512,
  scheduledDelayMillis: 1000,
  exportTimeoutMillis: 10_000,
});

export interface OtelTracerOptions extends TracerSettings {
  /** Default `DEFAULT_BATCH` (tests shorten it). */
  readonly batch?: BatchSettings;
}

/** The SDK's span-processor counter whose `error.type` attribute says why spans were dropped. */
const PROCESSED_SPANS = "otel.sdk.processor.span.processed";

/** A guarded call: a failure inside tracing is logged (once per tracer) and never reaches the request. */
type Guard = <T>(what: string, fallback: T, fn: () => T) => T;

/** Builds the tracer (loading the OpenTelemetry packages on the first call in the process). Rejects when they cannot be loaded. */
export async function createOtelTracer(options: OtelTracerOptions): Promise<RequestTracer> {
  const { api, core, sdk, otlp, resources } = await loadOpenTelemetry();
  const { logger, onDropped } = options;
  const batch = options.batch ?? DEFAULT_BATCH;

  // The processor's self-observability meter, reduced to the one counter that reports drops.
  const noop = api.createNoopMeter();
  const dropCounter = {
    add(value: number, attributes?: Readonly<Record<string, unknown>>) {
      const type = attributes?.["error.type"];
      if (type === undefined) return;
      onDropped(type === "queue_full" ? "queue_full" : "export_failed", value);
    },
  } as Counter;
  const meter: Meter = Object.assign(Object.create(noop) as Meter, {
    createCounter: (name: string, opts?: Parameters<Meter["createCounter"]>[1]): Counter =>
      name === PROCESSED_SPANS ? dropCounter : noop.createCounter(name, opts),
  });
  const selfObservation: MeterProvider = { getMeter: () => meter };

  const exporter = new otlp.OTLPTraceExporter({
    url: options.endpoint,
    headers: { ...options.headers },
    // The URL, headers, timeout and agent are given here, so the config decides them; the exporter
    // still reads OpenTelemetry's standard OTEL_EXPORTER_OTLP_HEADERS and _COMPRESSION variables
    // (README, "Tracing").
    timeoutMillis: batch.exportTimeoutMillis,
    concurrencyLimit: 2,
    httpAgentOptions: { keepAlive: true, maxSockets: 2 },
  });
  const processor = new sdk.BatchSpanProcessor({
    exporter,
    maxQueueSize: batch.maxQueueSize,
    maxExportBatchSize: batch.maxExportBatchSize,
    scheduledDelayMillis: batch.scheduledDelayMillis,
    // The exporter's own timeout ends an export first, so its spans are counted as dropped.
    exportTimeoutMillis: batch.exportTimeoutMillis + 5_000,
    selfObsMeterProvider: selfObservation,
  });
  const provider = new sdk.TracerProvider({
    resource: resources.defaultResource().merge(
      resources.resourceFromAttributes({
        "service.name": options.serviceName,
        "service.version": VERSION,
        "host.name": hostname(),
      }),
    ),
    sampler: new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(options.sampleRatio) }),
    spanProcessors: [processor],
    spanLimits: { attributeValueLengthLimit: 1024, attributeCountLimit: 64 },
  });
  const tracer = provider.getTracer("mythiq-proxy", VERSION);
  const propagator = new core.W3CTraceContextPropagator();
  const { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, defaultTextMapGetter, defaultTextMapSetter } = api;

  let complained = false;
  const guard: Guard = (what, fallback, fn) => {
    try {
      return fn();
    } catch (err) {
      if (!complained) {
        complained = true;
        logger.error("tracing failed; requests go on untraced where it fails", { during: what, error: err instanceof Error ? err.name : "unknown" });
      }
      return fallback;
    }
  };
  const NO_ATTEMPT: AttemptSpan = Object.freeze({ inject() {}, end() {} });

  function begin(id: string, head: Parameters<RequestTracer["begin"]>[1], trust: Parameters<RequestTracer["begin"]>[2]): RequestTrace {
    const startedAt = performance.now();
    let server: Span | undefined;
    let serverContext: Context = ROOT_CONTEXT;
    let attempts = 0;

    /** The server span, started at the request's arrival the first time it is needed (the caller is known by then). */
    const serverSpan = (ctx: RequestContext | undefined): Span => {
      if (server !== undefined) return server;
      // An untrusted caller's trace context is replaced, not continued: the span starts a new trace.
      const parent = ctx !== undefined && trust(ctx) ? propagator.extract(ROOT_CONTEXT, head.headers, defaultTextMapGetter) : ROOT_CONTEXT;
      server = tracer.startSpan(serverSpanName(ctx, head), { kind: SpanKind.SERVER, startTime: startedAt }, parent);
      serverContext = trace.setSpan(ROOT_CONTEXT, server);
      return server;
    };

    return {
      attempt: (ctx, start) =>
        guard("attempt", NO_ATTEMPT, () => {
          serverSpan(ctx);
          const { name, attributes } = clientStart(start, attempts);
          attempts += 1;
          const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, serverContext);
          let ended = false;
          return {
            inject: (headers) =>
              guard("inject", undefined, () => {
                // The caller's trace headers never reach MythIQ as they came: this span's replace them.
                delete headers["traceparent"];
                delete headers["tracestate"];
                propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, defaultTextMapSetter);
              }),
            end: (outcome) =>
              guard("attempt end", undefined, () => {
                if (ended) return;
                ended = true;
                const { attributes: more, failed } = clientEnd(outcome);
                span.setAttributes(more);
                if (failed) span.setStatus({ code: SpanStatusCode.ERROR });
                span.end();
              }),
          };
        }),

      finish: (ctx, end) =>
        guard("finish", undefined, () => {
          const span = serverSpan(ctx);
          span.updateName(serverSpanName(ctx, head));
          span.setAttributes(serverAttributes(id, head, ctx, end));
          if (serverFailed(end)) span.setStatus({ code: SpanStatusCode.ERROR });
          span.end(performance.now());
          return span.spanContext().traceId;
        }),
    };
  }

  return {
    begin: (id, head, trust) => begin(id, head, trust),
    async shutdown(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref();
      });
      await Promise.race([provider.shutdown().catch(() => undefined), late]).finally(() => clearTimeout(timer));
    },
  };
}
