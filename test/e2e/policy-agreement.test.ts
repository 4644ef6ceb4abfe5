// The same policy cases, decided twice: by `test-policy` (offline) and by the running proxy over
// real sockets in front of a recording fake MythIQ. Every example's cases must get the same
// decision both ways: allowed for the same client with the same key, or refused with the same
// status and reason (and then the upstream received nothing).
//
// To run an example for real, its config is adapted without touching its rules: the upstream is the
// fake, every key comes from an environment variable with a distinct value (so the key MythIQ
// receives tells which named key was injected), 127.0.0.1 becomes a trusted proxy so each case's
// caller IP can be sent as X-Forwarded-For, and a JWKS session config uses an HS256 secret instead
// (the case's session JWT is issued once and sent to both sides).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { parse, stringify } from "yaml";
import { loadConfigFile } from "../../src/config/load.ts";
import { loadCasesFile, type PolicyCase } from "../../src/policy/cases.ts";
import { compare, createPolicyRunner, type Outcome } from "../../src/policy/run.ts";
import { createSessionIssuer } from "../../src/policy/sessions.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, waitReady } from "../helpers/proxy-harness.ts";
import { rawRequest } from "../helpers/policy-wire.ts";
import { sendRaw } from "../helpers/raw-http.ts";

const EXAMPLES = ["public-spa", "server-rendered", "sessions", "multi-app", "private-media"];
const SESSION_SECRET = "policy-agreement-hs256-secret-0123456789abcdef";

let upstream: FakeUpstream;
const dir = mkdtempSync(join(tmpdir(), "mythiq-agreement-"));
t.before(async () => {
  upstream = await startFakeUpstream();
});
t.teardown(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

function keyValue(name: string): string {
  return `mq-agreement-${name}-0123456789abcdef`;
}

/** The example's config, made runnable here (see the header comment). */
function adapt(yamlText: string, upstreamUrl: string): { yaml: string; env: Record<string, string> } {
  const doc = parse(yamlText) as Record<string, unknown>;
  const env: Record<string, string> = { SESSION_SECRET };
  doc["listen"] = { host: "127.0.0.1", port: 8080 };
  doc["admin"] = { host: "127.0.0.1", port: 9090 };
  doc["upstream"] = { url: upstreamUrl, allow_insecure_upstream: true, connect_timeout: "2s", response_timeout: "5s" };
  doc["trusted_proxies"] = ["127.0.0.0/8"];
  const keys = doc["keys"] as Record<string, unknown>;
  for (const name of Object.keys(keys)) {
    env[`KEY_${name.toUpperCase()}`] = keyValue(name);
    keys[name] = { source: "env", env: `KEY_${name.toUpperCase()}` };
  }
  const jwt = (doc["sessions"] as { jwt?: Record<string, unknown> } | undefined)?.jwt;
  if (jwt !== undefined) {
    delete jwt["jwks_url"];
    jwt["secret"] = { env: "SESSION_SECRET" };
    jwt["algorithms"] = ["HS256"];
  }
  return { yaml: stringify(doc), env };
}

/** The case as the running proxy can receive it: the caller IP travels as X-Forwarded-For from 127.0.0.1. */
function adaptCase(testCase: PolicyCase, session: string | undefined): PolicyCase {
  const request = { ...testCase.request, ip: "127.0.0.1", forwarded_for: testCase.request.ip };
  if (session !== undefined) {
    delete request.claims;
    request.jwt = session;
  }
  return { ...testCase, request };
}


/** The audit line of a request; it is written when the request's accounting ends, just after the response. */
async function auditLine(logs: ReadonlyArray<Record<string, unknown>>, id: string | undefined): Promise<Record<string, unknown> | undefined> {
  for (let waited = 0; waited < 2000; waited += 10) {
    const line = logs.findLast((l) => l["request_id"] === id && "status" in l);
    if (line !== undefined) return line;
    await new Promise((r) => setTimeout(r, 10));
  }
  return undefined;
}

for (const example of EXAMPLES) {
  t.test(`${example}: test-policy and the running proxy decide every case alike`, async (t) => {
    const { yaml, env } = adapt(readFileSync(`config/examples/${example}.yaml`, "utf8"), upstream.url);
    const configFile = join(dir, `${example}.yaml`);
    writeFileSync(configFile, yaml);
    const adapted = await loadConfigFile(configFile);
    if (!adapted.ok) throw new Error(adapted.problems.map((p) => p.message).join("; "));
    const cases = await loadCasesFile(`config/examples/${example}.cases.yaml`);
    if (!cases.ok) throw new Error("cases invalid");

    const proxy = await startTestProxy({ yaml, env: { ...env } });
    t.teardown(() => proxy.close());
    await waitReady(proxy);
    const issuer = await createSessionIssuer(adapted.config, env);
    const runner = await createPolicyRunner(adapted.config, adapted.hash, env);
    const cookieName = adapted.config.sessions?.jwt.cookie;
    const keyNames = new Map(Object.keys(adapted.config.keys).map((name) => [`Bearer ${keyValue(name)}`, name]));

    for (const located of cases.cases) {
      const original = located.case;
      const session = original.request.claims === undefined ? undefined : await issuer.issue(original.request.claims);
      const testCase = adaptCase(original, session);

      const offline = await runner.run(testCase);
      t.same(compare(original.expect, offline), [], `${original.name}: test-policy agrees with the case`);

      const before = upstream.requests.length;
      const res = await sendRaw(proxy.port, rawRequest(testCase, cookieName), { finals: 1 });
      const response = res.responses.find((r) => r.status >= 200);
      const arrived = upstream.requests.slice(before);
      let live: Outcome;
      if (arrived.length > 0) {
        t.equal(arrived.length, 1, `${original.name}: forwarded once`);
        const audit = await auditLine(proxy.logs, response?.headers["x-request-id"]);
        live = { allow: true, client: String(audit?.["client"]), key: keyNames.get(arrived[0]!.headers["authorization"] ?? "") ?? "(unknown key)" };
      } else if (response?.status === 204) {
        live = { allow: true, client: "(preflight)", key: "(none)" };
      } else {
        const body = JSON.parse(response?.body ?? "{}") as { reason?: string };
        live = { allow: false, status: response?.status ?? 0, reason: body.reason as never, client: offline.client, key: offline.key };
      }
      if (live.allow && offline.allow) {
        t.same(live, offline, `${original.name}: same client and key both ways`);
      } else if (!live.allow && !offline.allow) {
        t.same([live.status, live.reason], [offline.status, offline.reason], `${original.name}: same refusal both ways`);
      } else {
        t.fail(`${original.name}: test-policy says ${JSON.stringify(offline)}, the proxy did ${JSON.stringify(live)}`);
      }
    }
  });
}
