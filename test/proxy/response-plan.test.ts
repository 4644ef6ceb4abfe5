// The forwarder's response plans (src/proxy/response-plan.ts): holding a body and the headers of a
// replaced one. The plans themselves run end to end in test/e2e/ownership*.test.ts.
import type { IncomingMessage } from "node:http";
import { PassThrough } from "node:stream";
import t from "tap";
import { holdBody, replacedHeaders } from "../../src/proxy/response-plan.ts";

/** A readable that looks enough like an upstream response for holdBody. */
function response(): PassThrough & { complete: boolean } {
  return Object.assign(new PassThrough(), { complete: false });
}

void t.test("holdBody: complete, over the limit (paused, rest left for the relay), broken", async (t) => {
  let touched = 0;
  const a = response();
  const held = holdBody(a as unknown as IncomingMessage, 10, () => (touched += 1));
  a.write("abc");
  a.complete = true;
  a.end("def");
  t.same(await held, { body: Buffer.from("abcdef"), end: "complete" });
  t.equal(touched, 2, "every chunk counts as activity");

  const b = response();
  const over = holdBody(b as unknown as IncomingMessage, 4, () => {});
  b.write("abc");
  b.write("defgh");
  const result = await over;
  t.same([result.body.toString(), result.end], ["abcdefgh", "over_limit"]);
  t.ok(b.isPaused(), "paused for whoever relays the rest");
  t.equal(b.listenerCount("data"), 0, "its listeners removed");

  const c = response();
  const broken = holdBody(c as unknown as IncomingMessage, 100, () => {});
  c.write("par");
  await new Promise((r) => setImmediate(r));
  c.destroy();
  t.same(await broken, { body: Buffer.from("par"), end: "broken" });
});

void t.test("replacedHeaders: what described MythIQ's bytes goes, the new length and no-store come", async (t) => {
  const raw = [
    "Content-Type", "application/json; charset=utf-8",
    "Content-Length", "9999",
    "Content-Encoding", "gzip",
    "ETag", '"abc"',
    "Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT",
    "Cache-Control", "public, max-age=600",
    "Digest", "sha-256=x",
    "Set-Cookie", "a=b",
    "X-Upstream", "kept",
  ];
  const headers = replacedHeaders(raw, { "x-request-id": "r1", "access-control-allow-origin": "https://app.example.com" }, 42);
  t.same(headers, {
    "content-type": "application/json; charset=utf-8",
    "x-upstream": "kept",
    "x-request-id": "r1",
    "access-control-allow-origin": "https://app.example.com",
    "content-length": "42",
    "cache-control": "private, no-store",
  });
});
