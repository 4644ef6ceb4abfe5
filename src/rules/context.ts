/**
 * What the checks know about one request. It is built from the wire (or, for `test-policy`, from a
 * case description) and filled in as the checks run: the identity check sets `client`, the route
 * check sets `route`, the body check sets `model`. Rules read headers from here, never from the
 * socket, so the proxy and `test-policy` take the same decisions.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { ClientConfig } from "../config/types.ts";

export type CredentialKind = "token" | "jwt" | "cookie" | "anonymous";

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
  /** Set by the identity check. */
  client: ClientConfig | undefined;
  credential: CredentialKind | undefined;
  /** Session subject (JWT `subject_claim`), when the caller came with a session. */
  subject: string | undefined;
  /** The matched route template from the config, e.g. `GET /v1/models/{id}`. */
  route: string | undefined;
  /** The model named in the body, once checked. */
  model: string | undefined;
  /** How many images the body asks for (`n`), once checked; 1 when not given or not checked. */
  imageCount: number;
  /** Estimated cost in USD, once known (limits). */
  costUsd: number;
  /** Undo actions (concurrency slots, budget reservations) run once when the request ends. */
  readonly cleanups: Array<(outcome: RequestOutcome) => void>;
}

/** How a request ended, for releasing reservations and for the audit log. */
export interface RequestOutcome {
  readonly status: number;
  /** True when the upstream received the request and answered below 400 (budgets keep the spend). */
  readonly forwarded: boolean;
  readonly upstreamStatus?: number;
}
