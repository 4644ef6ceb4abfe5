import t from "tap";
import type { ClientConfig } from "../../src/config/types.ts";
import { AUDIT_MODEL_MAX, AUDIT_VALUE_MAX, TRUNCATED, auditRecord, bounded, pathForLog, writeAudit, type AuditInput } from "../../src/observe/audit.ts";
import { createLogger } from "../../src/observe/log.ts";
import type { RequestContext } from "../../src/pipeline/types.ts";

const TOKEN = "tok-web-0123456789abcdefghij";
const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
const COOKIE_SECRET = "sess-cookie-value-987654321";
const KEY = "sk-live-0123456789abcdef0123456789abcdef";

const client = {
  id: "web-app",
  key: "production",
  auth: { tokens: [], jwt: true, anonymous: false },
  routes: ["GET /v1/generations?limit&after"],
  max_body: 1024,
} as ClientConfig;

function context(over: Partial<RequestContext> = {}): RequestContext {
  return {
    id: "req-1",
    method: "POST",
    path: "/v1/images/generations",
    query: `api_key=${TOKEN}`,
    queryNames: ["api_key"],
    headers: {
      authorization: `Bearer ${TOKEN}`,
      cookie: `session=${JWT}; other=${COOKIE_SECRET}`,
      "x-api-key": KEY,
      "proxy-authorization": `Basic ${TOKEN}`,
      origin: "https://app.example.com",
    },
    socketIp: "10.0.0.1",
    ip: "203.0.113.7",
    origin: "https://app.example.com",
    client,
    credential: "cookie",
    subject: "user-42",
    route: "GET /v1/generations?limit&after",
    model: "stability/sdxl",
    imageCount: 1,
    costUsd: 0.004,
    cleanups: [],
    ...over,
  };
}

// The key object carries its value as an ordinary enumerable property here: the record must pick
// the name and fingerprint and nothing else, not rely on HeldKey hiding it.
const heldKey = { name: "production", fingerprint: "0123abcd", value: KEY };

function input(over: Partial<AuditInput> = {}): AuditInput {
  return {
    includeSubject: true,
    ctx: context(),
    // A request with a context must not pay for the fallback: reading it fails the test.
    fallback: () => {
      throw new Error("fallback read although a context exists");
    },
    status: 200,
    key: heldKey,
    durationMs: 1234.56789,
    upstreamMs: 1200.1,
    bytesIn: 120,
    bytesOut: 4096,
    now: () => new Date("2026-05-01T12:00:00.000Z"),
    ...over,
  };
}

void t.test("every SPEC field, in SPEC's order, then SPEC §11's check", (t) => {
  const record = auditRecord(input());
  t.same(Object.keys(record), [
    "time", "request_id", "client", "subject", "ip", "origin", "method", "route", "path", "model",
    "status", "reason", "key", "key_fingerprint", "duration_ms", "upstream_ms", "bytes_in", "bytes_out", "check",
  ]);
  t.same(record, {
    time: "2026-05-01T12:00:00.000Z",
    request_id: "req-1",
    client: "web-app",
    subject: "user-42",
    ip: "203.0.113.7",
    origin: "https://app.example.com",
    method: "POST",
    route: "GET /v1/generations",
    path: "/v1/images/generations",
    model: "stability/sdxl",
    status: 200,
    reason: null,
    key: "production",
    key_fingerprint: "0123abcd",
    duration_ms: 1234.568,
    upstream_ms: 1200.1,
    bytes_in: 120,
    bytes_out: 4096,
    check: null,
  });
  t.end();
});

void t.test("trace_id only when tracing is on; check names the check that refused", (t) => {
  t.notOk("trace_id" in auditRecord(input()), "no field at all without a trace");
  const traced = auditRecord(input({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736" }));
  t.equal(traced.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  t.equal(Object.keys(traced).at(-1), "trace_id", "after every other field");
  const refused = auditRecord(input({ status: 429, reason: "rate_limited", check: "rate_limit", key: undefined }));
  t.equal(refused.check, "rate_limit");
  t.end();
});

void t.test("subject is left out entirely without include_subject", (t) => {
  const record = auditRecord(input({ includeSubject: false }));
  t.notOk("subject" in record);
  t.notOk(JSON.stringify(record).includes("user-42"));
  t.end();
});

void t.test("a refusal before any context: fallback values, query and userinfo dropped", (t) => {
  const record = auditRecord(
    input({
      ctx: undefined,
      key: undefined,
      upstreamMs: undefined,
      status: 400,
      reason: "invalid_path",
      fallback: () => ({ id: "req-2", method: "GET", path: `http://admin:${TOKEN}@evil.example/../x?token=${TOKEN}#frag`, ip: "::1" }),
    }),
  );
  t.equal(record.request_id, "req-2");
  t.equal(record.client, null);
  t.equal(record.subject, null);
  t.equal(record.ip, "::1");
  t.equal(record.origin, null);
  t.equal(record.route, null);
  t.equal(record.path, "http://[redacted]@evil.example/../x");
  t.equal(record.model, null);
  t.equal(record.reason, "invalid_path");
  t.equal(record.key, null);
  t.equal(record.key_fingerprint, null);
  t.equal(record.upstream_ms, null);
  t.notOk(JSON.stringify(record).includes(TOKEN));
  t.end();
});

void t.test("a refused identified request names the client's key but no fingerprint", (t) => {
  const record = auditRecord(input({ key: undefined, upstreamMs: undefined, status: 403, reason: "model_not_allowed", ctx: context({ model: "openai/dall-e-3" }) }));
  t.equal(record.key, "production");
  t.equal(record.key_fingerprint, null);
  t.equal(record.model, "openai/dall-e-3");
  t.end();
});

void t.test("values from the caller are bounded with a marker", (t) => {
  const long = "/v1/" + "a".repeat(10_000);
  const record = auditRecord(
    input({ ctx: context({ path: long, origin: "https://" + "o".repeat(5_000), model: "m".repeat(5_000), subject: "s".repeat(5_000) }) }),
  );
  for (const field of ["path", "origin", "subject"] as const) {
    const value = record[field]!;
    t.equal(value.length, AUDIT_VALUE_MAX + TRUNCATED.length, `${field} bounded`);
    t.ok(value.endsWith(TRUNCATED), `${field} marked`);
  }
  t.equal(record.model?.length, AUDIT_MODEL_MAX, "the model: at most 128 characters, marker included (SPEC §11)");
  t.ok(record.model?.endsWith(TRUNCATED), "model marked");
  t.equal(auditRecord(input({ ctx: context({ model: "m".repeat(AUDIT_MODEL_MAX) }) })).model, "m".repeat(AUDIT_MODEL_MAX), "128 characters are kept whole");
  t.ok(JSON.stringify(record).length < 4_000, "the whole line stays small");
  const emoji = "x".repeat(AUDIT_VALUE_MAX - 1) + "😀";
  t.equal(bounded(emoji), "x".repeat(AUDIT_VALUE_MAX - 1) + TRUNCATED, "a surrogate pair is never split");
  t.equal(bounded("short"), "short");
  t.equal(pathForLog("/v1/models?after=x"), "/v1/models");
  t.equal(pathForLog("*"), "*");
  t.end();
});

void t.test("control bytes cannot break the line", (t) => {
  const lines: string[] = [];
  const logger = createLogger({ write: (line) => lines.push(line) });
  writeAudit(logger, { enabled: true, include_subject: true }, input({ ctx: context({ origin: "https://a\r\n{\"forged\":true}", subject: "x\u0000\u2028y" }) }));
  t.equal(lines.length, 1);
  t.equal(lines[0]!.split("\n").length, 2, "one line, one trailing newline");
  t.equal(JSON.parse(lines[0]!).origin, "https://a\r\n{\"forged\":true}", "the value survives, escaped");
  t.end();
});

void t.test("no token, cookie, JWT or key reaches the written line", (t) => {
  const lines: string[] = [];
  // No secret registered with the logger: the record itself must not carry them.
  const logger = createLogger({ write: (line) => lines.push(line) });
  for (const includeSubject of [true, false]) {
    writeAudit(logger, { enabled: true, include_subject: includeSubject }, input());
    writeAudit(logger, { enabled: true, include_subject: includeSubject }, input({ ctx: undefined, fallback: () => ({ id: "r", method: "GET", path: `/x?jwt=${JWT}&key=${KEY}`, ip: "1.2.3.4" }) }));
  }
  t.equal(lines.length, 4);
  const all = lines.join("");
  for (const secret of [TOKEN, JWT, COOKIE_SECRET, KEY, "Bearer", "session="]) t.notOk(all.includes(secret), `no ${secret.slice(0, 12)}…`);
  t.notOk(all.includes('"level"'), "an audit line is a record, not a log message");
  t.end();
});

void t.test("a fingerprint that is not 8 hex digits is not written", (t) => {
  const record = auditRecord(input({ key: { name: "production", fingerprint: KEY } }));
  t.equal(record.key_fingerprint, "invalid");
  t.end();
});

void t.test("audit.enabled false writes nothing; bad numbers are written as 0", (t) => {
  const lines: string[] = [];
  const logger = createLogger({ write: (line) => lines.push(line) });
  writeAudit(logger, { enabled: false, include_subject: true }, input());
  t.equal(lines.length, 0);
  const record = auditRecord(input({ durationMs: Number.NaN, bytesIn: -1, bytesOut: Number.POSITIVE_INFINITY }));
  t.equal(record.duration_ms, 0);
  t.equal(record.bytes_in, 0);
  t.equal(record.bytes_out, 0);
  t.end();
});
