import t from "tap";
import { collect, compileJsonPath, parseJsonPath, replaceAt, valueAt } from "../../src/ownership/json-path.ts";

void t.test("the grammar: names joined by dots, [] only where arrays are allowed", async (t) => {
  for (const good of ["id", "result.id", "data[].id", "a-b_c.d1", "x[].y[].z"]) t.ok(parseJsonPath(good, { arrays: true }).ok, good);
  t.ok(parseJsonPath("result.medias", { arrays: false }).ok);
  const refused: Array<[string, boolean, RegExp]> = [
    ["", true, /is not a path/],
    ["a..b", true, /is not a path/],
    [".a", true, /is not a path/],
    ["a.", true, /is not a path/],
    ["data[0].id", true, /is not a path/],
    ["a b", true, /is not a path/],
    ["data[].id", false, /"\[\]" is not allowed here/],
    ["a.__proto__", true, /__proto__/],
    ["a.b.c.d.e.f.g.h.i", true, /more than 8 steps/],
    ["é", true, /is not a path/],
  ];
  for (const [text, arrays, message] of refused) {
    const r = parseJsonPath(text, { arrays });
    t.notOk(r.ok, JSON.stringify(text));
    if (!r.ok) t.match(r.message, message);
  }
  t.throws(() => compileJsonPath("a..b", true), /is not a path/);
});

void t.test("collect steps into arrays at [] and reads own members only", async (t) => {
  const doc = JSON.parse('{"data":[{"id":"a"},{"id":"b"},{"x":1},"s",{"id":["c"]}],"result":{"id":7},"constructor":"own"}') as unknown;
  t.same(collect(doc, compileJsonPath("data[].id", true)), ["a", "b", ["c"]]);
  t.same(collect(doc, compileJsonPath("result.id", true)), [7]);
  t.same(collect(doc, compileJsonPath("result[].id", true)), [], "[] on a non-array leads nowhere");
  t.same(collect(doc, compileJsonPath("missing.id", true)), []);
  t.same(collect({}, compileJsonPath("constructor", true)), [], "a missing member is missing, not Object.prototype's");
  t.equal(valueAt(doc, compileJsonPath("constructor", false)), "own", "an own member of that name is read");
  t.equal(valueAt({}, compileJsonPath("toString", false)), undefined);
  t.equal(valueAt([1, 2], compileJsonPath("length", false)), undefined, "arrays have no members");
});

void t.test("replaceAt changes an existing member only", async (t) => {
  const doc = { result: { total: 9, medias: [1, 2] } };
  t.ok(replaceAt(doc, compileJsonPath("result.total", false), 1));
  t.equal(doc.result.total, 1);
  t.notOk(replaceAt(doc, compileJsonPath("result.count", false), 1), "a missing member is not added");
  t.notOk("count" in doc.result);
  t.notOk(replaceAt(doc, compileJsonPath("nope.total", false), 1));
});

void t.test("a path through a very long array does not overflow the stack", async (t) => {
  const doc = { data: Array.from({ length: 300_000 }, (_, i) => ({ id: i })) };
  const ids = collect(doc, compileJsonPath("data[].id", true));
  t.equal(ids.length, 300_000);
  t.equal(ids.at(-1), 299_999);
});
