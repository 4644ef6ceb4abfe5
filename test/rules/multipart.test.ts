import t from "tap";
import { classifyMediaType } from "../../src/rules/media-type.ts";
import { isValidBoundary, MAX_PARTS, readMultipart } from "../../src/rules/multipart.ts";

const B = "----formBoundary7MA4YWxkTrZu0gW";
const field = (name: string, value: string) => `--${B}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
const file = (name: string, filename: string, bytes: string, type = "image/png") =>
  `--${B}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: ${type}\r\n\r\n${bytes}\r\n`;
const close = `--${B}--\r\n`;
const body = (s: string) => Buffer.from(s, "latin1");

void t.test("reads what browsers, curl and the SDKs send", async (t) => {
  const png = "\x89PNG\r\n\x1a\n\x00\x00\r\n--not-the-boundary\r\n";
  const r = readMultipart(body(field("model", "stability/sdxl") + file("image", "in.png", png) + field("prompt", "a cat") + close), B);
  t.ok(r.ok);
  if (!r.ok) return;
  t.same(
    r.parts.map((p) => [p.name, p.filename, p.contentType, p.body.toString("latin1")]),
    [
      ["model", undefined, undefined, "stability/sdxl"],
      ["image", "in.png", "image/png", png],
      ["prompt", undefined, undefined, "a cat"],
    ],
  );
});

void t.test("variants that stay unambiguous are accepted", async (t) => {
  const cases: Array<[string, string]> = [
    ["no final CRLF", field("model", "m") + `--${B}--`],
    ["unquoted name", `--${B}\r\nContent-Disposition: form-data; name=model\r\n\r\nm\r\n` + close],
    ["header name case", `--${B}\r\ncontent-disposition: FORM-DATA; NAME="model"\r\n\r\nm\r\n` + close],
    ["content-type on a field", `--${B}\r\nContent-Disposition: form-data; name="model"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nm\r\n` + close],
    ["empty filename", file("image", "", "")],
    ["UTF-8 filename", file("image", "b\u00c3\u00a4r.png", "x")],
    ["empty value", field("prompt", "")],
    ["no parts", close],
  ];
  for (const [name, text] of cases) {
    const full = text.endsWith("--") || text.endsWith("--\r\n") ? text : text + close;
    const r = readMultipart(body(full), B);
    t.ok(r.ok, `${name}: ${r.ok ? "" : r.detail}`);
  }
});

void t.test("every shape where parsers disagree is refused", async (t) => {
  const cases: Array<[string, string]> = [
    ["preamble", "junk\r\n" + field("model", "m") + close],
    ["epilogue", field("model", "m") + close + "trailing"],
    ["part after the close", field("model", "a") + `--${B}--\r\n` + field("model", "b") + close],
    ["bare LF lines", `--${B}\nContent-Disposition: form-data; name="model"\n\nm\n--${B}--\n`],
    ["LF inside headers", `--${B}\r\nContent-Disposition: form-data; name="model"\nX: y\r\n\r\nm\r\n` + close],
    ["folded header", `--${B}\r\nContent-Disposition: form-data;\r\n name="model"\r\n\r\nm\r\n` + close],
    ["name*", `--${B}\r\nContent-Disposition: form-data; name="x"; name*=utf-8''model\r\n\r\nm\r\n` + close],
    ["two names", `--${B}\r\nContent-Disposition: form-data; name="x"; name="model"\r\n\r\nm\r\n` + close],
    ["filename before name", `--${B}\r\nContent-Disposition: form-data; filename="f"; name="model"\r\n\r\nm\r\n` + close],
    ["filename*", `--${B}\r\nContent-Disposition: form-data; name="image"; filename*=utf-8''a.png\r\n\r\nm\r\n` + close],
    ["escaped quote in name", `--${B}\r\nContent-Disposition: form-data; name="mo\\"del"\r\n\r\nm\r\n` + close],
    ["percent in name", field("mod%65l", "m") + close],
    ["semicolon in name", field("a;name=model", "m") + close],
    ["space in name", field("model ", "m") + close],
    ["non-ASCII name", field("m\u00f6del", "m") + close],
    ["two content-dispositions", `--${B}\r\nContent-Disposition: form-data; name="x"\r\nContent-Disposition: form-data; name="model"\r\n\r\nm\r\n` + close],
    ["content-transfer-encoding", `--${B}\r\nContent-Disposition: form-data; name="model"\r\nContent-Transfer-Encoding: base64\r\n\r\nbQ==\r\n` + close],
    ["inline disposition", `--${B}\r\nContent-Disposition: inline; name="model"\r\n\r\nm\r\n` + close],
    ["no disposition", `--${B}\r\nContent-Type: text/plain\r\n\r\nm\r\n` + close],
    ["no headers at all", `--${B}\r\n\r\nm\r\n` + close],
    ["space before colon", `--${B}\r\nContent-Disposition : form-data; name="model"\r\n\r\nm\r\n` + close],
    ["padding after delimiter", `--${B}   \r\nContent-Disposition: form-data; name="model"\r\n\r\nm\r\n` + close],
    ["boundary prefix inside a body", field("prompt", `x\r\n--${B}X`) + close],
    ["no close delimiter", field("model", "m")],
    ["truncated mid-part", field("model", "m").slice(0, -4)],
    ["wrong boundary", field("model", "m").replace(B, "other") + close],
    ["NUL in headers", `--${B}\r\nContent-Disposition: form-data; name="model"\x00\r\n\r\nm\r\n` + close],
    ["filename with a quote", `--${B}\r\nContent-Disposition: form-data; name="image"; filename="a"b"\r\n\r\nm\r\n` + close],
    ["bad part content-type", `--${B}\r\nContent-Disposition: form-data; name="model"\r\nContent-Type: text/plain; x\r\n\r\nm\r\n` + close],
  ];
  for (const [name, text] of cases) {
    const r = readMultipart(body(text), B);
    t.notOk(r.ok, name);
    if (!r.ok) t.notMatch(r.detail, /stability|secret/, `${name}: detail quotes no content`);
  }
});

void t.test("the number of parts is bounded", async (t) => {
  const many = (n: number) => body(Array.from({ length: n }, (_, i) => field(`f${i}`, "v")).join("") + close);
  t.ok(readMultipart(many(MAX_PARTS), B).ok);
  t.notOk(readMultipart(many(MAX_PARTS + 1), B).ok);
});

void t.test("boundaries", async (t) => {
  t.ok(isValidBoundary("a"));
  t.ok(isValidBoundary("x".repeat(70)));
  t.ok(isValidBoundary("with space inside"));
  t.notOk(isValidBoundary(""));
  t.notOk(isValidBoundary("x".repeat(71)));
  t.notOk(isValidBoundary("trailing "));
  t.notOk(isValidBoundary("semi;colon"));
  t.notOk(isValidBoundary("quo\"te"));
  t.notOk(isValidBoundary("cr\rlf"));
});

void t.test("content types of checked bodies", async (t) => {
  const cases: Array<[string | undefined, string]> = [
    ["application/json", "json"],
    ["Application/JSON", "json"],
    ["application/json; charset=utf-8", "json"],
    ["application/json;charset=UTF-8", "json"],
    ['application/json; charset="utf-8"', "json"],
    [`multipart/form-data; boundary=${B}`, `multipart:${B}`],
    ['multipart/form-data; boundary="a b:c"', "multipart:a b:c"],
    [undefined, "unsupported"],
    ["", "unsupported"],
    ["text/plain", "unsupported"],
    ["application/x-www-form-urlencoded", "unsupported"],
    ["application/json; charset=latin1", "unsupported"],
    ["application/json; charset=utf-16", "unsupported"],
    ["application/json; charset=utf-8; charset=latin1", "unsupported"],
    ["application/json; boundary=x", "unsupported"],
    ["application/jsonx", "unsupported"],
    ["application/vnd.api+json", "unsupported"],
    ["application/json, text/plain", "unsupported"],
    ["multipart/form-data", "unsupported"],
    ["multipart/form-data; boundary=", "unsupported"],
    ["multipart/form-data; boundary=a; boundary=b", "unsupported"],
    ["multipart/form-data; boundary=a; charset=utf-8", "unsupported"],
    ['multipart/form-data; boundary="a\\"b"', "unsupported"],
    ['multipart/form-data; boundary="a;b"', "unsupported"],
    ["multipart/mixed; boundary=a", "unsupported"],
    ["application/json; charset", "unsupported"],
  ];
  for (const [header, want] of cases) {
    const got = classifyMediaType(header);
    t.equal(got.kind === "multipart" ? `multipart:${got.boundary}` : got.kind, want, String(header));
  }
});
