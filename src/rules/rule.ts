/**
 * One check in the request chain (SPEC §4). The factory that makes a rule compiles its part of the
 * config once (CIDRs, route templates, token hashes); `check` only looks things up, reads the
 * request from the context (never from a socket, so `test-policy` takes the same decisions) and
 * either continues or returns a deny carrying a stable reason.
 */
import type { RequestContext } from "./context.ts";
import type { Verdict } from "./verdict.ts";

export interface Rule {
  /** Stable short name for logs and tests, e.g. `identity`. */
  readonly name: string;
  check(ctx: RequestContext): Verdict | Promise<Verdict>;
}
