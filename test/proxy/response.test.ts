// Response head filtering and upstream error mapping.
import t from "tap";
import { isRedirect, relayedHeaders } from "../../src/proxy/response.ts";
import { errnoCode } from "../../src/errno.ts";
import { classifyUpstreamError } from "../../src/proxy/upstream-errors.ts";

t.test("relayedHeaders", async (t) => {
  const out = relayedHeaders(
    [
      "Content-Type", "application/json",
      "Connection", "close, X-Hop",
      "X-Hop", "1",
      "Transfer-Encoding", "chunked",
      "Set-Cookie", "a=1",
      "Access-Control-Allow-Origin", "*",
      "Access-Control-Allow-Credentials", "true",
      "Clear-Site-Data", '"*"',
      "Vary", "Accept-Encoding, origin",
      "X-Multi", "1",
      "x-multi", "2",
    ],
    { "x-request-id": "req-1", vary: "Origin", "access-control-allow-origin": "https://app.example.com" },
  );
  t.same(out, {
    "content-type": "application/json",
    vary: "Accept-Encoding, origin",
    "x-multi": ["1", "2"],
    "x-request-id": "req-1",
    "access-control-allow-origin": "https://app.example.com",
  });
});

t.test("isRedirect", async (t) => {
  t.same([299, 300, 301, 302, 303, 304, 307, 308, 399, 400].map(isRedirect), [false, true, true, true, true, false, true, true, true, false]);
});

t.test("classifyUpstreamError", async (t) => {
  const e = (code: string): Error => Object.assign(new Error("x"), { code });
  const cases: Array<[string, boolean, string]> = [
    ["ECONNREFUSED", false, "upstream_unreachable"],
    ["ENOTFOUND", false, "upstream_unreachable"],
    ["EAI_AGAIN", false, "upstream_unreachable"],
    ["DEPTH_ZERO_SELF_SIGNED_CERT", false, "upstream_unreachable"],
    ["ERR_TLS_CERT_ALTNAME_INVALID", false, "upstream_unreachable"],
    ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", false, "upstream_unreachable"],
    ["ECONNRESET", false, "upstream_unreachable"],
    ["ECONNRESET", true, "upstream_reset"],
    ["EPIPE", true, "upstream_reset"],
    ["HPE_INVALID_CONSTANT", true, "upstream_reset"],
    ["ECONNECT_TIMEOUT", false, "upstream_timeout"],
    ["ETIMEDOUT", false, "upstream_timeout"],
  ];
  for (const [code, connected, reason] of cases) t.equal(classifyUpstreamError(e(code), connected), reason, `${code} connected=${connected}`);
  t.equal(errnoCode(new Error("no code"), "unknown"), "unknown");
  t.equal(errnoCode(Object.assign(new Error("x"), { code: "bad code with spaces" }), "unknown"), "unknown", "only code-shaped codes are logged");
  t.equal(errnoCode(null, "unknown"), "unknown");
});
