/**
 * Serves one request: the pipeline, then its accounting. A pipeline that throws met a broken
 * invariant or a bug; that is never the caller's fault and never a 4xx: the connection is reset,
 * the error logged and counted (`mythiq_proxy_internal_errors_total`), and the request still ends
 * properly (its concurrency slot freed, its spend kept since it may have reached MythIQ, one audit
 * line).
 */
import { errorFields, type Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { RequestTracer } from "../observe/tracing/types.ts";
import { accountRequest } from "./accounting.ts";
import type { CompiledConfig } from "./compile.ts";
import { runPipeline, type Ending, type Exchange } from "./pipeline.ts";

export interface ServeDeps {
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Monotonic milliseconds. */
  readonly now: () => number;
  /** The tracer in force; undefined (or returning undefined) while tracing is off. */
  readonly tracer?: () => RequestTracer | undefined;
}

/** Never rejects. `startedAt` is the request's arrival on `deps.now`'s clock. */
export async function serveRequest(compiled: CompiledConfig, exchange: Exchange, deps: ServeDeps, startedAt: number): Promise<void> {
  let ending: Ending;
  try {
    ending = await runPipeline(compiled, exchange);
  } catch (err) {
    deps.logger.error("request handling failed: connection reset", { request_id: exchange.id, ...errorFields(err) });
    deps.metrics.internalError();
    exchange.reset();
    ending = { kind: "failed" };
  }
  try {
    accountRequest({ metrics: deps.metrics, logger: deps.logger, audit: compiled.config.audit }, exchange, ending, deps.now() - startedAt);
  } catch (err) {
    // A failing metric or log write must not turn into an unhandled rejection.
    deps.logger.error("request accounting failed", { request_id: exchange.id, ...errorFields(err) });
  }
}
