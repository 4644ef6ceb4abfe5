/**
 * The soak's report: what was sent and how each answer was judged, whether the accounting agrees,
 * which faults were applied, memory / fds / event-loop delay over time and the growth verdict,
 * the drain, and why the run failed (if it did). The same data goes to `--json`.
 */
import { fmt } from "../report.ts";
import { CATEGORIES } from "./classify.ts";
import type { FaultLog } from "./faults.ts";
import type { Growth } from "./growth.ts";
import type { MetricsSample, ProcSample } from "./sampler.ts";
import type { TallySummary } from "./tally.ts";

export interface SoakResult {
  readonly command: string;
  readonly date: string;
  readonly machine: {
    cpus: number;
    node: string;
    otherLoad: { averageOtherShare: number; worstOtherShare: number };
    /** CPU used during the traffic, in cores. */
    proxyCores: number;
    soakCores: number;
  };
  readonly durationMs: number;
  readonly rate: number;
  readonly seed: number;
  readonly nodeFlags: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly requests: TallySummary & { skipped: number };
  readonly accounting: {
    quietSent: number;
    quietAudit: number;
    quietRequestsTotal: number;
    sent: number;
    /** Sent and given up on unanswered by the soak (the proxy may not have read them). */
    abandoned: number;
    auditLines: number;
    missingIds: number;
    duplicateIds: number;
    auditByStatusReason: Record<string, number>;
  };
  readonly faults: FaultLog["counts"] & {
    windows: number;
    upstream: { requests: number; refused: number; faults: Record<string, number> };
    rotationsSeen: number;
    reloadsApplied: number;
    reloadsRejected: number;
    refreshesRequested: number;
    storeDownSamples: number;
    errors: string[];
  };
  readonly samples: { proc: ProcSample[]; metrics: MetricsSample[] };
  readonly growth: { rss: Growth; rssJudged: boolean; fds: Growth; allFds: Growth; heap: Growth; window: [number, number] };
  readonly drain: { exitCode: number | string; ms: number; readyz503: boolean; inFlight: number };
  readonly log: { events: Record<string, number>; errors: string[]; notJson: number };
  readonly leaks: string[];
  readonly violations: string[];
  readonly scrapeErrors: string[];
  readonly failures: string[];
}

const mb = (bytes: number): string => (Number.isFinite(bytes) ? `${(bytes / 1e6).toFixed(1)}` : "?");
const ms = (seconds: number): string => (Number.isFinite(seconds) ? (seconds * 1000).toFixed(1) : "?");
const s = (t: number): string => `${(t / 1000).toFixed(0)}s`;

function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: readonly string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(head), ...rows.map(line)].map((l) => `  ${l}`).join("\n");
}

function growthLine(name: string, g: Growth, unit: (v: number) => string): string {
  return `  ${name.padEnd(10)} ${unit(g.min)} … ${unit(g.max)} (spread ${unit(g.spread)}), trend ${g.rise >= 0 ? "+" : ""}${unit(g.rise)} over the window (${unit(g.slopePerMinute)}/min): ${g.growing ? "GROWING" : "flat or bounded"}`;
}

/** Samples at about `rows` even steps (always the first and the last). */
function thin<T extends { t: number }>(samples: readonly T[], rows: number): T[] {
  if (samples.length <= rows) return [...samples];
  const step = (samples.length - 1) / (rows - 1);
  return Array.from({ length: rows }, (_, i) => samples[Math.round(i * step)]!);
}

export function renderReport(r: SoakResult): string {
  const out: string[] = [];
  const q = r.requests;
  out.push("", `mythiq-proxy soak — ${r.date}`, `  ${r.command}`);
  out.push(
    `  ${s(r.durationMs)} of traffic, ${r.rate} req/s short requests + streams, seed ${r.seed}; node flags ${r.nodeFlags.join(" ") || "(none)"}${Object.keys(r.env).length > 0 ? `; env ${Object.entries(r.env).map(([k, v]) => `${k}=${v}`).join(" ")}` : ""}`,
    `  machine: ${r.machine.cpus} cores, Node ${r.machine.node}; the proxy used ${r.machine.proxyCores.toFixed(2)} cores, the soak (callers, MythIQ) ${r.machine.soakCores.toFixed(2)}; other processes used ${fmt.pct(r.machine.otherLoad.averageOtherShare)} of the machine on average (worst second ${fmt.pct(r.machine.otherLoad.worstOtherShare)})`,
  );

  out.push("", `Requests: ${fmt.int(q.sent)} sent${q.notSent > 0 ? `, ${q.notSent} not sent (connection refused)` : ""}${q.skipped > 0 ? `, ${q.skipped} short requests skipped (the proxy was behind: 200 in flight already)` : ""}`);
  const used = CATEGORIES.filter((c) => Object.values(q.byKind).some((m) => (m[c] ?? 0) > 0));
  const rows = Object.entries(q.byKind)
    .sort((a, b) => a[0].localeCompare(b[0]))
    .map(([kind, m]) => [kind, ...used.map((c) => (m[c] === undefined ? "" : fmt.int(m[c])))]);
  out.push(table(["kind", ...used.map((c, i) => `(${i + 1})`)], rows));
  out.push(...used.map((c, i) => `  (${i + 1}) ${c}`));

  out.push("", "Answers as the callers saw them (status reason):");
  out.push(table(["answer", "count"], Object.entries(q.byAnswer).map(([a, n]) => [a, fmt.int(n)])));

  out.push("", "Latency of successful requests (ms):");
  out.push(
    table(
      ["kind", "count", "p50", "p99", "max"],
      Object.entries(q.latencyMs)
        .sort((a, b) => a[0].localeCompare(b[0]))
        .map(([k, l]) => [k, fmt.int(l.count), l.p50.toFixed(1), l.p99.toFixed(1), l.max.toFixed(1)]),
    ),
  );

  out.push("", `Unexpected: ${q.unexpectedCount}`);
  for (const u of q.unexpected) out.push(`  ${s(u.t)} #${u.id} ${u.kind}: ${u.detail}${u.requestId === undefined ? "" : ` (x-request-id ${u.requestId})`}`);

  const a = r.accounting;
  out.push(
    "",
    "Nothing lost:",
    `  before the drain: sent ${fmt.int(a.quietSent)}, audit lines ${fmt.int(a.quietAudit)}, requests_total ${fmt.int(a.quietRequestsTotal)}`,
    `  after the drain:  sent ${fmt.int(a.sent)}, audit lines ${fmt.int(a.auditLines)}; response ids missing from the audit log ${a.missingIds}, audited twice ${a.duplicateIds}${a.abandoned > 0 ? `; ${a.abandoned} given up unanswered by the soak (may or may not have reached the proxy)` : ""}`,
    `  audit log by status and reason: ${Object.entries(a.auditByStatusReason).map(([k, n]) => `${k} ${fmt.int(n)}`).join(", ")}`,
  );

  const f = r.faults;
  out.push(
    "",
    "Faults applied:",
    `  key rotations with immediate revocation: ${f.rotations} (${f.rapidRotations} of them within 30 s of the previous); key_rotations_total ${f.rotationsSeen}; 401-triggered refreshes ${f.refreshesRequested}`,
    `  config reloads: ${f.reloadsValid} valid and ${f.reloadsInvalid} invalid written (${f.sighups} SIGHUPs); config_reloads_total applied ${f.reloadsApplied}, rejected ${f.reloadsRejected}`,
    `  Redis killed ${f.redisKills} times, started again ${f.redisStarts} times; limits_store_up was 0 in ${f.storeDownSamples} scrapes`,
    `  MythIQ: ${fmt.int(f.upstream.requests)} requests, ${f.upstream.refused} answered 401 (revoked key); injected ${Object.entries(f.upstream.faults).map(([k, n]) => `${k} ${n}`).join(", ")}`,
  );
  if (f.errors.length > 0) out.push(`  schedule errors: ${f.errors.join("; ")}`);

  out.push("", "Memory, fds and event-loop delay over time (RSS from /proc, heap from /metrics):");
  const metricsAt = (t: number): MetricsSample | undefined => {
    let best: MetricsSample | undefined;
    for (const m of r.samples.metrics) if (best === undefined || Math.abs(m.t - t) < Math.abs(best.t - t)) best = m;
    return best;
  };
  out.push(
    table(
      ["t", "RSS MB", "anon MB", "heap used", "heap total", "external", "fds", "conns", "other fds", "threads", "loop p99 ms", "loop max ms"],
      thin(r.samples.proc, 21).map((p) => {
        const m = metricsAt(p.t);
        return [
          s(p.t),
          mb(p.rss),
          mb(p.anon),
          mb(m?.heapUsed ?? NaN),
          mb(m?.heapTotal ?? NaN),
          mb(m?.external ?? NaN),
          String(p.fds),
          String(p.established),
          String(p.otherFds),
          String(p.threads),
          ms(m?.lagP99 ?? NaN),
          ms(m?.lagMax ?? NaN),
        ];
      }),
    ),
  );
  const lags = r.samples.metrics.map((m) => m.lagP99).filter(Number.isFinite).sort((x, y) => x - y);
  const maxLag = Math.max(...r.samples.metrics.map((m) => m.lagMax).filter(Number.isFinite));
  out.push(`  event-loop delay p99 per scrape: median ${ms(lags[Math.floor(lags.length / 2)] ?? NaN)} ms, worst ${ms(lags.at(-1) ?? NaN)} ms; max ${ms(maxLag)} ms`);

  const g = r.growth;
  out.push(
    "",
    `Growth over the second half (${s(g.window[0])}–${s(g.window[1])}); growing = spread over the limit and the least-squares trend rising over its limit:`,
    growthLine("RSS", g.rss, (v) => `${mb(v)} MB`) +
      (g.rssJudged ? " (limits 10 MB / 5 MB)" : " (not judged: runs under 4 minutes are too short for V8 to have sized its heap)"),
    `  RSS ${g.rss.spread <= 10e6 ? "is" : "is NOT"} flat within 10 MB over the second half (spread ${mb(g.rss.spread)} MB)`,
    growthLine("other fds", g.fds, (v) => v.toFixed(0)) + " (fds that are not open connections; limits 10 / 5)",
    growthLine("all fds", g.allFds, (v) => v.toFixed(0)) + " (follows the connections in flight; reported only)",
    growthLine("heap used", g.heap, (v) => `${mb(v)} MB`) + " (reported only)",
  );

  out.push(
    "",
    `Drain: SIGTERM with ${r.drain.inFlight} long requests in flight; /readyz 503 ${r.drain.readyz503 ? "yes" : "NO"}; exit ${r.drain.exitCode} after ${(r.drain.ms / 1000).toFixed(1)} s`,
  );

  out.push("", "Log events (level msg: count):");
  out.push(...Object.entries(r.log.events).map(([k, n]) => `  ${k}: ${fmt.int(n)}`));
  for (const e of r.log.errors.slice(0, 5)) out.push(`  error line: ${e}`);
  if (r.leaks.length > 0) out.push("", "SECRETS IN THE LOG:", ...r.leaks.map((l) => `  ${l}`));
  if (r.violations.length > 0) out.push("", "REACHED MYTHIQ, MUST NOT HAVE:", ...r.violations.slice(0, 20).map((v) => `  ${v}`));
  if (r.scrapeErrors.length > 0) out.push("", "/metrics scrapes that failed:", ...r.scrapeErrors.map((e) => `  ${e}`));

  out.push("", r.failures.length === 0 ? "PASS: no unexpected response, nothing lost, nothing growing." : "FAIL:");
  out.push(...r.failures.map((x) => `  - ${x}`));
  return out.join("\n");
}
