/**
 * The baseline: a bare http-proxy-3 pass-through that injects the key header and does nothing else
 * (no checks, no metrics, no log). Run as its own process by bench/run.ts:
 *
 *   BENCH_KEY=... node bench/peers/bare-proxy.ts <listen port> <upstream port>
 */
import http from "node:http";
import { createProxyServer } from "http-proxy-3";

const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
const key = process.env["BENCH_KEY"] ?? "";
if (listenPort === undefined || upstreamPort === undefined || key === "") {
  process.stderr.write("usage: BENCH_KEY=... node bench/peers/bare-proxy.ts <listen port> <upstream port>\n");
  process.exit(2);
}

// The same pool settings as mythiq-proxy's forwarder (src/proxy/agent.ts), sized for the 2,000-request run.
const agent = new http.Agent({ keepAlive: true, maxSockets: 4096, scheduling: "lifo" });
const proxy = createProxyServer({
  target: `http://127.0.0.1:${upstreamPort}`,
  agent,
  headers: { authorization: `Bearer ${key}` },
});
// Without an error listener http-proxy-3 throws; a benchmark baseline should answer 502 instead.
proxy.on("error", (_err, _req, res) => {
  if ("writeHead" in res && !res.headersSent) {
    res.writeHead(502);
    res.end();
  } else res.destroy();
});

const server = http.createServer((req, res) => proxy.web(req, res));
server.maxConnections = 100_000;
server.listen({ port: listenPort, host: "127.0.0.1", backlog: 4096 }, () => process.stdout.write("ready\n"));
process.on("SIGTERM", () => {
  server.close();
  server.closeAllConnections();
  agent.destroy();
});
