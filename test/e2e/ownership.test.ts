// Ownership behind one shared key (README "Ownership"), end to end: the running proxy in front of a
// fake MythIQ that keeps one account's media library (test/helpers/fake-mythiq-media.ts), callers
// with session JWTs. What one user creates, another can neither list, read nor complete; a create
// response that cannot be recorded still reaches its creator; ids that do not belong to the caller
// never reach MythIQ; no answer carries a byte of the key.
import t, { type Test } from "tap";
import { loadConfigFile } from "../../src/config/load.ts";
import { createSessionIssuer, type SessionIssuer } from "../../src/policy/sessions.ts";
import { gzipSync } from "node:zlib";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { send, type ClientResponse } from "../helpers/forward-harness.ts";
import { configHead, startTestProxy, TEST_KEY, TOKEN, TOKEN_HASH, waitReady, type TestProxy } from "../helpers/proxy-harness.ts";

const SESSION_SECRET = "ownership-hs256-secret-0123456789abcdef";
const env = { MYTHIQ_API_KEY: TEST_KEY, SESSION_SECRET };

function yaml(upstreamUrl: string, options: { ttl?: string } = {}): string {
  return `${configHead(upstreamUrl)}sessions:
  jwt: { issuer: https://auth.test, audience: mythiq-proxy, secret: { env: SESSION_SECRET }, algorithms: [HS256], client_claim: client }
clients:
  - id: web
    auth: { jwt: true }
    routes: &media
      - POST /v1/images/generations
      - POST /v1/videos/generations
      - POST /v1/media/upload
      - "GET /v1/media?limit&page&media&search"
      - GET /v1/media/{id}
      - POST /v1/media/{id}
    max_body: 16KiB
  - id: backend
    auth: { tokens: ["${TOKEN_HASH}"] }
    routes: *media
    max_body: 16KiB
ownership:
  media:
    ttl: ${options.ttl ?? "720h"}
    create:
      - { route: POST /v1/images/generations, id: "data[].id" }
      - { route: POST /v1/videos/generations, id: result.id }
      - { route: POST /v1/media/upload, id: result.id }
    use:
      - { route: "GET /v1/media/{id}" }
      - { route: "POST /v1/media/{id}" }
    list:
      - { route: GET /v1/media, items: result.medias, id: id, count: result.total }
`;
}

interface Started {
  readonly proxy: TestProxy;
  readonly upstream: FakeUpstream;
  readonly issuer: SessionIssuer;
}

async function start(t: Test, options: { ttl?: string } = {}): Promise<Started> {
  const upstream = await startFakeUpstream();
  upstream.fallback = { type: "mythiq" };
  const proxy = await startTestProxy({ yaml: yaml(upstream.url, options), env: { ...env }, watch: false, overload: false });
  t.teardown(async () => {
    await proxy.close();
    await upstream.close();
  });
  await waitReady(proxy);
  const loaded = await loadConfigFile(proxy.configFile);
  if (!loaded.ok) throw new Error("config refused");
  return { proxy, upstream, issuer: await createSessionIssuer(loaded.config, env) };
}

type Json = Record<string, unknown>;
interface Answer extends ClientResponse {
  readonly json: Json;
  /** Requests MythIQ received for this call. */
  readonly arrived: number;
}

/** One call as `who` (a session JWT or the backend's token); records what reached the fake. */
async function call(s: Started, who: string, method: string, path: string, json?: unknown): Promise<Answer> {
  const before = s.upstream.requests.length;
  const body = json === undefined ? undefined : JSON.stringify(json);
  const res = await send(s.proxy.port, {
    method,
    path,
    headers: { authorization: `Bearer ${who}`, ...(body === undefined ? {} : { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) }) },
    ...(body === undefined ? {} : { body }),
  });
  let parsed: Json = {};
  try {
    parsed = JSON.parse(res.body.toString("utf8")) as Json;
  } catch {
    // Not JSON: the caller looks at `body`.
  }
  return { ...res, json: parsed, arrived: s.upstream.requests.length - before };
}

function mediaOf(answer: Answer): Json[] {
  return ((answer.json["result"] as Json | undefined)?.["medias"] as Json[] | undefined) ?? [];
}
function totalOf(answer: Answer): unknown {
  return (answer.json["result"] as Json | undefined)?.["total"];
}

async function audit(proxy: TestProxy, res: ClientResponse): Promise<Record<string, unknown>> {
  const id = res.headers["x-request-id"];
  return proxy.waitForLog((l) => l["request_id"] === id && "status" in l, 2000);
}

void t.test("two users behind one key: each lists, reads and completes only their own media", async (t) => {
  const s = await start(t);
  const alice = await s.issuer.issue({ client: "web", sub: "alice" });
  const bob = await s.issuer.issue({ client: "web", sub: "bob" });

  // Something made on the account outside the proxy (another app, the dashboard): nobody's here.
  s.upstream.media.answer("POST", "/v1/images/generations", Buffer.from(JSON.stringify({ prompt: "made elsewhere" })));

  const images = await call(s, alice, "POST", "/v1/images/generations", { model: "stability/sdxl", prompt: "alice's fox", n: 2 });
  t.equal(images.status, 200, "alice generates two images");
  const imageIds = (images.json["data"] as Json[]).map((d) => String(d["id"]));
  t.equal(imageIds.length, 2);
  const video = await call(s, alice, "POST", "/v1/videos/generations", { model: "mythiq/video", prompt: "alice's river" });
  const videoId = String((video.json["result"] as Json)["id"]);
  const upload = await call(s, alice, "POST", "/v1/media/upload", { filename: "cat.png" });
  const uploadId = String((upload.json["result"] as Json)["id"]);
  const bobs = await call(s, bob, "POST", "/v1/images/generations", { model: "stability/sdxl", prompt: "bob's owl" });
  const bobId = String((bobs.json["data"] as Json[])[0]!["id"]);
  const aliceIds = [...imageIds, videoId, uploadId];
  t.equal(s.upstream.media.items.length, 6, "MythIQ holds six items on the one account");

  const bobList = await call(s, bob, "GET", "/v1/media?limit=50");
  t.equal(bobList.status, 200);
  t.same(mediaOf(bobList).map((m) => m["id"]), [bobId], "bob lists only his own item");
  t.equal(totalOf(bobList), 1, "the total counts what bob sees");
  t.notOk(bobList.body.toString().includes("alice"), "no trace of alice's prompts");
  t.equal(bobList.json["success"], true, "MythIQ's shape is kept");
  t.equal(bobList.headers["cache-control"], "private, no-store", "a filtered list is never cached for someone else");
  t.equal(bobList.headers["content-length"], String(bobList.body.length), "the length is the filtered body's");

  for (const [method, path] of [["GET", `/v1/media/${imageIds[0]}`], ["GET", `/v1/media/${videoId}`], ["POST", `/v1/media/${uploadId}`]] as const) {
    const probe = await call(s, bob, method, path, method === "POST" ? {} : undefined);
    t.equal(probe.status, 404, `bob: ${method} on alice's id is 404`);
    t.same(probe.json, { success: false, message: "Not found", code: "not_found_error", reason: "not_found" });
    t.equal(probe.arrived, 0, "MythIQ received nothing");
  }
  const never = await call(s, bob, "GET", "/v1/media/med_000000000000");
  t.same([never.status, never.json["reason"]], [404, "not_found"], "an id that exists nowhere answers the same: ids cannot be probed");

  const aliceList = await call(s, alice, "GET", "/v1/media?limit=50");
  t.same(new Set(mediaOf(aliceList).map((m) => m["id"])), new Set(aliceIds), "alice lists her four items");
  t.equal(totalOf(aliceList), 4, "with total matching");
  const videos = await call(s, alice, "GET", "/v1/media?media=video&search=river");
  t.equal(s.upstream.requests.at(-1)?.target, "/v1/media?media=video&search=river", "query filters pass through unchanged");
  t.same(mediaOf(videos).map((m) => m["id"]), [videoId]);
  t.equal(totalOf(videos), 1);

  const read = await call(s, alice, "GET", `/v1/media/${imageIds[1]}`);
  t.same([read.status, (read.json["result"] as Json)["id"]], [200, imageIds[1]], "alice reads her image");
  const completed = await call(s, alice, "POST", `/v1/media/${uploadId}`, {});
  t.same([completed.status, (completed.json["result"] as Json)["status"]], [200, "ready"], "alice completes her upload");

  // A static-token caller has no subject: the client owns what it creates.
  const made = await call(s, TOKEN, "POST", "/v1/images/generations", { prompt: "backend job" });
  const backendId = String((made.json["data"] as Json[])[0]!["id"]);
  t.same(mediaOf(await call(s, TOKEN, "GET", "/v1/media")).map((m) => m["id"]), [backendId], "the backend lists only its own");
  t.equal((await call(s, alice, "GET", `/v1/media/${backendId}`)).status, 404, "and a user cannot read it");
  t.equal((await call(s, TOKEN, "GET", `/v1/media/${bobId}`)).status, 404, "nor the backend a user's");

  t.equal(await s.proxy.metric("mythiq_proxy_ownership_recorded_total", { kind: "media" }), 6, "six ids recorded");
  t.equal(await s.proxy.metric("mythiq_proxy_ownership_refused_total", { kind: "media", client: "web" }), 5, "five use requests refused");
  t.equal(await s.proxy.metric("mythiq_proxy_ownership_refused_total", { kind: "media", client: "backend" }), 1);
  t.equal(await s.proxy.metric("mythiq_proxy_ownership_filtered_total", { kind: "media", client: "web" }), 5 + 2, "withheld items counted (bob's list, then alice's)");

  t.match(await audit(s.proxy, images), { status: 200, ownership: { kind: "media", decision: "recorded", items: 2 } }, "the audit line says what was recorded");
  t.match(await audit(s.proxy, bobList), { ownership: { kind: "media", decision: "filtered", items: 1, withheld: 5 } });
  t.match(await audit(s.proxy, never), { status: 404, reason: "not_found", ownership: { kind: "media", decision: "refused" } });
  t.match(await audit(s.proxy, read), { status: 200, ownership: { kind: "media", decision: "owned" } });
  t.notOk(s.proxy.rawLog().includes(TEST_KEY), "the key is in no log line");
});

void t.test("records expire after ttl: the owner gets 404 too (fail closed)", async (t) => {
  const s = await start(t, { ttl: "1s" });
  const alice = await s.issuer.issue({ client: "web", sub: "alice" });
  const made = await call(s, alice, "POST", "/v1/images/generations", { prompt: "short-lived" });
  const id = String((made.json["data"] as Json[])[0]!["id"]);
  t.equal((await call(s, alice, "GET", `/v1/media/${id}`)).status, 200, "owned at first");
  await new Promise((r) => setTimeout(r, 1200));
  const late = await call(s, alice, "GET", `/v1/media/${id}`);
  t.same([late.status, late.arrived], [404, 0], "after ttl: 404, nothing forwarded");
  const list = await call(s, alice, "GET", "/v1/media");
  t.same([mediaOf(list).length, totalOf(list)], [0, 0], "and the list no longer shows it");
});

void t.test("create responses that cannot be recorded still reach their creator, and are counted", async (t) => {
  const s = await start(t);
  const alice = await s.issuer.issue({ client: "web", sub: "alice" });
  const metric = (reason: string) => s.proxy.metric("mythiq_proxy_ownership_unrecorded_total", { kind: "media", reason });
  const post = () => call(s, alice, "POST", "/v1/images/generations", { prompt: "x" });
  const ownsNothing = async (what: string) => {
    const list = await call(s, alice, "GET", "/v1/media");
    t.equal(totalOf(list), 0, `${what}: nothing recorded`);
  };

  s.upstream.reply({ type: "respond", status: 200, headers: { "content-type": "text/plain" }, body: "done: med_plain" });
  let res = await post();
  t.same([res.status, res.body.toString()], [200, "done: med_plain"], "a text body passes unchanged");
  t.equal(await metric("not_json"), 1);

  const broken = '{"data":[{"id":"med_broken"}';
  s.upstream.reply({ type: "respond", status: 200, headers: { "content-type": "application/json" }, body: broken });
  res = await post();
  t.same([res.status, res.body.toString()], [200, broken], "invalid JSON passes unchanged");
  t.equal(await metric("not_json"), 2);

  const dup = '{"data":[{"id":"med_a","id":"med_b"}]}';
  s.upstream.reply({ type: "respond", status: 200, headers: { "content-type": "application/json" }, body: dup });
  res = await post();
  t.same([res.status, res.body.toString()], [200, dup], "a body with a repeated key passes unchanged, unrecorded");
  t.equal(await metric("not_json"), 3);

  s.upstream.reply({ type: "json", body: { data: [{ url: "https://cdn/x" }] } });
  res = await post();
  t.equal(res.status, 200);
  t.equal(await metric("no_id"), 1, "no id at the path");

  const partial = '{"data":[{"id":"med_cut","url":"https://cdn/';
  s.upstream.reply({ type: "respond", status: 200, headers: { "content-type": "application/json", "content-length": "400" }, body: partial, end: "destroy" });
  res = await post();
  t.equal(res.status, 200, "a cut-off response keeps its status");
  t.equal(res.complete, false, "and the client sees it truncated, never complete");
  t.equal(res.body.toString(), partial, "with every byte that came");
  t.equal(await metric("truncated"), 1);

  const big = JSON.stringify({ data: [{ id: "med_big", url: "https://cdn/big" }], padding: "x".repeat(1024 * 1024) });
  s.upstream.reply({ type: "respond", status: 200, headers: { "content-type": "application/json" }, body: big });
  res = await post();
  t.same([res.status, res.body.length, res.body.toString() === big], [200, big.length, true], "over 1 MiB (declared): passed on whole");
  s.upstream.reply({ type: "respond", status: 200, headers: { "content-type": "application/json" }, body: [big.slice(0, 600_000), big.slice(600_000)], framing: "chunked" });
  res = await post();
  t.same([res.status, res.complete, res.body.toString() === big], [200, true, true], "over 1 MiB (chunked): passed on whole");
  t.equal(await metric("too_large"), 2);
  await ownsNothing("after all of these");
  t.equal((await call(s, alice, "GET", "/v1/media/med_big")).status, 404, "the big response's id is not hers");

  // A stream passes through as it is produced: the first event arrives while the rest is held back.
  let open: () => void = () => {};
  const gate = new Promise<void>((r) => (open = r));
  s.upstream.reply({ type: "sse", events: [{ data: '{"id":"med_stream"}' }, { data: "[DONE]", until: gate }] });
  const chunks: string[] = [];
  let firstEvent: () => void = () => {};
  const sawFirst = new Promise<void>((r) => (firstEvent = r));
  const streaming = send(s.proxy.port, {
    method: "POST",
    path: "/v1/images/generations",
    headers: { authorization: `Bearer ${alice}`, "content-type": "application/json" },
    body: "{}",
    onChunk: (c) => {
      chunks.push(c.toString());
      firstEvent();
    },
  });
  await sawFirst;
  t.match(chunks.join(""), /med_stream/, "the first event arrived before the stream ended");
  open();
  t.equal((await streaming).status, 200);
  t.equal(await metric("not_json"), 4, "a stream is counted as not JSON, not held");

  // Encoded JSON is decoded to read the id; the client gets the bytes as they came.
  const gz = gzipSync(JSON.stringify({ data: [{ id: "med_gzip" }] }));
  s.upstream.reply({ type: "respond", status: 200, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: gz });
  res = await post();
  t.same([res.status, res.headers["content-encoding"], res.body.equals(gz)], [200, "gzip", true], "gzip passed unchanged");
  t.equal(await s.proxy.metric("mythiq_proxy_ownership_recorded_total", { kind: "media" }), 1, "and its id recorded");
});

void t.test("hostile ids: long, unicode, with / or .., numbers, duplicates", async (t) => {
  const s = await start(t);
  const alice = await s.issuer.issue({ client: "web", sub: "alice" });
  const bob = await s.issuer.issue({ client: "web", sub: "bob" });
  const long = `med_${"x".repeat(300)}`;
  s.upstream.reply({
    type: "json",
    body: { data: [{ id: "med_é✓" }, { id: "a/b" }, { id: ".." }, { id: 123 }, { id: "med_dup" }, { id: "med_dup" }, { id: long }, { id: ["med_arr"] }, { id: {} }] },
  });
  const made = await call(s, alice, "POST", "/v1/images/generations", { prompt: "x" });
  t.equal(made.status, 200);
  t.equal(await s.proxy.metric("mythiq_proxy_ownership_recorded_total", { kind: "media" }), 5, "é✓, a/b, .., 123 and med_dup (once); not the long one, nor arrays or objects");

  for (const [path, status, reason] of [
    [`/v1/media/${long}`, 404, "not_found"],
    ["/v1/media/med_%C3%A9%E2%9C%93", 400, "invalid_path"],
    ["/v1/media/a/b", 403, "route_not_allowed"],
    ["/v1/media/a%2Fb", 400, "invalid_path"],
    ["/v1/media/..", 400, "invalid_path"],
    ["/v1/media/.", 400, "invalid_path"],
    ["/v1/media/med_arr", 404, "not_found"],
  ] as const) {
    const res = await call(s, alice, "GET", path);
    t.same([res.status, res.json["reason"], res.arrived], [status, reason, 0], `${path.slice(0, 40)}: ${status} ${reason}, nothing forwarded`);
    t.notOk(res.raw.includes(TEST_KEY), "no byte of the key");
  }
  t.equal((await call(s, alice, "GET", "/v1/media/123")).status, 404, "a numeric id is owned as its decimal text (the fake has no such item: its 404)");
  t.equal((await call(s, bob, "GET", "/v1/media/123")).arrived, 0, "bob's request for it never leaves the proxy");

  // The list: duplicates, hostile ids and items without an id.
  const items = [
    { id: "med_é✓", prompt: "mine" },
    { id: "a/b", prompt: "mine" },
    { id: "med_dup", prompt: "mine" },
    { id: "med_dup", prompt: "mine again" },
    { id: 123, prompt: "mine" },
    { id: ["med_dup"], prompt: "array id" },
    { prompt: "no id" },
    { id: "theirs", prompt: "theirs" },
    { id: "theirs", prompt: "theirs again" },
    { id: "__proto__", prompt: "theirs" },
  ];
  const reply = { type: "json", body: { result: { total: 99, medias: items }, success: true } } as const;
  s.upstream.reply(reply);
  const aliceList = await call(s, alice, "GET", "/v1/media");
  t.same(mediaOf(aliceList).map((m) => m["prompt"]), ["mine", "mine", "mine", "mine again", "mine"], "alice keeps her items, duplicates too");
  t.equal(totalOf(aliceList), 5);
  s.upstream.reply(reply);
  const bobList = await call(s, bob, "GET", "/v1/media");
  t.same([mediaOf(bobList), totalOf(bobList)], [[], 0], "bob sees none of them");
});

void t.test("a list response that cannot be filtered is never sent", async (t) => {
  const s = await start(t);
  const alice = await s.issuer.issue({ client: "web", sub: "alice" });
  const cases = [
    ["text", { type: "respond", status: 200, headers: { "content-type": "text/html" }, body: "<p>every prompt</p>" }, 502, "upstream_unfilterable"],
    ["not JSON", { type: "respond", status: 200, headers: { "content-type": "application/json" }, body: '{"result":' }, 502, "upstream_unfilterable"],
    ["another shape", { type: "json", body: { data: [{ id: "x", prompt: "every prompt" }] } }, 502, "upstream_unfilterable"],
    ["nesting too deep to write again", { type: "respond", status: 200, headers: { "content-type": "application/json" }, body: `{"result":{"total":0,"medias":[]},"x":"every prompt","deep":${"[".repeat(200_000)}${"]".repeat(200_000)}}` }, 502, "upstream_unfilterable"],
    ["a count that is not a number", { type: "json", body: { result: { total: "1", medias: [] } } }, 502, "upstream_unfilterable"],
    ["over 1 MiB", { type: "json", body: { result: { total: 1, medias: [{ id: "x", prompt: `every prompt ${"y".repeat(1024 * 1024)}` }] } } }, 502, "upstream_unfilterable"],
    ["cut off", { type: "respond", status: 200, headers: { "content-type": "application/json", "content-length": "500" }, body: '{"result":{"medias":[{"id":"x","prompt":"every prompt', end: "destroy" }, 502, "upstream_reset"],
  ] as const;
  for (const [what, reply, status, reason] of cases) {
    s.upstream.reply(reply);
    const res = await call(s, alice, "GET", "/v1/media");
    t.same([res.status, res.json["reason"]], [status, reason], `${what}: ${status} ${reason}`);
    t.notOk(res.body.toString().includes("every prompt"), `${what}: nothing of the upstream's body`);
  }
  t.equal(await s.proxy.metric("mythiq_proxy_ownership_withheld_total", { kind: "media", reason: "upstream_unfilterable" }), 6);
  // A repeated key: the list is the proxy's own JSON afterwards, which holds exactly what was checked.
  s.upstream.reply({ type: "respond", status: 200, headers: { "content-type": "application/json" }, body: '{"result":{"total":1,"medias":[],"medias":[{"id":"x","prompt":"every prompt"}]},"success":true}' });
  const repeated = await call(s, alice, "GET", "/v1/media");
  t.same([repeated.status, repeated.body.toString()], [200, '{"result":{"total":0,"medias":[]},"success":true}'], "a repeated key: read once, written once, nothing foreign");
  // An upstream error passes through as for any route (SPEC §4 step 9); only 2xx lists are filtered.
  s.upstream.reply({ type: "json", status: 500, body: { success: false, message: "boom", code: "server_error" } });
  const failed = await call(s, alice, "GET", "/v1/media");
  t.same([failed.status, failed.json["message"]], [500, "boom"]);
});

void t.test("a reload that keeps the limits store keeps the records", async (t) => {
  const s = await start(t);
  const alice = await s.issuer.issue({ client: "web", sub: "alice" });
  const made = await call(s, alice, "POST", "/v1/images/generations", { prompt: "before the reload" });
  const id = String((made.json["data"] as Json[])[0]!["id"]);
  s.proxy.writeConfig(yaml(s.upstream.url, { ttl: "1h" }));
  const result = await s.proxy.proxy.reload("test");
  t.equal(result, "applied", "the new config is in force");
  t.equal((await call(s, alice, "GET", `/v1/media/${id}`)).status, 200, "alice still owns her id after the reload");
  const bob = await s.issuer.issue({ client: "web", sub: "bob" });
  t.equal((await call(s, bob, "GET", `/v1/media/${id}`)).status, 404, "and bob still does not");
});
