/**
 * The bench for the hostile-input suite (test/hostile): the whole proxy in-process, a recording
 * fake MythIQ, a fake identity provider (JWKS), and raw sockets that can connect from any loopback
 * address (127.0.0.2 is "the internet": not a trusted proxy).
 *
 * ```ts
 * const env = await startHostileEnv();
 * await runCases(t, env, cases);           // each case: status, reason, upstream saw nothing / one request, no key byte back
 * await env.close();
 * ```
 */
import net from "node:net";
import type { Test } from "tap";
import { hashToken } from "../../src/rules/tokens.ts";
import { startFakeJwks, makeSigningKey, signSession, AUDIENCE, ISSUER, type FakeJwks, type SigningKey } from "./fake-jwks.ts";
import { startFakeUpstream, type FakeUpstream, type RecordedRequest, type Reply } from "./fake-upstream.ts";
import { startTestProxy, TEST_KEY, TOKEN, TOKEN_HASH, waitReady, type TestProxy } from "./proxy-harness.ts";
import { finalResponses, parseResponses, type RawResponse } from "./raw-http.ts";

export { TEST_KEY, TOKEN };
/** Static token of `partner` (which also takes sessions). */
export const PARTNER_TOKEN = "tok-partner-a1b2c3d4e5f60718";
/** Static token of `internal` (networks 10.0.0.0/8 and fd00::/8 only). */
export const INTERNAL_TOKEN = "tok-internal-99887766554433";

export const ALLOWED_ORIGIN = "https://app.example.com";
/** The attacker's address: loopback, but not in `trusted_proxies`. */
export const UNTRUSTED = "127.0.0.2";
/** The "ingress": in `trusted_proxies`, so its X-Forwarded-For is believed. */
export const TRUSTED = "127.0.0.1";

/**
 * The suite's policy:
 * - `web`: static TOKEN; models stability/sdxl and openai/gpt-image-1; 8 KiB bodies.
 * - `spa`: session JWTs (bearer or the `session` cookie); origins app.example.com and *.example.com; model stability/sdxl.
 * - `partner`: PARTNER_TOKEN or a session; no origins; GET /v1/models.
 * - `internal`: INTERNAL_TOKEN from 10.0.0.0/8 or fd00::/8 only.
 * Sessions: RS256/ES256 from the fake IdP's JWKS. 127.0.0.1 is a trusted proxy.
 */
export function hostileYaml(upstreamUrl: string, jwksUrl: string, authFailures = "{ requests: 10000, per: 1m }"): string {
  return `
listen: { host: 127.0.0.1, port: 8080 }
admin: { host: 127.0.0.1, port: 9090 }
trusted_proxies: [127.0.0.1/32]
upstream:
  url: ${upstreamUrl}
  allow_insecure_upstream: true
  connect_timeout: 2s
  response_timeout: 5s
  idle_timeout: 5s
keys:
  default: { source: env, env: MYTHIQ_API_KEY }
sessions:
  jwt:
    issuer: ${ISSUER}
    audience: ${AUDIENCE}
    jwks_url: ${jwksUrl}
    algorithms: [RS256, ES256]
    cookie: session
    client_claim: client
    subject_claim: sub
    clock_skew: 30s
clients:
  - id: web
    auth: { tokens: ["${TOKEN_HASH}"] }
    routes:
      - GET /v1/models
      - "GET /v1/models/{id}"
      - POST /v1/images/generations
      - POST /v1/images/edits
      - GET /v1/generations?limit&after
    models: [stability/sdxl, openai/gpt-image-1]
    max_body: 8KiB
  - id: spa
    auth: { jwt: true }
    origins: ["${ALLOWED_ORIGIN}", "https://*.example.com"]
    routes: [GET /v1/models, POST /v1/images/generations]
    models: [stability/sdxl]
    max_body: 4KiB
  - id: partner
    auth: { jwt: true, tokens: ["${hashToken(PARTNER_TOKEN)}"] }
    routes: [GET /v1/models]
  - id: internal
    auth: { tokens: ["${hashToken(INTERNAL_TOKEN)}"] }
    networks: [10.0.0.0/8, "fd00::/8"]
    routes: [GET /v1/models]
limits:
  auth_failures: ${authFailures}
`;
}

export interface HostileEnv {
  readonly proxy: TestProxy;
  readonly upstream: FakeUpstream;
  readonly idp: FakeJwks;
  /** The IdP's published signing key. */
  readonly idpKey: SigningKey;
  /** A valid session JWT for `client` (default spa) signed by the IdP. */
  session(claims?: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

export async function startHostileEnv(options: { authFailures?: string } = {}): Promise<HostileEnv> {
  const upstream = await startFakeUpstream();
  const idp = await startFakeJwks();
  const idpKey = await makeSigningKey("RS256", "idp-1");
  idp.publish([idpKey, await makeSigningKey("ES256", "idp-ec")]);
  const proxy = await startTestProxy({ yaml: hostileYaml(upstream.url, idp.url, options.authFailures), env: { MYTHIQ_API_KEY: TEST_KEY } });
  await waitReady(proxy);
  return {
    proxy,
    upstream,
    idp,
    idpKey,
    session: (claims = {}) => signSession(idpKey, { client: "spa", sub: "user-1", ...claims }),
    close: async () => {
      await proxy.close();
      await upstream.close();
      await idp.close();
    },
  };
}

export interface RawResult {
  readonly raw: string;
  readonly responses: RawResponse[];
}

/**
 * Sends `data` from local address `from` and collects the answer: resolves when the server closes
 * the connection, or once `finals` final responses are complete (then the socket is closed).
 * `pauseAfter`: write the first `pauseAfter` bytes, wait for the first response bytes (or 200 ms),
 * then the rest (Expect: 100-continue flows).
 */
export function sendFrom(port: number, data: string | Buffer, options: { from?: string; finals?: number; timeoutMs?: number } = {}): Promise<RawResult> {
  const finals = options.finals ?? 1;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress: options.from ?? TRUSTED });
    let raw = "";
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ raw, responses: parseResponses(raw).responses });
    };
    const timer = setTimeout(() => {
      done = true;
      socket.destroy();
      reject(new Error(`no answer within ${options.timeoutMs ?? 5000} ms; got ${JSON.stringify(raw.slice(0, 300))}`));
    }, options.timeoutMs ?? 5000);
    socket.on("connect", () => socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data));
    socket.on("data", (chunk: Buffer) => {
      raw += chunk.toString("latin1");
      if (finalResponses(raw).length >= finals) finish();
    });
    socket.on("error", () => finish());
    socket.on("close", () => finish());
  });
}

/** True when any 12-byte run of the key appears in `text` (masked keys leak their ends). */
export function leaksKey(text: string, key = TEST_KEY): boolean {
  for (let i = 0; i + 12 <= key.length; i++) if (text.includes(key.slice(i, i + 12))) return true;
  return false;
}

export interface HostileCase {
  readonly name: string;
  /** The exact bytes sent (latin1 string or Buffer). */
  readonly raw: string | Buffer;
  /** Local address to connect from; default TRUSTED (127.0.0.1). */
  readonly from?: string;
  readonly status: number;
  /** The JSON `reason` of a local reply. */
  readonly reason?: string;
  /** The upstream must receive exactly this request (default: nothing). */
  readonly forwarded?: boolean;
  /** Queued on the fake upstream for a forwarded case. */
  readonly reply?: Reply;
  /** Final responses to wait for (pipelining cases); the last one is checked. */
  readonly finals?: number;
  readonly check?: (t: Test, got: RecordedRequest | undefined, res: RawResponse, raw: string) => unknown;
}

/** Runs each case as its own subtest; see `HostileCase`. */
export async function runCases(t: Test, env: HostileEnv, cases: readonly HostileCase[]): Promise<void> {
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const before = env.upstream.requests.length;
      if (c.reply !== undefined) env.upstream.reply(c.reply);
      const res = await sendFrom(env.proxy.port, c.raw, { ...(c.from === undefined ? {} : { from: c.from }), ...(c.finals === undefined ? {} : { finals: c.finals }) });
      const finals = res.responses.filter((r) => r.status >= 200);
      const final = finals[finals.length - 1];
      t.equal(final?.status, c.status, "status");
      if (c.reason !== undefined) {
        let reason: unknown;
        try {
          reason = (JSON.parse(final?.body ?? "") as { reason?: unknown }).reason;
        } catch {
          reason = `not JSON: ${final?.body.slice(0, 80)}`;
        }
        t.equal(reason, c.reason, "reason");
      }
      const arrived = env.upstream.requests.slice(before);
      if (c.forwarded === true) {
        t.equal(arrived.length, 1, "the upstream received exactly one request");
        const got = arrived[0];
        if (got !== undefined) {
          await got.ended;
          t.equal(got.count("authorization"), 1, "one authorization upstream");
          t.equal(got.headers["authorization"], `Bearer ${TEST_KEY}`, "and it is the key");
        }
      } else {
        t.equal(arrived.length, 0, "the upstream received nothing");
      }
      t.notOk(leaksKey(res.raw), "no byte of the key came back");
      if (c.check !== undefined && final !== undefined) await c.check(t, arrived[0], final, res.raw);
    });
  }
}

/** A request head: `METHOD target HTTP/1.1`, then `Host`, then `headers` lines, then CRLF CRLF and `body`. */
export function req(method: string, target: string, headers: readonly string[] = [], body = ""): string {
  return `${method} ${target} HTTP/1.1\r\nHost: proxy.local\r\n${headers.map((h) => `${h}\r\n`).join("")}\r\n${body}`;
}

export const auth = `Authorization: Bearer ${TOKEN}`;

/** A JSON POST from `web` with a correct Content-Length. */
export function jsonPost(body: string | Buffer, headers: readonly string[] = [auth, "Content-Type: application/json"], target = "/v1/images/generations"): Buffer {
  const bytes = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  return Buffer.concat([Buffer.from(req("POST", target, [...headers, `Content-Length: ${bytes.length}`]), "latin1"), bytes]);
}
