import { createHash } from "node:crypto";
import t from "tap";
import { compileTokens, hashToken, isBearerToken, parseAuthorization, parseTokenHash } from "../../src/rules/tokens.ts";
import { makeClient } from "../helpers/context.ts";

void t.test("hashToken is sha256:<hex of the UTF-8 bytes>", (t) => {
  t.equal(hashToken("password"), "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8");
  t.equal(hashToken("tok"), `sha256:${createHash("sha256").update("tok").digest("hex")}`);
  t.end();
});

void t.test("parseAuthorization", (t) => {
  const cases: Array<[string | string[] | undefined, ReturnType<typeof parseAuthorization>]> = [
    [undefined, { kind: "none" }],
    ["Bearer tok-1", { kind: "bearer", token: "tok-1" }],
    ["bearer tok-1", { kind: "bearer", token: "tok-1" }],
    ["BEARER tok-1", { kind: "bearer", token: "tok-1" }],
    ["bEaReR tok-1", { kind: "bearer", token: "tok-1" }],
    ["Bearer a.b.c~+/=", { kind: "bearer", token: "a.b.c~+/=" }],
    ["Bearer  tok-1", { kind: "malformed" }], // two spaces
    ["Bearer\ttok-1", { kind: "malformed" }], // tab
    ["Bearer tok 1", { kind: "malformed" }],
    ["Bearer tok-1 ", { kind: "malformed" }],
    [" Bearer tok-1", { kind: "malformed" }],
    ["Bearer ", { kind: "malformed" }], // empty token
    ["Bearer", { kind: "malformed" }],
    ["", { kind: "malformed" }],
    ["Basic dXNlcjpwYXNz", { kind: "malformed" }],
    ["Token tok-1", { kind: "malformed" }],
    ["Bearertok-1", { kind: "malformed" }],
    ["Bearer tök", { kind: "malformed" }], // non-ASCII
    ["Bearer tok\u0000", { kind: "malformed" }],
    [["Bearer a", "Bearer b"], { kind: "malformed" }],
  ];
  for (const [value, want] of cases) t.same(parseAuthorization(value), want, JSON.stringify(value));
  t.end();
});

void t.test("compileTokens", (t) => {
  const web = makeClient({ id: "web", auth: { tokens: [hashToken("tok-web"), hashToken("tok-web-2")] } });
  const srv = makeClient({ id: "srv", auth: { tokens: [hashToken("tok-srv")] } });
  const dupA = makeClient({ id: "dup-a", auth: { tokens: [hashToken("tok-dup")] } });
  const dupB = makeClient({ id: "dup-b", auth: { tokens: [hashToken("tok-dup")] } });
  const twice = makeClient({ id: "twice", auth: { tokens: [hashToken("tok-twice"), hashToken("tok-twice")] } });
  const index = compileTokens([web, srv, dupA, dupB, twice]);
  t.same(index.match("tok-web"), { kind: "client", client: web });
  t.same(index.match("tok-web-2"), { kind: "client", client: web });
  t.same(index.match("tok-srv"), { kind: "client", client: srv });
  t.same(index.match("tok-twice"), { kind: "client", client: twice }, "a client listing a digest twice is not ambiguous");
  t.same(index.match("tok-dup"), { kind: "ambiguous" });
  t.same(index.match("tok-wrong"), { kind: "none" });
  t.same(index.match("tok-web "), { kind: "none" });
  t.same(index.match(""), { kind: "none" });
  t.same(index.match(hashToken("tok-web")), { kind: "none" }, "the digest itself is not a token");
  t.same(compileTokens([]).match("anything"), { kind: "none" });
  t.end();
});

void t.test("compileTokens refuses a malformed digest without quoting it", (t) => {
  const bad = makeClient({ auth: { tokens: ["plaintext-secret"] } });
  t.throws(() => compileTokens([bad]), { message: "clients[0].auth.tokens[0] is not sha256:<64 hex>" });
  t.throws(() => compileTokens([makeClient({ auth: { tokens: ["sha256:abc"] } })]));
  // One spelling per digest, as config validation demands (its duplicate check compares strings).
  const upper = hashToken("tok-srv").toUpperCase().replace("SHA256:", "sha256:");
  t.throws(() => compileTokens([makeClient({ auth: { tokens: [upper] } })]), { message: "clients[0].auth.tokens[0] is not sha256:<64 hex>" });
  t.end();
});

void t.test("parseTokenHash: the one grammar, messages that never quote the entry", (t) => {
  const good = hashToken("tok-web");
  const parsed = parseTokenHash(good);
  t.ok(parsed.ok && parsed.value.equals(Buffer.from(good.slice(7), "hex")), "the 32 digest bytes");
  const raw = "tok-live-0123456789abcdef";
  const cases: Array<[string, RegExp]> = [
    [raw, /hash-token/],
    [good.toUpperCase().replace("SHA256:", "sha256:"), /must be lower case/],
    ["sha256:abc", /exactly 64 lower-case hex digits/],
    [`${good}0`, /exactly 64 lower-case hex digits/],
    [good.toUpperCase(), /is not a token hash/],
    [` ${good}`, /is not a token hash/],
  ];
  for (const [input, re] of cases) {
    const r = parseTokenHash(input);
    t.ok(!r.ok && re.test(r.message), JSON.stringify(input));
    if (!r.ok) t.notOk(r.message.includes(input.trim()), "the entry is not in the message");
  }
  t.end();
});

void t.test("isBearerToken is exactly what parseAuthorization can return", (t) => {
  for (const token of ["a", "tok-1", "~!@#$%^&*()_+{}|:<>?", "x".repeat(4096)]) {
    t.ok(isBearerToken(token), token.slice(0, 20));
    t.same(parseAuthorization(`Bearer ${token}`), { kind: "bearer", token });
  }
  for (const token of ["", "a b", "a\tb", "tök", "a\u0000", " a"]) {
    t.notOk(isBearerToken(token), JSON.stringify(token));
    t.notSame(parseAuthorization(`Bearer ${token}`), { kind: "bearer", token });
  }
  t.end();
});
