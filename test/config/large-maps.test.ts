// A 1 MiB config with ~80 000 map entries validates in seconds, valid or not. yaml's own
// duplicate-key check (and a linear search per problem placed) made this quadratic: ~97 s for
// 85 000 `pricing` entries. Time is measured as this process's CPU time, so tap running other test
// files in parallel does not make the bound flaky; the bound is still 4× the ~3.3 s of CPU the
// slowest case takes under coverage on a two-core VM (whose CPU time a busy sibling thread
// inflates), and far below what a quadratic check would take.
import t from "tap";
import { MAX_CONFIG_BYTES } from "../../src/config/bounded-yaml.ts";
import { parseConfig } from "../../src/config/load.ts";

const HEAD = [
  "keys:",
  "  default: { source: env, env: MYTHIQ_API_KEY }",
  "clients:",
  "  - id: web",
  "    auth: { anonymous: true }",
  "    networks: [127.0.0.1]",
  '    routes: ["GET /v1/models"]',
  "pricing:",
  "",
].join("\n");

const ENTRIES = 80_000;
const LIMIT_MS = 15_000;

function pricing(line: (i: number) => string): string {
  let text = HEAD;
  for (let i = 0; i < ENTRIES; i++) text += line(i);
  return text;
}

function timed<T>(run: () => T): { value: T; cpuMs: number; wallMs: number } {
  const cpu = process.cpuUsage();
  const wall = performance.now();
  const value = run();
  const used = process.cpuUsage(cpu);
  return { value, cpuMs: (used.user + used.system) / 1000, wallMs: performance.now() - wall };
}

const cases: Array<{ name: string; text: string; problems: number; first?: RegExp }> = [
  { name: "valid", text: pricing((i) => `  m${i.toString(36).padStart(4, "0")}: 1\n`), problems: 0 },
  {
    name: "every value wrong",
    text: pricing((i) => `  m${i.toString(36).padStart(4, "0")}: x\n`),
    problems: ENTRIES,
    first: /^pricing\.m0000: must be a number/,
  },
  {
    name: "every key the same",
    text: pricing(() => `  mmmmm: 1\n`),
    problems: ENTRIES - 1,
    first: /^invalid YAML: duplicate key mmmmm \(map keys must be unique\)$/,
  },
];

for (const c of cases) {
  t.test(`${c.name}: ${ENTRIES} entries`, async (t) => {
    const bytes = Buffer.byteLength(c.text);
    t.ok(bytes > 0.5 * MAX_CONFIG_BYTES && bytes <= MAX_CONFIG_BYTES, `${bytes} bytes, under the 1 MiB cap`);
    const { value: result, cpuMs, wallMs } = timed(() => parseConfig(c.text, "big.yaml"));
    t.ok(cpuMs < LIMIT_MS, `validated in ${Math.round(cpuMs)} ms of CPU (${Math.round(wallMs)} ms wall), under ${LIMIT_MS} ms`);
    if (c.problems === 0) {
      t.ok(result.ok, result.ok ? "valid" : (result.problems[0]?.message ?? "invalid"));
      if (result.ok) t.equal(Object.keys(result.config.pricing).length, ENTRIES);
      return;
    }
    t.equal(result.ok, false);
    if (result.ok) return;
    t.equal(result.problems.length, c.problems, "one problem per bad entry");
    t.match(result.problems[0]?.message ?? "", c.first ?? /./);
    // The last problem is placed as exactly as the first: the line of the last entry.
    t.equal(result.problems.at(-1)?.line, HEAD.split("\n").length - 1 + ENTRIES, "the last problem is on the last line");
  });
}
