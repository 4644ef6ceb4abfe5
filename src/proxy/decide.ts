/**
 * The decisions of the request pipeline (SPEC §4 steps 1–7), without sockets: the listen port's
 * handler and `mythiq-proxy test-policy` both call these, so a policy test exercises exactly the
 * proxy's own decision path up to the point of forwarding. The order of the steps is a security
 * property and lives here and in `rules/build.ts`, one comment per step.
 */
import type { IncomingHttpHeaders } from "node:http";
import { checkFraming } from "../http/framing.ts";
import { parseTarget } from "../http/target.ts";
import type { RequestContext } from "../rules/context.ts";
import { CONTINUE, deny, type Deny, type Verdict } from "../rules/verdict.ts";
import type { Runtime } from "../runtime.ts";

/** The request head as the decisions see it: Node's IncomingMessage fits, and so does a policy test case. */
export interface RequestHead {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly httpVersionMajor: number;
  readonly httpVersionMinor: number;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  /** The TCP peer's address as the socket reports it (normalised later). */
  readonly socketAddress: string;
}

export type HeadDecision =
  /** Refused; `ctx` is set when the refusal came after step 1 (for metrics and the audit log). */
  | { readonly kind: "refuse"; readonly deny: Deny; readonly ctx?: RequestContext; readonly headers: Readonly<Record<string, string>> }
  | { readonly kind: "preflight"; readonly ctx: RequestContext; readonly headers: Readonly<Record<string, string>> }
  | { readonly kind: "admit"; readonly ctx: RequestContext & { client: NonNullable<RequestContext["client"]> }; readonly headers: Readonly<Record<string, string>> };

const NONE: Readonly<Record<string, string>> = Object.freeze({});

/**
 * Steps 1–6: everything that can be decided from the request head. `gate` runs right after step 1
 * (draining, load shedding): a proxy that will not serve says so before any identity work.
 */
export async function decideHead(runtime: Runtime, id: string, head: RequestHead, gate?: () => Deny | undefined): Promise<HeadDecision> {
  // Step 1: framing and target. Nothing after this step sees a request that normalisation would change.
  const framing = checkFraming(head, { maxHeaderCount: runtime.config.server.max_header_count });
  if (!framing.ok) return { kind: "refuse", deny: framing, headers: NONE };
  const target = parseTarget(head.url ?? "");
  if (!target.ok) return { kind: "refuse", deny: target, headers: NONE };
  const closed = gate?.();
  if (closed !== undefined) return { kind: "refuse", deny: closed, headers: NONE };

  const ctx = runtime.createContext({ id, head, target });

  // Step 2: CORS preflight, answered by the proxy and never forwarded.
  const preflight = runtime.preflight(ctx);
  if (preflight !== undefined) {
    return preflight.ok
      ? { kind: "preflight", ctx, headers: preflight.headers }
      : { kind: "refuse", deny: preflight.deny, ctx, headers: NONE };
  }

  // Steps 3–6: caller identity, origin and network, route, key held, limits (rules/build.ts).
  for (const rule of runtime.admission) {
    const verdict = await rule.check(ctx);
    if (!verdict.ok) return { kind: "refuse", deny: verdict, ctx, headers: runtime.responseHeaders(ctx) };
  }
  const headers = runtime.responseHeaders(ctx);
  const client = ctx.client;
  if (client === undefined) return { kind: "refuse", deny: deny("missing_credentials", "no rule identified a client"), ctx, headers };
  return { kind: "admit", ctx: ctx as RequestContext & { client: typeof client }, headers };
}

export type BodyStart = { readonly kind: "none" | "hold" | "stream" } | { readonly kind: "refuse"; readonly deny: Deny };

/**
 * Step 7, before reading a byte: a declared length over `max_body` is refused at once (and before
 * `100 Continue`, which is only sent after this), then the body is held (checked or replayable) or
 * streamed.
 */
export function decideBodyStart(runtime: Runtime, ctx: RequestContext & { client: NonNullable<RequestContext["client"]> }, head: RequestHead): BodyStart {
  const declared = contentLength(head.headers);
  if (declared !== undefined && declared > ctx.client.max_body) {
    return { kind: "refuse", deny: deny("body_too_large", `content-length ${declared} > ${ctx.client.max_body}`) };
  }
  const hasBody = requestHasBody(head.headers);
  const plan = runtime.bodyPlan(ctx, hasBody, declared);
  if (!plan.ok) return { kind: "refuse", deny: plan };
  if (!hasBody) return { kind: "none" };
  return { kind: plan.hold ? "hold" : "stream" };
}

/**
 * Step 7 on the body (held bytes, or undefined when it streams or there is none), then the checks
 * that price what the body asked for (the daily budget).
 */
export async function decideBody(runtime: Runtime, ctx: RequestContext, held: Buffer | undefined): Promise<Verdict> {
  if (held !== undefined) {
    const checked = runtime.checkBody(ctx, held);
    if (!checked.ok) return checked;
  }
  for (const rule of runtime.charge) {
    const verdict = await rule.check(ctx);
    if (!verdict.ok) return verdict;
  }
  return CONTINUE;
}

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
