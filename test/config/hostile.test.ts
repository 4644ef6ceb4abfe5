// Hostile and broken input: every case is an error with a position, never a throw, a hang or a
// crash, and stays so when parsed many times in one process (on Node 20 the second deep parse by
// yaml itself aborted the whole process; the depth pre-scan keeps such input away from the parser).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { loadConfigFile, parseConfig } from "../../src/config/load.ts";
import { MAX_ALIASES, MAX_CONFIG_BYTES, MAX_FLOW_DEPTH, MAX_INDENT } from "../../src/config/bounded-yaml.ts";

const root = join(import.meta.dirname, "..", "..");

function deepBlock(levels: number): string {
  const lines: string[] = [];
  for (let i = 0; i < levels; i++) lines.push(`${" ".repeat(i)}a:`);
  return `${lines.join("\n")}\n`;
}

function billionLaughs(): string {
  const lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'];
  for (let i = 1; i < 10; i++) lines.push(`a${i}: &a${i} [${Array<string>(10).fill(`*a${i - 1}`).join(", ")}]`);
  return `${lines.join("\n")}\n`;
}

interface Case {
  readonly name: string;
  readonly text: string;
  readonly line: number;
  readonly col: number;
  readonly message: RegExp;
}

const cases: Case[] = [
  { name: "oversized", text: "a: b\n".repeat(300_000), line: 1, col: 1, message: /more than the 1048576 bytes/ },
  { name: "deep flow sequence", text: "[".repeat(100_000), line: 1, col: 65, message: /deeper than 64 levels of \[/ },
  { name: "deep flow maps", text: `a: ${"{b: ".repeat(5_000)}`, line: 1, col: 260, message: /deeper than 64 levels/ },
  { name: "deep flow, closed", text: `k: ${"[".repeat(2_000)}${"]".repeat(2_000)}\n`, line: 1, col: 68, message: /deeper than 64/ },
  { name: "deep block indentation", text: deepBlock(1_000), line: 258, col: 1, message: /indentation is deeper than 256 columns/ },
  { name: "compact nested sequences", text: `${"- ".repeat(5_000)}x\n`, line: 1, col: 257, message: /indentation is deeper than 256/ },
  { name: "alias bomb", text: billionLaughs(), line: 3, col: 50, message: /more than 100 alias expansions/ },
  { name: "self-referencing alias", text: "a: &x [*x]\n", line: 1, col: 8, message: /deeper than 64 levels/ },
  { name: "self-referencing map alias", text: "a: &x\n  b: *x\n", line: 2, col: 6, message: /deeper than 64 levels/ },
  { name: "truncated in a string", text: 'keys:\n  default:\n    source: "env\n', line: 4, col: 1, message: /Missing closing "quote/ },
  { name: "truncated in a flow list", text: "clients: [a, b", line: 1, col: 15, message: /invalid YAML/ },
  { name: "empty", text: "", line: 1, col: 1, message: /the file is empty/ },
  { name: "whitespace only", text: " \n\n  \n", line: 1, col: 1, message: /the file is empty/ },
  { name: "NUL byte", text: "keys:\n  a: b\u0000c\n", line: 2, col: 7, message: /NUL byte/ },
  { name: "control character", text: "keys: \u0007\n", line: 1, col: 7, message: /control character U\+0007/ },
  { name: "BOM in the middle", text: "a: 1\nb: \uFEFF2\n", line: 2, col: 4, message: /byte order mark/ },
  { name: "lone CR line ends", text: "keys: {}\rclients: []\r", line: 1, col: 9, message: /carriage return without a line feed/ },
  { name: "lone surrogate", text: "a: \uD800x\n", line: 1, col: 4, message: /unpaired surrogate/ },
  { name: "tab indentation", text: "keys:\n\tdefault: {}\n", line: 2, col: 1, message: /Tabs are not allowed/ },
  { name: "duplicate keys", text: "keys: {}\nkeys: {}\n", line: 2, col: 1, message: /duplicate key keys/ },
  { name: "two documents", text: "a: 1\n---\nb: 2\n", line: 2, col: 1, message: /more than one YAML document/ },
  { name: "unknown tag", text: "keys: !!js/function 'f'\n", line: 1, col: 7, message: /Unresolved tag/ },
  { name: "scalar document", text: "hello\n", line: 1, col: 1, message: /\(top level\): must be a map/ },
];

t.test("each hostile input is one positioned error", async (t) => {
  for (const c of cases) {
    const result = parseConfig(c.text, "h.yaml");
    t.equal(result.ok, false, c.name);
    if (result.ok) continue;
    const first = result.problems[0];
    t.ok(first, `${c.name}: has a problem`);
    if (!first) continue;
    t.match(first.message, c.message, `${c.name}: message`);
    t.strictSame([first.line, first.col], [c.line, c.col], `${c.name}: position`);
    t.equal(first.file, "h.yaml");
  }
});

t.test("parsing every hostile input 50 times in one process stays bounded", async (t) => {
  const started = Date.now();
  for (const c of cases) {
    const messages = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const result = parseConfig(c.text, "h.yaml");
      messages.add(result.ok ? "ok" : (result.problems[0]?.message ?? "none"));
    }
    t.equal(messages.size, 1, `${c.name}: the same answer every time`);
  }
  const elapsed = Date.now() - started;
  t.ok(elapsed < 15_000, `all ${cases.length * 50} parses took ${elapsed} ms`);
});

t.test("nesting just under the caps still reaches the schema; one more level is refused", async (t) => {
  const flowOk = `x: ${"[".repeat(MAX_FLOW_DEPTH - 1)}${"]".repeat(MAX_FLOW_DEPTH - 1)}\n`;
  const okResult = parseConfig(flowOk, "f.yaml");
  t.ok(!okResult.ok && okResult.problems.some((p) => /^x: unknown key/.test(p.message)), "64 levels: a schema error, not a depth error");
  const flowBad = `x: ${"[".repeat(MAX_FLOW_DEPTH + 1)}${"]".repeat(MAX_FLOW_DEPTH + 1)}\n`;
  const badResult = parseConfig(flowBad, "f.yaml");
  t.ok(!badResult.ok && /deeper than 64/.test(badResult.problems[0]?.message ?? ""));
  const indentOk = `x:\n${" ".repeat(MAX_INDENT)}y: 1\n`;
  const indentResult = parseConfig(indentOk, "i.yaml");
  t.ok(!indentResult.ok && indentResult.problems.every((p) => !/indentation/.test(p.message)), "256 columns pass the pre-scan");
  t.equal(MAX_ALIASES, 100);
});

t.test("the depth pre-scan understands quotes, comments and block scalars", async (t) => {
  // Brackets inside strings, comments and block scalars are text, not nesting.
  const text = [
    `upstream: { url: "https://api.mythiq.ai" }  # ${"[".repeat(200)}`,
    `keys:`,
    `  default: { source: env, env: MYTHIQ_API_KEY }`,
    `clients:`,
    `  - id: web`,
    `    auth: { tokens: ["sha256:${"a".repeat(64)}"] }`,
    `    routes: ["GET /v1/models"]`,
    `    models: ["${"[".repeat(200)}", '${"{".repeat(200)}']`,
    `pricing:`,
    `  "${"[".repeat(100)}": 0.5`,
    "",
  ].join("\n");
  const result = parseConfig(text, "q.yaml");
  t.ok(result.ok, result.ok ? "valid" : result.problems.map((p) => p.message).join("; "));
  // ...and a quote inside a block scalar does not hide a bomb that follows.
  const sneaky = `a: |\n  "unclosed\nb: ${"[".repeat(1_000)}\n`;
  const sneakyResult = parseConfig(sneaky, "s.yaml");
  t.ok(!sneakyResult.ok && /deeper than 64/.test(sneakyResult.problems[0]?.message ?? ""));
  t.strictSame(sneakyResult.ok ? [] : [sneakyResult.problems[0]?.line, sneakyResult.problems[0]?.col], [3, 68]);
});

t.test("__proto__ keys pollute nothing", async (t) => {
  const result = await loadConfigFile(join(root, "test", "fixtures", "config", "invalid", "proto.yaml"));
  t.equal(result.ok, false);
  t.equal((Object.prototype as Record<string, unknown>).isAdmin, undefined);
  t.equal(({} as Record<string, unknown>).isAdmin, undefined);
  const json = parseConfig('{"__proto__": {"polluted": true}, "keys": {}}', "p.yaml");
  t.equal(json.ok, false);
  t.equal(({} as Record<string, unknown>).polluted, undefined);
});

t.test("YAML 1.2 core schema: no yes/no booleans, no octal surprises", async (t) => {
  const text = readFileSync(join(root, "test", "fixtures", "config", "valid", "minimal.yaml"), "utf8");
  const result = parseConfig(`${text}audit: { enabled: no }\n`, "c.yaml");
  t.ok(!result.ok && result.problems.some((p) => /"no" is a string in YAML 1\.2/.test(p.message)));
});

t.test("files: oversized, endless, binary and missing are problems at a position", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-config-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const big = join(dir, "big.yaml");
  writeFileSync(big, Buffer.alloc(MAX_CONFIG_BYTES * 5, 0x61));
  const bigResult = await loadConfigFile(big);
  t.ok(!bigResult.ok && /larger than 1048576 bytes/.test(bigResult.problems[0]?.message ?? ""));

  // An endless device: only the cap is read.
  const zero = await loadConfigFile("/dev/zero");
  t.ok(!zero.ok && /larger than/.test(zero.problems[0]?.message ?? ""), "/dev/zero is cut off at the cap");

  const garbage = join(dir, "garbage.yaml");
  let seed = 42;
  const bytes = Buffer.alloc(4096, 0).map(() => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed >> 16;
  });
  writeFileSync(garbage, bytes);
  const g = await loadConfigFile(garbage);
  t.ok(!g.ok && (g.problems[0]?.line ?? 0) >= 1 && /UTF-8|control|NUL/.test(g.problems[0]?.message ?? ""));

  const missing = await loadConfigFile(join(dir, "nope.yaml"));
  t.ok(!missing.ok);
  if (!missing.ok) t.strictSame(missing.problems, [{ file: join(dir, "nope.yaml"), line: 1, col: 1, message: "cannot open the config file (ENOENT)" }]);

  const directory = await loadConfigFile(dir);
  t.ok(!directory.ok && /cannot read the config file \(EISDIR\)/.test(directory.problems[0]?.message ?? ""));

  const latin1 = join(dir, "latin1.yaml");
  writeFileSync(latin1, Buffer.from("keys:\n  caf\xe9: x\n", "latin1"));
  const l = await loadConfigFile(latin1);
  t.ok(!l.ok);
  if (!l.ok) t.strictSame(l.problems[0], { file: latin1, line: 2, col: 6, message: "the file is not valid UTF-8 (byte 0xE9): is this a text file?" });
});

t.test("every prefix of a valid config parses without throwing", async (t) => {
  const text = readFileSync(join(root, "config", "proxy.yaml"), "utf8");
  let refused = 0;
  for (let end = 0; end <= text.length; end++) {
    const result = parseConfig(text.slice(0, end), "cut.yaml");
    if (!result.ok) {
      refused++;
      for (const p of result.problems) {
        if (!(p.line >= 1 && p.col >= 1)) t.fail(`bad position at prefix ${end}: ${p.line}:${p.col}`);
      }
    }
  }
  t.ok(refused > text.length / 2, `${refused} of ${text.length + 1} prefixes refused, none threw`);
  t.ok(parseConfig(text, "full.yaml").ok, "the whole file is valid");
});
