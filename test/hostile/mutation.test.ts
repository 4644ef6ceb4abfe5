// A random-mutation pass over the hostile requests: a few thousand byte-level mutations of allowed
// and refused requests, sent over raw sockets to the whole proxy. Afterwards the process is alive
// and serving, its heap is back near the baseline and no connection is left open; during the pass
// no response carried a byte of the key, every local refusal was SPEC's JSON, and everything that
// reached the fake MythIQ was a request the policy allows — judged independently of the proxy's own
// parsers (JSON.parse, which keeps the last duplicate key, and busboy for multipart).
import { Busboy } from "@fastify/busboy";
import net from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import t from "tap";
import { isReason } from "../../src/errors.ts";
import type { RecordedRequest } from "../helpers/fake-upstream.ts";
import { ALLOWED_ORIGIN, auth, jsonPost, leaksKey, req, sendFrom, startHostileEnv, TEST_KEY, UNTRUSTED, type HostileEnv } from "../helpers/hostile.ts";
import { finalResponses, parseResponses } from "../helpers/raw-http.ts";

/** Mutated requests sent. */
const ROUNDS = Number(process.env["MUTATION_ROUNDS"] ?? 3000);
/** Requests in flight at once. */
const CONCURRENCY = 32;
/** Silence after which a request that still waits for bytes is half-closed (the proxy may then drop it). */
const IDLE_MS = 400;
/** Fixed unless overridden, so a failure can be replayed. */
const SEED = Number(process.env["MUTATION_SEED"] ?? 20240611);

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

let env: HostileEnv;
t.before(async () => {
  env = await startHostileEnv();
});
t.teardown(() => env.close());

/** mulberry32: small, fast, seedable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const B = "----mutBoundary";
const form =
  `--${B}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\r\n` +
  `--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\nstability/sdxl\r\n--${B}--\r\n`;

async function seeds(): Promise<Buffer[]> {
  const session = await env.session();
  const list: Array<string | Buffer> = [
    req("GET", "/v1/models", [auth]),
    req("GET", "/v1/models/stability-sdxl", [auth, "Accept: application/json"]),
    req("GET", "/v1/generations?limit=10&after=abc", [auth]),
    jsonPost('{"model":"stability/sdxl","prompt":"a lighthouse","n":2}'),
    jsonPost('{"model":"openai/gpt-image-1","prompt":"x","size":"1024x1024"}'),
    jsonPost(Buffer.from(form, "latin1"), [auth, `Content-Type: multipart/form-data; boundary=${B}`], "/v1/images/edits"),
    req("POST", "/v1/images/generations", [auth, "Content-Type: application/json", "Transfer-Encoding: chunked"], `1a\r\n{"model":"stability/sdxl"}\r\n0\r\n\r\n`),
    req("POST", "/v1/images/generations", [auth, "Content-Type: application/json", "Expect: 100-continue", "Content-Length: 26"], '{"model":"stability/sdxl"}'),
    req("GET", "/v1/models", [`Cookie: session=${session}`, `Origin: ${ALLOWED_ORIGIN}`]),
    req("GET", "/v1/models", [`Authorization: Bearer ${session}`]),
    req("OPTIONS", "/v1/images/generations", [`Origin: ${ALLOWED_ORIGIN}`, "Access-Control-Request-Method: POST", "Access-Control-Request-Headers: content-type"]),
    req("GET", "/v1/models", [`Authorization: Bearer tok-internal-99887766554433`, "X-Forwarded-For: 10.1.2.3"]),
    jsonPost('{"model":"openai/dall-e-3","model":"stability/sdxl"}'),
    req("GET", "/v1/models/../admin", [auth]),
    req("GET", "/v1/models", [auth, "Connection: keep-alive, authorization"]),
  ];
  return list.map((s) => (typeof s === "string" ? Buffer.from(s, "latin1") : s));
}

const INTERESTING = Buffer.from("\r\n\x00 :;,%./\\\"'#?&=\t{}[]-_\x7f\xff0", "latin1");

function mutate(input: Buffer, rand: () => number): Buffer {
  const pick = (n: number) => Math.floor(rand() * n);
  let out = Buffer.from(input);
  const steps = 1 + pick(3);
  for (let s = 0; s < steps; s++) {
    const at = pick(out.length + 1);
    switch (pick(9)) {
      case 0: // flip a bit
        if (out.length > 0) out[Math.min(at, out.length - 1)]! ^= 1 << pick(8);
        break;
      case 1: // insert an interesting byte
        out = Buffer.concat([out.subarray(0, at), Buffer.of(INTERESTING[pick(INTERESTING.length)]!), out.subarray(at)]);
        break;
      case 2: // delete a run
        out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + pick(8))]);
        break;
      case 3: // duplicate a run
        out = Buffer.concat([out.subarray(0, at), out.subarray(at, at + 1 + pick(40)), out.subarray(at)]);
        break;
      case 4: // truncate
        out = out.subarray(0, at);
        break;
      case 5: { // duplicate a whole line
        const lines = out.toString("latin1").split("\r\n");
        const i = pick(lines.length);
        lines.splice(i, 0, lines[i] ?? "");
        out = Buffer.from(lines.join("\r\n"), "latin1");
        break;
      }
      case 6: { // swap two lines
        const lines = out.toString("latin1").split("\r\n");
        const i = pick(lines.length);
        const j = pick(lines.length);
        [lines[i], lines[j]] = [lines[j] ?? "", lines[i] ?? ""];
        out = Buffer.from(lines.join("\r\n"), "latin1");
        break;
      }
      case 7: // random byte
        if (out.length > 0) out[Math.min(at, out.length - 1)] = pick(256);
        break;
      case 8: { // change case of a run
        const end = Math.min(out.length, at + 1 + pick(10));
        const run = out.subarray(at, end).toString("latin1");
        out = Buffer.concat([out.subarray(0, at), Buffer.from(rand() < 0.5 ? run.toUpperCase() : run.toLowerCase(), "latin1"), out.subarray(end)]);
        break;
      }
    }
  }
  return out;
}

/**
 * Sends `data` and resolves with what came back: once a final response is complete, or the server
 * closes. A request still waiting for bytes that will never come (a mutated length, a cut head) is
 * half-closed after IDLE_MS of silence, and given up on after 3 s.
 */
function sendAndEnd(port: number, data: Buffer): Promise<{ raw: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    let raw = "";
    let settled = false;
    const done = (timedOut: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(idle);
      socket.destroy();
      resolve({ raw, timedOut });
    };
    const timer = setTimeout(() => done(true), 3000);
    let idle = setTimeout(() => socket.end(), IDLE_MS);
    socket.on("connect", () => socket.write(data));
    socket.on("data", (chunk: Buffer) => {
      raw += chunk.toString("latin1");
      clearTimeout(idle);
      idle = setTimeout(() => socket.end(), IDLE_MS);
      if (finalResponses(raw).length > 0) done(false);
    });
    socket.on("error", () => done(false));
    socket.on("close", () => done(false));
  });
}

const ALLOWED_ROUTES = [/^GET \/v1\/models$/, /^GET \/v1\/models\/[^/?]+$/, /^POST \/v1\/images\/generations$/, /^POST \/v1\/images\/edits$/, /^GET \/v1\/generations(\?(limit|after)=[^&]*(&(limit|after)=[^&]*)*)?$/];
const ALLOWED_MODELS = new Set(["stability/sdxl", "openai/gpt-image-1"]);

/** The models another parser reads from a multipart body: busboy, which is lenient where ours is strict. */
function busboyModels(got: RecordedRequest): Promise<string[]> {
  return new Promise((resolve) => {
    const models: string[] = [];
    try {
      const bb = Busboy({ headers: { "content-type": got.headers["content-type"] ?? "" } });
      bb.on("field", (name, value) => {
        if (name.toLowerCase() === "model") models.push(value);
      });
      bb.on("file", (name, stream) => {
        if (name.toLowerCase() === "model") models.push("<file>");
        stream.resume();
      });
      bb.on("error", () => resolve(models));
      bb.on("finish", () => resolve(models));
      bb.end(got.body);
    } catch {
      resolve(models);
    }
  });
}

/** Problems with a request the upstream received, judged without the proxy's parsers. */
async function upstreamProblems(got: RecordedRequest): Promise<string[]> {
  const problems: string[] = [];
  const line = `${got.method} ${got.target}`;
  if (!ALLOWED_ROUTES.some((route) => route.test(line))) problems.push(`route ${JSON.stringify(line)}`);
  if (got.count("authorization") !== 1 || got.headers["authorization"] !== `Bearer ${TEST_KEY}`) problems.push("authorization is not exactly the key");
  for (const name of ["cookie", "x-api-key", "proxy-authorization", "x-forwarded-for", "x-real-ip", "forwarded", "expect", "te", "trailer", "upgrade"]) {
    if (got.count(name) > 0) problems.push(`${name} forwarded`);
  }
  if (got.method === "POST") {
    await got.ended;
    const type = (got.headers["content-type"] ?? "").toLowerCase();
    if (type.startsWith("application/json")) {
      let model: unknown;
      try {
        model = (JSON.parse(got.body.toString("utf8")) as { model?: unknown }).model;
      } catch {
        model = "<unparseable>";
      }
      if (typeof model !== "string" || !ALLOWED_MODELS.has(model)) problems.push(`JSON model ${JSON.stringify(model)}`);
    } else if (type.startsWith("multipart/form-data")) {
      const models = await busboyModels(got);
      if (models.length !== 1 || !ALLOWED_MODELS.has(models[0]!)) problems.push(`multipart models ${JSON.stringify(models)}`);
    } else {
      problems.push(`POST body of type ${JSON.stringify(type)}`);
    }
  }
  return problems;
}

function heapMiB(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

/**
 * Open TCP sockets whose local port is `port` (the proxy's side of client connections), read from
 * Node's handle list: the proxy runs in this process. Undocumented but stable; tests only.
 */
function openOn(port: number): number {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((h) => h instanceof net.Socket && !h.destroyed && h.localPort === port).length;
}

async function settle(port: number): Promise<number> {
  // Closed connections leave the list on the next turns of the loop.
  for (let i = 0; i < 100 && openOn(port) > 0; i++) await new Promise((r) => setTimeout(r, 20));
  return openOn(port);
}

void t.test(`${ROUNDS} mutated requests (seed ${SEED})`, async (t) => {
  const base = await seeds();
  const rand = prng(SEED);
  // Warm up every code path (and the JWKS cache) with the unmutated seeds, then measure.
  for (const seed of base) await sendAndEnd(env.proxy.port, seed);
  for (let i = 0; i < 3; i++) for (const seed of base) await sendAndEnd(env.proxy.port, seed);
  t.equal(await settle(env.proxy.port), 0, "warm-up connections closed");
  env.proxy.logs.length = 0;
  const heapBefore = heapMiB();
  const upstreamBefore = env.upstream.requests.length;

  const inputs = Array.from({ length: ROUNDS }, () => mutate(base[Math.floor(rand() * base.length)]!, rand));
  const stats = { answered: 0, closedSilently: 0, timedOut: 0, statuses: new Map<number, number>() };
  const failures: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < inputs.length) {
      const index = next++;
      const input = inputs[index]!;
      const { raw, timedOut } = await sendAndEnd(env.proxy.port, input);
      if (timedOut) stats.timedOut++;
      if (leaksKey(raw)) failures.push(`#${index}: key bytes in the response`);
      const { responses } = parseResponses(raw);
      if (responses.length === 0) stats.closedSilently++;
      else stats.answered++;
      for (const res of responses) {
        stats.statuses.set(res.status, (stats.statuses.get(res.status) ?? 0) + 1);
        // The fake MythIQ only ever answers 200: everything else was the proxy's own reply.
        if (res.status >= 400) {
          let reason: unknown;
          try {
            reason = (JSON.parse(res.body) as { reason?: unknown }).reason;
          } catch {
            reason = undefined;
          }
          if (typeof reason !== "string" || !isReason(reason)) failures.push(`#${index}: ${res.status} without a SPEC reason: ${JSON.stringify(res.body.slice(0, 80))}`);
        }
      }
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsed = Date.now() - started;

  const arrived = env.upstream.requests.slice(upstreamBefore);
  for (const got of arrived) {
    for (const problem of await upstreamProblems(got)) failures.push(`upstream #${got.index}: ${problem}`);
  }

  t.same(failures.slice(0, 20), [], "no leaks, no malformed refusals, nothing disallowed upstream");
  t.equal(stats.timedOut, 0, "every mutated request was answered or closed within 3 s");
  t.ok(stats.answered > ROUNDS / 2, "most mutated requests got an answer");

  // Alive: a plain request still works, from another address too.
  const after = await sendFrom(env.proxy.port, req("GET", "/v1/models", [auth]), { from: UNTRUSTED });
  t.equal(after.responses[0]?.status, 200, "the proxy still serves");

  t.equal(await settle(env.proxy.port), 0, "no client connection left open on the listen port");
  env.proxy.logs.length = 0;
  const heapAfter = heapMiB();
  t.ok(heapAfter - heapBefore < 24, `heap back near its baseline: ${heapBefore.toFixed(1)} MiB before, ${heapAfter.toFixed(1)} MiB after`);

  t.comment(
    `mutation pass: ${ROUNDS} requests in ${elapsed} ms, ${stats.answered} answered, ${stats.closedSilently} closed without a response, ` +
      `${arrived.length} forwarded; statuses ${JSON.stringify(Object.fromEntries([...stats.statuses].sort((a, b) => a[0] - b[0])))}; ` +
      `heap ${heapBefore.toFixed(1)} → ${heapAfter.toFixed(1)} MiB`,
  );
});
