/**
 * Request accounting, written once for every request however it ended (answered, refused by a
 * check or by the listener, cut, or failed): the limits' cleanups, the metrics of SPEC §7 and §11,
 * the end of the request's server span when tracing is on, and one audit line.
 */
import type { Reason } from "../errors.ts";
import type { HeldKey } from "../keys/types.ts";
import { writeAudit } from "../observe/audit.ts";
import { errorFields, type Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { RequestTrace } from "../observe/tracing/types.ts";
import { normalizeIp } from "../rules/ip.ts";
import type { Ending } from "./pipeline.ts";
import type { RequestContext, RequestHead, RequestOutcome } from "./types.ts";

export interface AccountingDeps {
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly audit: { readonly enabled: boolean; readonly include_subject: boolean };
}

/** What one request did, in the terms of the metrics and the audit log. */
interface Facts {
  readonly status: number;
  readonly reason: Reason | undefined;
  /** The upstream received the whole request (budgets keep the spend). */
  readonly forwarded: boolean;
  readonly upstreamStatus: number | undefined;
  readonly upstreamMs: number | undefined;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly key: HeldKey | undefined;
}

function factsOf(ending: Ending): Facts {
  switch (ending.kind) {
    case "forwarded": {
      const r = ending.result;
      return {
        status: r.status,
        reason: r.reason,
        forwarded: r.forwarded,
        upstreamStatus: r.upstreamStatus,
        upstreamMs: r.upstreamMs,
        bytesIn: r.bytesIn,
        bytesOut: r.bytesOut,
        key: r.key,
      };
    }
    case "refused":
      return { ...NOTHING, status: ending.status, reason: ending.deny.reason, bytesOut: ending.bytesOut };
    case "failed":
      // It may have reached MythIQ: its spend is kept.
      return { ...NOTHING, status: 0, forwarded: true };
    case "preflight":
    case "aborted":
      return { ...NOTHING, status: ending.status };
  }
}

/**
 * The check named in the audit line and the span (SPEC §11): the pipeline step that refused; for a
 * reply the forwarder made itself, `body` (a streamed body passed max_body), `target` (a query that
 * cannot be sent), `ownership` (a list response withheld while the ownership store is down,
 * `overloaded`) or `upstream` (MythIQ's answer, or its absence: the `upstream_*` reasons).
 */
function checkOf(ending: Ending): string | undefined {
  if (ending.kind === "refused") return ending.check;
  if (ending.kind !== "forwarded" || ending.result.reason === undefined) return undefined;
  switch (ending.result.reason) {
    case "body_too_large":
      return "body";
    case "invalid_path":
      return "target";
    case "overloaded":
      return "ownership";
    default:
      return "upstream";
  }
}

const NOTHING: Facts = Object.freeze({
  status: 0,
  reason: undefined,
  forwarded: false,
  upstreamStatus: undefined,
  upstreamMs: undefined,
  bytesIn: 0,
  bytesOut: 0,
  key: undefined,
});

/**
 * Ends one request: runs its cleanups (concurrency slots, budget reservations) exactly once, then
 * counts it and writes its audit line. `ctx` is undefined when it ended before the context existed
 * (step 1); `head` then stands in for it. `durationMs` runs from the request's arrival.
 */
export function accountRequest(
  deps: AccountingDeps,
  request: {
    readonly id: string;
    readonly head: RequestHead;
    readonly ctx: RequestContext | undefined;
    readonly cleanups: RequestContext["cleanups"];
    readonly trace?: RequestTrace | undefined;
  },
  ending: Ending,
  durationMs: number,
): void {
  const { metrics, logger } = deps;
  const { ctx } = request;
  const facts = factsOf(ending);
  const outcome: RequestOutcome =
    facts.upstreamStatus === undefined
      ? { status: facts.status, forwarded: facts.forwarded }
      : { status: facts.status, forwarded: facts.forwarded, upstreamStatus: facts.upstreamStatus };
  for (const cleanup of request.cleanups) {
    try {
      cleanup(outcome);
    } catch (err) {
      logger.error("request cleanup failed", errorFields(err));
    }
  }

  const check = checkOf(ending);
  const traceId = request.trace?.finish(ctx, { status: facts.status, reason: facts.reason, check, key: facts.key, failed: ending.kind === "failed" });
  if (ending.kind === "refused") metrics.denied(ctx?.client?.id, ending.deny.reason);
  if (facts.upstreamMs !== undefined) metrics.upstreamDuration(ctx?.route, facts.upstreamMs / 1000);
  metrics.requestFinished({
    client: ctx?.client?.id,
    route: ctx?.route,
    model: ctx?.model,
    status: facts.status,
    durationSeconds: durationMs / 1000,
    bytesIn: facts.bytesIn,
    bytesOut: facts.bytesOut,
    key: facts.key?.name,
  });
  const { head } = request;
  writeAudit(logger, deps.audit, {
    ctx,
    fallback: () => ({ id: request.id, method: head.method ?? "", path: head.url ?? "", ip: normalizeIp(head.socketAddress) ?? head.socketAddress }),
    status: facts.status,
    reason: facts.reason,
    key: facts.key,
    durationMs,
    upstreamMs: facts.upstreamMs,
    bytesIn: facts.bytesIn,
    bytesOut: facts.bytesOut,
    check,
    traceId,
  });
  if (ending.kind === "refused" && ending.deny.detail !== undefined) {
    logger.debug("request refused", { request_id: request.id, reason: ending.deny.reason, check: ending.check, detail: ending.deny.detail });
  }
}
