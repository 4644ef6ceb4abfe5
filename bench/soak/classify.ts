/**
 * Expected or unexpected: every response of the soak is judged against the request's kind, what
 * MythIQ did to it (the upstream's facts for its soak id) and the faults in force while it ran.
 *
 * A fault excuses only the failure it causes, and only for the request it hit: a 502
 * `upstream_reset` is expected when MythIQ reset that very request, inside a reset window; a 502
 * `upstream_auth_failed` only for a *streamed* body that MythIQ refused during a revocation (a held
 * body must be retried with the new key, so for it the same answer is a failure of the proxy).
 * A Redis outage and config reloads excuse nothing: the traffic must not notice them.
 *
 * One condition is not scheduled: a machine so busy that the proxy's event loop falls half a
 * second behind, when the proxy sheds new requests with 503 `overloaded` (SPEC §5, by design). That
 * answer is expected only inside a window where the proxy itself said so (its "shedding" log line,
 * or an event-loop delay of a second or more in its own metrics), and counted apart.
 */
import type { Outcome } from "./client.ts";
import type { UpstreamFacts, UpstreamFault } from "./upstream.ts";

export type Expectation =
  /** Forwarded to MythIQ; `held` bodies (none, or ≤ 64 KiB with a length) can be replayed after a 401. */
  | { readonly type: "forward"; readonly body: "held" | "stream" }
  /** Refused by the proxy: one of these "status reason" answers, and MythIQ never sees it. */
  | { readonly type: "refuse"; readonly answers: readonly string[] }
  /** The caller gives up before any answer. */
  | { readonly type: "abort" };

export type WindowType = "revocation" | "reset" | "stall" | "redis" | "reload" | "overload";

/** When a fault was in force, on the soak's clock; `end` is Infinity while it still is. */
export interface FaultWindow {
  readonly type: WindowType;
  readonly start: number;
  end: number;
}

export const CATEGORIES = [
  "ok",
  "ok after a 401 and a retry with the new key",
  "refused as designed",
  "reset by MythIQ (fault)",
  "stalled by MythIQ before answering (fault)",
  "cut mid-stream by MythIQ (fault)",
  "stalled mid-stream by MythIQ (fault)",
  "streamed body caught by a revocation",
  "aborted by the caller",
  "shed while the proxy's event loop lagged (machine busy)",
  "drain: connection refused",
  "unexpected",
] as const;

export type Category = (typeof CATEGORIES)[number];

export interface Verdict {
  readonly category: Category;
  /** Why it is unexpected (for the report). */
  readonly detail?: string;
}

function during(windows: readonly FaultWindow[], type: WindowType, outcome: Outcome): boolean {
  return windows.some((w) => w.type === type && w.start <= outcome.endedAt && w.end >= outcome.startedAt);
}

function answer(outcome: Outcome): string {
  if (outcome.status === undefined) return `no answer (${outcome.error ?? "?"})`;
  const cut = outcome.truncated ? `, then cut (${outcome.error ?? "?"})` : "";
  return `${outcome.status} ${outcome.reason ?? "-"}${cut}`;
}

/** Which fault explains a forwarded request's failure, if any (and only inside its window). */
function faultFor(expect: "held" | "stream", outcome: Outcome, facts: UpstreamFacts | undefined, windows: readonly FaultWindow[]): Category | undefined {
  const had = (fault: UpstreamFault): boolean => facts?.faults.includes(fault) ?? false;
  const complete = outcome.status !== undefined && !outcome.truncated && outcome.error === undefined;
  if (outcome.status === 502 && outcome.reason === "upstream_reset" && complete && had("reset") && during(windows, "reset", outcome)) {
    return "reset by MythIQ (fault)";
  }
  if (outcome.status === 504 && outcome.reason === "upstream_timeout" && complete && had("stall") && during(windows, "stall", outcome)) {
    return "stalled by MythIQ before answering (fault)";
  }
  if (outcome.status === 200 && outcome.truncated) {
    if (had("cut") && during(windows, "reset", outcome)) return "cut mid-stream by MythIQ (fault)";
    if (had("idle") && during(windows, "stall", outcome)) return "stalled mid-stream by MythIQ (fault)";
  }
  // A streamed body cannot be replayed: the 401 ends it (with the 502, or with the connection
  // closed under the caller while it was still sending).
  const refused = (facts?.refused ?? 0) > 0 && during(windows, "revocation", outcome);
  if (expect === "stream" && refused && (outcome.status === 502 ? outcome.reason === "upstream_auth_failed" : outcome.status === undefined)) {
    return "streamed body caught by a revocation";
  }
  return undefined;
}

/**
 * Judges one outcome. `problem` is what the kind's own check found wrong with a 200 body (missing
 * events, short upload), if anything.
 */
export function classify(
  expectation: Expectation,
  outcome: Outcome,
  facts: UpstreamFacts | undefined,
  windows: readonly FaultWindow[],
  problem: string | undefined,
): Verdict {
  if (outcome.status === 503 && outcome.reason === "overloaded" && outcome.error === undefined && during(windows, "overload", outcome)) {
    return { category: "shed while the proxy's event loop lagged (machine busy)" };
  }
  switch (expectation.type) {
    case "abort":
      return outcome.status === undefined && outcome.error === "aborted by client"
        ? { category: "aborted by the caller" }
        : { category: "unexpected", detail: `a caller that gives up after a moment got ${answer(outcome)}` };
    case "refuse": {
      const got = `${outcome.status ?? "-"} ${outcome.reason ?? "-"}`;
      if (outcome.error === undefined && expectation.answers.includes(got)) return { category: "refused as designed" };
      return { category: "unexpected", detail: `expected ${expectation.answers.join(" or ")}, got ${answer(outcome)}` };
    }
    case "forward": {
      const complete = outcome.status === 200 && !outcome.truncated && outcome.error === undefined;
      if (complete && problem === undefined) {
        return (facts?.refused ?? 0) > 0 ? { category: "ok after a 401 and a retry with the new key" } : { category: "ok" };
      }
      if (complete) return { category: "unexpected", detail: `200 with a wrong body: ${problem}` };
      const fault = faultFor(expectation.body, outcome, facts, windows);
      if (fault !== undefined) return { category: fault };
      const context = [
        (facts?.refused ?? 0) > 0 ? `MythIQ refused its key ${facts?.refused} time(s)` : "",
        facts !== undefined && facts.faults.length > 0 ? `MythIQ injected ${facts.faults.join(", ")}` : "",
      ]
        .filter((s) => s !== "")
        .join("; ");
      return { category: "unexpected", detail: `${expectation.body} body: got ${answer(outcome)}${context === "" ? "" : ` (${context})`}` };
    }
  }
}

/**
 * When the proxy was shedding load, on the soak's clock: from its own "event loop lagging" /
 * "caught up" log lines (`changes`, `at` already on the soak's clock), and around every /metrics
 * scrape whose event-loop delay reached a second (the proxy also sheds at once when its timer is
 * that late, without a log line). A second of margin on each side.
 */
export function overloadWindows(changes: readonly { on: boolean; at: number }[], scrapes: readonly { t: number; lagMax: number }[]): FaultWindow[] {
  const windows: FaultWindow[] = [];
  let since: number | undefined;
  for (const change of changes) {
    if (change.on && since === undefined) since = change.at;
    if (!change.on && since !== undefined) {
      windows.push({ type: "overload", start: since - 1_000, end: change.at + 1_000 });
      since = undefined;
    }
  }
  if (since !== undefined) windows.push({ type: "overload", start: since - 1_000, end: Infinity });
  scrapes.forEach((scrape, i) => {
    if (scrape.lagMax >= 1) windows.push({ type: "overload", start: (scrapes[i - 1]?.t ?? 0) - 1_000, end: scrape.t + 1_000 });
  });
  return windows;
}
