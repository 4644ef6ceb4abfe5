// Hostile input, part 3: JSON and multipart tricks against the model allowlist, and key-leak
// vectors from the upstream side (headers echoed, redirects, 401 bodies, error bodies) — over raw
// sockets against the whole proxy. What MythIQ receives must be byte for byte what was checked.
import { gzipSync } from "node:zlib";
import t, { type Test } from "tap";
import type { RecordedRequest } from "../helpers/fake-upstream.ts";
import { auth, jsonPost, req, runCases, startHostileEnv, TEST_KEY, type HostileCase, type HostileEnv } from "../helpers/hostile.ts";

let env: HostileEnv;
t.before(async () => {
  env = await startHostileEnv();
});
t.teardown(() => env.close());

const B = "----hostileBoundary42";
const formCT = `Content-Type: multipart/form-data; boundary=${B}`;
const part = (name: string, value: string, extra = "") => `--${B}\r\nContent-Disposition: form-data; name="${name}"${extra}\r\n\r\n${value}\r\n`;
const close = `--${B}--\r\n`;
const formPost = (body: string, headers: readonly string[] = [auth, formCT]) => jsonPost(Buffer.from(body, "latin1"), headers, "/v1/images/edits");

/** A forwarded body must arrive exactly as sent: same bytes, a Content-Length, no chunking. */
function sameBytes(sent: string | Buffer) {
  const bytes = typeof sent === "string" ? Buffer.from(sent, "latin1") : sent;
  return (t: Test, got: RecordedRequest | undefined) => {
    t.ok(got?.body.equals(bytes), "the upstream received the checked bytes exactly");
    t.equal(got?.headers["content-length"], String(bytes.length));
    t.equal(got?.count("transfer-encoding"), 0);
  };
}

const oddJson = '  {"prompt":"caf\\u00e9 \\ud83d\\ude00","model" : "stability\\/sdxl","n":1, "extra":[{"a":{}}]}\n';
const multipartOk = part("image", "\x89PNG\r\n\x1a\n\x00binary\r\n--not-it", '; filename="in.png"\r\nContent-Type: image/png') + part("prompt", "a cat") + part("model", "openai/gpt-image-1") + close;

const bodies: HostileCase[] = [
  { name: "duplicate model keys, allowed one last", raw: jsonPost('{"model":"openai/dall-e-3","model":"stability/sdxl"}'), status: 400, reason: "duplicate_key" },
  { name: "duplicate model keys, allowed one first", raw: jsonPost('{"model":"stability/sdxl","model":"openai/dall-e-3"}'), status: 400, reason: "duplicate_key" },
  { name: "duplicate model via an escaped key", raw: jsonPost('{"model":"stability/sdxl","m\\u006fdel":"openai/dall-e-3"}'), status: 400, reason: "duplicate_key" },
  { name: "model not in the list", raw: jsonPost('{"model":"openai/dall-e-3","prompt":"x"}'), status: 403, reason: "model_not_allowed" },
  { name: "model differing by case", raw: jsonPost('{"model":"Stability/SDXL"}'), status: 403, reason: "model_not_allowed" },
  { name: "model with a NUL suffix", raw: jsonPost('{"model":"stability/sdxl\\u0000"}'), status: 403, reason: "model_not_allowed" },
  { name: "no model (MythIQ would pick its default)", raw: jsonPost('{"prompt":"x"}'), status: 400, reason: "model_required" },
  { name: "model only in a nested object", raw: jsonPost('{"params":{"model":"stability/sdxl"}}'), status: 400, reason: "model_required" },
  { name: "model as an array", raw: jsonPost('{"model":["stability/sdxl","openai/dall-e-3"]}'), status: 400, reason: "invalid_json" },
  { name: "model as a number", raw: jsonPost('{"model":1}'), status: 400, reason: "invalid_json" },
  { name: "n as a string a lenient upstream would coerce", raw: jsonPost('{"model":"stability/sdxl","n":"10"}'), status: 400, reason: "invalid_json" },
  { name: "byte-order mark", raw: jsonPost(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"model":"stability/sdxl"}')])), status: 400, reason: "invalid_json" },
  { name: "invalid UTF-8", raw: jsonPost(Buffer.from([...Buffer.from('{"model":"stability/sdxl","p":"'), 0xc3, 0x28, ...Buffer.from('"}')])), status: 400, reason: "invalid_json" },
  { name: "lone surrogate escape", raw: jsonPost('{"model":"stability/sdxl","p":"\\udead"}'), status: 400, reason: "invalid_json" },
  { name: "deep nesting", raw: jsonPost(`{"model":"stability/sdxl","p":${"[".repeat(100)}${"]".repeat(100)}}`), status: 400, reason: "invalid_json" },
  { name: "trailing second document", raw: jsonPost('{"model":"stability/sdxl"}{"model":"openai/dall-e-3"}'), status: 400, reason: "invalid_json" },
  { name: "comment hiding a key", raw: jsonPost('{"model":"stability/sdxl"/*,"model":"openai/dall-e-3"*/}'), status: 400, reason: "invalid_json" },
  { name: "no Content-Type", raw: jsonPost('{"model":"stability/sdxl"}', [auth]), status: 415, reason: "unsupported_media_type" },
  { name: "text/plain (a CORS simple request)", raw: jsonPost('{"model":"stability/sdxl"}', [auth, "Content-Type: text/plain"]), status: 415, reason: "unsupported_media_type" },
  { name: "form-urlencoded", raw: jsonPost("model=stability/sdxl", [auth, "Content-Type: application/x-www-form-urlencoded"]), status: 415, reason: "unsupported_media_type" },
  { name: "JSON in another charset", raw: jsonPost('{"model":"stability/sdxl"}', [auth, "Content-Type: application/json; charset=utf-16"]), status: 415, reason: "unsupported_media_type" },
  { name: "compressed body", raw: jsonPost(gzipSync('{"model":"openai/dall-e-3"}'), [auth, "Content-Type: application/json", "Content-Encoding: gzip"]), status: 415, reason: "unsupported_media_type" },
  { name: "two Content-Types", raw: jsonPost('{"model":"stability/sdxl"}', [auth, "Content-Type: application/json", "Content-Type: text/plain"]), status: 400, reason: "invalid_header" },
  { name: "POST without a body", raw: req("POST", "/v1/images/generations", [auth, "Content-Type: application/json", "Content-Length: 0"]), status: 400, reason: "model_required" },
  { name: "declared body over max_body", raw: req("POST", "/v1/images/generations", [auth, "Content-Type: application/json", "Content-Length: 9000"]), status: 413, reason: "body_too_large" },
  {
    name: "chunked body over max_body",
    raw: req("POST", "/v1/images/generations", [auth, "Content-Type: application/json", "Transfer-Encoding: chunked"], `1000\r\n${" ".repeat(4096)}\r\n1000\r\n${" ".repeat(4096)}\r\n1\r\n \r\n0\r\n\r\n`),
    status: 413,
    reason: "body_too_large",
  },
  { name: "multipart: model twice", raw: formPost(part("model", "stability/sdxl") + part("model", "openai/dall-e-3") + close), status: 400, reason: "duplicate_key" },
  { name: "multipart: model not listed", raw: formPost(part("image", "PNG", '; filename="a.png"') + part("model", "openai/dall-e-3") + close), status: 403, reason: "model_not_allowed" },
  { name: "multipart: no model", raw: formPost(part("image", "PNG", '; filename="a.png"') + close), status: 400, reason: "model_required" },
  { name: "multipart: name* overriding name", raw: formPost(part("x", "openai/dall-e-3", "; name*=utf-8''model") + part("model", "stability/sdxl") + close), status: 400, reason: "malformed_request" },
  { name: "multipart: second model in the epilogue", raw: formPost(part("model", "stability/sdxl") + close + part("model", "openai/dall-e-3") + close), status: 400, reason: "malformed_request" },
  { name: "multipart: model in the preamble", raw: formPost(`Content-Disposition: form-data; name="model"\r\n\r\nopenai/dall-e-3\r\n` + part("model", "stability/sdxl") + close), status: 400, reason: "malformed_request" },
  { name: "multipart: model as a file", raw: formPost(part("model", "stability/sdxl", '; filename="m.txt"') + close), status: 400, reason: "invalid_json" },
  { name: "multipart: Model look-alike", raw: formPost(part("Model", "openai/dall-e-3") + part("model", "stability/sdxl") + close), status: 400, reason: "invalid_json" },
  { name: "multipart: base64 transfer encoding", raw: formPost(`--${B}\r\nContent-Disposition: form-data; name="model"\r\nContent-Transfer-Encoding: base64\r\n\r\nb3BlbmFpL2RhbGwtZS0z\r\n` + close), status: 400, reason: "malformed_request" },
  { name: "multipart: LF-only framing", raw: formPost(`--${B}\nContent-Disposition: form-data; name="model"\n\nopenai/dall-e-3\n--${B}--\n`), status: 400, reason: "malformed_request" },
  { name: "multipart: no boundary parameter", raw: formPost(part("model", "stability/sdxl") + close, [auth, "Content-Type: multipart/form-data"]), status: 415, reason: "unsupported_media_type" },
  { name: "multipart/mixed", raw: formPost(part("model", "stability/sdxl") + close, [auth, `Content-Type: multipart/mixed; boundary=${B}`]), status: 415, reason: "unsupported_media_type" },
  { name: "allowed JSON with odd spacing and escapes, forwarded byte for byte", raw: jsonPost(oddJson), status: 200, forwarded: true, check: (t, got) => sameBytes(Buffer.from(oddJson, "utf8"))(t, got) },
  {
    name: "allowed chunked JSON, forwarded as the same bytes with a length",
    raw: req("POST", "/v1/images/generations", [auth, "Content-Type: application/json", "Transfer-Encoding: chunked"], `5\r\n{"mod\r\n15\r\nel":"stability/sdxl"}\r\n0\r\n\r\n`),
    status: 200,
    forwarded: true,
    check: (t, got) => sameBytes('{"model":"stability/sdxl"}')(t, got),
  },
  { name: "allowed multipart upload with the model after the file, forwarded byte for byte", raw: formPost(multipartOk), status: 200, forwarded: true, check: (t, got) => sameBytes(multipartOk)(t, got) },
];

const keyHeader = `X-Debug-Auth: Bearer ${TEST_KEY}`.split(": ");
const leaks: HostileCase[] = [
  { name: "upstream echoes the request (and the key) in a 500", raw: req("GET", "/v1/models", [auth]), reply: { type: "echo", status: 500 }, status: 502, reason: "upstream_leak", forwarded: true },
  { name: "upstream echoes the request in a 400 with chunked framing", raw: req("GET", "/v1/models", [auth]), reply: { type: "respond", status: 400, framing: "chunked", body: ["{\"error\":\"bad\",\"auth\":\"Bearer ", TEST_KEY, "\"}"] }, status: 502, reason: "upstream_leak", forwarded: true },
  { name: "upstream returns the key in a gzip error body", raw: req("GET", "/v1/models", [auth]), reply: { type: "respond", status: 403, headers: { "content-encoding": "gzip", "content-type": "application/json" }, body: gzipSync(`{"message":"key ${TEST_KEY} lacks permission"}`) }, status: 502, reason: "upstream_leak", forwarded: true },
  { name: "upstream puts the key in a response header of a 200", raw: req("GET", "/v1/models", [auth]), reply: { type: "respond", status: 200, headers: { [keyHeader[0]!]: keyHeader[1]!, "content-type": "application/json" }, body: "{}" }, status: 502, reason: "upstream_leak", forwarded: true },
  { name: "upstream 401 revealing the whole key", raw: req("GET", "/v1/models", [auth]), reply: { type: "unauthorized", reveal: true }, status: 502, reason: "upstream_auth_failed", forwarded: true },
  { name: "upstream 401 with a masked key", raw: req("GET", "/v1/models", [auth]), reply: { type: "unauthorized" }, status: 502, reason: "upstream_auth_failed", forwarded: true },
  { name: "upstream 302 with the key in Location", raw: req("GET", "/v1/models", [auth]), reply: { type: "redirect", status: 302, location: `https://evil.example/?k=${TEST_KEY}` }, status: 502, reason: "upstream_redirect", forwarded: true, check: (t, _got, res) => t.equal(res.headers["location"], undefined) },
  { name: "upstream 307 to another host", raw: req("GET", "/v1/models", [auth]), reply: { type: "redirect", status: 307, location: "http://127.0.0.1:1/steal" }, status: 502, reason: "upstream_redirect", forwarded: true },
  {
    name: "upstream Set-Cookie and CORS headers on a success are dropped",
    raw: req("GET", "/v1/models", [auth, "Origin: https://evil.example.net"]),
    reply: { type: "respond", status: 200, headers: { "set-cookie": "session=upstream; Domain=example.com", "access-control-allow-origin": "*", "access-control-allow-credentials": "true" }, body: "{}" },
    status: 200,
    forwarded: true,
    check: (t, _got, res) => {
      t.equal(res.headers["set-cookie"], undefined);
      t.equal(res.headers["access-control-allow-origin"], undefined, "web lists no origins: no CORS at all");
    },
  },
];

void t.test("JSON and multipart tricks", (t) => runCases(t, env, bodies));
void t.test("key-leak vectors", (t) => runCases(t, env, leaks));

void t.test("nothing above put the key into the log", async (t) => {
  t.notOk(env.proxy.rawLog().includes(TEST_KEY));
});
