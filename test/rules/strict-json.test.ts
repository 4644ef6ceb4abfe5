import t from "tap";
import { readStrictJson } from "../../src/rules/strict-json.ts";

const utf8 = (s: string) => Buffer.from(s, "utf8");

void t.test("accepts RFC 8259 text and reports the top-level members", async (t) => {
  const r = readStrictJson(utf8('{"model":"stability/sdxl","n":2,"x":{"a":[1,2,{"b":null}]},"ok":true,"f":false,"z":null,"e":-1.5e+3}'));
  t.ok(r.ok);
  if (!r.ok || r.members === undefined) return;
  t.same(r.members.get("model"), { type: "string", value: "stability/sdxl" });
  t.same(r.members.get("n"), { type: "number", value: 2 });
  t.same(r.members.get("x"), { type: "object" });
  t.strictSame(r.members.get("ok"), { type: "boolean", value: true });
  t.strictSame(r.members.get("f"), { type: "boolean", value: false }, "a boolean carries its value (field policies compare it)");
  t.same(r.members.get("z"), { type: "null" });
  t.same(r.members.get("e"), { type: "number", value: -1500 });
  t.equal(r.members.has("a"), false, "nested members are not reported");
});

void t.test("escapes are decoded before keys are compared", async (t) => {
  const r = readStrictJson(utf8('{"mod\\u0065l":"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"}'));
  t.ok(r.ok);
  if (r.ok) t.same(r.members?.get("model"), { type: "string", value: 'a"b\\c/d\b\f\n\r\té\u{1F600}' });
});

void t.test("a top-level value that is not an object has no members", async (t) => {
  for (const text of ["[]", "1", '"x"', "null", " true "]) {
    const r = readStrictJson(utf8(text));
    t.ok(r.ok, text);
    if (r.ok) t.equal(r.members, undefined, text);
  }
});

void t.test("duplicate keys are refused at any depth, escaped or not", async (t) => {
  const cases = [
    '{"model":"a","model":"b"}',
    '{"model":"a","mod\\u0065l":"b"}',
    '{"x":{"k":1,"k":2}}',
    '{"x":[{"k":1,"k":1}]}',
    '{"":1,"":2}',
  ];
  for (const text of cases) {
    const r = readStrictJson(utf8(text));
    t.equal(r.ok ? "ok" : r.reason, "duplicate_key", text);
  }
  const sameNameDifferentObjects = readStrictJson(utf8('{"a":{"k":1},"b":{"k":2}}'));
  t.ok(sameNameDifferentObjects.ok, "the same key in two objects is fine");
});

void t.test("everything outside the grammar is invalid_json", async (t) => {
  const bad: Array<[string, Buffer]> = [
    ["empty", utf8("")],
    ["whitespace only", utf8("  ")],
    ["BOM", Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), utf8("{}")])],
    ["trailing comma", utf8('{"a":1,}')],
    ["trailing comma in array", utf8("[1,]")],
    ["comment", utf8('{"a":1 /* c */}')],
    ["single quotes", utf8("{'a':1}")],
    ["unquoted key", utf8("{a:1}")],
    ["NaN", utf8('{"a":NaN}')],
    ["Infinity", utf8('{"a":Infinity}')],
    ["leading zero", utf8('{"a":01}')],
    ["plus sign", utf8('{"a":+1}')],
    ["bare dot", utf8('{"a":1.}')],
    ["hex", utf8('{"a":0x1}')],
    ["control char in string", utf8('{"a":"x\ty"}')],
    ["raw newline in string", utf8('{"a":"x\ny"}')],
    ["bad escape", utf8('{"a":"\\x41"}')],
    ["short unicode escape", utf8('{"a":"\\u12"}')],
    ["lone high surrogate", utf8('{"a":"\\ud800"}')],
    ["lone low surrogate", utf8('{"a":"\\udc00"}')],
    ["high then non-low", utf8('{"a":"\\ud800\\u0041"}')],
    ["two documents", utf8("{}{}")],
    ["trailing garbage", utf8("{} x")],
    ["unterminated", utf8('{"a":"b')],
    ["missing colon", utf8('{"a" 1}')],
    ["vertical tab whitespace", utf8("{\u000b}")],
    ["NBSP whitespace", utf8("{\u00a0}")],
    ["capital TRUE", utf8('{"a":TRUE}')],
    ["invalid UTF-8", Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])],
    ["overlong UTF-8", Buffer.from([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d])],
    ["UTF-8 encoded surrogate", Buffer.from([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d])],
    ["UTF-16", Buffer.from("{}", "utf16le")],
    ["NUL byte", Buffer.from([0x7b, 0x00, 0x7d])],
  ];
  for (const [name, bytes] of bad) {
    const r = readStrictJson(bytes);
    t.equal(r.ok ? "ok" : r.reason, "invalid_json", name);
  }
});

void t.test("nesting is bounded", async (t) => {
  const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
  t.ok(readStrictJson(utf8(deep(64))).ok, "64 levels pass");
  const r = readStrictJson(utf8(deep(65)));
  t.equal(r.ok ? "ok" : r.reason, "invalid_json", "65 levels refused");
  const huge = readStrictJson(utf8(deep(200_000)));
  t.equal(huge.ok ? "ok" : huge.reason, "invalid_json", "200 000 levels refused without a stack overflow");
  t.ok(readStrictJson(utf8(deep(3)), { maxDepth: 3 }).ok);
  t.notOk(readStrictJson(utf8('{"a":{"b":{}}}'), { maxDepth: 2 }).ok);
});

void t.test("a refusal's detail never quotes the body", async (t) => {
  const r = readStrictJson(utf8('{"secret-token-123":1,"secret-token-123":2}'));
  t.notOk(r.ok);
  if (!r.ok) t.notMatch(r.detail, /secret/);
});
