import t from "tap";
import { backoffDelay, jitter } from "../../src/keys/backoff.ts";

const mid = () => 0.5;

void t.test("backoff doubles from 1 s and is capped at the interval", (t) => {
  const delays = [1, 2, 3, 4, 5, 6, 7, 8, 100, 10_000].map((n) => backoffDelay(n, 60_000, mid));
  t.same(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]);
  t.end();
});

void t.test("an interval below 1 s caps the first delay too", (t) => {
  t.equal(backoffDelay(1, 500, mid), 500);
  t.equal(backoffDelay(0, 500, mid), 500, "a zero failure count is treated as the first");
  t.end();
});

void t.test("jitter stays within ±10 %", (t) => {
  t.equal(jitter(1_000, () => 0), 900);
  t.equal(jitter(1_000, () => 0.5), 1_000);
  t.ok(jitter(1_000, () => 0.9999999) <= 1_100);
  for (let i = 0; i < 1_000; i++) {
    const d = jitter(300_000, Math.random);
    if (d < 270_000 || d > 330_000) t.fail(`out of bounds: ${d}`);
  }
  t.equal(backoffDelay(3, 60_000, () => 0), 3_600, "backoff is jittered");
  t.equal(backoffDelay(1, 1, () => 0), 1, "never below 1 ms");
  t.end();
});
