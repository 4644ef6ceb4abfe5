import { createHash } from "node:crypto";
import t from "tap";
import { compileTokens, hashToken, parseAuthorization } from "../../src/rules/tokens.ts";
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
  const srv = makeClient({ id: "srv", auth: { tokens: [hashToken("tok-srv").toUpperCase().replace("SHA256:", "sha256:")] } });
  const dupA = makeClient({ id: "dup-a", auth: { tokens: [hashToken("tok-dup")] } });
  const dupB = makeClient({ id: "dup-b", auth: { tokens: [hashToken("tok-dup")] } });
  const twice = makeClient({ id: "twice", auth: { tokens: [hashToken("tok-twice"), hashToken("tok-twice")] } });
  const index = compileTokens([web, srv, dupA, dupB, twice]);
  t.same(index.match("tok-web"), { kind: "client", client: web });
  t.same(index.match("tok-web-2"), { kind: "client", client: web });
  t.same(index.match("tok-srv"), { kind: "client", client: srv }, "upper-case hex in the config still matches");
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
  t.end();
});
