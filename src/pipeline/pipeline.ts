/**
 * The request pipeline: SPEC §4 steps 1–9, in order, in one function (`runPipeline`). The order is
 * a security property, so it lives here in code, one comment per step, and never in the YAML.
 *
 * Every request goes through this function: the listen port's requests (`listen-handler.ts`), the
 * refusals the listener makes before a request exists (they enter already refused at step 1), and
 * `mythiq-proxy test-policy`'s cases (`src/policy/run.ts`). What differs between them is only the
 * I/O, which the caller passes in as an `Exchange`: how to reply, read the body, forward.
 */
import type { IncomingHttpHeaders } from "node:http";
import { ERRORS } from "../errors.ts";
import { checkFraming } from "../http/framing.ts";
import { parseTarget } from "../http/target.ts";
import type { HeldKey } from "../keys/types.ts";
import type { RequestTrace } from "../observe/tracing/types.ts";
import { NO_BODY } from "../proxy/body-source.ts";
import type { ForwardBody, ForwardResult } from "../proxy/forward.ts";
import type { ResponsePlan } from "../proxy/response-plan.ts";
import type { CompiledConfig } from "./compile.ts";
import { CONTINUE, deny, type CallerContext, type Deny, type RequestContext, type RequestHead, type Rule, type Verdict } from "./types.ts";

/** Seconds a caller is told to wait while a key is not held yet. */
export const KEY_UNAVAILABLE_RETRY_SECONDS = 5;

/** A held body that was read completely. */
export type BodyRead = { readonly ok: true; readonly bytes: Buffer } | { readonly ok: false; readonly why: "too_large" | "aborted" };

/** The I/O of one request, passed in by whoever runs the pipeline. */
export interface Exchange {
  /** Our request id (`x-request-id`). */
  readonly id: string;
  readonly head: RequestHead;
  /**
   * A refusal already made before a request existed (the listener's: parser errors, CONNECT,
   * upgrades, an unknown `Expect`): step 1 ends the request with it.
   */
  readonly refused?: Deny;
  /** The undo actions of the context (concurrency slots, budget reservations); the caller runs them once the request ends. */
  readonly cleanups: RequestContext["cleanups"];
  /** Set by the pipeline as soon as the context exists, so a failure after that is still accounted with what was known. */
  ctx: RequestContext | undefined;
  /** The request's trace while tracing is on (SPEC §11): spans are the exchange's and the accounting's business, never the pipeline's. */
  readonly trace?: RequestTrace | undefined;
  /** A proxy that will not serve now (draining, shedding load) says why; undefined to go on. */
  closed(): Deny | undefined;
  /** Sends SPEC §5's JSON for `verdict` with `headers`; returns the body's size in bytes. */
  reply(verdict: Deny, headers: Readonly<Record<string, string>>): number;
  /** Answers a CORS preflight with 204 and `headers`. */
  answerPreflight(headers: Readonly<Record<string, string>>): void;
  /** Sends `100 Continue` when the client waits for it; otherwise nothing. */
  continue(): void;
  /** Reads the whole body into memory, never past `maxBytes`. */
  readBody(maxBytes: number): Promise<BodyRead>;
  /**
   * Forwards with `key` and relays the response (steps 8 and 9), through `plan` when the route has
   * one (ownership's create and list routes). Never rejects.
   */
  forward(
    caller: CallerContext,
    key: HeldKey,
    body: ForwardBody,
    headers: Readonly<Record<string, string>>,
    plan: ResponsePlan | undefined,
  ): Promise<ForwardResult>;
  /** Resets the connection: there is no honest reply to a bug. */
  reset(): void;
}

/** How a request ended, for its accounting (metrics and the audit line). */
export type Ending =
  | {
      /** Refused by the proxy, with SPEC §5's JSON. `check` names the step that refused. */
      readonly kind: "refused";
      readonly deny: Deny;
      readonly check: string;
      readonly status: number;
      readonly bytesOut: number;
    }
  | { readonly kind: "preflight"; readonly status: 204 }
  /** The client went away while its body was being read. */
  | { readonly kind: "aborted"; readonly status: 499 }
  | { readonly kind: "forwarded"; readonly result: ForwardResult }
  /** A broken invariant or a bug; the connection was reset (see serve.ts). */
  | { readonly kind: "failed" };

const NONE: Readonly<Record<string, string>> = Object.freeze({});

/** A bodiless request is forwarded as held (replayable) zero bytes. */
const EMPTY_BODY: ForwardBody = Object.freeze({ kind: "held", bytes: NO_BODY });

/** A body follows the head: chunked, or a declared length above zero. */
export function requestHasBody(headers: IncomingHttpHeaders): boolean {
  return headers["transfer-encoding"] !== undefined || (contentLength(headers) ?? 0) > 0;
}

/** Node's parser has already refused malformed or duplicated Content-Length values. */
export function contentLength(headers: IncomingHttpHeaders): number | undefined {
  const raw = headers["content-length"];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** A limit no client configures. */
function check(rule: Rule | undefined, caller: CallerContext): Verdict | Promise<Verdict> {
  return rule === undefined ? CONTINUE : rule.check(caller);
}

/**
 * Runs SPEC §4 for one request and says how it ended. Resolves for every refusal; rejects only on a
 * broken invariant or a bug (the caller then resets the connection).
 */
export async function runPipeline(compiled: CompiledConfig, exchange: Exchange): Promise<Ending> {
  const { head } = exchange;
  const refused = (step: string, verdict: Deny, headers = NONE): Ending => ({
    kind: "refused",
    deny: verdict,
    check: step,
    status: ERRORS[verdict.reason].status,
    bytesOut: exchange.reply(verdict, headers),
  });

  // Step 1: framing and target. Nothing after this step sees a request that normalisation would
  // change. The listener's own refusals end here too, so they are counted and audited like any other.
  if (exchange.refused !== undefined) return refused("listener", exchange.refused);
  const framing = checkFraming(head, { maxHeaderCount: compiled.config.server.max_header_count });
  if (!framing.ok) return refused("framing", framing);
  const target = parseTarget(head.url ?? "");
  if (!target.ok) return refused("target", target);
  // A proxy that will not serve (draining, shedding load) says so before any identity work.
  const closed = exchange.closed();
  if (closed !== undefined) return refused("lifecycle", closed);
  const ctx = compiled.createContext(exchange.id, head, target, exchange.cleanups);
  exchange.ctx = ctx;

  // Step 2: CORS preflight, answered here and never forwarded (and never spending a rate token).
  const preflight = compiled.preflight(ctx);
  if (preflight !== undefined) {
    if (!preflight.ok) return refused("preflight", preflight.deny);
    exchange.answerPreflight(preflight.headers);
    return { kind: "preflight", status: 204 };
  }

  // Step 3: who is calling: a static token, a session JWT, or an anonymous client whose origins /
  // networks match. Failed attempts count against limits.auth_failures per caller IP.
  const identity = await compiled.identity.identify(ctx);
  if (!identity.ok) return refused("identity", identity, compiled.responseHeaders(ctx));
  const caller = identity.ctx;
  const client = caller.client;
  // CORS headers depend on the client and the Origin only: fixed from here on.
  const headers = compiled.responseHeaders(caller);

  // Step 4: origin (a listed client's browser Origin must match; cookie sessions always need one,
  // so another site cannot ride on a user's cookie), then network (the caller IP).
  let verdict = await compiled.origin.check(caller);
  if (!verdict.ok) return refused("origin", verdict, headers);
  verdict = await compiled.network.check(caller);
  if (!verdict.ok) return refused("network", verdict, headers);

  // Step 5: METHOD + canonical path must match one of the client's routes exactly, and every query
  // parameter must be listed for that route.
  verdict = await compiled.route.check(caller);
  if (!verdict.ok) return refused("route", verdict, headers);

  // The key must be held before any quota is spent or any body byte is read; only a caller that
  // would be allowed learns that the proxy has no key.
  if (compiled.keyring.current(client.key) === undefined) {
    return refused("key", deny("key_unavailable", `key ${client.key} not held`, KEY_UNAVAILABLE_RETRY_SECONDS), headers);
  }

  // Step 6: limits: the rate limit, then concurrency (a slot is held until the request ends). The
  // daily budget prices the body, so it runs after step 7.
  verdict = await check(compiled.limits.rate, caller);
  if (!verdict.ok) return refused("rate_limit", verdict, headers);
  verdict = await check(compiled.limits.concurrency, caller);
  if (!verdict.ok) return refused("concurrency", verdict, headers);

  // Ownership of a "use" route's id (README "Ownership"): not the caller's → 404 `not_found`, never
  // forwarded. After the limits, so probing ids spends rate tokens like any other request; before
  // the body, so a refused id reads no body byte and gets no `100 Continue`. Create and list routes
  // get a plan for their response instead (step 9).
  const owned = compiled.ownership?.forRoute(caller);
  if (owned?.check !== undefined) {
    verdict = await owned.check(caller);
    if (!verdict.ok) return refused("ownership", verdict, headers);
  }

  // Step 7: the body. A declared length over max_body is refused before reading, and before
  // `100 Continue`, which is sent only once every check that needs no body has passed. Checked
  // bodies are held and parsed strictly; what MythIQ receives is exactly the bytes checked.
  const declared = contentLength(head.headers);
  if (declared !== undefined && declared > client.max_body) {
    return refused("body", deny("body_too_large", `content-length ${declared} > ${client.max_body}`), headers);
  }
  const hasBody = requestHasBody(head.headers);
  const plan = compiled.body.plan(caller, hasBody, declared);
  if (!plan.ok) return refused("body", plan, headers);
  exchange.continue();
  let body: ForwardBody = EMPTY_BODY;
  if (hasBody && plan.hold) {
    const read = await exchange.readBody(client.max_body);
    if (!read.ok) {
      if (read.why === "aborted") return { kind: "aborted", status: 499 };
      return refused("body", deny("body_too_large", "body passed max_body while reading"), headers);
    }
    const checked = compiled.body.check(caller, read.bytes);
    if (!checked.ok) return refused("body", checked, headers);
    body = { kind: "held", bytes: read.bytes };
  } else if (hasBody) {
    body = { kind: "stream", maxBytes: client.max_body };
  }
  verdict = await check(compiled.limits.budget, caller);
  if (!verdict.ok) return refused("budget", verdict, headers);

  // Step 8: forward, with the key read again, synchronously (the hot path never waits on a secret
  // store; a key past max_stale since step 5 is refused rather than sent). Step 9, relaying the
  // response, the 401 refresh-and-retry and the upstream error mapping, is the forwarder's.
  const key = compiled.keyring.current(client.key);
  if (key === undefined) return refused("key", deny("key_unavailable", `key ${client.key} not held`, KEY_UNAVAILABLE_RETRY_SECONDS), headers);
  return { kind: "forwarded", result: await exchange.forward(caller, key, body, headers, owned?.respond?.(caller)) };
}
