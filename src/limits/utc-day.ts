/** UTC calendar days for daily budgets (SPEC: "estimated spend per UTC day"). */

const DAY_MS = 86_400_000;

/** `YYYY-MM-DD` of the UTC day containing `epochMs`. */
export function utcDay(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 10);
}

/** Milliseconds from `epochMs` to the next 00:00 UTC (1 … 86 400 000). Unix time has no leap seconds. */
export function msUntilUtcMidnight(epochMs: number): number {
  return DAY_MS - (((epochMs % DAY_MS) + DAY_MS) % DAY_MS);
}
