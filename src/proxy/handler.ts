/**
 * The request pipeline of the listen port (SPEC §4). The order of the steps is a security property
 * and lives here, one comment per step; the checks themselves live in `src/http` and `src/rules`.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Reason } from "../errors.ts";
import { checkFraming } from "../http/framing.ts";
import { readBodyBounded } from "../http/read-body.ts";
import { sendDeny } from "../http/reply.ts";
import { parseTarget } from "../http/target.ts";
import type { HeldKey } from "../keys/types.ts";
import { errorFields, type Logger } from "../observe/log.ts";
import { auditRecord } from "../observe/audit.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { RequestContext, RequestOutcome } from "../rules/context.ts";
import { deny, type Deny } from "../rules/verdict.ts";
import type { Runtime } from "../runtime.ts";
import type { ForwardInput, ForwardResult } from "./forward.ts";


export interface HandlerDeps {
  /** The config in force when a request starts; a reload swaps it without touching requests in flight. */
  readonly runtime: () => Runtime;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly draining: () => boolean;
  /** Seconds to wait when the proxy sheds load now (event loop lagging), else undefined. */
  readonly overloaded?: () => number | undefined;
  /** Monotonic milliseconds. */
  readonly now?: () => number;
}

type Finish = (outcome: {
  status: number;
  reason?: Reason | undefined;
  forwarded: boolean;
  upstreamStatus?: number | undefined;
  upstreamMs?: number | undefined;
  bytesIn: number;
  bytesOut: number;
  key?: HeldKey | undefined;
}) => void;

/** Builds the listen port's request handler. It never throws: failures end in a JSON reply or a cut connection. */
export function createRequestHandler(deps: HandlerDeps) {
  const now = deps.now ?? (() => performance.now());

  return function handle(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    handleRequest(deps, now, req, res, expectsContinue).catch((err: unknown) => {
      // A bug, not a refusal: there is no honest JSON for it, so the connection is cut.
      deps.logger.error("request handling failed", errorFields(err));
      res.destroy();
    });
  };
}

async function handleRequest(
  deps: HandlerDeps,
  now: () => number,
  req: IncomingMessage,
  res: ServerResponse,
  expectsContinue: boolean,
): Promise<void> {
  const startedAt = now();
  const runtime = deps.runtime();
  const { config } = runtime;
  const id = randomUUID();
  const responseHeaders: Record<string, string> = { "x-request-id": id };
  const hasBody = requestHasBody(req);
  // Set once framing and target pass; `finish`/`refuse` below read it whenever they run.
  // eslint-disable-next-line prefer-const
  let ctx: RequestContext | undefined;

  const finish: Finish = (outcome) => {
    const durationMs = now() - startedAt;
    const requestOutcome: RequestOutcome = {
      status: outcome.status,
      forwarded: outcome.forwarded,
      ...(outcome.upstreamStatus === undefined ? {} : { upstreamStatus: outcome.upstreamStatus }),
    };
    for (const cleanup of ctx?.cleanups ?? []) {
      try {
        cleanup(requestOutcome);
      } catch (err) {
        deps.logger.error("request cleanup failed", errorFields(err));
      }
    }
    deps.metrics.requestFinished({
      client: ctx?.client?.id,
      route: ctx?.route,
      model: ctx?.model,
      status: outcome.status,
      durationSeconds: durationMs / 1000,
      bytesIn: outcome.bytesIn,
      bytesOut: outcome.bytesOut,
    });
    if (config.audit.enabled) {
      deps.logger.audit(
        auditRecord({
          includeSubject: config.audit.include_subject,
          ctx,
          fallback: { id, method: req.method ?? "", path: req.url ?? "", ip: req.socket.remoteAddress ?? "" },
          status: outcome.status,
          reason: outcome.reason,
          key: outcome.key,
          durationMs,
          upstreamMs: outcome.upstreamMs,
          bytesIn: outcome.bytesIn,
          bytesOut: outcome.bytesOut,
        }),
      );
    }
  };

  const refuse = (verdict: Deny): void => {
    deps.metrics.denied(ctx?.client?.id, verdict.reason);
    if (verdict.detail !== undefined) {
      deps.logger.debug("request refused", { request_id: id, reason: verdict.reason, detail: verdict.detail });
    }
    // A refused request may still have body bytes on the wire (or a client waiting to send them
    // after `Expect`): closing the connection is cheaper and safer than draining them.
    sendDeny(res, verdict, { headers: responseHeaders, close: hasBody || expectsContinue });
    finish({ status: res.statusCode, reason: verdict.reason, forwarded: false, bytesIn: 0, bytesOut: 0 });
  };

  // Step 1: framing and target. Nothing after this step sees a request that normalisation would change.
  const framing = checkFraming(req, { maxHeaderCount: config.server.max_header_count });
  if (!framing.ok) return refuse(framing);
  const target = parseTarget(req.url ?? "");
  if (!target.ok) return refuse(target);

  if (deps.draining()) return refuse(deny("draining", undefined, 1));
  const shedFor = deps.overloaded?.();
  if (shedFor !== undefined) return refuse(deny("overloaded", "event loop lagging", shedFor));

  ctx = runtime.createContext({ id, req, target });

  // Step 2: CORS preflight, answered here and never forwarded.
  const preflight = runtime.preflight(ctx);
  if (preflight !== undefined) {
    if (!preflight.ok) return refuse(preflight.deny);
    res.writeHead(204, { ...responseHeaders, ...preflight.headers });
    res.end();
    finish({ status: 204, forwarded: false, bytesIn: 0, bytesOut: 0 });
    return;
  }

  // Steps 3–6: caller identity, origin and network, route, key availability, limits. See rules/build.ts.
  for (const rule of runtime.admission) {
    const verdict = await rule.check(ctx);
    if (!verdict.ok) {
      Object.assign(responseHeaders, runtime.responseHeaders(ctx));
      return refuse(verdict);
    }
  }
  Object.assign(responseHeaders, runtime.responseHeaders(ctx));
  const client = ctx.client;
  if (client === undefined) return refuse(deny("missing_credentials", "no rule identified a client"));

  // Step 7: body. A declared length over the limit is refused before reading a byte, and before
  // `100 Continue`, which is only sent once every check above has passed.
  const declaredLength = contentLength(req);
  if (declaredLength !== undefined && declaredLength > client.max_body) {
    return refuse(deny("body_too_large", `content-length ${declaredLength} > ${client.max_body}`));
  }
  const bodyPlan = runtime.bodyPlan(ctx, hasBody, declaredLength);
  if (!bodyPlan.ok) return refuse(bodyPlan);
  if (expectsContinue) res.writeContinue();

  let body: ForwardInput["body"];
  if (!hasBody) {
    body = { kind: "held", bytes: Buffer.alloc(0) };
  } else if (bodyPlan.hold) {
    const read = await readBodyBounded(req, client.max_body);
    if (!read.ok) {
      if (read.why === "aborted") {
        finish({ status: 499, forwarded: false, bytesIn: 0, bytesOut: 0 });
        res.destroy();
        return;
      }
      return refuse(deny("body_too_large", "body passed max_body while reading"));
    }
    const checked = runtime.checkBody(ctx, read.bytes);
    if (!checked.ok) return refuse(checked);
    body = { kind: "held", bytes: read.bytes };
  } else {
    body = { kind: "stream", maxBytes: client.max_body };
  }

  // Checks that price what the body asked for (daily budget), once the body is known.
  for (const rule of runtime.charge) {
    const verdict = await rule.check(ctx);
    if (!verdict.ok) return refuse(verdict);
  }

  // The key is read last, synchronously: the hot path never waits on a secret store.
  const key = runtime.keyring.current(client.key);
  if (key === undefined) return refuse(deny("key_unavailable", `key ${client.key} not held`, 5));

  // Steps 8–9: forward with the key and relay the response.
  deps.metrics.inflight(client.id, 1);
  let result: ForwardResult;
  try {
    result = await runtime.forwarder.forward({ ctx, req, res, keyName: client.key, key, body, responseHeaders });
  } finally {
    deps.metrics.inflight(client.id, -1);
  }
  if (result.upstreamMs !== undefined) deps.metrics.upstreamDuration(ctx.route, result.upstreamMs / 1000);
  finish({
    status: result.status,
    reason: result.reason,
    forwarded: result.forwarded,
    upstreamStatus: result.upstreamStatus,
    upstreamMs: result.upstreamMs,
    bytesIn: result.bytesIn,
    bytesOut: result.bytesOut,
    key: result.key,
  });
}

function requestHasBody(req: IncomingMessage): boolean {
  if (req.headers["transfer-encoding"] !== undefined) return true;
  const length = contentLength(req);
  return length !== undefined && length > 0;
}

/** Node's parser has already refused malformed or duplicated Content-Length values. */
function contentLength(req: IncomingMessage): number | undefined {
  const raw = req.headers["content-length"];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}
