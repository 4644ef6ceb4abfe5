/**
 * The listen port's requests as pipeline exchanges: what replying, reading a held body, sending
 * `100 Continue` and forwarding mean on a Node request/response pair, and on a refusal the listener
 * made before a request existed.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ListenerRefusal } from "../http/listener.ts";
import { readBodyBounded } from "../http/read-body.ts";
import { sendDeny } from "../http/reply.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { CompiledConfig } from "./compile.ts";
import { requestHasBody, type Exchange } from "./pipeline.ts";
import { serveRequest, type ServeDeps } from "./serve.ts";
import { compileTraceTrust } from "./trace-trust.ts";
import { deny, InvariantError, type Deny, type RequestHead } from "./types.ts";

export interface ListenHandlerDeps extends ServeDeps {
  readonly metrics: Metrics;
  /** True once the proxy drains (SPEC §8 Stop): new requests get 503 `draining`. */
  readonly draining: () => boolean;
  /** Seconds to wait when the proxy sheds load now (event loop lagging), else undefined. */
  readonly overloaded?: () => number | undefined;
}

/** The head the pipeline reads; the socket address is taken once, here. */
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

/**
 * The handler of the listen port's requests for one compiled config. `expectsContinue`: the client
 * sent `Expect: 100-continue` and waits (the pipeline sends it only once every check passed).
 */
export function createRequestHandler(compiled: CompiledConfig, deps: ListenHandlerDeps) {
  const trust = compileTraceTrust(compiled.config);
  const closed = (): Deny | undefined => {
    if (deps.draining()) return deny("draining", undefined, 1);
    const shedFor = deps.overloaded?.();
    return shedFor === undefined ? undefined : deny("overloaded", "event loop lagging", shedFor);
  };

  return function handle(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): Promise<void> {
    const startedAt = deps.now();
    const id = randomUUID();
    // A refused request may still have body bytes on the wire (or a client waiting to send them
    // after `Expect`): closing the connection is cheaper and safer than draining them.
    const closeOnRefusal = expectsContinue || requestHasBody(req.headers);
    const withId = (headers: Readonly<Record<string, string>>): Record<string, string> => ({ "x-request-id": id, ...headers });
    const head = requestHead(req);
    // Tracing off: no tracer, no trace, and each hook below is one `undefined` check.
    const trace = deps.tracer?.()?.begin(id, head, trust);
    const exchange: Exchange = {
      id,
      head,
      cleanups: [],
      ctx: undefined,
      trace,
      closed,
      reply: (verdict, headers) => sendDeny(res, verdict, { headers: withId(headers), close: closeOnRefusal }),
      answerPreflight(headers) {
        res.writeHead(204, withId(headers));
        res.end();
      },
      continue() {
        if (expectsContinue) res.writeContinue();
      },
      async readBody(maxBytes) {
        const read = await readBodyBounded(req, maxBytes);
        if (!read.ok && read.why === "aborted") res.destroy();
        return read;
      },
      async forward(caller, key, body, headers, plan) {
        deps.metrics.inflight(caller.client.id, 1);
        try {
          return await compiled.forwarder.forward({ ctx: caller, req, res, keyName: caller.client.key, key, body, responseHeaders: withId(headers), responsePlan: plan, trace });
        } finally {
          deps.metrics.inflight(caller.client.id, -1);
        }
      },
      reset() {
        // An RST, not a FIN: the client must not take a cut response for a complete one.
        req.socket.resetAndDestroy();
        res.destroy();
      },
    };
    return serveRequest(compiled, exchange, deps, startedAt);
  };
}

const NO_TRUST = (): boolean => false;

function notForRefusals(): never {
  throw new InvariantError("a listener refusal went past step 1 of the pipeline");
}

/**
 * Accounts for a refusal the listener answered itself (parser errors, CONNECT, upgrades, an unknown
 * `Expect`): it enters the pipeline already refused, so it is counted and audited like any other.
 */
export function serveListenerRefusal(compiled: CompiledConfig, refusal: ListenerRefusal, deps: ServeDeps): Promise<void> {
  const head: RequestHead = { httpVersionMajor: 1, httpVersionMinor: 1, headers: {}, rawHeaders: [], socketAddress: refusal.ip };
  const exchange: Exchange = {
    id: refusal.id,
    head,
    refused: deny(refusal.reason, refusal.detail),
    cleanups: [],
    ctx: undefined,
    // No request exists, so there is no caller context to continue: a new trace.
    trace: deps.tracer?.()?.begin(refusal.id, head, NO_TRUST),
    closed: () => undefined,
    reply: (verdict) => refusal.reply(verdict),
    answerPreflight: notForRefusals,
    continue: notForRefusals,
    readBody: notForRefusals,
    forward: notForRefusals,
    reset: () => refusal.reset(),
  };
  return serveRequest(compiled, exchange, deps, deps.now());
}
