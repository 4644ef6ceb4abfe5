/**
 * Helpers for the observability tests: running promtool, the metric families the proxy defines, and
 * a check that every label value of a scrape comes from the config or a fixed set.
 *
 * ```ts
 * const { code, output } = await promtool(["check", "metrics"], scrapeText);
 * const problems = unboundedLabels(parseScrape(text), allowedFromConfig(config, { fingerprints, hashes }));
 * ```
 */
import { spawn } from "node:child_process";
import type { ProxyConfig } from "../../src/config/types.ts";
import { REASONS } from "../../src/errors.ts";
import { labelSetsFromConfig } from "../../src/observe/labels.ts";
import { createMetrics, DURATION_BUCKETS } from "../../src/observe/metrics.ts";
import type { Scrape } from "./prom-text.ts";

/** Debian's prometheus package puts promtool here; CI installs it. Override with $PROMTOOL. */
export const PROMTOOL = process.env["PROMTOOL"] ?? "/usr/bin/promtool";

/** Runs promtool with `args`, `stdin` written to it; stdout and stderr together in `output`. */
export function promtool(args: readonly string[], stdin = "", cwd?: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, [...args], { stdio: ["pipe", "pipe", "pipe"], ...(cwd === undefined ? {} : { cwd }) });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
    child.stdin.end(stdin);
  });
}

/** The names of every metric family of the proxy's registry (`mythiq_proxy_*` and process metrics). */
export function metricFamilies(): Map<string, string> {
  const m = createMetrics({ version: "0.0.0" });
  return new Map(m.registry.getMetricsAsArray().map((metric) => [metric.name, String(metric.type)]));
}

/**
 * Metric names a PromQL expression may use for a family: the family itself, and for a histogram its
 * `_bucket`, `_sum` and `_count` series.
 */
export function seriesNames(families: ReadonlyMap<string, string>): Set<string> {
  const names = new Set<string>();
  for (const [name, type] of families) {
    if (type === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(name + suffix);
    else names.add(name);
  }
  return names;
}

/** Every `mythiq_proxy_*` name an expression mentions. */
export function mentionedMetrics(expr: string): string[] {
  return [...expr.matchAll(/\bmythiq_proxy_[a-z0-9_]+\b/g)].map((m) => m[0]);
}

/** What a label may hold, by label name; a name not listed may not appear at all. */
export type AllowedLabels = Readonly<Record<string, (value: string) => boolean>>;

const STATUS = /^[1-5][0-9][0-9]$/;

/**
 * The label values the proxy may report under `config`: names from the config, fixed fallbacks and
 * fixed enumerations. `fingerprints` and `versions` are the ones of keys the test handed out;
 * `hashes` the config hashes in force; `build` the build_info values.
 */
export function allowedFromConfig(
  config: ProxyConfig,
  known: { fingerprints: readonly string[]; versions: readonly string[]; hashes: readonly string[]; build: readonly string[] },
): AllowedLabels {
  const sets = labelSetsFromConfig(config);
  const among = (values: Iterable<string>) => {
    const set = new Set(values);
    return (value: string) => set.has(value);
  };
  return {
    client: among([...sets.clients, "unknown"]),
    route: among([...sets.routes, "other"]),
    model: among([...sets.models, "other"]),
    status: (value) => STATUS.test(value) || value === "other",
    reason: among([...REASONS, "other", "queue_full", "export_failed"]),
    key: among(sets.keys),
    source: among(["env", "file", "vault", "aws"]),
    result: among(["changed", "unchanged", "failed", "applied", "rejected", "allowed", "refused"]),
    limit: among(["rate_limit", "concurrency", "budget"]),
    fingerprint: among(known.fingerprints),
    version: among([...known.versions, ...known.build]),
    hash: among(known.hashes),
    node: among(known.build),
    le: among([...DURATION_BUCKETS.map(String), "+Inf"]),
  };
}

/** `name{label="value"}` of every `mythiq_proxy_*` sample whose labels are not all allowed. */
export function unboundedLabels(scrape: Scrape, allowed: AllowedLabels): string[] {
  const problems: string[] = [];
  for (const sample of scrape.samples) {
    if (!sample.name.startsWith("mythiq_proxy_")) continue;
    for (const [label, value] of Object.entries(sample.labels)) {
      const check = allowed[label];
      if (check === undefined || !check(value)) problems.push(`${sample.name}{${label}=${JSON.stringify(value)}}`);
    }
  }
  return problems;
}

/** Number of samples (series) whose name starts with `prefix`. */
export function seriesCount(scrape: Scrape, prefix = "mythiq_proxy_"): number {
  return scrape.samples.filter((s) => s.name.startsWith(prefix)).length;
}
