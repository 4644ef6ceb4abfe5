/**
 * The listen port's request handler (SPEC §4): the I/O around the decisions of `decide.ts` — local
 * replies, `100 Continue`, reading held bodies, forwarding — and the accounting every request ends
 * with (limits released, metrics, one audit line).
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Reason } from "../errors.ts";
import { readBodyBounded } from "../http/read-body.ts";
import { sendDeny } from "../http/reply.ts";
import type { HeldKey } from "../keys/types.ts";
import { errorFields, type Logger } from "../observe/log.ts";
import { writeAudit } from "../observe/audit.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { RequestContext, RequestOutcome } from "../rules/context.ts";
import { deny, type Deny } from "../rules/verdict.ts";
import type { Runtime } from "../runtime.ts";
import { KEY_UNAVAILABLE_RETRY_SECONDS } from "../rules/build.ts";
import { normalizeIp } from "../rules/ip.ts";
import { decideBody, decideBodyStart, decideHead, requestHasBody, type RequestHead } from "./decide.ts";
import { NO_BODY } from "./body-source.ts";
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
    void handleRequest(deps, now, req, res, expectsContinue);
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
  const hasBody = requestHasBody(req.headers);
  // Set once framing and target pass; `finish`/`refuse` below read it whenever they run.
  let ctx: RequestContext | undefined;

  let finished = false;
  const finish: Finish = (outcome) => {
    if (finished) return;
    finished = true;
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
    writeAudit(deps.logger, config.audit, {
      ctx,
      fallback: () => ({ id, method: req.method ?? "", path: req.url ?? "", ip: normalizeIp(req.socket.remoteAddress ?? "") ?? "" }),
      status: outcome.status,
      reason: outcome.reason,
      key: outcome.key,
      durationMs,
      upstreamMs: outcome.upstreamMs,
      bytesIn: outcome.bytesIn,
      bytesOut: outcome.bytesOut,
    });
  };

  const refuse = (verdict: Deny): void => {
    deps.metrics.denied(ctx?.client?.id, verdict.reason);
    if (verdict.detail !== undefined) {
      deps.logger.debug("request refused", { request_id: id, reason: verdict.reason, detail: verdict.detail });
    }
    // A refused request may still have body bytes on the wire (or a client waiting to send them
    // after `Expect`): closing the connection is cheaper and safer than draining them.
    const bytesOut = sendDeny(res, verdict, { headers: responseHeaders, close: hasBody || expectsContinue });
    finish({ status: res.statusCode, reason: verdict.reason, forwarded: false, bytesIn: 0, bytesOut });
  };

  try {
    const head = requestHead(req);
    const decision = await decideHead(runtime, id, head, () => {
      if (deps.draining()) return deny("draining", undefined, 1);
      const shedFor = deps.overloaded?.();
      return shedFor === undefined ? undefined : deny("overloaded", "event loop lagging", shedFor);
    });
    ctx = decision.ctx;
    Object.assign(responseHeaders, decision.headers);
    if (decision.kind === "refuse") return refuse(decision.deny);
    if (decision.kind === "preflight") {
      res.writeHead(204, responseHeaders);
      res.end();
      finish({ status: 204, forwarded: false, bytesIn: 0, bytesOut: 0 });
      return;
    }
    const admitted = decision.ctx;
    const client = admitted.client;

    // Step 7: body. `100 Continue` is only sent once every check that needs no body has passed.
    const start = decideBodyStart(runtime, admitted, head);
    if (start.kind === "refuse") return refuse(start.deny);
    if (expectsContinue) res.writeContinue();

    let body: ForwardInput["body"];
    let held: Buffer | undefined;
    if (start.kind === "none") {
      held = NO_BODY;
      body = { kind: "held", bytes: held };
    } else if (start.kind === "hold") {
      const read = await readBodyBounded(req, client.max_body);
      if (!read.ok) {
        if (read.why === "aborted") {
          finish({ status: 499, forwarded: false, bytesIn: 0, bytesOut: 0 });
          res.destroy();
          return;
        }
        return refuse(deny("body_too_large", "body passed max_body while reading"));
      }
      held = read.bytes;
      body = { kind: "held", bytes: held };
    } else {
      body = { kind: "stream", maxBytes: client.max_body };
    }
    const checked = await decideBody(runtime, admitted, start.kind === "hold" ? held : undefined);
    if (!checked.ok) return refuse(checked);

    // The key is read last, synchronously: the hot path never waits on a secret store.
    const key = runtime.keyring.current(client.key);
    if (key === undefined) return refuse(deny("key_unavailable", `key ${client.key} not held`, KEY_UNAVAILABLE_RETRY_SECONDS));

    // Steps 8–9: forward with the key and relay the response.
    deps.metrics.inflight(client.id, 1);
    let result: ForwardResult;
    try {
      result = await runtime.forwarder.forward({ ctx: admitted, req, res, keyName: client.key, key, body, responseHeaders });
    } finally {
      deps.metrics.inflight(client.id, -1);
    }
    if (result.upstreamMs !== undefined) deps.metrics.upstreamDuration(admitted.route, result.upstreamMs / 1000);
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
  } catch (err) {
    // A bug, not a refusal: there is no honest JSON for it, so the connection is cut. The
    // request still ends properly: its concurrency slot is freed and its spend kept (it may have
    // reached MythIQ), and it is counted and audited.
    deps.logger.error("request handling failed", { request_id: id, ...errorFields(err) });
    res.destroy();
    finish({ status: 0, forwarded: true, bytesIn: 0, bytesOut: 0 });
  }
}

/** The head the decisions read; the socket address is taken once, here. */
function requestHead(req: IncomingMessage): RequestHead {
  return {
    method: req.method,
    url: req.url,
    httpVersionMajor: req.httpVersionMajor,
    httpVersionMinor: req.httpVersionMinor,
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    socketAddress: req.socket.remoteAddress ?? "",
  };
}
