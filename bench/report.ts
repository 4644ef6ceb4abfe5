/**
 * Targets (issues 8 and 14) with PASS/FAIL, the console table, `bench/results/*.json` and BENCHMARKS.md.
 * BENCHMARKS.md is regenerated above the notes marker; what is written below it by hand is kept.
 */
import { existsSync, readFileSync } from "node:fs";

export interface Target {
  readonly id: string;
  readonly text: string;
  /** How the limit reads, e.g. "≥ 0.90×". */
  readonly limit: string;
  /** How the measured value reads, e.g. "0.93× (9,812 vs 10,551 req/s)". */
  readonly measured: string;
  readonly value: number;
  readonly pass: boolean;
  readonly note?: string;
}

export function atLeast(id: string, text: string, value: number, min: number, show: (v: number) => string, detail = "", note?: string): Target {
  return { id, text, limit: `≥ ${show(min)}`, measured: show(value) + detail, value, pass: value >= min, ...(note === undefined ? {} : { note }) };
}

export function atMost(id: string, text: string, value: number, max: number, show: (v: number) => string, detail = "", note?: string): Target {
  return { id, text, limit: `≤ ${show(max)}`, measured: show(value) + detail, value, pass: value <= max, ...(note === undefined ? {} : { note }) };
}

export function median(values: readonly number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export const fmt = {
  ratio: (v: number): string => `${v.toFixed(2)}×`,
  ms: (v: number): string => `${v.toFixed(v < 10 ? 2 : 0)} ms`,
  mb: (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`,
  int: (v: number): string => Math.round(v).toLocaleString("en-US"),
  pct: (v: number): string => `${(v * 100).toFixed(0)} %`,
};

export function consoleTable(targets: readonly Target[]): string {
  const rows = targets.map((t) => [t.pass ? "PASS" : "FAIL", t.text, t.limit, t.measured]);
  const widths = [4, ...[1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)))];
  return rows
    .map((r) => [r[0]!.padEnd(widths[0]!), r[1]!.padEnd(widths[1]!), r[2]!.padEnd(widths[2]!), r[3]].join("  "))
    .join("\n");
}

export const NOTES_MARKER = "<!-- Hand-written notes below this line are kept by `npm run bench`. -->";

/** The hand-written part of an existing BENCHMARKS.md (the marker and everything after it). */
export function keptNotes(file: string): string {
  if (!existsSync(file)) return `${NOTES_MARKER}\n`;
  const text = readFileSync(file, "utf8");
  const at = text.indexOf(NOTES_MARKER);
  return at === -1 ? `${NOTES_MARKER}\n` : text.slice(at);
}

export function markdownTable(head: readonly string[], rows: readonly (readonly string[])[], align?: readonly ("l" | "r")[]): string {
  const sep = head.map((_, i) => (align?.[i] === "r" ? "---:" : "---"));
  return [head, sep, ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");
}
