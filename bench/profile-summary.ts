/**
 * Reads a V8 `.cpuprofile` (from `node --cpu-prof`) and summarises where the time went: self time
 * by function and by area (our files, http-proxy-3, prom-client, Node's http internals, GC), and
 * inclusive time of the proxy's own functions. Also runnable on its own:
 *
 *   node bench/profile-summary.ts FILE.cpuprofile
 */
import { readFileSync } from "node:fs";

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface Row {
  readonly name: string;
  readonly ms: number;
  readonly share: number;
  /** Microseconds per request, when the number of requests is known. */
  readonly usPerRequest?: number;
}

export interface ProfileSummary {
  /** Requests served in the profiled window, when known. */
  readonly requests?: number;
  /** Start-up time left out (everything before the first request arrived). */
  readonly skippedMs: number;
  readonly totalMs: number;
  /** Time not idle. */
  readonly busyMs: number;
  readonly selfByFunction: readonly Row[];
  readonly selfByArea: readonly Row[];
  /** Inclusive time of functions in dist/ (the proxy's own code). */
  readonly inclusiveOwn: readonly Row[];
}

/** Where a frame's code lives, for the by-area table. */
function area(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === "") {
    if (functionName === "(garbage collector)") return "GC";
    if (functionName === "(idle)") return "idle";
    if (functionName === "(program)") return "V8/native (program)";
    return `native: ${functionName || "(anonymous)"}`;
  }
  if (url.startsWith("node:")) return url;
  const dist = url.indexOf("/dist/");
  if (dist !== -1 && !url.includes("node_modules")) return `proxy: ${url.slice(dist + 6)}`;
  const nm = url.lastIndexOf("node_modules/");
  if (nm !== -1) {
    const rest = url.slice(nm + 13).split("/");
    return `dep: ${rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (url.startsWith("node:")) return url;
  return url;
}

function label(frame: CallFrame): string {
  const where = frame.url === "" ? "" : ` ${area(frame).replace(/^(proxy|dep): /, "")}:${frame.lineNumber + 1}`;
  return `${frame.functionName || "(anonymous)"}${where}`;
}

/**
 * `requests`: how many requests the process served (then rows carry µs per request). Samples from
 * before the first request (module loading, config, start-up) are left out: they are paid once.
 */
export function summarizeProfile(profile: CpuProfile, options: { top?: number; requests?: number } = {}): ProfileSummary {
  const top = options.top ?? 25;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const self = new Map<string, number>();
  const areas = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const stack = (id: number): CallFrame[] => {
    const frames: CallFrame[] = [];
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame !== undefined) frames.push(frame);
    }
    return frames;
  };
  // Node's HTTP server hands a parsed request to the app here: the first such sample ends start-up.
  const first = profile.samples.findIndex((id) => stack(id).some((f) => f.functionName === "parserOnIncoming"));
  let totalMs = 0;
  let idleMs = 0;
  let skippedMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    const node = byId.get(id);
    if (node === undefined) return;
    if (i < first) {
      skippedMs += ms;
      return;
    }
    totalMs += ms;
    if (node.callFrame.functionName === "(idle)") {
      idleMs += ms;
      return;
    }
    const name = label(node.callFrame);
    self.set(name, (self.get(name) ?? 0) + ms);
    const a = area(node.callFrame);
    areas.set(a, (areas.get(a) ?? 0) + ms);
    // Each function once per stack, however deep it recurses.
    const seen = new Set<string>();
    for (const frame of stack(id)) {
      if (!area(frame).startsWith("proxy: ")) continue;
      const key = label(frame);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + ms);
    }
  });
  const busyMs = totalMs - idleMs;
  const rows = (map: Map<string, number>, n: number): Row[] =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, ms]) => ({
        name,
        ms,
        share: ms / busyMs,
        ...(options.requests === undefined ? {} : { usPerRequest: (ms * 1000) / options.requests }),
      }));
  return {
    ...(options.requests === undefined ? {} : { requests: options.requests }),
    skippedMs,
    totalMs,
    busyMs,
    selfByFunction: rows(self, top),
    selfByArea: rows(areas, 1000),
    inclusiveOwn: rows(inclusive, top),
  };
}

const us = (r: Row | undefined): string => (r?.usPerRequest === undefined ? "" : r.usPerRequest.toFixed(1));

export function profileMarkdown(summary: ProfileSummary, title: string): string {
  const table = (rows: readonly Row[], head: string): string =>
    [
      `| ${head} | ms | share of busy | µs/request |`,
      "| --- | ---: | ---: | ---: |",
      ...rows.map((r) => `| \`${r.name}\` | ${r.ms.toFixed(0)} | ${(r.share * 100).toFixed(1)} % | ${us(r)} |`),
    ].join("\n");
  const requests = summary.requests === undefined ? "" : `, ${summary.requests} requests (${((summary.busyMs * 1000) / summary.requests).toFixed(0)} µs busy per request)`;
  return [
    `## ${title}`,
    "",
    `Sampled ${summary.totalMs.toFixed(0)} ms after the first request (${summary.skippedMs.toFixed(0)} ms of start-up left out), busy ${summary.busyMs.toFixed(0)} ms${requests}.`,
    "",
    "### Self time by area",
    "",
    table(summary.selfByArea.slice(0, 25), "area"),
    "",
    "### Self time by function",
    "",
    table(summary.selfByFunction, "function"),
    "",
    "### Inclusive time of the proxy's own functions (dist/)",
    "",
    table(summary.inclusiveOwn, "function"),
    "",
  ].join("\n");
}

/** Per-request self time by area, side by side: where the proxy spends more than the baseline. */
export function compareMarkdown(title: string, base: ProfileSummary, other: ProfileSummary, top = 20): string {
  const baseBy = new Map(base.selfByArea.map((r) => [r.name, r]));
  const names = new Set([...other.selfByArea.map((r) => r.name), ...base.selfByArea.map((r) => r.name)]);
  const rows = [...names]
    .filter((n) => n !== "idle")
    .map((name) => {
      const a = baseBy.get(name)?.usPerRequest ?? 0;
      const b = other.selfByArea.find((r) => r.name === name)?.usPerRequest ?? 0;
      return { name, a, b, extra: b - a };
    })
    .sort((x, y) => y.extra - x.extra)
    .slice(0, top);
  const total = (s: ProfileSummary): number => (s.requests === undefined ? NaN : (s.busyMs * 1000) / s.requests);
  return [
    `## ${title}`,
    "",
    `Busy CPU per request: baseline ${total(base).toFixed(1)} µs, mythiq-proxy ${total(other).toFixed(1)} µs. Areas by extra µs per request:`,
    "",
    "| area | baseline µs/req | mythiq µs/req | extra |",
    "| --- | ---: | ---: | ---: |",
    ...rows.map((r) => `| \`${r.name}\` | ${r.a.toFixed(1)} | ${r.b.toFixed(1)} | ${r.extra >= 0 ? "+" : ""}${r.extra.toFixed(1)} |`),
    "",
  ].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write("usage: node bench/profile-summary.ts FILE.cpuprofile\n");
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  process.stdout.write(profileMarkdown(summarizeProfile(profile), file));
}
