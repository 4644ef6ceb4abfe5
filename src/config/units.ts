/**
 * Durations and sizes as written in the config (SPEC §3).
 *
 * Durations: a whole number and one unit, `ms`, `s`, `m` or `h` (`500ms`, `30s`, `5m`, `24h`).
 * No days (`24h` says the same without the daylight-saving question), no fractions, no compound
 * forms like `1h30m`, no bare numbers: a unit-less `30` is exactly the ambiguity these rules remove.
 *
 * Sizes: a whole number of bytes (`1048576`) or a whole number of `KiB`, `MiB` or `GiB`. Decimal
 * `KB`/`MB` are refused rather than guessed: whether someone meant 1000 or 1024 is not ours to decide.
 */

/** Milliseconds per duration unit. */
export const DURATION_UNITS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

/** Bytes per size unit. */
export const SIZE_UNITS = { KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 } as const;

/** The examples every duration message points at. */
export const DURATION_EXAMPLES = "use e.g. 500ms, 30s, 5m, 24h";

/** The examples every size message points at. */
export const SIZE_EXAMPLES = "use bytes or KiB, MiB, GiB, e.g. 512KiB, 1MiB, 20MiB";

// Nine digits are enough for any sane duration (999999999h) and keep the result a safe integer.
const DURATION = /^(0|[1-9][0-9]{0,8})(ms|s|m|h)$/;
const SIZE = /^(0|[1-9][0-9]{0,14})(KiB|MiB|GiB)?$/;

/** Milliseconds for `text`, or undefined when it is not a duration in the grammar above. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text);
  if (!m) return undefined;
  return Number(m[1]) * DURATION_UNITS[m[2] as keyof typeof DURATION_UNITS];
}

/** Bytes for a size string or a whole number of bytes, or undefined when it is neither. */
export function parseSize(input: string | number): number | undefined {
  if (typeof input === "number") return Number.isSafeInteger(input) && input >= 0 ? input : undefined;
  const m = SIZE.exec(input);
  if (!m) return undefined;
  const bytes = Number(m[1]) * (m[2] ? SIZE_UNITS[m[2] as keyof typeof SIZE_UNITS] : 1);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * Why `text` is not a duration, for the common mistakes; undefined when there is no better hint
 * than the examples.
 */
export function durationHint(text: string): string | undefined {
  const t = text.trim();
  if (/^[0-9]+$/.test(t)) return `add a unit, e.g. ${t}s or ${t}ms`;
  if (/^[0-9]+\s*(d|days?)$/i.test(t)) return `days are not a unit here: write ${Number(/^[0-9]+/.exec(t)?.[0]) * 24}h`;
  if (/^[0-9]*\.[0-9]+\s*(ms|s|m|h)$/.test(t)) return "use a whole number of a smaller unit, e.g. 1500ms instead of 1.5s";
  if (/^[0-9]+(ms|s|m|h)[0-9]/.test(t)) return "one unit only, e.g. 90m instead of 1h30m";
  if (/^[0-9]+\s+(ms|s|m|h)$/.test(t)) return "no space between the number and the unit";
  return undefined;
}

/** Why `text` is not a size, for the common mistakes; undefined when there is no better hint. */
export function sizeHint(text: string): string | undefined {
  const t = text.trim();
  const decimal = /^[0-9]+\s*(k|kb|m|mb|g|gb)$/i.exec(t);
  if (decimal) {
    const unit = decimal[1]?.[0]?.toUpperCase() === "K" ? "KiB" : decimal[1]?.[0]?.toUpperCase() === "M" ? "MiB" : "GiB";
    return `decimal units are ambiguous: write ${unit} (1 KiB = 1024 bytes) or a number of bytes`;
  }
  if (/^[0-9]*\.[0-9]+\s*(KiB|MiB|GiB)$/i.test(t)) return "use a whole number of a smaller unit, e.g. 1536KiB instead of 1.5MiB";
  if (/^[0-9]+\s*(kib|mib|gib)$/i.test(t)) return "units are written KiB, MiB, GiB (this case, no space)";
  return undefined;
}

/** The shortest exact spelling of a duration, for messages: 300000 → `5m`, 1500 → `1500ms`. */
export function formatDuration(ms: number): string {
  if (ms !== 0) {
    for (const unit of ["h", "m", "s"] as const) {
      const per = DURATION_UNITS[unit];
      if (ms % per === 0) return `${ms / per}${unit}`;
    }
    return `${ms}ms`;
  }
  return "0s";
}

/** The shortest exact spelling of a size, for messages: 1048576 → `1MiB`, 1000 → `1000 bytes`. */
export function formatSize(bytes: number): string {
  if (bytes !== 0) {
    for (const unit of ["GiB", "MiB", "KiB"] as const) {
      const per = SIZE_UNITS[unit];
      if (bytes % per === 0) return `${bytes / per}${unit}`;
    }
  }
  return `${bytes} bytes`;
}
