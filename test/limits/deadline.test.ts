// The store's deadline does not time out an answer that arrived while the process was stalled: it
// waits for the event loop's poll phase (where socket data is read) before giving up.
import net from "node:net";
import t from "tap";
import { deadline } from "../../src/limits/deadline.ts";
import { startRedisServer, type RedisServer } from "../helpers/redis-server.ts";

let redis: RedisServer;
t.before(async () => {
  redis = await startRedisServer();
});
t.teardown(() => redis.close());

function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // a stalled event loop: a long GC, a loaded machine
  }
}

t.test("a reply that arrived during a stall longer than the deadline still wins", async (t) => {
  // Redis answers from its own process while this one is stalled.
  const socket = net.connect(redis.port, "127.0.0.1");
  await new Promise<void>((resolve) => socket.once("connect", resolve));
  t.teardown(() => socket.destroy());

  const reply = new Promise<string>((resolve) => socket.once("data", (d: Buffer) => resolve(d.toString())));
  const outcome = new Promise<string>((resolve) => {
    const cancel = deadline(20, () => resolve("timed out"));
    void reply.then((r) => {
      cancel();
      resolve(r);
    });
  });
  socket.write("PING\r\n");
  busy(150); // the reply arrives in the kernel meanwhile; the 20 ms timer is long overdue
  t.equal(await outcome, "+PONG\r\n");
});

t.test("without an answer it fires, and cancelling stops it", async (t) => {
  const fired: string[] = [];
  deadline(10, () => fired.push("a"));
  const cancel = deadline(10, () => fired.push("b"));
  cancel();
  await new Promise((r) => setTimeout(r, 40));
  // A stalled loop runs the 10 ms and 40 ms timers in one pass; the deadline's own setImmediate,
  // queued first, then runs before this one.
  await new Promise((r) => setImmediate(r));
  t.same(fired, ["a"]);
});
