/**
 * Runs policy cases through the proxy's own request pipeline (`src/pipeline/pipeline.ts`), offline:
 * every configured key counts as held (no fetch), limits count in a fresh in-memory store, and
 * nothing is forwarded. A case's outcome is what the proxy would do with that request right before
 * forwarding: allow it for a client and key, or refuse it with a status and reason.
 */
import type { ProxyConfig } from "../config/types.ts";
import { createHeldKey } from "../keys/held-key.ts";
import type { ManagedKeyring } from "../keys/keyring.ts";
import type { HeldKey } from "../keys/types.ts";
import { silentLogger } from "../observe/log.ts";
import { createMetrics, type Metrics } from "../observe/metrics.ts";
import { compileConfig, type CompiledConfig } from "../pipeline/compile.ts";
import { runPipeline, type Ending, type Exchange } from "../pipeline/pipeline.ts";
import type { Deny } from "../pipeline/types.ts";
import type { Reason } from "../errors.ts";
import type { CaseExpectation, PolicyCase } from "./cases.ts";
import { buildCaseRequest } from "./request.ts";
import { createSessionIssuer, type SessionIssuer } from "./sessions.ts";

export type Outcome =
  | { readonly allow: true; readonly client: string; readonly key: string }
  | { readonly allow: false; readonly status: number; readonly reason: Reason; readonly client: string | undefined; readonly key: string | undefined };

/** A keyring that holds every configured key but `unheld` (a placeholder value; nothing is ever sent). */
function offlineKeyring(config: ProxyConfig, unheld: ReadonlySet<string>): ManagedKeyring {
  const held = new Map<string, HeldKey>(
    Object.entries(config.keys)
      .filter(([name]) => !unheld.has(name))
      .map(([name, key]) => [
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

export interface PolicyRunner {
  /** One case, against a freshly compiled config: limits and failed-auth counters never carry over. */
  run(testCase: PolicyCase): Promise<Outcome>;
  /** Cases in order against one compiled config, so that limits and failed-auth counters carry over. */
  runSequence(cases: readonly PolicyCase[]): Promise<Outcome[]>;
}

export interface PolicyRunnerOptions {
  /** Keys that count as not held (the proxy's tests); default none. */
  readonly unheldKeys?: ReadonlySet<string>;
}

/** Prepares a runner for one config (the session issuer reads the config's session secret, if any). */
export async function createPolicyRunner(
  config: ProxyConfig,
  hash: string,
  env: NodeJS.ProcessEnv,
  options: PolicyRunnerOptions = {},
): Promise<PolicyRunner> {
  const metrics: Metrics = createMetrics({ version: "policy", processMetrics: false });
  const issuer: SessionIssuer = await createSessionIssuer(config, env);
  const unheld = options.unheldKeys ?? new Set<string>();

  async function decide(compiled: CompiledConfig, testCase: PolicyCase): Promise<Outcome> {
    const request = testCase.request;
    const session = request.jwt ?? (request.claims === undefined ? undefined : await issuer.issue(request.claims));
    const { head, body } = buildCaseRequest(request, session, config.sessions?.jwt.cookie);
    const exchange: Exchange = {
      id: "policy-test",
      head,
      cleanups: [],
      ctx: undefined,
      closed: () => undefined,
      reply: () => 0,
      answerPreflight: () => undefined,
      continue: () => undefined,
      readBody: (maxBytes) => Promise.resolve(body.length > maxBytes ? { ok: false, why: "too_large" } : { ok: true, bytes: body }),
      // The case ends here: this is where the proxy would forward.
      forward: (_caller, key, held) =>
        Promise.resolve({ status: 200, forwarded: false, bytesIn: held.kind === "held" ? held.bytes.length : 0, bytesOut: 0, key, clientAborted: false }),
      reset: () => undefined,
    };
    let ending: Ending;
    try {
      ending = await runPipeline(compiled, exchange);
    } finally {
      for (const cleanup of exchange.cleanups) cleanup({ status: 200, forwarded: false });
    }
    const client = exchange.ctx?.client;
    switch (ending.kind) {
      case "refused":
        return refused(ending.deny, ending.status, client);
      case "preflight":
        return { allow: true, client: "(preflight)", key: "(none)" };
      case "forwarded":
        if (client === undefined) throw new Error("forwarded without a client");
        return { allow: true, client: client.id, key: client.key };
      default:
        throw new Error(`the case ended as ${ending.kind}`);
    }
  }

  async function runSequence(cases: readonly PolicyCase[]): Promise<Outcome[]> {
    const compiled = compileConfig(config, hash, {
      logger: silentLogger,
      metrics,
      env,
      keyring: offlineKeyring(config, unheld),
      offline: true,
      ...issuer.compileDeps,
    });
    try {
      const outcomes: Outcome[] = [];
      for (const testCase of cases) outcomes.push(await decide(compiled, testCase));
      return outcomes;
    } finally {
      await compiled.close();
    }
  }

  return {
    runSequence,
    async run(testCase) {
      const [outcome] = await runSequence([testCase]);
      if (outcome === undefined) throw new Error("no outcome");
      return outcome;
    },
  };
}

function refused(deny: Deny, status: number, client: { id: string; key: string } | undefined): Outcome {
  return { allow: false, status, reason: deny.reason, client: client?.id, key: client?.key };
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
