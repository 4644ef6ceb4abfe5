/**
 * The types every stage of the request pipeline (SPEC §4) shares: the request head, the request
 * context the checks fill in, verdicts and rules, and the results of the preflight and body-plan
 * steps. `http/`, `rules/`, `limits/` and `proxy/` import them from here; this module imports
 * nothing of theirs, so no stage can form an import cycle through it.
 *
 * A check either lets the request continue or ends it with a local reply carrying a stable reason
 * (Envoy's filter-chain model). A deny is a value, never an exception: exceptions are reserved for
 * technical failures and broken invariants, which the pipeline answers with a reset connection.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { ClientConfig } from "../config/types.ts";
import type { Reason } from "../errors.ts";

// ---------------------------------------------------------------------------------------------
// Verdicts

export interface Deny {
  readonly ok: false;
  readonly reason: Reason;
  /** For the log only, never sent to the caller. Must not contain secrets. */
  readonly detail?: string;
  /** Seconds; becomes `Retry-After`. */
  readonly retryAfterSeconds?: number;
}

export type Verdict = { readonly ok: true } | Deny;

export const CONTINUE: Verdict = Object.freeze({ ok: true });

export function deny(reason: Reason, detail?: string, retryAfterSeconds?: number): Deny {
  const verdict: { ok: false; reason: Reason; detail?: string; retryAfterSeconds?: number } = { ok: false, reason };
  if (detail !== undefined) verdict.detail = detail;
  if (retryAfterSeconds !== undefined) verdict.retryAfterSeconds = retryAfterSeconds;
  return verdict;
}

/**
 * A broken invariant inside the proxy (a rule met a client it was not compiled for, say). It is a
 * bug, never the caller's fault: the pipeline resets the connection, logs it and counts it in
 * `mythiq_proxy_internal_errors_total`; it is never answered with a 4xx.
 */
export class InvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvariantError";
  }
}

// ---------------------------------------------------------------------------------------------
// The request

/** The request head as the pipeline sees it: Node's IncomingMessage fits, and so does a policy test case. */
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

export type CredentialKind = "token" | "jwt" | "cookie" | "anonymous";

/**
 * What the checks know about one request. It is built from the wire (or, for `test-policy`, from a
 * case description) once framing and target passed, and filled in as the checks run: identity sets
 * `client`, the route check sets `route`, the body check sets `model`. Rules read headers from
 * here, never from the socket, so the proxy and `test-policy` take the same decisions.
 */
export interface RequestContext {
  /** Our `x-request-id` for this request. */
  readonly id: string;
  readonly method: string;
  /** The checked, canonical path: exactly what is forwarded. */
  readonly path: string;
  /** The raw query string without `?` ("" when none); forwarded as it came. */
  readonly query: string;
  /** Names of the query parameters, in order, duplicates kept. */
  readonly queryNames: readonly string[];
  /** Lower-cased header names as Node parsed them. */
  readonly headers: IncomingHttpHeaders;
  /** Address of the TCP peer, IPv4-mapped IPv6 already turned into IPv4. */
  readonly socketIp: string;
  /** The caller: `socketIp`, or the right-most untrusted `X-Forwarded-For` hop when the peer is a trusted proxy. */
  ip: string;
  /** The `Origin` header, when one was sent. */
  readonly origin: string | undefined;
  /** Set by the identity step; see `CallerContext`. */
  client: ClientConfig | undefined;
  credential: CredentialKind | undefined;
  /** Session subject (JWT `subject_claim`), when the caller came with a session. */
  subject: string | undefined;
  /** The matched route template from the config, e.g. `GET /v1/models/{id}`. */
  route: string | undefined;
  /** The model named in the body, once checked; on a `model_not_allowed` refusal, the model refused. */
  model: string | undefined;
  /** How many images the body asks for (`n`), once checked; 1 when not given or not checked. */
  imageCount: number;
  /** Estimated cost in USD, once known (limits). */
  costUsd: number;
  /** What ownership decided; set on its routes only (others never carry the property). */
  ownership?: OwnershipNote;
  /** Undo actions (concurrency slots, budget reservations) run once when the request ends. */
  readonly cleanups: Array<(outcome: RequestOutcome) => void>;
}

/** What ownership decided for a request (README "Ownership"), for its audit line. */
export interface OwnershipNote {
  /** The `ownership` kind of the route. */
  readonly kind: string;
  readonly decision: "owned" | "refused" | "unavailable" | "recorded" | "unrecorded" | "filtered" | "withheld";
  /** recorded: ids recorded; filtered: items kept. */
  readonly items?: number;
  /** filtered: items withheld. */
  readonly withheld?: number;
  /** unrecorded and withheld: why, one fixed word. */
  readonly why?: string;
}

/** The context once identity passed (SPEC §4 step 3): every later step knows who is calling. */
export type CallerContext = RequestContext & { client: ClientConfig; credential: CredentialKind };

/** How a request ended, for releasing reservations and for the audit log. */
export interface RequestOutcome {
  readonly status: number;
  /** True when the upstream received the request and answered below 400 (budgets keep the spend). */
  readonly forwarded: boolean;
  readonly upstreamStatus?: number;
}

// ---------------------------------------------------------------------------------------------
// Rules and step results

/**
 * One check after identity (SPEC §4 steps 4–7). The factory that makes a rule compiles its part of
 * the config once (CIDRs, route templates); `check` only looks things up, reads the request from
 * the context (never from a socket, so `test-policy` takes the same decisions) and either continues
 * or returns a deny carrying a stable reason.
 */
export interface Rule {
  /** Stable short name for logs and tests, e.g. `route`; the audit log's `check` field. */
  readonly name: string;
  check(ctx: CallerContext): Verdict | Promise<Verdict>;
}

/** SPEC §4 step 3: identifies the caller, or refuses. On success the same context, now a `CallerContext`. */
export interface IdentityRule {
  readonly name: string;
  identify(ctx: RequestContext): IdentityResult | Promise<IdentityResult>;
}

export type IdentityResult = { readonly ok: true; readonly ctx: CallerContext } | Deny;

/** SPEC §4 step 2: the answer to a CORS preflight. */
export type Preflight = { readonly ok: true; readonly headers: Readonly<Record<string, string>> } | { readonly ok: false; readonly deny: Deny };

/** SPEC §4 step 7, before reading: whether the body is read into memory first (checked or replayable) or streamed. */
export type BodyPlan = { readonly ok: true; readonly hold: boolean } | Deny;
