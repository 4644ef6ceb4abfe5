/**
 * Config file → validated, defaulted, deeply frozen `ProxyConfig`, or every problem in it with
 * `FILE:LINE:COL` (SPEC §3). Used at start-up, on reload and by `mythiq-proxy check`.
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import type * as z from "zod";
import type { ProxyConfig } from "./types.ts";
import type { YamlTree } from "./bounded-yaml.ts";
import { MAX_CONFIG_BYTES, offsetPosition, parseBoundedYaml, typeName } from "./bounded-yaml.ts";
import { crossCheck } from "./cross-checks.ts";
import type { PathIssue, Problem } from "./problems.ts";
import { formatPath, sortProblems } from "./problems.ts";
import { configSchema } from "./schema.ts";

export type { Problem } from "./problems.ts";
export { formatProblem } from "./problems.ts";
export { checkSecretRefs, readSecret } from "./secret-ref.ts";

export type LoadResult =
  | {
      readonly ok: true;
      /** The file name as given, for problems found later (e.g. by `checkSecretRefs`). */
      readonly file: string;
      readonly config: ProxyConfig;
      /** First 12 hex digits of sha256 of the file's bytes (the `config_info{hash}` label). */
      readonly hash: string;
      readonly warnings: Problem[];
      /** Position of the value at `path` in the file, or undefined when the file does not set it. */
      locate(path: (string | number)[]): { line: number; col: number } | undefined;
    }
  | { readonly ok: false; readonly problems: Problem[]; readonly warnings: Problem[] };

/**
 * Validates config text. Pure: no I/O, no environment, no secret resolution. `file` is only used
 * in the problems. Errors and warnings are each sorted by position.
 */
export function parseConfig(text: string, file: string): LoadResult {
  try {
    return validate(text, file);
  } catch (err) {
    // A bug in a check must reject this file, not take down a running proxy on reload.
    const name = err instanceof Error ? err.name : typeof err;
    const message = `internal error while validating the config (${name}); please report this as a bug`;
    return { ok: false, problems: [{ file, line: 1, col: 1, message }], warnings: [] };
  }
}

function validate(text: string, file: string): LoadResult {
  const parsed = parseBoundedYaml(text);
  if (!parsed.ok) {
    return { ok: false, problems: sortProblems(parsed.problems.map((p) => ({ file, ...p }))), warnings: [] };
  }
  const tree = parsed.tree;
  const result = configSchema.safeParse(tree.data, { error: errorMap });
  const schemaIssues = result.success ? [] : result.error.issues.flatMap(toPathIssues);
  const cross = crossCheck(tree.data);

  // A value the schema already refuses is not also blamed by a cross-field rule.
  const blamed = new Set(schemaIssues.map((i) => formatPath(i.path)));
  const errors = [...schemaIssues, ...cross.errors.filter((i) => !blamed.has(formatPath(i.path)))];

  const place = (issue: PathIssue): Problem => ({
    file,
    ...tree.nearest(issue.path, issue.at),
    message: `${formatPath(issue.path)}: ${issue.message}${quoteSuffix(issue, tree)}`,
  });
  const problems = sortProblems([...tree.problems.map((p) => ({ file, ...p })), ...errors.map(place)]);
  const warnings = sortProblems(cross.warnings.map(place));

  if (problems.length > 0 || !result.success) return { ok: false, problems, warnings };
  return {
    ok: true,
    file,
    config: deepFreeze(result.data),
    hash: configHash(text),
    warnings,
    locate: (path) => tree.locate(path),
  };
}

/** First 12 hex digits of sha256 over the UTF-8 bytes of `text` (the file's bytes). */
export function configHash(text: string | Uint8Array): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

/**
 * Reads and validates a config file. At most `MAX_CONFIG_BYTES` (1 MiB) are read, so a FIFO or a
 * device cannot hang or exhaust the process; a missing or unreadable file, or one that is not
 * UTF-8, is a problem at 1:1 (or at the first bad byte).
 */
export async function loadConfigFile(file: string): Promise<LoadResult> {
  const bytes = await readCapped(file);
  if (!bytes.ok) return { ok: false, problems: [{ file, line: 1, col: 1, message: bytes.message }], warnings: [] };
  const bad = firstInvalidUtf8(bytes.value);
  if (bad !== undefined) {
    const before = new TextDecoder("utf-8", { ignoreBOM: false }).decode(bytes.value.subarray(0, bad));
    const pos = offsetPosition(before, before.length);
    const hex = (bytes.value[bad] ?? 0).toString(16).toUpperCase().padStart(2, "0");
    return {
      ok: false,
      problems: [{ file, ...pos, message: `the file is not valid UTF-8 (byte 0x${hex}): is this a text file?` }],
      warnings: [],
    };
  }
  // ignoreBOM keeps a leading BOM in the text, so the hash below still covers the file's exact bytes.
  const text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes.value);
  return parseConfig(text, file);
}

async function readCapped(file: string): Promise<{ ok: true; value: Uint8Array } | { ok: false; message: string }> {
  let handle;
  try {
    handle = await open(file, "r");
  } catch (err) {
    return { ok: false, message: `cannot open the config file (${errCode(err)})` };
  }
  try {
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let used = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, used, buf.length - used, null);
      if (bytesRead === 0) break;
      used += bytesRead;
      if (used > MAX_CONFIG_BYTES) {
        return { ok: false, message: `the file is larger than ${MAX_CONFIG_BYTES} bytes (1 MiB), the most a config may have` };
      }
    }
    return { ok: true, value: buf.subarray(0, used) };
  } catch (err) {
    return { ok: false, message: `cannot read the config file (${errCode(err)})` };
  } finally {
    await handle.close();
  }
}

function errCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "error";
}

/** Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629), or undefined. */
export function firstInvalidUtf8(b: Uint8Array): number | undefined {
  let i = 0;
  while (i < b.length) {
    const c = b[i] ?? 0;
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c < 0x80) n = 1;
    else if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 3;
      if (c === 0xe0) lo = 0xa0; // overlong
      if (c === 0xed) hi = 0x9f; // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 4;
      if (c === 0xf0) lo = 0x90; // overlong
      if (c === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k < n; k++) {
      const d = b[i + k];
      if (d === undefined) return i;
      if (k === 1 ? d < lo || d > hi : d < 0x80 || d > 0xbf) return i;
    }
    i += n;
  }
  return undefined;
}

/** Freezes every object and array reachable from `v` (the config is shared by every request). */
export function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v)) deepFreeze(child);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// zod issues → path issues

const EXPECTED: Record<string, string> = {
  object: "a map (key: value)",
  array: "a list",
  string: "a string",
  number: "a number",
  boolean: "true or false",
};

const ALLOWED_PREFIX = "\u0000allowed:";

/** Messages for zod's own issues (our scalar checks bring their own). */
function errorMap(iss: z.core.$ZodRawIssue): string | undefined {
  switch (iss.code) {
    case "invalid_type":
      if (iss.input === undefined) return "is required";
      return `must be ${EXPECTED[iss.expected] ?? iss.expected}, got ${typeName(iss.input)}`;
    case "unrecognized_keys": {
      // The allowed keys travel in the message; toPathIssues turns them into one issue per key.
      const shape = (iss.inst as { _zod?: { def?: { shape?: object } } } | undefined)?._zod?.def?.shape ?? {};
      return ALLOWED_PREFIX + Object.keys(shape).join(",");
    }
    case "invalid_union": {
      if (iss.note === "No matching discriminator" && iss.discriminator) {
        const options = ((iss as { options?: unknown[] }).options ?? []).map(String).join(", ");
        const value = (iss.input as Record<string, unknown> | undefined)?.[iss.discriminator];
        return value === undefined ? `is required (one of: ${options})` : `must be one of: ${options}`;
      }
      return "does not match any allowed form";
    }
    case "invalid_value":
      return `must be one of: ${iss.values.map(String).join(", ")}`;
    case "too_small":
      return "must not be empty";
    default:
      return undefined;
  }
}

function toPathIssues(issue: z.core.$ZodIssue): PathIssue[] {
  const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
  if (issue.code === "unrecognized_keys") {
    const allowed = issue.message.startsWith(ALLOWED_PREFIX) ? issue.message.slice(ALLOWED_PREFIX.length).split(",") : [];
    return issue.keys.map((key) => ({ path: [...path, key], at: "key", message: unknownKeyMessage(key, allowed) }));
  }
  if (issue.code === "invalid_type" && issue.message === "is required") {
    return [{ path, at: "value", message: "is required" }];
  }
  const quote = issue.code === "custom" && (issue.params as { quote?: unknown } | undefined)?.quote === true;
  return [{ path, at: "value", message: issue.message, quote }];
}

function unknownKeyMessage(key: string, allowed: string[]): string {
  if (key === "<<") return "merge keys (<<) are not supported: repeat the values, or reuse a whole value with an alias (*name)";
  const close = allowed.filter((a) => editDistance(a, key) <= 2).sort((a, b) => editDistance(a, key) - editDistance(b, key));
  if (close[0] !== undefined) return `unknown key (did you mean ${close[0]}?)`;
  return allowed.length > 0 ? `unknown key (allowed here: ${allowed.join(", ")})` : "unknown key";
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] ?? 0;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] ?? 0;
      prev[j] = Math.min(up + 1, (prev[j - 1] ?? 0) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length] ?? 0;
}

/** For values YAML read as numbers but that were meant as strings: show the text to quote. */
function quoteSuffix(issue: PathIssue, tree: YamlTree): string {
  if (!issue.quote) return "";
  const src = tree.source(issue.path);
  return src !== undefined && src.length <= 80 && !/["\\\n]/.test(src) ? `, e.g. "${src}"` : "";
}
