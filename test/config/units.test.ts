import t from "tap";
import { durationHint, formatDuration, formatSize, parseDuration, parseSize, sizeHint } from "../../src/config/units.ts";

t.test("durations: accepted spellings and their milliseconds", async (t) => {
  const table: [string, number][] = [
    ["0s", 0],
    ["0ms", 0],
    ["1ms", 1],
    ["500ms", 500],
    ["30s", 30_000],
    ["5m", 300_000],
    ["24h", 86_400_000],
    ["180s", 180_000],
    ["999999999h", 999_999_999 * 3_600_000],
  ];
  for (const [text, ms] of table) t.equal(parseDuration(text), ms, text);
});

t.test("durations: refused spellings", async (t) => {
  for (const text of ["", "5", "5 m", "5M", "1d", "1.5s", ".5s", "1h30m", "05m", "-1s", "+1s", "5min", "5 minutes", "1000000000h", " 5m", "5m "]) {
    t.equal(parseDuration(text), undefined, JSON.stringify(text));
  }
});

t.test("durations: hints for the usual mistakes", async (t) => {
  t.match(durationHint("30"), /add a unit, e\.g\. 30s/);
  t.match(durationHint("2d"), /write 48h/);
  t.match(durationHint("1.5s"), /whole number/);
  t.match(durationHint("1h30m"), /one unit only/);
  t.match(durationHint("30 s"), /no space/);
  t.equal(durationHint("soon"), undefined);
});

t.test("sizes: accepted spellings and their bytes", async (t) => {
  const table: [string | number, number][] = [
    [0, 0],
    [1024, 1024],
    ["1024", 1024],
    ["512KiB", 512 * 1024],
    ["1MiB", 1024 * 1024],
    ["20MiB", 20 * 1024 * 1024],
    ["1GiB", 1024 ** 3],
  ];
  for (const [input, bytes] of table) t.equal(parseSize(input), bytes, String(input));
});

t.test("sizes: refused spellings", async (t) => {
  for (const input of ["", "1MB", "1mb", "1 MiB", "1mib", "1.5MiB", "1K", "1KB", "-1", "01KiB", "1e3", -1, 1.5, Number.NaN, Infinity]) {
    t.equal(parseSize(input), undefined, JSON.stringify(input));
  }
  t.equal(parseSize("999999999999999GiB"), undefined, "beyond a safe integer");
});

t.test("sizes: hints for decimal units", async (t) => {
  t.match(sizeHint("1MB"), /write MiB/);
  t.match(sizeHint("512kb"), /write KiB/);
  t.match(sizeHint("2G"), /write GiB/);
  t.match(sizeHint("1.5MiB"), /whole number/);
  t.match(sizeHint("1 mib"), /KiB, MiB, GiB/);
  t.equal(sizeHint("big"), undefined);
});

t.test("formatting for messages is the shortest exact unit", async (t) => {
  t.equal(formatDuration(0), "0s");
  t.equal(formatDuration(1500), "1500ms");
  t.equal(formatDuration(300_000), "5m");
  t.equal(formatDuration(3_600_000), "1h");
  t.equal(formatDuration(90_000), "90s");
  t.equal(formatSize(0), "0 bytes");
  t.equal(formatSize(1000), "1000 bytes");
  t.equal(formatSize(1024 * 1024), "1MiB");
  t.equal(formatSize(100 * 1024 * 1024), "100MiB");
  t.equal(formatSize(1536), "1536 bytes");
});
