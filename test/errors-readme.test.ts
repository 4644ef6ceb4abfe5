// The README's error table and src/errors.ts are one catalogue written twice: this test fails when
// they drift (a reason added, removed, or with another status or code).
import { readFileSync } from "node:fs";
import t from "tap";
import { ERRORS, REASONS } from "../src/errors.ts";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const section = readme.slice(readme.indexOf("## Errors"), readme.indexOf("\n## ", readme.indexOf("## Errors") + 1));
const rows = [...section.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| `([a-z_]+)` \| (.+) \|$/gm)].map((m) => ({
  reason: m[1]!,
  status: Number(m[2]),
  code: m[3]!,
  whatToDo: m[4]!.trim(),
}));

t.test("the README lists every reason of the catalogue, once, with its status and code", async (t) => {
  t.equal(rows.length, REASONS.length, "one row per reason");
  t.same(new Set(rows.map((r) => r.reason)).size, rows.length, "no reason twice");
  for (const reason of REASONS) {
    const row = rows.find((r) => r.reason === reason);
    t.ok(row, `${reason} is in the README table`);
    if (row === undefined) continue;
    t.equal(row.status, ERRORS[reason].status, `${reason} status`);
    t.equal(row.code, ERRORS[reason].code, `${reason} code`);
    t.ok(row.whatToDo.length > 10, `${reason} says what to do`);
  }
});

t.test("the README lists no reason the catalogue does not have", async (t) => {
  for (const row of rows) t.ok(Object.hasOwn(ERRORS, row.reason), `${row.reason} is in src/errors.ts`);
});
