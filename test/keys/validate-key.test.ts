import t from "tap";
import { KEY_MAX_LENGTH, KEY_MIN_LENGTH, fingerprint, validateKey } from "../../src/keys/validate-key.ts";

const GOOD = "mq-live-0123456789abcdefABCDEF_~!";

void t.test("accepted values", (t) => {
  for (const value of [GOOD, "x".repeat(KEY_MIN_LENGTH), "y".repeat(KEY_MAX_LENGTH), "!#$%&'()*+,-./:;<=>?@[]^_`{|}~"]) {
    t.same(validateKey(value), { ok: true }, `${value.length} chars`);
  }
  t.end();
});

void t.test("refused values, with a reason that never quotes the value", (t) => {
  const table: Array<[string, unknown, string]> = [
    ["empty", "", "the value is empty"],
    ["not a string", 12345678, "the value is not a string"],
    ["undefined", undefined, "the value is not a string"],
    ["trailing LF", `${GOOD}\n`, "the value has leading or trailing whitespace"],
    ["trailing CRLF", `${GOOD}\r\n`, "the value has leading or trailing whitespace"],
    ["leading space", ` ${GOOD}`, "the value has leading or trailing whitespace"],
    ["trailing tab", `${GOOD}\t`, "the value has leading or trailing whitespace"],
    ["trailing NBSP", `${GOOD}\u00a0`, "the value has leading or trailing whitespace"],
    ["trailing U+2028", `${GOOD}\u2028`, "the value has leading or trailing whitespace"],
    ["inner CR LF (header injection)", "mq-live-abc\r\nX-Injected: yes", "the value contains CR or LF"],
    ["inner LF", "mq-live-abc\nmore", "the value contains CR or LF"],
    ["inner CR", "mq-live-abc\rmore", "the value contains CR or LF"],
    ["inner space", "mq-live abcdefgh", "the value contains spaces or tabs"],
    ["inner tab", "mq-live\tabcdefgh", "the value contains spaces or tabs"],
    ["NUL", "mq-live-\x00abcdefgh", "the value contains control bytes"],
    ["ESC", "mq-live-\x1b[31mabcdefgh", "the value contains control bytes"],
    ["DEL", "mq-live-\x7fabcdefgh", "the value contains control bytes"],
    ["non-ASCII letter", "mq-live-abcdéfgh", "the value contains non-ASCII characters"],
    ["inner NBSP", "mq-live\u00a0abcdefgh", "the value contains non-ASCII characters"],
    ["emoji", "mq-live-🔑abcdefgh", "the value contains non-ASCII characters"],
    ["replacement char (bad UTF-8)", "mq-live-\ufffdabcdefgh", "the value contains non-ASCII characters"],
    ["too short", "x".repeat(KEY_MIN_LENGTH - 1), `the value is shorter than ${KEY_MIN_LENGTH} characters`],
    ["too long", "y".repeat(KEY_MAX_LENGTH + 1), `the value is longer than ${KEY_MAX_LENGTH} characters`],
    ["very long", "z".repeat(10 * 1024 * 1024), `the value is longer than ${KEY_MAX_LENGTH} characters`],
  ];
  for (const [name, value, reason] of table) {
    const result = validateKey(value);
    t.same(result, { ok: false, reason }, name);
    if (typeof value === "string" && !result.ok) {
      const core = value.trim().slice(0, 12);
      if (core.length >= 4) t.notOk(result.reason.includes(core), `${name}: reason does not quote the value`);
    }
  }
  t.end();
});

void t.test("fingerprint is the first 8 hex digits of sha256", (t) => {
  t.equal(fingerprint("abc"), "ba7816bf");
  t.match(fingerprint(GOOD), /^[0-9a-f]{8}$/);
  t.not(fingerprint(GOOD), fingerprint(`${GOOD}x`));
  t.end();
});
