// Load shedding on event-loop lag: the monitor's thresholds and hysteresis, then the whole proxy
// refusing new requests with 503 `overloaded` + Retry-After while its loop is kept busy, sending
// nothing upstream for them, and recovering by itself once the load is gone.
import t from "tap";
import { createLagMonitor } from "../../src/http/overload.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { request, startOpsProxy } from "../helpers/ops.ts";
import { configYaml, TEST_KEY, TOKEN } from "../helpers/proxy-harness.ts";

const AUTH = { authorization: `Bearer ${TOKEN}` };

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin: the event loop is blocked
  }
}

/** Blocks the loop for `blockMs` out of every `blockMs + 5` ms until stopped. */
function lagger(blockMs: number): { stop(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const step = (): void => {
    busy(blockMs);
    timer = setTimeout(step, 5);
  };
  timer = setTimeout(step, 5);
  return { stop: () => clearTimeout(timer) };
}

t.test("the monitor sheds on lasting lag, not on one pause, and recovers by itself", async (t) => {
  const changes: Array<[boolean, number]> = [];
  let wake: (() => void) | undefined;
  const monitor = createLagMonitor({
    // Thresholds far above the lag a loaded two-core machine adds by itself (tens of ms).
    interval: 20,
    shedAbove: 200,
    recoverBelow: 60,
    onChange: (shedding, lag) => {
      changes.push([shedding, lag]);
      wake?.();
    },
  });
  t.teardown(() => monitor.close());
  // The monitor's timer never keeps a process alive: this one does, while the test waits on it.
  const keepAlive = setInterval(() => undefined, 1_000);
  t.teardown(() => clearInterval(keepAlive));
  const changed = (): Promise<void> => new Promise((resolve) => (wake = resolve));

  t.equal(monitor.shedSeconds(), undefined, "idle: nothing shed");
  busy(500);
  t.ok((monitor.shedSeconds() ?? 0) >= 1, "stuck right now (timer overdue by more than 2 x shedAbove): shed");
  // A few samples later the pause is history: one 500 ms pause smooths to about 145, under shedAbove.
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(monitor.shedding(), false, "one pause does not switch shedding on");
  t.equal(monitor.shedSeconds(), undefined, "and nothing is shed once it is over");

  const load = lagger(300);
  await changed();
  t.same(changes.at(-1)?.[0], true, "lasting lag switches shedding on");
  t.ok(monitor.lagMs() > 200);
  const seconds = monitor.shedSeconds();
  t.ok(seconds !== undefined && seconds >= 1 && seconds <= 30, `Retry-After ${seconds} s`);

  load.stop();
  await changed();
  t.same(changes.at(-1)?.[0], false, "recovers once the lag is gone");
  t.equal(monitor.shedSeconds(), undefined);
  t.equal(changes.length, 2, "no flapping");

  monitor.close();
  busy(500);
  t.equal(monitor.shedSeconds(), undefined, "a closed monitor sheds nothing");
});

t.test("the proxy answers 503 overloaded while its loop lags, forwards nothing, and recovers", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const proxy = await startOpsProxy({
    yaml: configYaml(upstream.url),
    env: { MYTHIQ_API_KEY: TEST_KEY },
    overload: { interval: 20, shedAbove: 100, recoverBelow: 40 },
  });
  t.teardown(() => proxy.close());
  await proxy.waitForLog((l) => l["msg"] === "key loaded");
  t.equal((await request(proxy.port, { path: "/v1/models", headers: AUTH })).status, 200);
  const forwarded = upstream.requests.length;

  const load = lagger(150);
  await proxy.waitForLog((l) => l["msg"] === "event loop lagging: shedding new requests (503 overloaded)");
  const shed = await request(proxy.port, { path: "/v1/models", headers: AUTH });
  t.equal(shed.status, 503);
  t.match(JSON.parse(shed.body), { success: false, code: "service_unavailable", reason: "overloaded" });
  t.ok(Number(shed.headers["retry-after"]) >= 1, "with Retry-After");
  t.equal(shed.headers["connection"], "close", "and the connection is not kept");
  t.equal(upstream.requests.length, forwarded, "nothing went upstream");
  t.ok(((await proxy.metric("mythiq_proxy_denied_total", { reason: "overloaded" })) ?? 0) >= 1);

  load.stop();
  await proxy.waitForLog((l) => l["msg"] === "event loop caught up: accepting requests again");
  const after = await request(proxy.port, { path: "/v1/models", headers: AUTH });
  t.equal(after.status, 200, "recovered by itself");
});
