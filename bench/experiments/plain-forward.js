// Removal experiment "forwarder" (removals.ts): loaded in place of dist/proxy/forward.js, so its
// imports resolve from dist/proxy/. Forwards the way the bare pass-through does (http-proxy-3's
// own passes: header copy, pipe both ways), keeping only what the pipeline needs back: the key
// header, the response headers it adds, a held body, and a result when the response ends.
// No upstream error mapping, timeouts, 401 retry, leak scan or response plans: benchmark only.
import { Readable } from "node:stream";
import { createProxyServer } from "http-proxy-3";
import { createUpstreamAgent, parseUpstream } from "./agent.js";

export function createForwarder(options) {
  const endpoint = parseUpstream(options.upstream.url);
  const agent = createUpstreamAgent(endpoint, options.upstream, {});
  const proxy = createProxyServer({ target: options.upstream.url, agent });
  proxy.on("error", (_err, _req, res) => {
    if ("writeHead" in res && !res.headersSent) {
      res.writeHead(502);
      res.end();
    } else res.destroy();
  });
  return {
    forward(input) {
      const { res } = input;
      for (const [name, value] of Object.entries(input.responseHeaders)) res.setHeader(name, value);
      return new Promise((resolve) => {
        res.once("close", () =>
          resolve({ status: res.statusCode, upstreamStatus: res.statusCode, upstreamMs: 0, bytesIn: 0, bytesOut: 0, forwarded: true, key: input.key, clientAborted: false }),
        );
        proxy.web(input.req, res, {
          headers: { authorization: `Bearer ${input.key.value}` },
          ...(input.body.kind === "held" ? { buffer: Readable.from([input.body.bytes]) } : {}),
        });
      });
    },
    close() {
      agent.destroy();
    },
  };
}
