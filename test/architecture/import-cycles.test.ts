// Dependencies point down: no import cycle anywhere in the project, type-only imports
// included. The checker itself is proven on a fixture whose two files import each other's types.
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { findImportCycles } from "../../scripts/import-cycles.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const rel = (cycle: string[]) => cycle.map((file) => relative(ROOT, file));

void t.test("a cycle through type-only imports is found", (t) => {
  const cycles = findImportCycles([fileURLToPath(new URL("fixtures/cycle", import.meta.url))]);
  t.same(cycles.map(rel), [["test/architecture/fixtures/cycle/a.ts", "test/architecture/fixtures/cycle/b.ts", "test/architecture/fixtures/cycle/a.ts"]]);
  t.end();
});

void t.test("the project has no import cycle", (t) => {
  const cycles = findImportCycles(["src", "bench", "scripts", "test"].map((dir) => `${ROOT}${dir}`));
  t.same(cycles.map((cycle) => rel(cycle).join(" -> ")), []);
  t.end();
});
