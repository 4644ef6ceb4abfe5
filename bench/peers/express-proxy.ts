/**
 * The proxy users write themselves: the "backend proxy" of Express tutorials. cors, a generous
 * express-rate-limit, a client token compared as a SHA-256 hash, a model allowlist on JSON bodies,
 * and http-proxy-middleware injecting the key. Run as its own process by bench/run.ts:
 *
 *   BENCH_KEY=... BENCH_TOKEN_SHA256=sha256:<hex> BENCH_MODELS=a,b,c \
 *     node bench/peers/express-proxy.ts <listen port> <upstream port>
 *
 * Written the way the libraries' READMEs show, with the two things a careful tutorial adds: a
 * keep-alive agent to the upstream and a constant-time token comparison.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import http from "node:http";
import cors from "cors";
import express from "express";
import { rateLimit } from "express-rate-limit";
import { createProxyMiddleware, fixRequestBody } from "http-proxy-middleware";

const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
const key = process.env["BENCH_KEY"] ?? "";
const tokenHash = /^sha256:([0-9a-f]{64})$/.exec(process.env["BENCH_TOKEN_SHA256"] ?? "")?.[1];
const models = new Set((process.env["BENCH_MODELS"] ?? "").split(",").filter((m) => m !== ""));
if (listenPort === undefined || upstreamPort === undefined || key === "" || tokenHash === undefined || models.size === 0) {
  process.stderr.write(
    "usage: BENCH_KEY=... BENCH_TOKEN_SHA256=sha256:<hex> BENCH_MODELS=a,b node bench/peers/express-proxy.ts <listen port> <upstream port>\n",
  );
  process.exit(2);
}
const expected = Buffer.from(tokenHash, "hex");

const app = express();

app.use(cors({ origin: ["http://localhost:3000"] }));

// Limits set as high as mythiq-proxy's in bench/config.ts: the bookkeeping is paid, nothing is refused.
app.use(rateLimit({ windowMs: 1000, limit: 1_000_000, standardHeaders: "draft-8", legacyHeaders: false }));

app.use((req, res, next) => {
  const header = req.headers.authorization ?? "";
  const token = header.startsWith("Bearer ") ? header.slice("Bearer ".length) : "";
  if (!timingSafeEqual(createHash("sha256").update(token).digest(), expected)) {
    res.status(401).json({ error: "unauthorized" });
    return;
  }
  next();
});

app.use(express.json({ limit: "1mb" }));

app.use((req, res, next) => {
  if (req.method !== "POST") {
    next();
    return;
  }
  // Fail closed: a POST whose body is not JSON has no model to check.
  const model: unknown = typeof req.body === "object" && req.body !== null ? (req.body as { model?: unknown }).model : undefined;
  if (typeof model !== "string" || !models.has(model)) {
    res.status(403).json({ error: "model_not_allowed" });
    return;
  }
  next();
});

// The same pool settings as the bare pass-through (bench/peers/bare-proxy.ts).
const agent = new http.Agent({ keepAlive: true, maxSockets: 4096, scheduling: "lifo" });
app.use(
  createProxyMiddleware({
    target: `http://127.0.0.1:${upstreamPort}`,
    changeOrigin: true,
    agent,
    // Lower-case, so it replaces the client's own `authorization` instead of being sent beside it.
    headers: { authorization: `Bearer ${key}` },
    // express.json() consumed the body: send the parsed one upstream again.
    on: { proxyReq: fixRequestBody },
  }),
);

const server = http.createServer(app);
server.maxConnections = 100_000;
server.listen({ port: listenPort, host: "127.0.0.1", backlog: 4096 }, () => process.stdout.write("ready\n"));
process.on("SIGTERM", () => {
  server.close();
  server.closeAllConnections();
  agent.destroy();
});
