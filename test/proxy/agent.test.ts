// The upstream url, the pool, and the refusal of a clear-text upstream without opt-in.
import * as https from "node:https";
import t from "tap";
import { silentLogger } from "../../src/observe/log.ts";
import { createUpstreamAgent, parseUpstream } from "../../src/proxy/agent.ts";
import { createForwarder } from "../../src/proxy/forward.ts";
import { DEFAULT_UPSTREAM } from "../helpers/forward-harness.ts";

t.test("parseUpstream", async (t) => {
  t.same(parseUpstream("https://api.mythiq.ai"), { protocol: "https:", hostname: "api.mythiq.ai", port: 443, host: "api.mythiq.ai", basePath: "" });
  t.same(parseUpstream("https://api.mythiq.ai:8443/v1-proxy/"), { protocol: "https:", hostname: "api.mythiq.ai", port: 8443, host: "api.mythiq.ai:8443", basePath: "/v1-proxy" });
  t.same(parseUpstream("http://[::1]:9000"), { protocol: "http:", hostname: "::1", port: 9000, host: "[::1]:9000", basePath: "" });
  t.throws(() => parseUpstream("ftp://x"));
});

t.test("the agent pools with keep-alive, max_sockets, and always verifies TLS", async (t) => {
  const agent = createUpstreamAgent(parseUpstream("https://api.mythiq.ai"), { ...DEFAULT_UPSTREAM, url: "https://api.mythiq.ai", max_sockets: 7 });
  t.teardown(() => agent.destroy());
  t.ok(agent instanceof https.Agent);
  t.equal(agent.maxSockets, 7);
  t.equal((agent as unknown as { keepAlive: boolean }).keepAlive, true);
  t.equal((agent as unknown as { options: { rejectUnauthorized: boolean } }).options.rejectUnauthorized, true);
});

t.test("an http:// upstream without allow_insecure_upstream is refused", async (t) => {
  t.throws(
    () => createForwarder({ upstream: { ...DEFAULT_UPSTREAM, url: "http://api.mythiq.ai", allow_insecure_upstream: false }, logger: silentLogger }),
    /allow_insecure_upstream/,
  );
  const forwarder = createForwarder({ upstream: { ...DEFAULT_UPSTREAM, url: "https://api.mythiq.ai", allow_insecure_upstream: false }, logger: silentLogger });
  forwarder.close();
  t.pass("https needs no opt-in");
});
