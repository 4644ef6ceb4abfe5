/**
 * Runs policy cases through the proxy's own decision path (`proxy/decide.ts`), offline: every
 * configured key counts as held (no fetch), limits use a fresh in-memory store per case, and
 * nothing is forwarded. A case's outcome is what the proxy would do with that request right before
 * forwarding: allow it for a client and key, or refuse it with a status and reason.
 */
import { ERRORS, type Reason } from "../errors.ts";
import type { ProxyConfig } from "../config/types.ts";
import { createHeldKey } from "../keys/held-key.ts";
import type { ManagedKeyring } from "../keys/keyring.ts";
import type { HeldKey } from "../keys/types.ts";
import { silentLogger } from "../observe/log.ts";
import { createMetrics, type Metrics } from "../observe/metrics.ts";
import { decideBody, decideBodyStart, decideHead } from "../proxy/decide.ts";
import { buildRuntime } from "../runtime.ts";
import type { Deny } from "../rules/verdict.ts";
import type { CaseExpectation, PolicyCase } from "./cases.ts";
import { buildCaseRequest } from "./request.ts";
import { createSessionIssuer, type SessionIssuer } from "./sessions.ts";

export type Outcome =
  | { readonly allow: true; readonly client: string; readonly key: string }
  | { readonly allow: false; readonly status: number; readonly reason: Reason; readonly client: string | undefined; readonly key: string | undefined };

/** A keyring that holds every configured key (a placeholder value; nothing is ever sent). */
function offlineKeyring(config: ProxyConfig): ManagedKeyring {
  const held = new Map<string, HeldKey>(
    Object.entries(config.keys).map(([name, key]) => [
      name,
      createHeldKey({ name, source: key.source, value: "policy-test-placeholder", version: "", fingerprint: "00000000", fetchedAt: Date.now() }),
    ]),
  );
  return {
    current: (name) => held.get(name),
    held: (name) => held.get(name),
    readiness: () => ({ ready: true, reasons: [] }),
    refreshNow: (name) => Promise.resolve(held.get(name)),
    start: () => undefined,
    close: () => undefined,
  };
}

function refused(deny: Deny, client: { id: string; key: string } | undefined): Outcome {
  return { allow: false, status: ERRORS[deny.reason].status, reason: deny.reason, client: client?.id, key: client?.key };
}

export interface PolicyRunner {
  run(testCase: PolicyCase): Promise<Outcome>;
}

/** Prepares a runner for one config (the session issuer reads the config's session secret, if any). */
export async function createPolicyRunner(config: ProxyConfig, hash: string, env: NodeJS.ProcessEnv): Promise<PolicyRunner> {
  const metrics: Metrics = createMetrics({ version: "policy", processMetrics: false });
  const issuer: SessionIssuer = await createSessionIssuer(config, env);

  return {
    async run(testCase) {
      // A fresh runtime per case: limits and failed-auth counters never carry over between cases.
      const runtime = buildRuntime(config, hash, {
        logger: silentLogger,
        metrics,
        env,
        keyring: offlineKeyring(config),
        offline: true,
        ...issuer.runtimeDeps,
      });
      try {
        const request = testCase.request;
        const session = request.jwt ?? (request.claims === undefined ? undefined : await issuer.issue(request.claims));
        const { head, body } = buildCaseRequest(request, session, config.sessions?.jwt.cookie);
        const decision = await decideHead(runtime, "policy-test", head);
        if (decision.kind === "refuse") return refused(decision.deny, decision.ctx?.client);
        if (decision.kind === "preflight") return { allow: true, client: "(preflight)", key: "(none)" };
        const ctx = decision.ctx;
        const start = decideBodyStart(runtime, ctx, head);
        if (start.kind === "refuse") return refused(start.deny, ctx.client);
        if (start.kind === "hold" && body.length > ctx.client.max_body) return refused({ ok: false, reason: "body_too_large" }, ctx.client);
        const verdict = await decideBody(runtime, ctx, start.kind === "hold" ? body : undefined);
        if (!verdict.ok) return refused(verdict, ctx.client);
        for (const cleanup of ctx.cleanups) cleanup({ status: 200, forwarded: false });
        return { allow: true, client: ctx.client.id, key: ctx.client.key };
      } finally {
        await runtime.close();
      }
    },
  };
}

export interface Mismatch {
  readonly field: keyof CaseExpectation;
  readonly expected: string;
  readonly actual: string;
}

function show(value: string | number | boolean | undefined): string {
  return value === undefined ? "(none)" : String(value);
}

/** The fields the case expects that the outcome does not have; empty when the case passes. */
export function compare(expect: CaseExpectation, outcome: Outcome): Mismatch[] {
  const actual: Record<keyof CaseExpectation, string | number | boolean | undefined> = {
    allow: outcome.allow,
    client: outcome.client,
    key: outcome.key,
    status: outcome.allow ? undefined : outcome.status,
    reason: outcome.allow ? undefined : outcome.reason,
  };
  const wantsRefusal = expect.status !== undefined || expect.reason !== undefined;
  const expected: Partial<Record<keyof CaseExpectation, string | number | boolean>> = {
    ...expect,
    ...(expect.allow === undefined && wantsRefusal ? { allow: false } : {}),
  };
  const mismatches: Mismatch[] = [];
  for (const field of ["allow", "status", "reason", "client", "key"] as const) {
    if (expected[field] === undefined) continue;
    if (expected[field] !== actual[field]) mismatches.push({ field, expected: show(expected[field]), actual: show(actual[field]) });
  }
  return mismatches;
}
