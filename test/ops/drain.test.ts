// Stop (SPEC §8) as Kubernetes does it: a real `mythiq-proxy` process gets SIGTERM with requests
// and a Server-Sent Events stream in flight. /readyz turns 503 at once, new connections are
// refused, idle keep-alive connections are closed, what is in flight runs to completion, and the
// process exits 0. The deadline (`server.drain_timeout`) and a second signal force the exit.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t, { type Test } from "tap";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { request, startOpsProxy, upstreamRequests } from "../helpers/ops.ts";
import { connectRaw } from "../helpers/raw-http.ts";
import { configYaml, TEST_KEY, TOKEN } from "../helpers/proxy-harness.ts";
import { freePort } from "../helpers/free-port.ts";

const MAIN = fileURLToPath(new URL("../../src/main.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "mythiq-proxy-drain-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const GET = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`;


interface Proc {
  readonly child: ChildProcess;
  readonly port: number;
  readonly adminPort: number;
  readonly lines: Array<Record<string, unknown>>;
  waitFor(msg: string): Promise<Record<string, unknown>>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  signalledAt: number;
  kill(signal: NodeJS.Signals): void;
}

async function startProcess(t: Test, upstream: FakeUpstream, extra = ""): Promise<Proc> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = join(dir, `proxy-${port}.yaml`);
  writeFileSync(file, configYaml(upstream.url, extra).replace("port: 8080", `port: ${port}`).replace("port: 9090", `port: ${adminPort}`));
  const child = spawn(process.execPath, [MAIN, "--config", file], {
    cwd: ROOT,
    env: { PATH: process.env["PATH"], MYTHIQ_API_KEY: TEST_KEY },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const guard = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let buffered = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      lines.push(JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>);
      buffered = buffered.slice(nl + 1);
    }
    for (const wake of [...waiters]) wake();
  });
  child.stderr?.resume();
  const proc: Proc = {
    child,
    port,
    adminPort,
    lines,
    signalledAt: 0,
    waitFor: (msg) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const line = lines.find((l) => l["msg"] === msg);
          if (line !== undefined) {
            waiters.delete(check);
            resolve(line);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            waiters.delete(check);
            reject(new Error(`process exited before logging "${msg}"`));
          }
        };
        waiters.add(check);
        check();
      }),
    exited: new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        clearTimeout(guard);
        for (const wake of [...waiters]) wake();
        resolve({ code, signal, ms: performance.now() - proc.signalledAt });
      });
    }),
    kill(signal) {
      proc.signalledAt = performance.now();
      child.kill(signal);
    },
  };
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  await proc.waitFor("key loaded");
  return proc;
}

function refused(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("error", (err: Error & { code?: string }) => resolve(err.code ?? "error"));
  });
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

t.test("SIGTERM: not ready at once, no new connections, idle ones closed, requests and streams finish, exit 0", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const proc = await startProcess(t, upstream);

  // An idle keep-alive connection: one request answered, then nothing.
  const idle = await connectRaw(proc.port, 15_000);
  idle.write(GET("/v1/models"));
  await idle.until((raw) => raw.includes('"data"'));
  await upstreamRequests(upstream, 1);

  // A slow response, half sent, and an SSE stream, one event in.
  const slowGate = gate();
  const sseGate = gate();
  upstream.reply(
    { type: "respond", status: 200, headers: { "content-type": "text/plain" }, body: ["first half,", { until: slowGate.promise }, " second half"] },
    { type: "sse", events: [{ data: "one" }, { data: "two", until: sseGate.promise }, { data: "[DONE]" }] },
  );
  const slow = await connectRaw(proc.port, 15_000);
  slow.write(GET("/v1/models"));
  await slow.until((raw) => raw.includes("first half,"));
  const sse = await connectRaw(proc.port, 15_000);
  sse.write(GET("/v1/generations?limit=1"));
  await sse.until((raw) => raw.includes("data: one"));

  proc.kill("SIGTERM");
  const draining = await proc.waitFor("draining");
  t.equal(draining["in_flight"], 2, "two requests in flight when the drain began");

  const ready = await request(proc.adminPort, { path: "/readyz" });
  t.equal(ready.status, 503, "/readyz is 503 at once");
  t.same(JSON.parse(ready.body), { ready: false, reasons: ["draining"] });
  t.equal((await request(proc.adminPort, { path: "/healthz" })).status, 200, "still alive");
  t.equal(await refused(proc.port), "ECONNREFUSED", "new connections are refused");
  await idle.closed;
  t.ok(idle.serverClosed(), "the idle keep-alive connection was closed by the proxy");

  slowGate.open();
  sseGate.open();
  const slowRaw = await slow.closed;
  t.match(slowRaw, /^HTTP\/1\.1 200 /);
  t.ok(slowRaw.endsWith("first half, second half"), "the slow response arrived whole");
  t.ok(slow.serverClosed(), "its connection closed after it: no further request on it");
  const sseRaw = await sse.closed;
  t.match(sseRaw, /data: one[\s\S]*data: two[\s\S]*data: \[DONE\]/, "every event of the stream arrived");
  t.ok(sseRaw.endsWith("0\r\n\r\n"), "the stream ended properly (last chunk), not cut");

  const exit = await proc.exited;
  t.equal(exit.code, 0, "exit 0");
  const stopped = proc.lines.find((l) => l["msg"] === "stopped");
  t.equal(stopped?.["cut"], 0, "nothing was cut");
  t.equal(upstream.requests.length, 3, "upstream saw only the three proxied requests");
  t.notOk(proc.lines.some((l) => JSON.stringify(l).includes(TEST_KEY)));
});

t.test("the drain deadline cuts what still runs and exits 0", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const proc = await startProcess(t, upstream, "server: { drain_timeout: 1s }\n");
  const never = gate();
  upstream.reply({ type: "sse", events: [{ data: "one" }, { data: "two", until: never.promise }] });
  const sse = await connectRaw(proc.port, 15_000);
  sse.write(GET("/v1/generations?limit=1"));
  await sse.until((raw) => raw.includes("data: one"));

  proc.kill("SIGTERM");
  const exit = await proc.exited;
  t.equal(exit.code, 0);
  t.ok(exit.ms >= 1_000 && exit.ms < 6_000, `exited at the deadline (${Math.round(exit.ms)} ms)`);
  const warned = proc.lines.find((l) => l["msg"] === "drain_timeout reached, cutting the requests still in flight");
  t.equal(warned?.["in_flight"], 1);
  t.equal(proc.lines.find((l) => l["msg"] === "stopped")?.["cut"], 1);
  const raw = await sse.closed;
  t.notOk(raw.endsWith("0\r\n\r\n"), "the client sees a cut stream, never a clean end");
  never.open();
});

t.test("a second signal exits at once", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const proc = await startProcess(t, upstream, "server: { drain_timeout: 60s }\n");
  const never = gate();
  upstream.reply({ type: "sse", events: [{ data: "one" }, { data: "two", until: never.promise }] });
  const sse = await connectRaw(proc.port, 15_000);
  sse.write(GET("/v1/generations?limit=1"));
  await sse.until((raw) => raw.includes("data: one"));

  proc.kill("SIGINT");
  await proc.waitFor("draining");
  proc.kill("SIGTERM");
  const exit = await proc.exited;
  t.equal(exit.code, 0);
  t.ok(exit.ms < 5_000, `exited without waiting for the 60 s drain (${Math.round(exit.ms)} ms)`);
  t.ok(proc.lines.some((l) => l["msg"] === "second signal, exiting without waiting for the drain"));
  await sse.closed;
  never.open();
});

t.test("in-process stop(): a request that ends in time is kept, one past the deadline is cut", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const proxy = await startOpsProxy({ yaml: configYaml(upstream.url, "server: { drain_timeout: 1s }\n"), env: { MYTHIQ_API_KEY: TEST_KEY } });
  await proxy.waitForLog((l) => l["msg"] === "key loaded");
  const quick = gate();
  const never = gate();
  upstream.reply(
    { type: "respond", status: 200, body: ["a", { until: quick.promise }, "b"] },
    { type: "sse", events: [{ data: "one" }, { data: "two", until: never.promise }] },
  );
  const first = await connectRaw(proxy.port);
  first.write(GET("/v1/models"));
  await first.until((raw) => raw.endsWith("a"));
  const second = await connectRaw(proxy.port);
  second.write(GET("/v1/generations?limit=1"));
  await second.until((raw) => raw.includes("data: one"));
  t.equal(proxy.proxy.inflight(), 2);

  const stopped = proxy.proxy.stop("test");
  t.equal(proxy.proxy.stop("again"), stopped, "a second stop() shares the first");
  t.equal(await proxy.proxy.reload("SIGHUP"), "unchanged", "no reload while draining");
  quick.open();
  t.ok((await first.closed).endsWith("ab"), "the request that ended in time is whole");
  await stopped;
  t.equal(proxy.proxy.inflight(), 0);
  t.notOk((await second.closed).endsWith("0\r\n\r\n"), "the stream past the deadline was cut");
  t.match(proxy.logs.find((l) => l["msg"] === "stopped"), { cut: 1 });
  never.open();
  await proxy.close();
});
