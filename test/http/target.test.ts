import t from "tap";
import { parseTarget } from "../../src/http/target.ts";

type Row = readonly [target: string, expected: { path: string; query?: string; names?: string[] } | "invalid_path" | "query_not_allowed"];

// Every path bypass of docs/security.md §1 (dot segments, escapes, backslashes, fragments,
// absolute form), plus the edges of what is accepted. The accepted rows pin the exact bytes that will be forwarded.
const rows: readonly Row[] = [
  ["/v1/models", { path: "/v1/models" }],
  ["/", { path: "/" }],
  ["/v1/models/", { path: "/v1/models/" }],
  ["/V1/MODELS", { path: "/V1/MODELS" }],
  ["/v1/models/stability:sdxl@x", { path: "/v1/models/stability:sdxl@x" }],
  ["/v1/a-b_c~d!$&'()*+,=", { path: "/v1/a-b_c~d!$&'()*+,=" }],
  ["/v1/.well-known/x", { path: "/v1/.well-known/x" }],
  ["/v1/models/a.b", { path: "/v1/models/a.b" }],
  ["/v1/generations?limit=10&after=abc", { path: "/v1/generations", query: "limit=10&after=abc", names: ["limit", "after"] }],
  ["/v1/generations?limit&limit=2&x.y-z_1=", { path: "/v1/generations", query: "limit&limit=2&x.y-z_1=", names: ["limit", "limit", "x.y-z_1"] }],
  ["/v1/m?a=%2e%2e%2f..%5c", { path: "/v1/m", query: "a=%2e%2e%2f..%5c", names: ["a"] }],
  ["/v1/m?x=/allowed?y=1", { path: "/v1/m", query: "x=/allowed?y=1", names: ["x"] }],
  ["/v1/m?a=1=2", { path: "/v1/m", query: "a=1=2", names: ["a"] }],
  // Appendix A.1: what WHATWG would resolve
  ["/v1/images/generations/../../admin", "invalid_path"],
  ["/v1/images/generations/%2e%2e/%2e%2e/admin", "invalid_path"],
  ["/v1/images/generations/.%2e/.%2e/admin", "invalid_path"],
  ["/v1/images/generations/..%2f..%2fadmin", "invalid_path"],
  ["/v1/images/generations/%252e%252e/admin", "invalid_path"],
  ["/v1\\..\\admin", "invalid_path"],
  ["/v1/models\\", "invalid_path"],
  ["//evil.example/v1/models", "invalid_path"],
  ["/v1//models", "invalid_path"],
  ["/v1/models//", "invalid_path"],
  ["/v1/./models", "invalid_path"],
  ["/./v1/models", "invalid_path"],
  ["/v1/models/.", "invalid_path"],
  ["/v1/models/..", "invalid_path"],
  ["/..", "invalid_path"],
  ["/v1/models.", "invalid_path"],
  ["/v1/models/...", "invalid_path"],
  ["/v1/models#frag", "invalid_path"],
  ["/v1/models?a=1#/../../admin", "invalid_path"],
  ["/v1/models#", "invalid_path"],
  ["http://evil.example/v1/admin", "invalid_path"],
  ["https://api.mythiq.ai/v1/models", "invalid_path"],
  ["api.mythiq.ai:443", "invalid_path"],
  ["*", "invalid_path"],
  ["", "invalid_path"],
  ["v1/models", "invalid_path"],
  ["/v1/models;x=1", "invalid_path"],
  ["/v1/models/..;/admin", "invalid_path"],
  ["/v1/models%00", "invalid_path"],
  ["/v1/%6d%6fdels", "invalid_path"],
  ["/v1/models%2fadmin", "invalid_path"],
  ["/v1/models%", "invalid_path"],
  ["/v1/mod\u00e9ls", "invalid_path"],
  ["/v1/models\u0000", "invalid_path"],
  ["/v1/models\u007f", "invalid_path"],
  ["/v1/mod els", "invalid_path"],
  ["/v1/models\t", "invalid_path"],
  ["/v1/models?a=\u00e9", "invalid_path"],
  ["/v1/models?a=b c", "invalid_path"],
  ["/v1/mod{els}", "invalid_path"],
  ["/v1/mod|els", "invalid_path"],
  ["/v1/mod^els", "invalid_path"],
  ["/v1/mod`els", "invalid_path"],
  ["/v1/mod\"els", "invalid_path"],
  ["/v1/mod<els>", "invalid_path"],
  ["/v1/mod[0]", "invalid_path"],
  ["/v1/models?limit=1;admin=1", "invalid_path"],
  ["/v1/models?a='1'", "invalid_path"],
  ["/v1/models?a=\"1\"", "invalid_path"],
  ["/v1/models?a=<b>", "invalid_path"],
  // query names we cannot read exactly
  ["/v1/models?", "query_not_allowed"],
  ["/v1/models?&a=1", "query_not_allowed"],
  ["/v1/models?a=1&", "query_not_allowed"],
  ["/v1/models?a=1&&b=2", "query_not_allowed"],
  ["/v1/models?=1", "query_not_allowed"],
  ["/v1/models?a%62=1", "query_not_allowed"],
  ["/v1/models?a+b=1", "query_not_allowed"],
  ["/v1/models?a[]=1", "query_not_allowed"],
  ["/v1/models??a=1", "query_not_allowed"],
];

t.test("parseTarget table", async (t) => {
  for (const [target, expected] of rows) {
    const result = parseTarget(target);
    if (typeof expected === "string") {
      t.match(result, { ok: false, reason: expected }, `${JSON.stringify(target)} → ${expected}`);
      if (!result.ok) t.notOk(result.detail?.includes(target.slice(1)) && target.length > 1, "detail does not echo the target");
    } else {
      t.same(
        result,
        { ok: true, path: expected.path, query: expected.query ?? "", queryNames: expected.names ?? [] },
        `${JSON.stringify(target)} accepted`,
      );
    }
  }
});

t.test("a secret in the target never reaches the refusal detail", async (t) => {
  const secret = "sk-live-0123456789abcdef";
  for (const target of [`/v1/${secret}/../x`, `/v1/x?${secret}%=1`, `/v1/x#${secret}`, `http://${secret}/`]) {
    const result = parseTarget(target);
    t.equal(result.ok, false);
    t.notMatch(JSON.stringify(result), secret);
  }
});

// The property docs/security.md §1 asks for: whatever we accept is exactly what WHATWG (http-proxy-3's
// getPath) would forward, so the path we matched is the path the upstream receives.
t.test("accepted targets are fixed points of WHATWG URL parsing", async (t) => {
  const alphabet = "abcAZ09-._~!$&'()*+,=:@/?#%;\\\"<>[]^`{|} .";
  let seed = 0x2545f491;
  const random = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return Math.abs(seed) % n;
  };
  let accepted = 0;
  const mismatches: string[] = [];
  for (let i = 0; i < 20000; i += 1) {
    let target = "/";
    const length = 1 + random(12);
    for (let j = 0; j < length; j += 1) target += alphabet[random(alphabet.length)];
    const result = parseTarget(target);
    if (!result.ok) continue;
    accepted += 1;
    const url = new URL(target, "http://base.invalid");
    const forwarded = url.pathname + url.search;
    if (forwarded !== target || url.hash !== "") mismatches.push(`${target} → ${forwarded}`);
    if (result.path + (target.includes("?") ? `?${result.query}` : "") !== target) mismatches.push(`${target} split wrongly`);
  }
  t.same(mismatches, [], "no accepted target is rewritten by WHATWG URL parsing");
  t.ok(accepted > 500, `enough accepted samples (${accepted})`);
});
