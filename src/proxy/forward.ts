/**
 * Forwarding a checked request to MythIQ with http-proxy-3 and relaying the answer (SPEC §4
 * steps 8–9).
 *
 * How http-proxy-3 is held (docs/security.md §1, §2, §5 and §9):
 * - It is handed a *stand-in* request carrying exactly the headers built by outgoing-headers.ts,
 *   never the caller's IncomingMessage, and a pass just before its `stream` pass puts those
 *   headers back (its `deleteLength` pass would otherwise add `content-length: 0` to DELETE).
 * - The target is an object without a `pathname` and `toProxy` is on, so the request target is
 *   sent as we built it: http-proxy-3's WHATWG re-parse of `req.url` (which resolves `..`,
 *   `%2e`, `\`) never runs.
 * - The body always comes through the `buffer` option: held bytes from memory, or the caller's
 *   stream through a counting limiter.
 * - `selfHandleResponse`: the response is relayed here, so mid-body upstream failures and idle
 *   streams cut the client connection instead of leaving it hanging, and error bodies can be
 *   scanned for the key.
 * - Keep-alive agent, TLS verification on, `followRedirects` off, never the fetch path.
 */
import { EventEmitter } from "node:events";
import type { ClientRequest, IncomingMessage, ServerResponse } from "node:http";
import type { LookupFunction, Socket } from "node:net";
import type { Readable } from "node:stream";
import { TLSSocket } from "node:tls";
import { createProxyServer } from "http-proxy-3";
import type { UpstreamConfig } from "../config/types.ts";
import { errnoCode } from "../errno.ts";
import { ERRORS, type Reason } from "../errors.ts";
import { sendDeny } from "../http/reply.ts";
import type { HeldKey } from "../keys/types.ts";
import type { Logger } from "../observe/log.ts";
import type { AttemptSpan, RequestTrace } from "../observe/tracing/types.ts";
import { type RequestContext, deny } from "../pipeline/types.ts";
import { createUpstreamAgent, parseUpstream } from "./agent.ts";
import { createBodyLimiter, heldSource, NO_BODY } from "./body-source.ts";
import {
  contentCodings,
  createRollingScanner,
  decodeForScan,
  ERROR_BODY_HOLD_BYTES,
  headersContain,
} from "./leak-scan.ts";
import { buildOutgoingHeaders, isSendableTarget, upstreamTarget } from "./outgoing-headers.ts";
import { holdBody, replacedHeaders, type HeldResponse, type ResponsePlan } from "./response-plan.ts";
import { isRedirect, relayedHeaders } from "./response.ts";
import { classifyUpstreamError } from "./upstream-errors.ts";

/** held: the checked body bytes (possibly empty), replayable; stream: pipe the caller's body through, cut at `maxBytes`. */
export type ForwardBody = { readonly kind: "held"; readonly bytes: Buffer } | { readonly kind: "stream"; readonly maxBytes: number };

export interface ForwardInput {
  readonly ctx: RequestContext;
  /** The caller's request: the body source when streaming, and abort detection. */
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Name of the key in `keys` (for `refreshKey` and logs). */
  readonly keyName: string;
  /** Injected as `authorization: Bearer <value>`. */
  readonly key: HeldKey;
  readonly body: ForwardBody;
  /** Added to every response the client gets, proxied or local (x-request-id, CORS headers). */
  readonly responseHeaders: Readonly<Record<string, string>>;
  /** A 2xx the pipeline sees before the client (ownership, response-plan.ts); undefined: streamed as it comes. */
  readonly responsePlan?: ResponsePlan | undefined;
  /** The request's trace while tracing is on: a client span per attempt, its traceparent sent upstream. */
  readonly trace?: RequestTrace | undefined;
}

export interface ForwardResult {
  /** The status the client got: the upstream's, ours, or 499 when the client left before any. */
  readonly status: number;
  /** Set when the proxy replied itself or cut the response. */
  readonly reason?: Reason;
  readonly upstreamStatus?: number;
  /** Milliseconds from the start of the (last) attempt to the upstream's response headers. */
  readonly upstreamMs?: number;
  /** Request body bytes sent upstream (last attempt). */
  readonly bytesIn: number;
  /** Response body bytes written to the client. */
  readonly bytesOut: number;
  /** The upstream received the full request (last attempt). */
  readonly forwarded: boolean;
  /** The key finally used (differs after a 401 retry). */
  readonly key: HeldKey;
  /** The client went away before its response was complete. */
  readonly clientAborted: boolean;
}

export interface Forwarder {
  /** Never rejects, never throws; always ends or destroys `input.res`. */
  forward(input: ForwardInput): Promise<ForwardResult>;
  /** Destroys the pooled upstream connections, including those of requests still in flight. */
  close(): void;
}

export interface ForwarderOptions {
  /** Timeouts in milliseconds. */
  readonly upstream: UpstreamConfig;
  readonly logger: Logger;
  /**
   * Upstream 401: resolves with the key to retry once with (used only when it differs from the
   * refused one and the body is held), or undefined. Default: no refresh.
   */
  readonly refreshKey?: (name: string, refused: HeldKey) => Promise<HeldKey | undefined>;
  /** Called once per forward that ends with an `upstream_*` reason (for `upstream_errors_total`). */
  readonly onUpstreamError?: (reason: Reason) => void;
  /** Monotonic milliseconds; default `performance.now()`. */
  readonly now?: () => number;
  /** DNS lookup for upstream connections (tests inject failures and stalls). */
  readonly lookup?: LookupFunction;
  /** Trust anchors replacing the system store for a TLS upstream (tests only; not a config key). */
  readonly ca?: string | Buffer;
}

type Attempt =
  | { readonly kind: "final"; readonly result: Omit<ForwardResult, "key"> }
  | { readonly kind: "unauthorized"; readonly upstreamMs: number; readonly bytesIn: number; readonly forwarded: boolean };

/** What the http-proxy-3 event listeners need to reach one attempt. */
interface AttemptHooks {
  readonly headers: Record<string, string | string[]>;
  onRequest(proxyReq: ClientRequest): void;
  onResponse(proxyRes: IncomingMessage): void;
  onError(err: unknown): void;
}

/** Keeps an unexpected throw in an event listener from becoming an uncaught exception. */
type Guard = <A extends unknown[]>(fn: (...args: A) => void) => (...args: A) => void;

function noop(): void {}

/**
 * http-proxy-3 reads `method`, `url`, `headers`, `httpVersionMajor` and `socket` from the request
 * it is given and adds an `error` listener to it; nothing else (the body comes from `buffer`).
 * Handing it this stand-in leaves the caller's IncomingMessage untouched.
 */
function standInRequest(method: string, url: string, headers: Record<string, string | string[]>, socket: Socket): IncomingMessage {
  return Object.assign(new EventEmitter(), {
    method,
    url,
    headers: { ...headers },
    httpVersion: "1.1",
    httpVersionMajor: 1,
    httpVersionMinor: 1,
    socket,
  }) as unknown as IncomingMessage;
}

/** Builds the forwarder for one upstream config. Throws only on a url the config schema refuses. */
export function createForwarder(options: ForwarderOptions): Forwarder {
  const { upstream, logger } = options;
  const now = options.now ?? (() => performance.now());
  const refreshKey = options.refreshKey ?? (() => Promise.resolve(undefined));
  const endpoint = parseUpstream(upstream.url);
  // The schema refuses this already; the key must never cross the network in clear by mistake.
  if (endpoint.protocol === "http:" && !upstream.allow_insecure_upstream) {
    throw new Error("an http:// upstream needs allow_insecure_upstream: true");
  }
  const agent = createUpstreamAgent(endpoint, upstream, {
    ...(options.lookup === undefined ? {} : { lookup: options.lookup }),
    ...(options.ca === undefined ? {} : { ca: options.ca }),
  });

  const proxy = createProxyServer({
    // No `pathname` on the target and `toProxy: true`: the request target is used verbatim.
    target: { protocol: endpoint.protocol, host: endpoint.hostname, hostname: endpoint.hostname, port: endpoint.port },
    toProxy: true,
    prependPath: false,
    agent,
    secure: true,
    followRedirects: false,
    selfHandleResponse: true,
    xfwd: false,
    changeOrigin: false,
    connectTimeout: upstream.connect_timeout,
  });

  const attempts = new WeakMap<object, AttemptHooks>();
  proxy.before("web", "stream", (req) => {
    const hooks = attempts.get(req);
    if (hooks !== undefined) req.headers = { ...hooks.headers };
    return undefined;
  });
  proxy.on("proxyReq", (proxyReq, req) => attempts.get(req)?.onRequest(proxyReq));
  proxy.on("proxyRes", (proxyRes, req) => attempts.get(req)?.onResponse(proxyRes));
  proxy.on("econnreset", (err, req) => attempts.get(req)?.onError(err));
  // Without an `error` listener http-proxy-3 throws; per-request errors also arrive through the
  // callback given to `web()`.
  proxy.on("error", (err, req) => attempts.get(req)?.onError(err));

  function runAttempt(input: ForwardInput, key: HeldKey): Promise<Attempt> {
    return new Promise<Attempt>((resolve) => {
      const { ctx, req, res } = input;
      const log = { request_id: ctx.id };
      const startedAt = now();
      const needle = Buffer.from(key.value, "utf8");
      const target = upstreamTarget(endpoint.basePath, ctx.path, ctx.query);
      // Tracing on: this attempt's client span (the URL without its query: a query value is never recorded).
      const span: AttemptSpan | undefined = input.trace?.attempt(ctx, {
        method: ctx.method,
        url: `${endpoint.protocol}//${endpoint.host}${endpoint.basePath}${ctx.path}`,
        key: { name: key.name, fingerprint: key.fingerprint },
      });

      let phase: "waiting" | "responding" | "done" = "waiting";
      let proxyReq: ClientRequest | undefined;
      let proxyRes: IncomingMessage | undefined;
      let abortWanted = false;
      let connected = false;
      let requestSent = false;
      let bytesIn = 0;
      let bytesOut = 0;
      let upstreamStatus: number | undefined;
      let upstreamMs: number | undefined;
      let limiter: ReturnType<typeof createBodyLimiter> | undefined;
      // The stand-in request of this attempt, so settling can drop its hooks at once: a WeakMap
      // entry otherwise lives until a full GC and keeps the request's whole object graph alive
      // through every young-generation collection (measured: 5–15 ms pauses at 500 req/s).
      const registered: { standIn?: object } = {};
      let idleTimer: NodeJS.Timeout | undefined;
      /** What an upstream failure means now that the response has started. */
      let onBroken: () => void = noop;

      const clientBodyDone = (): boolean => input.body.kind === "held" || req.complete;

      /** Aborts the upstream exchange; a half-sent request must never stay on a pooled connection. */
      const stopUpstream = (): void => {
        if (limiter !== undefined) {
          req.unpipe(limiter);
          limiter.destroy();
        }
        abortWanted = true;
        proxyReq?.destroy();
        proxyRes?.destroy();
      };

      const settle = (attempt: Attempt): boolean => {
        if (phase === "done") return false;
        phase = "done";
        if (registered.standIn !== undefined) attempts.delete(registered.standIn);
        clearTimeout(responseTimer);
        clearTimeout(idleTimer);
        res.off("close", onClientClose);
        if (!requestSent) stopUpstream();
        span?.end(attempt.kind === "final" ? { upstreamStatus: attempt.result.upstreamStatus, reason: attempt.result.reason } : { upstreamStatus: 401, reason: undefined });
        resolve(attempt);
        return true;
      };

      const settleFinal = (status: number, reason: Reason | undefined, clientAborted = false): boolean =>
        settle({
          kind: "final",
          result: {
            status,
            ...(reason === undefined ? {} : { reason }),
            ...(upstreamStatus === undefined ? {} : { upstreamStatus }),
            ...(upstreamMs === undefined ? {} : { upstreamMs }),
            bytesIn,
            bytesOut,
            forwarded: requestSent,
            clientAborted,
          },
        });

      /** A JSON reply of ours; if the upstream's headers already went out, a cut connection instead. */
      const replyLocal = (reason: Reason): void => {
        if (phase === "done") return;
        const fresh = !res.headersSent && !res.destroyed;
        // Not fresh: either the upstream's head went out (its status stands) or the client is gone.
        const status = fresh ? ERRORS[reason].status : res.headersSent ? res.statusCode : 499;
        bytesOut += sendDeny(res, deny(reason), { headers: input.responseHeaders, close: !clientBodyDone() });
        settleFinal(status, reason);
      };

      /** After the upstream's headers went out: the client must see a truncated response, never a fake success. */
      const cut = (reason: Reason): void => {
        if (phase === "done") return;
        stopUpstream();
        settleFinal(res.statusCode, reason);
        res.destroy();
      };

      const guard: Guard =
        (fn) =>
        (...args) => {
          try {
            fn(...args);
          } catch (err) {
            logger.error("forwarding failed", { ...log, code: errnoCode(err, "unknown") });
            stopUpstream();
            if (!res.headersSent) replyLocal("upstream_reset");
            else cut("upstream_reset");
          }
        };

      const onClientClose = guard((): void => {
        if (res.writableFinished || phase === "done") return;
        logger.debug("client went away", log);
        stopUpstream();
        settleFinal(res.headersSent ? res.statusCode : 499, undefined, true);
      });
      res.on("close", onClientClose);

      const responseTimer = setTimeout(
        guard(() => {
          if (phase !== "waiting") return;
          logger.warn("upstream did not answer in time", { ...log, reason: "upstream_timeout" });
          stopUpstream();
          replyLocal("upstream_timeout");
        }),
        upstream.response_timeout,
      );

      const onIdle = guard((): void => {
        if (phase !== "responding") return;
        logger.warn("upstream response idle", { ...log, reason: "upstream_timeout" });
        if (res.headersSent) cut("upstream_timeout");
        else {
          stopUpstream();
          replyLocal("upstream_timeout");
        }
      });
      const touch = (): void => {
        idleTimer?.refresh();
      };

      /** Reads and drops a body that is never passed on, so its connection can be reused (bounded). */
      const discard = (pr: IncomingMessage): void => {
        let seen = 0;
        const timer = setTimeout(() => pr.destroy(), upstream.idle_timeout);
        pr.on("data", (chunk: Buffer) => {
          seen += chunk.length;
          if (seen > ERROR_BODY_HOLD_BYTES) pr.destroy();
        });
        pr.once("close", () => clearTimeout(timer));
        pr.resume();
      };

      /** Streams the upstream body to the client, through `filter`, with backpressure. */
      const relay = (pr: IncomingMessage, status: number, filter: (chunk: Buffer) => Buffer | "leak", tail: () => Buffer): void => {
        onBroken = () => cut("upstream_reset");
        pr.on(
          "data",
          guard((chunk: Buffer) => {
            if (phase !== "responding") return;
            touch();
            const out = filter(chunk);
            if (out === "leak") {
              logger.error("upstream response cut: its body contained the key", { ...log, upstream_status: status });
              cut("upstream_leak");
              return;
            }
            if (out.length === 0) return;
            bytesOut += out.length;
            if (!res.write(out)) pr.pause();
          }),
        );
        res.on("drain", () => {
          touch();
          pr.resume();
        });
        pr.once(
          "end",
          guard(() => {
            if (phase !== "responding") return;
            const rest = tail();
            bytesOut += rest.length;
            // An empty final chunk is still a write on the socket: end without one.
            if (rest.length > 0) res.end(rest);
            else res.end();
          }),
        );
        pr.once("error", () => onBroken());
        pr.once("close", () => {
          if (!pr.complete) onBroken();
        });
        res.once("finish", () => settleFinal(status, undefined));
        pr.resume();
      };

      const writeHead = (status: number, pr: IncomingMessage): void => {
        // The caller is still sending a body the upstream no longer wants: this connection cannot be reused.
        if (!clientBodyDone()) res.shouldKeepAlive = false;
        res.writeHead(status, relayedHeaders(pr.rawHeaders, input.responseHeaders));
        // Send the head on its own only if no body byte follows within this turn of the event
        // loop (a stream that starts slowly, like Server-Sent Events); otherwise it leaves with
        // the first body bytes in one write instead of two.
        setImmediate(() => {
          if (bytesOut === 0 && !res.writableEnded && !res.destroyed) res.flushHeaders();
        });
      };

      const withhold = (pr: IncomingMessage, status: number, why: string): void => {
        logger.error("upstream response withheld", { ...log, upstream_status: status, why });
        pr.destroy();
        stopUpstream();
        replyLocal("upstream_leak");
      };

      /** Status >= 400 (not 401): hold up to 64 KiB, scan, then send or withhold. */
      const relayError = (pr: IncomingMessage, status: number): void => {
        const chunks: Buffer[] = [];
        let size = 0;
        const detach = (): void => {
          pr.off("data", onData);
          pr.off("end", onEnd);
        };
        const decide = (ended: boolean): void => {
          if (phase !== "responding") return;
          const body = Buffer.concat(chunks, size);
          const codings = contentCodings(pr.headers["content-encoding"]);
          if (!ended && codings.length > 0) return withhold(pr, status, "encoded error body over the hold limit");
          const plain = decodeForScan(body, codings);
          if (plain === undefined) return withhold(pr, status, "error body could not be decoded");
          if (plain.includes(needle)) return withhold(pr, status, "error body contained the key");
          writeHead(status, pr);
          if (ended) {
            bytesOut = body.length;
            res.once("finish", () => settleFinal(status, undefined));
            res.end(body);
            return;
          }
          // Longer than the hold limit: send what was held and keep scanning what follows.
          const scanner = createRollingScanner(needle);
          const first = scanner.push(body);
          if (first !== "leak" && first.length > 0) {
            bytesOut += first.length;
            res.write(first);
          }
          relay(pr, status, (chunk) => scanner.push(chunk), () => scanner.flush());
        };
        const onData = guard((chunk: Buffer) => {
          touch();
          chunks.push(chunk);
          size += chunk.length;
          if (size > ERROR_BODY_HOLD_BYTES) {
            detach();
            pr.pause();
            decide(false);
          }
        });
        const onEnd = guard(() => {
          detach();
          decide(true);
        });
        // Nothing has been sent yet: an upstream failure here is still an honest 502.
        onBroken = () => {
          detach();
          stopUpstream();
          replyLocal("upstream_reset");
        };
        pr.on("data", onData);
        pr.once("end", onEnd);
        pr.once("error", () => onBroken());
        pr.once("close", () => {
          if (!pr.complete) onBroken();
        });
      };

      /**
       * A 2xx the pipeline sees first (response-plan.ts): decided on its head, or held up to the
       * plan's limit and decided on its body; then sent as it came, replaced, or refused. Nothing
       * has gone out while it is held, so a failure until the decision is still an honest reply.
       */
      const relayPlanned = (pr: IncomingMessage, status: number, plan: ResponsePlan): void => {
        const first = plan.head(status, pr.headers);
        if (first !== "hold" && first.kind === "refuse") {
          pr.destroy();
          stopUpstream();
          return replyLocal(first.reason);
        }
        if (first !== "hold") {
          writeHead(status, pr);
          return relay(pr, status, (chunk) => chunk, () => NO_BODY);
        }
        onBroken = noop; // holdBody reports a break as its end
        const send = async (): Promise<void> => {
          const held = await holdBody(pr, plan.holdBytes, touch);
          if (phase !== "responding") return;
          const decision = await plan.decide({ status, headers: pr.headers, ...held } satisfies HeldResponse);
          if (phase !== "responding") return;
          // A replacement of a body not read whole would be a plan's bug: refused, never sent half-checked.
          if (decision.kind === "refuse" || (decision.kind === "replace" && held.end !== "complete")) {
            pr.destroy();
            stopUpstream();
            return replyLocal(decision.kind === "refuse" ? decision.reason : "upstream_reset");
          }
          if (decision.kind === "replace") {
            res.writeHead(status, replacedHeaders(pr.rawHeaders, input.responseHeaders, decision.json.length));
            bytesOut = decision.json.length;
            res.once("finish", () => settleFinal(status, undefined));
            res.end(decision.json);
            return;
          }
          writeHead(status, pr);
          bytesOut += held.body.length;
          if (held.end === "complete") {
            res.once("finish", () => settleFinal(status, undefined));
            res.end(held.body);
          } else if (held.end === "broken") {
            // As for an unheld body: the client sees a truncated response, never a fake success.
            res.write(held.body, () => cut("upstream_reset"));
          } else {
            res.write(held.body);
            relay(pr, status, (chunk) => chunk, () => NO_BODY);
          }
        };
        send().catch((err: unknown) =>
          guard(() => {
            throw err;
          })(),
        );
      };

      const hooks: AttemptHooks = {
        headers: buildOutgoingHeaders({
          method: ctx.method,
          headers: ctx.headers,
          body: input.body.kind === "held" ? { kind: "held", length: input.body.bytes.length } : { kind: "stream" },
          requestId: ctx.id,
          host: endpoint.host,
          key: key.value,
        }),

        onRequest: guard((pr: ClientRequest) => {
          proxyReq = pr;
          if (abortWanted || phase === "done") {
            pr.destroy();
            return;
          }
          pr.once("finish", () => {
            requestSent = true;
            if (input.body.kind === "held") bytesIn = input.body.bytes.length;
          });
          const socket = pr.socket;
          if (pr.reusedSocket) connected = true;
          else socket?.once(socket instanceof TLSSocket ? "secureConnect" : "connect", () => (connected = true));
        }),

        onResponse: guard((pr: IncomingMessage) => {
          // Keeps a late socket error on a response we no longer read from becoming uncaught.
          pr.on("error", noop);
          if (phase !== "waiting") {
            pr.destroy();
            return;
          }
          phase = "responding";
          proxyRes = pr;
          clearTimeout(responseTimer);
          const status = pr.statusCode ?? 502;
          upstreamStatus = status;
          upstreamMs = now() - startedAt;
          idleTimer = setTimeout(onIdle, upstream.idle_timeout);

          if (status === 401) {
            // The upstream refused our key. Its body (often a masked key) is never passed on.
            onBroken = noop;
            discard(pr);
            settle({ kind: "unauthorized", upstreamMs, bytesIn, forwarded: requestSent });
            return;
          }
          if (isRedirect(status)) {
            logger.warn("upstream answered with a redirect", { ...log, upstream_status: status, reason: "upstream_redirect" });
            onBroken = noop;
            discard(pr);
            replyLocal("upstream_redirect");
            return;
          }
          if (headersContain(pr.rawHeaders, needle)) return withhold(pr, status, "a response header contained the key");
          if (status >= 400) return relayError(pr, status);
          if (input.responsePlan !== undefined && status < 300) return relayPlanned(pr, status, input.responsePlan);
          writeHead(status, pr);
          relay(pr, status, (chunk) => chunk, () => NO_BODY);
        }),

        onError: guard((err: unknown) => {
          if (phase === "responding") return onBroken();
          if (phase !== "waiting") return;
          const reason = classifyUpstreamError(err, connected);
          logger.warn("upstream request failed", { ...log, reason, code: errnoCode(err, "unknown") });
          stopUpstream();
          replyLocal(reason);
        }),
      };

      span?.inject(hooks.headers);

      if (!isSendableTarget(target)) {
        replyLocal("invalid_path");
        return;
      }

      let source: Readable;
      if (input.body.kind === "held") {
        source = heldSource(input.body.bytes);
      } else {
        limiter = createBodyLimiter({
          maxBytes: input.body.maxBytes,
          onBytes: (n) => {
            bytesIn += n;
            touch();
          },
          onOverflow: guard(() => {
            logger.info("request body passed max_body while streaming", { ...log, reason: "body_too_large" });
            stopUpstream();
            replyLocal("body_too_large");
          }),
        });
        req.pipe(limiter);
        source = limiter;
      }

      const standIn = standInRequest(ctx.method, target, hooks.headers, req.socket);
      attempts.set(standIn, hooks);
      registered.standIn = standIn;
      try {
        proxy.web(standIn, res, { buffer: source }, (err) => hooks.onError(err));
      } catch (err) {
        // http.request throws synchronously on header values it refuses.
        hooks.onError(err);
      }
    });
  }

  /**
   * `refreshKey`, never throwing and never waiting longer than `response_timeout` (the keyring
   * bounds its own fetches; this only keeps a stuck refresh from holding the client for ever).
   */
  function boundedRefresh(name: string, refused: HeldKey): Promise<HeldKey | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        logger.warn("key refresh after 401 timed out", { key: name });
        resolve(undefined);
      }, upstream.response_timeout);
    });
    const refresh = Promise.resolve()
      .then(() => refreshKey(name, refused))
      .catch((err: unknown) => {
        logger.warn("key refresh after 401 failed", { key: name, code: errnoCode(err, "unknown") });
        return undefined;
      });
    return Promise.race([refresh, timeout]).finally(() => clearTimeout(timer));
  }

  async function forward(input: ForwardInput): Promise<ForwardResult> {
    const { res } = input;
    let key = input.key;
    let retried = false;
    let clientGone = res.destroyed;
    const onClose = (): void => {
      if (!res.writableFinished) clientGone = true;
    };
    res.on("close", onClose);

    const finish = (result: Omit<ForwardResult, "key">): ForwardResult => {
      res.off("close", onClose);
      if (result.reason !== undefined && result.reason.startsWith("upstream_")) {
        try {
          options.onUpstreamError?.(result.reason);
        } catch (err) {
          logger.error("onUpstreamError failed", { code: errnoCode(err, "unknown") });
        }
      }
      return { ...result, key };
    };

    try {
      if (clientGone) {
        return finish({ status: 499, bytesIn: 0, bytesOut: 0, forwarded: false, clientAborted: true });
      }
      for (;;) {
        const attempt = await runAttempt(input, key);
        if (attempt.kind === "final") return finish(attempt.result);

        logger.warn("upstream refused the key", {
          request_id: input.ctx.id,
          key: input.keyName,
          key_fingerprint: key.fingerprint,
          retried,
        });
        const fresh = retried ? undefined : await boundedRefresh(input.keyName, key);
        const unauthorized = {
          upstreamStatus: 401,
          upstreamMs: attempt.upstreamMs,
          bytesIn: attempt.bytesIn,
          forwarded: attempt.forwarded,
        };
        if (clientGone) return finish({ status: 499, ...unauthorized, bytesOut: 0, clientAborted: true });
        // A 401 means the request was not executed, so replaying a held body once is safe.
        if (fresh !== undefined && fresh.value !== key.value && input.body.kind === "held" && !retried) {
          key = fresh;
          retried = true;
          continue;
        }
        const bytesOut = sendDeny(res, deny("upstream_auth_failed"), {
          headers: input.responseHeaders,
          close: input.body.kind === "stream" && !input.req.complete,
        });
        return finish({ status: 502, reason: "upstream_auth_failed", ...unauthorized, bytesOut, clientAborted: false });
      }
    } catch (err) {
      // A bug, not an upstream failure: there is no honest reply, so the connection is cut.
      logger.error("forwarding failed", { request_id: input.ctx.id, code: errnoCode(err, "unknown") });
      res.destroy();
      return finish({ status: res.headersSent ? res.statusCode : 502, bytesIn: 0, bytesOut: 0, forwarded: false, clientAborted: false });
    }
  }

  return {
    forward,
    close() {
      agent.destroy();
    },
  };
}
