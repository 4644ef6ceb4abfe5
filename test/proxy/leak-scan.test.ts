// Finding the key in upstream bytes (SPEC §4 step 9).
import * as zlib from "node:zlib";
import t from "tap";
import { contentCodings, createRollingScanner, decodeForScan, headersContain, MAX_DECODED_BYTES } from "../../src/proxy/leak-scan.ts";

const KEY = "sk-0123456789abcdef";
const needle = Buffer.from(KEY);

t.test("content codings", async (t) => {
  t.same(contentCodings(undefined), []);
  t.same(contentCodings("identity"), []);
  t.same(contentCodings("GZIP, identity ,br"), ["gzip", "br"]);
});

t.test("decodeForScan undoes codings, and refuses what it cannot vouch for", async (t) => {
  const text = Buffer.from(`error ${KEY}`);
  t.same(decodeForScan(text, []), text);
  t.same(decodeForScan(zlib.gzipSync(text), ["gzip"]), text);
  t.same(decodeForScan(zlib.deflateSync(text), ["deflate"]), text);
  t.same(decodeForScan(zlib.deflateRawSync(text), ["deflate"]), text);
  t.same(decodeForScan(zlib.brotliCompressSync(text), ["br"]), text);
  t.same(decodeForScan(zlib.zstdCompressSync(text), ["zstd"]), text);
  t.same(decodeForScan(zlib.brotliCompressSync(zlib.gzipSync(text)), ["gzip", "br"]), text, "undone in reverse order");
  const whole = zlib.gzipSync(Buffer.concat([text, Buffer.alloc(5000, "x")]));
  const truncated = decodeForScan(whole.subarray(0, whole.length - 10), ["gzip"]);
  t.ok(truncated?.includes(needle), "a truncated stream decodes as far as it goes");
  t.equal(decodeForScan(text, ["compress"]), undefined, "unknown coding");
  t.equal(decodeForScan(text, ["gzip"]), undefined, "corrupt data");
  t.equal(decodeForScan(text, ["identity-x", "gzip", "gzip", "gzip"]), undefined, "too many codings");
  const bomb = zlib.gzipSync(Buffer.alloc(MAX_DECODED_BYTES + 1));
  t.ok(bomb.length < 64 * 1024, "the bomb fits the hold limit");
  t.equal(decodeForScan(bomb, ["gzip"]), undefined, "output over the bound");
});

t.test("headersContain looks at names and values", async (t) => {
  t.ok(headersContain(["x-debug", `Bearer ${KEY}`], needle));
  t.ok(headersContain([`x-${KEY}`, "1"], needle));
  t.notOk(headersContain(["x-debug", "Bearer sk-0123456789abcde"], needle));
});

t.test("the rolling scanner never lets a byte of a key occurrence out", async (t) => {
  const text = `${"a".repeat(50)}${KEY}${"b".repeat(50)}`;
  // Every way of cutting the text into two or three chunks.
  for (let i = 0; i <= text.length; i++) {
    for (const j of [i, Math.min(text.length, i + 7)]) {
      const scanner = createRollingScanner(needle);
      let sent = "";
      let leak = false;
      for (const chunk of [text.slice(0, i), text.slice(i, j), text.slice(j)]) {
        const out = scanner.push(Buffer.from(chunk));
        if (out === "leak") {
          leak = true;
          break;
        }
        sent += out.toString();
      }
      // Everything before the key is "a": any other byte sent would be a byte of the key.
      if (!leak || /[^a]/.test(sent)) {
        t.fail(`cut at ${i}/${j}: leak=${leak} sent=${sent}`);
        return;
      }
    }
  }
  t.pass("detected at every cut, nothing of the key sent first");

  const clean = createRollingScanner(needle);
  const parts = ["sk-0123", "456789abcde", "-not-the-key", ""];
  let out = "";
  for (const part of parts) {
    const r = clean.push(Buffer.from(part));
    t.not(r, "leak");
    if (r !== "leak") out += r.toString();
  }
  out += clean.flush().toString();
  t.equal(out, parts.join(""), "a clean stream comes out whole, in order");
});
