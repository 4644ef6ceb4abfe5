/**
 * The soak's books: every request's outcome counted (sent, not sent, given up on), judged by the
 * classifier and tallied by kind, category and answer, with the latency of the successful ones,
 * the first unexpected ones in detail, and the `x-request-id`s to look up in the audit log.
 *
 * 503 `overloaded` answers are held back and judged by `judgeShed()` at the end, once the proxy's
 * own reports of its event-loop delay (which may arrive a scrape later) are all in.
 */
import type { Category, Expectation, Verdict } from "./classify.ts";
import type { Outcome } from "./client.ts";

export interface Judged {
  readonly name: string;
  readonly expect: Expectation;
  /** What is wrong with a 200 body, if anything. */
  readonly check?: (outcome: Outcome) => string | undefined;
}

export interface UnexpectedOutcome {
  readonly t: number;
  readonly kind: string;
  readonly id: number;
  readonly detail: string;
  readonly requestId?: string;
}

export interface TallySummary {
  sent: number;
  notSent: number;
  abandoned: number;
  byKind: Record<string, Record<string, number>>;
  byAnswer: Record<string, number>;
  unexpectedCount: number;
  unexpected: UnexpectedOutcome[];
  latencyMs: Record<string, { count: number; p50: number; p99: number; max: number }>;
}

export interface Tally {
  /** Counts and judges one outcome; `override` gives the category outright. */
  readonly record: (kind: Judged, id: number, outcome: Outcome, override?: Category) => void;
  /** Judges the 503 `overloaded` answers held back. */
  readonly judgeShed: () => void;
  readonly sent: () => number;
  readonly abandoned: () => number;
  readonly unexpectedCount: () => number;
  /** The `x-request-id` of every answer received. */
  readonly requestIds: () => readonly string[];
  readonly summary: () => TallySummary;
}

const KEEP_UNEXPECTED = 50;

function percentiles(list: readonly number[]): { count: number; p50: number; p99: number; max: number } {
  const sorted = [...list].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? NaN };
}

/**
 * `classify` judges an outcome (with the problem `check` found in a 200 body); `secrets` lists the
 * MythIQ keys issued so far, none of which may appear in a response body.
 */
export function createTally(
  classify: (kind: Judged, id: number, outcome: Outcome, problem: string | undefined) => Verdict,
  secrets: () => readonly string[],
): Tally {
  let sent = 0;
  let notSent = 0;
  let abandoned = 0;
  let unexpectedCount = 0;
  const byKind = new Map<string, Map<Category, number>>();
  const byAnswer = new Map<string, number>();
  const latencies = new Map<string, number[]>();
  const unexpected: UnexpectedOutcome[] = [];
  const requestIds: string[] = [];
  const shed: { kind: Judged; id: number; outcome: Outcome }[] = [];

  function judge(kind: Judged, id: number, outcome: Outcome, override?: Category): void {
    const complete = outcome.status === 200 && !outcome.truncated && outcome.error === undefined;
    const problem = complete ? kind.check?.(outcome) : undefined;
    const leaked = secrets().some((secret) => outcome.body?.includes(secret) === true);
    const verdict: Verdict = leaked
      ? { category: "unexpected", detail: "a MythIQ key in the response body" }
      : override !== undefined
        ? { category: override }
        : classify(kind, id, outcome, problem);
    const categories = byKind.get(kind.name) ?? new Map<Category, number>();
    byKind.set(kind.name, categories);
    categories.set(verdict.category, (categories.get(verdict.category) ?? 0) + 1);
    const answer = outcome.status === undefined ? `no answer: ${outcome.error ?? "?"}` : `${outcome.status} ${outcome.reason ?? "-"}${outcome.truncated ? " (cut)" : ""}`;
    byAnswer.set(answer, (byAnswer.get(answer) ?? 0) + 1);
    if (verdict.category === "unexpected") {
      unexpectedCount += 1;
      if (unexpected.length < KEEP_UNEXPECTED) {
        unexpected.push({ t: outcome.startedAt, kind: kind.name, id, detail: verdict.detail ?? "", ...(outcome.requestId === undefined ? {} : { requestId: outcome.requestId }) });
      }
    } else if (verdict.category === "ok" || verdict.category.startsWith("ok ")) {
      const list = latencies.get(kind.name) ?? [];
      latencies.set(kind.name, list);
      list.push(outcome.endedAt - outcome.startedAt);
    }
  }

  return {
    record(kind, id, outcome, override) {
      if (outcome.sent) sent += 1;
      else notSent += 1;
      if (outcome.sent && outcome.status === undefined && outcome.error === "client timeout") abandoned += 1;
      if (outcome.requestId !== undefined) requestIds.push(outcome.requestId);
      if (override === undefined && outcome.status === 503 && outcome.reason === "overloaded") shed.push({ kind, id, outcome });
      else judge(kind, id, outcome, override);
    },
    judgeShed() {
      for (const { kind, id, outcome } of shed.splice(0)) judge(kind, id, outcome);
    },
    sent: () => sent,
    abandoned: () => abandoned,
    unexpectedCount: () => unexpectedCount,
    requestIds: () => requestIds,
    summary: () => ({
      sent,
      notSent,
      abandoned,
      byKind: Object.fromEntries([...byKind].map(([k, m]) => [k, Object.fromEntries(m)])),
      byAnswer: Object.fromEntries([...byAnswer].sort((a, b) => b[1] - a[1])),
      unexpectedCount,
      unexpected,
      latencyMs: Object.fromEntries([...latencies].map(([k, list]) => [k, percentiles(list)])),
    }),
  };
}
