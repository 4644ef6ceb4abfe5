// Duplicate map keys are found in one linear pass (yaml's own `uniqueKeys` check is quadratic),
// with yaml's rule, message and position: yaml itself, with `uniqueKeys: true`, is the oracle.
import t from "tap";
import { LineCounter, parseDocument } from "yaml";
import { parseBoundedYaml } from "../../src/config/bounded-yaml.ts";
import { parseConfig } from "../../src/config/load.ts";

function duplicateProblems(text: string): string[] {
  const parsed = parseBoundedYaml(text);
  return parsed.ok ? [] : parsed.problems.filter((p) => /duplicate key/.test(p.message)).map((p) => `${p.line}:${p.col} ${p.message}`);
}

t.test("duplicates are refused with the key and its position", async (t) => {
  const cases: Array<[string, string, string[]]> = [
    ["top level", "keys: {}\nkeys: {}\n", ["2:1 invalid YAML: duplicate key keys (map keys must be unique)"]],
    ["nested block map", "a:\n  b: 1\n  c: 2\n  b: 3\n", ["4:3 invalid YAML: duplicate key b (map keys must be unique)"]],
    ["flow map", "a: {b: 1, b: 2}\n", ["1:11 invalid YAML: duplicate key b (map keys must be unique)"]],
    ["quoted and plain are the same string", `a: 1\n"a": 2\n'a': 3\n`, [
      `2:1 invalid YAML: duplicate key "a" (map keys must be unique)`,
      `3:1 invalid YAML: duplicate key 'a' (map keys must be unique)`,
    ]],
    ["a comment in between", "a: 1\n\n# note\na: 2\n", ["4:1 invalid YAML: duplicate key a (map keys must be unique)"]],
    ["three times", "a: 1\na: 2\na: 3\n", [
      "2:1 invalid YAML: duplicate key a (map keys must be unique)",
      "3:1 invalid YAML: duplicate key a (map keys must be unique)",
    ]],
    // An aliased map is one map: reported once, where it is written.
    ["inside an aliased map", "a: &x {b: 1, b: 2}\nc: *x\nd: *x\n", ["1:14 invalid YAML: duplicate key b (map keys must be unique)"]],
    // yaml's own check pointed at the end of the previous line here, without naming the key.
    ["after an empty value", "keys: {}\nclients:\nkeys: 1\n", ["3:1 invalid YAML: duplicate key keys (map keys must be unique)"]],
    ["empty keys: at the colon", "a:\n  : 1\n  # c\n  : 2\n", ["4:3 invalid YAML: duplicate key (map keys must be unique)"]],
    ["same key in two maps", "a: {b: 1}\nc: {b: 2}\n", []],
    ["1 and \"1\" differ", `pricing:\n  1: 1\n  "1": 2\n`, []],
  ];
  for (const [name, text, want] of cases) t.strictSame(duplicateProblems(text), want, name);
});

t.test("a duplicate is reported with the other syntax errors, before the schema runs", async (t) => {
  const result = parseConfig("keys: {}\nkeys: {}\nclients: [a, b\n", "d.yaml");
  t.equal(result.ok, false);
  const messages = result.ok ? [] : result.problems.map((p) => `${p.line}:${p.col} ${p.message}`);
  t.ok(messages.includes("2:1 invalid YAML: duplicate key keys (map keys must be unique)"), messages.join("\n"));
  t.ok(messages.some((m) => /invalid YAML: Flow sequence .* end with a \]/.test(m)), "the unclosed list too");
  t.notOk(messages.some((m) => /must list|is required/.test(m)), "no schema problems on top");
});

// A seeded generator of small YAML documents full of near-duplicate keys: quoting, tags, anchors,
// aliases, empty keys and values, numbers that look alike, nested block and flow maps.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const KEYS = ["a", "b", "[a]", "{a: 1}", "{a: 1, a: 2}", "'a'", '"a"', '"\\x61"', "1", "01", "1.0", "true", "null", "~", "", "!!str a", "&k a", ".nan", "-0", "0", "a b"];
const VALUES = ["1", "x", "[1, 2]", "", "*v", "&v {a: 1, a: 2}", "# c"];

function generate(rnd: () => number): string {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)] as T;
  const map = (depth: number, indent: string, flow: boolean): string => {
    const entries: string[] = [];
    for (let i = 0, n = 1 + Math.floor(rnd() * 4); i < n; i++) {
      const key = pick(KEYS);
      const nested = depth > 0 && rnd() < 0.3;
      if (flow) entries.push(`${key}: ${nested ? map(depth - 1, "", true) : pick(VALUES.filter((v) => !v.startsWith("#")))}`);
      else if (nested && rnd() < 0.5) entries.push(`${indent}${key}:\n${map(depth - 1, `${indent}  `, false)}`);
      else entries.push(`${indent}${key}: ${nested ? map(depth - 1, "", true) : pick(VALUES)}`);
    }
    return flow ? `{${entries.join(", ")}}` : entries.join("\n");
  };
  return `${rnd() < 0.7 ? map(2, "", false) : map(2, "", true)}\n`;
}

t.test("same duplicates as yaml's uniqueKeys on thousands of generated documents", async (t) => {
  const rnd = prng(0xd00b1e);
  let compared = 0;
  let withDuplicates = 0;
  const mismatches: string[] = [];
  for (let i = 0; i < 4000; i++) {
    const text = generate(rnd);
    const lines = new LineCounter();
    const oracle = parseDocument(text, { lineCounter: lines, version: "1.2", schema: "core", merge: false, uniqueKeys: true, strict: true, prettyErrors: false });
    // Where the document has other errors, yaml's composition (and so its positions) is a guess.
    if (oracle.errors.some((e) => e.code !== "DUPLICATE_KEY")) continue;
    compared++;
    const expected = oracle.errors.map((e) => e.pos[0]).sort((a, b) => a - b);
    if (expected.length > 0) withDuplicates++;
    const got = duplicateProblems(text).map((p) => {
      const [line = 0, col = 0] = (p.split(" ")[0] ?? "").split(":").map(Number);
      let offset = 0;
      for (let l = 1; l < line; l++) offset = text.indexOf("\n", offset) + 1;
      return offset + col - 1;
    });
    // Same keys, same places; where yaml pointed at the blank after an empty value, we point past
    // that whitespace, at the duplicate key itself.
    const same =
      got.length === expected.length &&
      got.every((offset, j) => {
        const old = expected[j] ?? -1;
        return offset === old || (old < offset && /^\s+$/.test(text.slice(old, offset)));
      });
    if (!same) mismatches.push(`${JSON.stringify(text)}: yaml ${expected.join(",")}, ours ${got.join(",")}`);
  }
  t.strictSame(mismatches.slice(0, 5), [], "every duplicate yaml finds, and no other");
  t.ok(compared > 1000 && withDuplicates > 300, `${compared} documents compared, ${withDuplicates} with duplicates`);
});
