import t from "tap";
import { InvariantError } from "../../src/pipeline/types.ts";
import { createOriginCheck } from "../../src/rules/origin-check.ts";
import { canonicalOrigin, compileAnyClientOrigin, compileOrigins, parseOriginPattern } from "../../src/rules/origins.ts";
import { makeCaller, makeClient } from "../helpers/context.ts";

void t.test("canonicalOrigin", (t) => {
  const cases: Array<[string, string | undefined]> = [
    ["https://app.example.com", "https://app.example.com"],
    ["HTTPS://App.Example.COM", "https://app.example.com"],
    ["https://app.example.com:443", "https://app.example.com"],
    ["http://app.example.com:80", "http://app.example.com"],
    ["http://app.example.com:443", "http://app.example.com:443"],
    ["https://app.example.com:8443", "https://app.example.com:8443"],
    ["http://localhost:3000", "http://localhost:3000"],
    ["http://127.0.0.1:3000", "http://127.0.0.1:3000"],
    ["http://[::1]:3000", "http://[::1]:3000"],
    ["http://[0:0:0:0:0:0:0:1]", "http://[::1]"],
    ["chrome-extension://abcdef", "chrome-extension://abcdef"],
    ["null", undefined],
    ["", undefined],
    ["https://app.example.com/", undefined],
    ["https://app.example.com/path", undefined],
    ["https://app.example.com?x", undefined],
    ["https://app.example.com#x", undefined],
    ["https://user@app.example.com", undefined],
    ["https://app.example.com.", undefined],
    ["https://app..example.com", undefined],
    ["https://app.example.com:", undefined],
    ["https://app.example.com:0", undefined],
    ["https://app.example.com:0443", undefined],
    ["https://app.example.com:65536", undefined],
    ["https://*.example.com", undefined],
    ["https://app.example.com, https://evil.com", undefined],
    ["https://app.exa mple.com", undefined],
    ["https://ex\u00e4mple.com", undefined],
    ["//app.example.com", undefined],
    ["app.example.com", undefined],
    ["http://[fe80::1%25eth0]", undefined],
    ["http://[nonsense]", undefined],
  ];
  for (const [input, want] of cases) t.equal(canonicalOrigin(input), want, JSON.stringify(input));
  t.end();
});

void t.test("parseOriginPattern", (t) => {
  t.same(parseOriginPattern("https://app.example.com"), { ok: true, value: { kind: "exact", origin: "https://app.example.com" } });
  t.same(parseOriginPattern("http://[::1]:8080"), { ok: true, value: { kind: "exact", origin: "http://[::1]:8080" } });
  t.same(parseOriginPattern("https://*.example.com"), { ok: true, value: { kind: "wildcard", scheme: "https", port: "", suffix: "example.com" } });
  t.same(parseOriginPattern("http://*.example.com:8080"), { ok: true, value: { kind: "wildcard", scheme: "http", port: ":8080", suffix: "example.com" } });
  const bad: Array<[string, RegExp]> = [
    ["null", /never allowed/],
    ["*", /every site/],
    ["https://*", /whole first label/],
    ["https://*.com", /at least two labels/],
    ["https://*.0.1", /not an origin/],
    ["https://a.*.example.com", /whole first label/],
    ["https://*example.com", /whole first label/],
    ["https://*.*.example.com", /whole first label/],
    ["https://example.com/", /without a path/],
    ["https://[::1]*", /whole first label/],
    // Written differently from what a browser sends: the fix is in the message.
    ["https://App.Example.com:443", /write https:\/\/app\.example\.com$/],
    ["https://*.Example.com", /write https:\/\/\*\.example\.com$/],
    ["http://[0:0::1]", /write http:\/\/\[::1\]$/],
    ["http://0x7f.1", /write http:\/\/127\.0\.0\.1$/],
    // Browsers' spelling, but not a host the matcher compares.
    ["https://a!b.example.com", /the host must be a DNS name/],
    ["https://example.com.", /the host must be a DNS name/],
    ["https://example.com:0", /port must be from 1 to 65535/],
    ["chrome-extension://abcdef", /only http and https/],
  ];
  for (const [input, re] of bad) {
    const r = parseOriginPattern(input);
    t.ok(!r.ok && re.test(r.message), `${JSON.stringify(input)}: ${r.ok ? "accepted" : r.message}`);
  }
  t.end();
});

void t.test("compileOrigins: look-alikes, ports, case, wildcard depth, apex, null", (t) => {
  const matcher = compileOrigins(["https://app.example.com", "https://*.example.org", "http://localhost:3000", "http://[::1]:8080"]);
  const cases: Array<[string | undefined, boolean]> = [
    ["https://app.example.com", true],
    ["https://app.example.com:443", true],
    ["HTTPS://APP.EXAMPLE.COM", true],
    ["http://app.example.com", false], // scheme differs
    ["https://app.example.com:8443", false], // port differs
    ["https://app.example.com.evil.com", false],
    ["https://evilapp.example.com", false],
    ["https://app.example.co", false],
    ["https://app.example.com/", false],
    ["https://a.example.org", true],
    ["https://a.b.c.example.org", true], // any depth
    ["https://example.org", false], // never the apex
    ["https://evilexample.org", false],
    ["https://example.org.evil.com", false],
    ["https://a.example.org:443", true],
    ["https://a.example.org:8443", false], // wildcard keeps the port
    ["http://a.example.org", false], // and the scheme
    ["https://.example.org", false],
    ["http://localhost:3000", true],
    ["http://localhost", false],
    ["http://localhost:3001", false],
    ["http://[::1]:8080", true],
    ["http://[0::1]:8080", true],
    ["null", false],
    ["", false],
    [undefined, false],
  ];
  for (const [origin, want] of cases) t.equal(matcher.matches(origin), want, JSON.stringify(origin));
  t.end();
});

void t.test("compileOrigins: empty list matches nothing; a bad entry throws", (t) => {
  t.notOk(compileOrigins([]).matches("https://app.example.com"));
  t.throws(() => compileOrigins(["https://*.com"]), { message: "origin #0 is not a valid origin or wildcard origin" });
  t.end();
});

void t.test("compileAnyClientOrigin: only clients that list origins allow one", (t) => {
  const any = compileAnyClientOrigin([
    makeClient({ id: "a", origins: ["https://a.example.com"] }),
    makeClient({ id: "b" }),
    makeClient({ id: "c", origins: ["https://*.c.example.com"] }),
  ]);
  t.ok(any.matches("https://a.example.com"));
  t.ok(any.matches("https://x.c.example.com"));
  t.notOk(any.matches("https://evil.example.com"));
  t.notOk(any.matches("https://c.example.com"));
  t.end();
});

void t.test("origin check", async (t) => {
  const listed = makeClient({ id: "listed", origins: ["https://app.example.com", "https://*.example.org"] });
  const open = makeClient({ id: "open" });
  const none = makeClient({ id: "none", origins: [] });
  const foreign = makeClient({ id: "listed", origins: ["https://app.example.com"] }); // same id, other config
  const rule = createOriginCheck([listed, open, none]);
  t.equal(rule.name, "origin");
  const cases: Array<{ name: string; ctx: Parameters<typeof rule.check>[0]; want: string | undefined }> = [
    { name: "listed origin", ctx: makeCaller({ client: listed, origin: "https://app.example.com" }), want: undefined },
    { name: "wildcard origin", ctx: makeCaller({ client: listed, origin: "https://x.y.example.org" }), want: undefined },
    { name: "other origin", ctx: makeCaller({ client: listed, origin: "https://evil.com" }), want: "origin_not_allowed" },
    { name: "null origin", ctx: makeCaller({ client: listed, origin: "null" }), want: "origin_not_allowed" },
    { name: "malformed origin", ctx: makeCaller({ client: listed, origin: "https://app.example.com/" }), want: "origin_not_allowed" },
    { name: "no Origin with a token", ctx: makeCaller({ client: listed, credential: "token" }), want: undefined },
    { name: "no Origin with a cookie", ctx: makeCaller({ client: listed, credential: "cookie" }), want: "origin_not_allowed" },
    { name: "listed Origin with a cookie", ctx: makeCaller({ client: listed, credential: "cookie", origin: "https://app.example.com" }), want: undefined },
    { name: "other Origin with a cookie", ctx: makeCaller({ client: listed, credential: "cookie", origin: "https://evil.com" }), want: "origin_not_allowed" },
    { name: "client without origins: any Origin", ctx: makeCaller({ client: open, origin: "https://evil.com" }), want: undefined },
    { name: "client without origins: malformed Origin", ctx: makeCaller({ client: open, origin: "garbage" }), want: undefined },
    { name: "client without origins: cookie refused", ctx: makeCaller({ client: open, credential: "cookie", origin: "https://app.example.com" }), want: "origin_not_allowed" },
    { name: "origins: [] refuses every Origin", ctx: makeCaller({ client: none, origin: "https://app.example.com" }), want: "origin_not_allowed" },
    { name: "origins: [] and no Origin", ctx: makeCaller({ client: none }), want: undefined },
  ];
  for (const c of cases) {
    const verdict = await rule.check(c.ctx);
    t.equal(verdict.ok ? undefined : verdict.reason, c.want, c.name);
  }
  // A client the rule was not compiled for is a bug in the proxy, never the caller's fault.
  t.throws(() => rule.check(makeCaller({ client: foreign, origin: "https://app.example.com" })), InvariantError, "client from another config");
});
