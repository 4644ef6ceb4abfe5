/**
 * `npm run bench:components`: what each per-request component of mythiq-proxy costs, in µs of
 * proxy CPU per request, each measured by removing it (bench/experiments/removals.ts) and comparing
 * with the unmodified proxy. Issue 14 asks for this where a throughput target is missed.
 *
 * Every experiment is one `npm run bench -- --only=throughput --systems=mythiq,bare --remove=NAME`
 * run; the unmodified proxy is measured before the first and after the last, and the bare
 * http-proxy-3 pass-through runs in every one, so drift of the machine shows. CPU µs per request
 * is the figure compared: it does not depend on whether the generator or the proxy saturates.
 *
 *   npm run bench:components [-- --quick] [-- --only-removals=audit,metrics]
 *
 * Writes bench/results/components.json and prints a Markdown table for BENCHMARKS.md's notes.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { NOT_COMPONENTS, REMOVALS } from "./experiments/removals.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS = path.join(ROOT, "bench", "results");
const argv = process.argv.slice(2);
const QUICK = argv.includes("--quick");
const only = argv.find((a) => a.startsWith("--only-removals="))?.slice("--only-removals=".length).split(",");
const names = only ?? Object.keys(REMOVALS).filter((r) => !NOT_COMPONENTS.has(r));
for (const name of names) if (REMOVALS[name] === undefined) throw new Error(`unknown removal ${name}`);

interface Side {
  readonly rps: number;
  readonly cpuUsPerRequest: number;
}
interface Run {
  readonly remove: string;
  readonly get: { readonly mythiq: Side; readonly bare: Side };
  readonly post: { readonly mythiq: Side; readonly bare: Side };
}

function measure(remove: string): Run {
  const args = ["bench/run.ts", "--only=throughput", "--systems=mythiq,bare", ...(QUICK ? ["--quick"] : []), ...(remove === "" ? [] : [`--remove=${remove}`])];
  process.stderr.write(`\n== ${remove === "" ? "unmodified" : `without ${remove}`}: node ${args.join(" ")}\n`);
  // The bench exits 1 when a target is missed, which is expected here: the JSON is what counts.
  try {
    execFileSync(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  } catch (err) {
    if ((err as { status?: number }).status !== 1) throw err;
  }
  const file = path.join(RESULTS, QUICK ? "throughput-quick.json" : "throughput.json");
  const json = JSON.parse(readFileSync(file, "utf8")) as {
    measurements: { throughput_get: { systems: Record<string, Side> }; throughput_post: { systems: Record<string, Side> } };
  };
  const pick = (m: { systems: Record<string, Side> }) => ({
    mythiq: { rps: m.systems["mythiq"]!.rps, cpuUsPerRequest: m.systems["mythiq"]!.cpuUsPerRequest },
    bare: { rps: m.systems["bare"]!.rps, cpuUsPerRequest: m.systems["bare"]!.cpuUsPerRequest },
  });
  return { remove, get: pick(json.measurements.throughput_get), post: pick(json.measurements.throughput_post) };
}

execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
const before = measure("");
const experiments = names.map((name) => measure(name));
// Everything at once (the forwarder replacement includes the header rebuild and the relay): what
// is left is the pipeline's own glue, the listener's hardening and Node's server side.
const together = only === undefined ? measure(names.filter((n) => n !== "header-rebuild" && n !== "relay").join(",")) : undefined;
const after = measure("");

const base = (k: "get" | "post"): number => (before[k].mythiq.cpuUsPerRequest + after[k].mythiq.cpuUsPerRequest) / 2;
const bareSpread = (k: "get" | "post"): string => {
  const all = [before, ...experiments, after].map((r) => r[k].bare.cpuUsPerRequest);
  return `${Math.min(...all).toFixed(0)}–${Math.max(...all).toFixed(0)}`;
};
const us = (n: number): string => `${n >= 0 ? "" : "−"}${Math.abs(n).toFixed(1)}`;
const lines = [
  `Unmodified mythiq-proxy: GET ${before.get.mythiq.cpuUsPerRequest.toFixed(0)} / ${after.get.mythiq.cpuUsPerRequest.toFixed(0)} µs per request ` +
    `(before / after the experiments), POST ${before.post.mythiq.cpuUsPerRequest.toFixed(0)} / ${after.post.mythiq.cpuUsPerRequest.toFixed(0)}; ` +
    `bare http-proxy-3 over all runs: GET ${bareSpread("get")}, POST ${bareSpread("post")} µs.`,
  "",
  "| removed | what the experiment takes out | GET µs/req saved | POST µs/req saved | bare in that run (GET / POST) |",
  "| --- | --- | ---: | ---: | ---: |",
  ...[...experiments, ...(together === undefined ? [] : [together])].map(
    (r) =>
      `| ${r.remove} | ${REMOVALS[r.remove]?.what ?? "all of the above at once"} | ${us(base("get") - r.get.mythiq.cpuUsPerRequest)} | ${us(base("post") - r.post.mythiq.cpuUsPerRequest)} | ` +
      `${r.get.bare.cpuUsPerRequest.toFixed(0)} / ${r.post.bare.cpuUsPerRequest.toFixed(0)} |`,
  ),
  ...(together === undefined
    ? []
    : [
        "",
        `With all of them removed mythiq-proxy still took GET ${together.get.mythiq.cpuUsPerRequest.toFixed(0)} µs against bare's ${together.get.bare.cpuUsPerRequest.toFixed(0)}, ` +
          `POST ${together.post.mythiq.cpuUsPerRequest.toFixed(0)} against ${together.post.bare.cpuUsPerRequest.toFixed(0)}.`,
      ]),
];
mkdirSync(RESULTS, { recursive: true });
writeFileSync(path.join(RESULTS, "components.json"), JSON.stringify({ date: new Date().toISOString(), quick: QUICK, before, experiments, together, after }, null, 2) + "\n");
process.stdout.write(`${lines.join("\n")}\n`);
