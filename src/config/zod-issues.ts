/**
 * zod issues → problems at a position in the YAML: messages for zod's own issues (our scalar
 * checks bring their own), unknown keys pointed at the key with a "did you mean", and the source
 * text of scalars YAML read as numbers. Shared by the config and `test-policy` case files.
 */
import type * as z from "zod";
import { typeName, type YamlTree } from "./bounded-yaml.ts";
import { formatPath, type PathIssue, type Problem } from "./problems.ts";


const EXPECTED: Record<string, string> = {
  object: "a map (key: value)",
  array: "a list",
  string: "a string",
  number: "a number",
  boolean: "true or false",
};

const ALLOWED_PREFIX = "\u0000allowed:";

/** Messages for zod's own issues (our scalar checks bring their own). */
export function errorMap(iss: z.core.$ZodRawIssue): string | undefined {
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

export function toPathIssues(issue: z.core.$ZodIssue): PathIssue[] {
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

/** Places a path issue in the file: `FILE:LINE:COL` of the node, message prefixed with its path. */
export function placeIssue(file: string, tree: YamlTree, issue: PathIssue): Problem {
  return {
    file,
    ...tree.nearest(issue.path, issue.at),
    message: `${formatPath(issue.path)}: ${issue.message}${quoteSuffix(issue, tree)}`,
  };
}
