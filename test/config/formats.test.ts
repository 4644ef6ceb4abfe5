import t from "tap";
import { checkCidr, checkHost, checkHostPort, checkOrigin, checkRoute, checkTokenHash, checkUrl } from "../../src/config/formats.ts";

t.test("routes: accepted forms are kept as written", async (t) => {
  for (const ok of [
    "GET /v1/models/{id}",
    "GET /v1/generations?limit&after",
    "POST /v1/models/",
    "HEAD /",
    "PUT /a",
    "PATCH /a/b",
    "DELETE /a/{x_1}",
    "GET /a-b.c_d~e",
    "GET /v1/x?a.b&c-d&e_f",
    "GET /a:b@c/!$&'()+,=",
  ]) {
    const r = checkRoute(ok);
    t.ok(r.ok && r.value === ok, ok);
  }
});

t.test("routes: refused forms", async (t) => {
  const bad = [
    "GET",
    "/v1/models",
    "GET /v1/models extra",
    "get /v1/models",
    "OPTIONS /v1/models",
    "CONNECT /v1/models",
    "TRACE /v1/models",
    "BREW /v1/models",
    "GET v1",
    "GET /a//b",
    "GET /a/./b",
    "GET /a/../b",
    "GET /.",
    "GET /a%2e",
    "GET /a\\b",
    "GET /a;b",
    "GET /a#b",
    "GET /a/*",
    "GET /a/{}",
    "GET /a/{1x}",
    "GET /a/b{id}",
    "GET /a/{id",
    "GET /{a}/{a}",
    "GET /a?",
    "GET /a?x=1",
    "GET /a?x&x",
    "GET /a?x&&y",
    "GET /a?x y",
    "GET /é",
    "GET /a\tb",
    // Characters a request path can never hold (the target parser refuses them), so the route
    // could never match: refused here too (config validation used to accept them, and compiling
    // the routes then threw at start-up).
    'GET /a"b',
    "GET /a<b>",
    "GET /a|b",
    "GET /a^b",
    "GET /a`b",
    "GET /a[b]",
    "GET /v1/models.",
    "GET /v1/x./y",
  ];
  for (const text of bad) t.notOk(checkRoute(text).ok, JSON.stringify(text));
  const quote = checkRoute('GET /a"b');
  t.ok(!quote.ok && quote.message === `"GET /a\\"b": "\\"" is not allowed in a route path (requests with characters outside RFC 3986 path characters are refused)`, quote.ok ? "" : quote.message);
  const dot = checkRoute("GET /v1/models.");
  t.ok(!dot.ok && dot.message === `"GET /v1/models.": "models.": a segment ending in "." is not allowed (requests with one are refused)`, dot.ok ? "" : dot.message);
});

t.test("CIDRs: normalised on success, host bits refused with the fix", async (t) => {
  const good: [string, string][] = [
    ["10.0.0.0/8", "10.0.0.0/8"],
    ["203.0.113.7", "203.0.113.7/32"],
    ["0.0.0.0/0", "0.0.0.0/0"],
    ["::1", "::1/128"],
    ["fd00::/8", "fd00::/8"],
    ["::/0", "::/0"],
    ["::ffff:10.0.0.0/104", "10.0.0.0/8"], // what it matches: IPv4 callers in 10/8
    ["::/80", "::/80"],
    ["2001:db8::/32", "2001:db8::/32"],
    ["2001:DB8:0::/32", "2001:db8::/32"],
    ["0:0::1", "::1/128"],
  ];
  for (const [input, out] of good) {
    const r = checkCidr(input);
    t.ok(r.ok && r.value === out, `${input} -> ${out}`);
  }
  const fix: [string, RegExp][] = [
    ["10.0.0.1/8", /write 10\.0\.0\.0\/8/],
    ["2001:db8::1/32", /write 2001:db8::\/32/],
    ["fd00::1:0:0:0/64", /write fd00::\/64/],
    ["::ffff:10.0.0.1/104", /write ::ffff:a00:0\/104/],
  ];
  for (const [input, re] of fix) {
    const r = checkCidr(input);
    t.ok(!r.ok && re.test(r.message), input);
  }
  for (const input of ["", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/08", "::/129", "256.0.0.1", "010.0.0.1", "fe80::1%eth0", "host", "10.0.0.0/8/8", "[::1]"]) {
    t.notOk(checkCidr(input).ok, JSON.stringify(input));
  }
});

t.test("origins: exactly as browsers send them", async (t) => {
  for (const ok of ["https://app.example.com", "http://localhost:5173", "http://127.0.0.1:3000", "https://*.example.com", "http://[::1]:8080", "https://a.b.example.co.uk"]) {
    const r = checkOrigin(ok);
    t.ok(r.ok && r.value === ok, ok);
  }
  const bad: [string, RegExp][] = [
    ["null", /never allowed/],
    ["*", /every site/],
    ["https://app.example.com/", /without a path/],
    ["https://app.example.com/x", /without a path/],
    ["https://app.example.com?x", /without a path/],
    ["https://app.example.com#x", /without a path/],
    ["https://APP.example.com", /write https:\/\/app\.example\.com/],
    ["https://app.example.com:443", /write https:\/\/app\.example\.com$/],
    ["http://app.example.com:80", /write http:\/\/app\.example\.com$/],
    ["https://bücher.example", /write https:\/\/xn--/],
    ["https://*.com", /at least two labels/],
    ["https://a.*.example.com", /whole first label/],
    ["https://*example.com", /whole first label/],
    ["ftp://example.com", /only http and https/],
    ["example.com", /not an origin/],
    ["https://u:p@example.com", /user name/],
    ["https://", /not an origin/],
    // Spellings browsers send but the matcher cannot compare: config validation used to accept
    // them, and compiling the origins then threw at start-up.
    ["https://a!b.example.com", /the host must be a DNS name/],
    ["https://example.com.", /the host must be a DNS name/],
    ["https://a..example.com", /the host must be a DNS name/],
    [`https://${"a".repeat(250)}.com`, /at most 253 characters/],
    ["https://example.com:0", /port must be from 1 to 65535/],
    ["https://*.example.com.", /the host must be a DNS name/],
  ];
  for (const [input, re] of bad) {
    const r = checkOrigin(input);
    t.ok(!r.ok && re.test(r.message), `${input}: ${r.ok ? "accepted" : r.message}`);
  }
});

t.test("urls: forms, credentials and canonical spelling; the value is never echoed", async (t) => {
  const up = { what: "the upstream url", form: "path" } as const;
  const ok1 = checkUrl("https://api.mythiq.ai/", up);
  t.ok(ok1.ok && ok1.value.href === "https://api.mythiq.ai" && !ok1.value.insecure);
  const ok2 = checkUrl("http://127.0.0.1:8080/base", up);
  t.ok(ok2.ok && ok2.value.href === "http://127.0.0.1:8080/base" && ok2.value.insecure);
  const secret = "hunter2";
  for (const [input, re] of [
    [`https://admin:${secret}@example.com`, /user name or password/],
    ["https://example.com/#x", /fragment/],
    ["https://example.com/?x=1", /query/],
    ["ftp://example.com", /https:\/\//],
    ["not a url", /not a valid URL/],
    ["HTTPS://Example.com", /canonical form: write https:\/\/example\.com/],
    ["https://example.com/a/../b", /canonical form: write https:\/\/example\.com\/b/],
  ] as const) {
    const r = checkUrl(input, up);
    t.ok(!r.ok && re.test(r.message), input);
    if (!r.ok) t.notMatch(r.message, secret, "never echoes a password");
  }
  t.notOk(checkUrl("https://vault:8200/v1", { what: "x", form: "origin" }).ok, "origin form refuses a path");
  const jwks = checkUrl("https://login.example.com/keys?p=policy", { what: "jwks_url", form: "any" });
  t.ok(jwks.ok, "any form allows a query");
});

t.test("token hashes: never echo what was pasted", async (t) => {
  t.ok(checkTokenHash(`sha256:${"a".repeat(64)}`).ok);
  const raw = "tok-live-0123456789abcdef";
  for (const input of [raw, `sha256:${"A".repeat(64)}`, "sha256:abc", `sha256:${"a".repeat(65)}`, `SHA256:${"a".repeat(64)}`]) {
    const r = checkTokenHash(input);
    t.ok(!r.ok, input);
    if (!r.ok) t.notMatch(r.message, input, "the value is not in the message");
  }
  const r = checkTokenHash(raw);
  t.ok(!r.ok && /hash-token/.test(r.message), "a raw token gets the hash-token hint");
});

t.test("hosts", async (t) => {
  for (const ok of ["0.0.0.0", "127.0.0.1", "::", "::1", "localhost", "proxy.internal"]) t.ok(checkHost(ok).ok, ok);
  for (const bad of ["[::1]", "", "a b", "-x", "fe80::1%eth0", "host:80"]) t.notOk(checkHost(bad).ok, bad);
});

t.test("host:port of Redis nodes and sentinels: accepted and refused, never echoed", async (t) => {
  const accepted: [string, string, number][] = [
    ["redis-sentinel.redis.svc:26379", "redis-sentinel.redis.svc", 26379],
    ["localhost:1", "localhost", 1],
    ["10.0.0.5:6379", "10.0.0.5", 6379],
    ["[fd00::5]:6379", "fd00::5", 6379],
    ["[::1]:65535", "::1", 65535],
  ];
  for (const [text, host, port] of accepted) t.strictSame(checkHostPort(text), { ok: true, value: { host, port } }, text);
  const refused: [string, RegExp][] = [
    ["sentinel-a", /has no port/],
    ["redis:0", /port must be a whole number from 1 to 65535/],
    ["redis:65536", /port must be/],
    ["redis:63 79", /port must be/],
    ["redis:", /port must be/],
    ["fd00::5:6379", /IPv6 address goes in brackets/],
    ["[fd00::zz]:6379", /DNS name or an IP address/],
    ["[fe80::1%eth0]:6379", /DNS name or an IP address/],
    ["under_score:6379", /DNS name or an IP address/],
    [":7001", /DNS name or an IP address/],
    ["redis://secret-pass@redis:6379", /not a URL/],
    ["user:secret-pass@redis:6379", /not a URL/],
  ];
  for (const [text, message] of refused) {
    const r = checkHostPort(text);
    t.notOk(r.ok, text);
    if (!r.ok) {
      t.match(r.message, message, text);
      t.notOk(r.message.includes(text), `${text} is not echoed`);
      t.notOk(r.message.includes("secret-pass"));
    }
  }
});
