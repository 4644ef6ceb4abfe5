// Field policies (README "Field policies") through the running proxy: a client without `models`
// still has its bodies held and checked when it has `fields`. Every refusal reaches nothing
// upstream and carries no byte of the key; what is allowed reaches MythIQ byte for byte.
import t from "tap";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { send } from "../helpers/forward-harness.ts";
import { configHead, startTestProxy, TEST_KEY, TOKEN, TOKEN_HASH, waitReady, type TestProxy } from "../helpers/proxy-harness.ts";

let upstream: FakeUpstream;
let proxy: TestProxy;

t.before(async () => {
  upstream = await startFakeUpstream();
  proxy = await startTestProxy({
    yaml: `${configHead(upstream.url)}clients:
  - id: app
    auth: { tokens: ["${TOKEN_HASH}"] }
    routes: [POST /v1/images/generations, POST /v1/videos/generations, POST /v1/images/edits, "POST /v1/media/{id}"]
    max_body: 16KiB
    fields:
      public: { allowed: [false], required: true, routes: [POST /v1/images/generations, POST /v1/videos/generations] }
      provider: { allowed: [stability, openai] }
      routing: { allowed: [cheapest] }
      n: { allowed: [1, 2] }
`,
    env: { MYTHIQ_API_KEY: TEST_KEY },
    watch: false,
    overload: false,
  });
  await waitReady(proxy);
});
t.teardown(async () => {
  await proxy.close();
  await upstream.close();
});

const BOUNDARY = "----policy0123456789";
function form(parts: ReadonlyArray<{ name: string; value: string; filename?: string; type?: string }>): string {
  return (
    parts
      .map(
        (p) =>
          `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${p.name}"${p.filename === undefined ? "" : `; filename="${p.filename}"`}\r\n` +
          `${p.type === undefined ? "" : `Content-Type: ${p.type}\r\n`}\r\n${p.value}\r\n`,
      )
      .join("") + `--${BOUNDARY}--\r\n`
  );
}

interface Row {
  readonly name: string;
  readonly path?: string;
  readonly body?: string;
  readonly type?: string;
  readonly expect: readonly [number, string] | "forwarded";
}

const JSON_TYPE = "application/json";
const FORM_TYPE = `multipart/form-data; boundary=${BOUNDARY}`;
const gen = (body: string): Pick<Row, "body" | "type"> => ({ body, type: JSON_TYPE });
const edit = (body: string): Pick<Row, "path" | "body" | "type"> => ({ path: "/v1/images/edits", body, type: FORM_TYPE });
const PNG = "\x89PNG\r\n\x1a\nfake";

const ROWS: Row[] = [
  { name: "public: false, listed provider and routing", ...gen('{"prompt":"x","public":false,"provider":"stability","routing":"cheapest","n":2}'), expect: "forwarded" },
  { name: "public absent (MythIQ would make it public)", ...gen('{"prompt":"x"}'), expect: [400, "field_required"] },
  { name: "no body at all", expect: [400, "field_required"] },
  { name: "public: true", ...gen('{"prompt":"x","public":true}'), expect: [403, "field_not_allowed"] },
  { name: 'public: "false" (a string)', ...gen('{"prompt":"x","public":"false"}'), expect: [403, "field_not_allowed"] },
  { name: "public: 0", ...gen('{"prompt":"x","public":0}'), expect: [403, "field_not_allowed"] },
  { name: "public: null", ...gen('{"prompt":"x","public":null}'), expect: [403, "field_not_allowed"] },
  { name: "public: [false]", ...gen('{"prompt":"x","public":[false]}'), expect: [403, "field_not_allowed"] },
  { name: "public: {}", ...gen('{"prompt":"x","public":{}}'), expect: [403, "field_not_allowed"] },
  { name: "public twice", ...gen('{"public":false,"prompt":"x","public":true}'), expect: [400, "duplicate_key"] },
  { name: "public twice, once escaped", ...gen('{"public":false,"prompt":"x","publi\\u0063":true}'), expect: [400, "duplicate_key"] },
  { name: "Public beside public", ...gen('{"public":false,"prompt":"x","Public":true}'), expect: [403, "field_not_allowed"] },
  { name: "PUBLIC alone", ...gen('{"prompt":"x","PUBLIC":false}'), expect: [403, "field_not_allowed"] },
  { name: "public[] beside public", ...gen('{"public":false,"public[]":true}'), expect: [403, "field_not_allowed"] },
  { name: "a provider not listed", ...gen('{"prompt":"x","public":false,"provider":"midjourney"}'), expect: [403, "field_not_allowed"] },
  { name: "a provider in another case", ...gen('{"prompt":"x","public":false,"provider":"Stability"}'), expect: [403, "field_not_allowed"] },
  { name: "a routing not listed", ...gen('{"prompt":"x","public":false,"routing":"optimal"}'), expect: [403, "field_not_allowed"] },
  { name: 'n: "2" (a string)', ...gen('{"prompt":"x","public":false,"n":"2"}'), expect: [400, "invalid_json"] },
  { name: "n: 2.0 is the number 2", ...gen('{"prompt":"x","public":false,"n":2.0}'), expect: "forwarded" },
  { name: "n: 3", ...gen('{"prompt":"x","public":false,"n":3}'), expect: [403, "field_not_allowed"] },
  { name: "not JSON", ...gen('{"prompt":"x","public":false'), expect: [400, "invalid_json"] },
  { name: "a text body", body: '{"public":false}', type: "text/plain", expect: [415, "unsupported_media_type"] },
  { name: "videos: public required there too", path: "/v1/videos/generations", ...{ body: '{"prompt":"x"}', type: JSON_TYPE }, expect: [400, "field_required"] },
  { name: "completing an upload: public is not required on that route", path: "/v1/media/med_1", body: "{}", type: JSON_TYPE, expect: "forwarded" },
  { name: "but provider is checked on every route", path: "/v1/media/med_1", body: '{"provider":"x"}', type: JSON_TYPE, expect: [403, "field_not_allowed"] },
  { name: "multipart: a listed provider", ...edit(form([{ name: "image", value: PNG, filename: "a.png", type: "image/png" }, { name: "provider", value: "openai" }])), expect: "forwarded" },
  { name: "multipart: a provider not listed", ...edit(form([{ name: "provider", value: "midjourney" }])), expect: [403, "field_not_allowed"] },
  { name: "multipart: provider as a file", ...edit(form([{ name: "provider", value: "openai", filename: "p.txt" }])), expect: [403, "field_not_allowed"] },
  { name: "multipart: provider twice", ...edit(form([{ name: "provider", value: "openai" }, { name: "provider", value: "midjourney" }])), expect: [400, "duplicate_key"] },
  { name: "multipart: Provider", ...edit(form([{ name: "Provider", value: "midjourney" }])), expect: [403, "field_not_allowed"] },
  { name: "multipart: provider[]", ...edit(form([{ name: "provider[]", value: "midjourney" }])), expect: [403, "field_not_allowed"] },
  { name: "multipart: n is text, never the number 1", ...edit(form([{ name: "n", value: "1" }])), expect: [403, "field_not_allowed"] },
  { name: "multipart: provider not text/plain", ...edit(form([{ name: "provider", value: "openai", type: "application/json" }])), expect: [403, "field_not_allowed"] },
];

void t.test("field policies: refusals reach nothing upstream; allowed bodies arrive byte for byte", async (t) => {
  for (const row of ROWS) {
    const before = upstream.requests.length;
    const body = row.body === undefined ? undefined : Buffer.from(row.body, "latin1");
    const res = await send(proxy.port, {
      method: "POST",
      path: row.path ?? "/v1/images/generations",
      headers: {
        authorization: `Bearer ${TOKEN}`,
        ...(row.type === undefined ? {} : { "content-type": row.type }),
        "content-length": String(body?.length ?? 0),
      },
      ...(body === undefined ? {} : { body }),
    });
    const arrived = upstream.requests.slice(before);
    t.notOk(res.raw.includes(TEST_KEY), `${row.name}: no byte of the key`);
    if (row.expect === "forwarded") {
      t.equal(arrived.length, 1, `${row.name}: forwarded`);
      await arrived[0]?.ended;
      t.ok(arrived[0]?.body.equals(body ?? Buffer.alloc(0)), `${row.name}: MythIQ received exactly what was checked`);
      continue;
    }
    const reason = (JSON.parse(res.body.toString()) as { reason?: string }).reason;
    t.same([res.status, reason], row.expect, `${row.name}: ${row.expect.join(" ")}`);
    t.equal(arrived.length, 0, `${row.name}: MythIQ received nothing`);
  }
  t.ok((await proxy.metric("mythiq_proxy_denied_total", { client: "app", reason: "field_not_allowed" }))! >= 10, "refusals counted under their reason");
  t.ok((await proxy.metric("mythiq_proxy_denied_total", { client: "app", reason: "field_required" }))! >= 3);
});
