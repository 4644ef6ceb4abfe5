/**
 * The process's tracer, following the config (SPEC §11 `tracing`, §8 reload): none while `tracing`
 * is absent; built (header secrets read, OpenTelemetry loaded) when it appears; rebuilt when its
 * settings change, the previous one flushing what it holds in the background; stopped when the
 * section goes away. `trust_incoming` is not part of it: it is compiled with each config
 * (pipeline/trace-trust.ts), so a reload that changes only the trust swaps nothing here.
 *
 * `current()` is what the request path calls: one variable read, `undefined` while tracing is off.
 */
import { readSecret } from "../../config/secret-ref.ts";
import type { SecretRef, TracingConfig } from "../../config/types.ts";
import type { Environment } from "../../keys/env-source.ts";
import { errorFields, type Logger } from "../log.ts";
import type { SpanDropReason } from "../metrics.ts";
import type { RequestTracer, TracerSettings } from "./types.ts";

/** How long a replaced or stopping tracer may spend exporting what it still holds. */
export const TRACER_SHUTDOWN_MS = 5_000;

/** What builds a tracer from resolved settings (the OpenTelemetry one in production). */
export type TracerFactory = (settings: TracerSettings) => Promise<RequestTracer>;

export interface TracingDeps {
  readonly logger: Logger;
  /** The environment `{env}` header references are read from (the one the config was validated against). */
  readonly env: Environment;
  readonly onDropped: (reason: SpanDropReason, count: number) => void;
  /** Default: the OpenTelemetry tracer, imported on first use. */
  readonly create?: TracerFactory;
}

export interface Tracing {
  /** The tracer in force; undefined while tracing is off. A property, so the request path can hold it unbound. */
  readonly current: () => RequestTracer | undefined;
  /**
   * Puts `config` in force; settings equal to the ones in force are a no-op. Rejects, keeping the
   * tracer in force, when a header secret cannot be read or the library cannot be loaded. Calls
   * are applied one after another, in order.
   */
  apply(config: TracingConfig | undefined): Promise<void>;
  /** Stops the tracer in force, exporting what it holds (bounded by `TRACER_SHUTDOWN_MS`). */
  shutdown(): Promise<void>;
}

// Visible ASCII, spaces and tabs, and obs-text: what an HTTP field value may hold (no CR, LF, NUL).
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Reads each header's secret. Errors name the header and the reference, never a value. */
async function resolveHeaders(headers: Readonly<Record<string, SecretRef>>, env: Environment): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, ref] of Object.entries(headers)) {
    let value: string;
    try {
      value = await readSecret(ref, env);
    } catch (err) {
      throw new Error(`tracing.headers.${name}: ${errorFields(err).error}`, { cause: err });
    }
    if (!FIELD_VALUE.test(value)) throw new Error(`tracing.headers.${name}: the secret holds characters a header value cannot carry`);
    out[name] = value;
  }
  return out;
}

const defaultFactory: TracerFactory = async (settings) => (await import("./otel-tracer.ts")).createOtelTracer(settings);

export function createTracing(deps: TracingDeps): Tracing {
  const create = deps.create ?? defaultFactory;
  let tracer: RequestTracer | undefined;
  /** The settings `tracer` was built from (JSON), "" while off. */
  let applied = "";
  let queue: Promise<unknown> = Promise.resolve();

  const retire = (old: RequestTracer | undefined): void => {
    old?.shutdown(TRACER_SHUTDOWN_MS).catch((err: unknown) => deps.logger.warn("tracer did not stop cleanly", errorFields(err)));
  };

  async function applyNow(config: TracingConfig | undefined): Promise<void> {
    const wanted = config === undefined ? "" : JSON.stringify({ ...config, trust_incoming: undefined });
    if (wanted === applied) return;
    if (config === undefined) {
      const old = tracer;
      tracer = undefined;
      applied = "";
      retire(old);
      deps.logger.info("tracing off");
      return;
    }
    const headers = await resolveHeaders(config.headers, deps.env);
    const next = await create({
      endpoint: config.endpoint,
      headers,
      serviceName: config.service_name,
      sampleRatio: config.sample_ratio,
      logger: deps.logger,
      onDropped: deps.onDropped,
    });
    const old = tracer;
    tracer = next;
    applied = wanted;
    retire(old);
    deps.logger.info("tracing on", { endpoint: config.endpoint, service_name: config.service_name, sample_ratio: config.sample_ratio });
  }

  return {
    current: () => tracer,
    apply(config) {
      const run = queue.then(() => applyNow(config));
      queue = run.catch(() => undefined);
      return run;
    },
    async shutdown() {
      await queue;
      const old = tracer;
      tracer = undefined;
      applied = "";
      await old?.shutdown(TRACER_SHUTDOWN_MS);
    },
  };
}
