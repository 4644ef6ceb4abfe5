/**
 * `npm run demo`: the proxy in front of a local stand-in for the MythIQ API, with curl commands that
 * work. Nothing here is used by the real proxy; it only shows the flow without a MythIQ account.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startProxy } from "./lifecycle/start.ts";
import { startStandInMythiq } from "./demo/stand-in-mythiq.ts";
import { createLogger } from "./observe/log.ts";

const DEMO_TOKEN = "demo-token-0123456789";

/** A port from the environment (`DEMO_PORT=9080 npm run demo` when 8080 is taken), else the default. */
function port(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 && value < 65536 ? value : fallback;
}

async function demo(): Promise<void> {
  const standInPort = port("DEMO_UPSTREAM_PORT", 8787);
  const listenPort = port("DEMO_PORT", 8080);
  const adminPort = port("DEMO_ADMIN_PORT", 9090);
  const shipped = fileURLToPath(new URL("../config/demo.yaml", import.meta.url));
  let configFile = shipped;
  let scratch: string | undefined;
  if (standInPort !== 8787) {
    // The stand-in's address is part of the config: run a copy that points at the chosen port.
    scratch = mkdtempSync(join(tmpdir(), "mythiq-proxy-demo-"));
    configFile = join(scratch, "demo.yaml");
    writeFileSync(configFile, readFileSync(shipped, "utf8").replace("http://127.0.0.1:8787", `http://127.0.0.1:${standInPort}`));
  }
  // A fresh random key per run, shared by the stand-in and the proxy only: it is the "real"
  // MythIQ key of this demo and is never printed.
  const apiKey = `mq-demo-${randomBytes(18).toString("base64url")}`;
  const standIn = await startStandInMythiq({ apiKey, port: standInPort });
  const logger = createLogger();
  const proxy = await startProxy({
    configFile,
    env: { MYTHIQ_DEMO_KEY: apiKey },
    logger,
    ports: { listen: listenPort, admin: adminPort },
  });
  const base = `http://127.0.0.1:${proxy.listenAddress.port}`;
  const admin = `http://127.0.0.1:${proxy.adminAddress.port}`;

  process.stderr.write(`
mythiq-proxy demo: the proxy listens on ${base}, a stand-in MythIQ API on 127.0.0.1:${standInPort}.
The stand-in only accepts the proxy's (random, never printed) key; callers only hold a client token.

  # list models, as a server-side app holding a client token
  curl -s ${base}/v1/models -H 'Authorization: Bearer ${DEMO_TOKEN}'

  # OpenAI SDK style: baseURL points at the proxy, apiKey is the client token
  BASE_URL=${base}/v1 API_KEY=${DEMO_TOKEN}
  curl -s "$BASE_URL/images/generations" -H "Authorization: Bearer $API_KEY" \\
       -H 'Content-Type: application/json' -d '{"model":"stability/sdxl","prompt":"a lighthouse at dusk"}'
  #   (in JavaScript: new OpenAI({ baseURL: "${base}/v1", apiKey: "${DEMO_TOKEN}" }))

  # refused: a model the client may not use (403), a page that is not allowed and has no credential (401),
  # a wrong token (401), a route not listed (403)
  curl -s ${base}/v1/images/generations -H 'Authorization: Bearer ${DEMO_TOKEN}' \\
       -H 'Content-Type: application/json' -d '{"model":"openai/dall-e-3","prompt":"x"}'
  curl -s ${base}/v1/models -H 'Origin: https://evil.example'
  curl -s ${base}/v1/models -H 'Authorization: Bearer not-the-token'
  curl -s -X DELETE ${base}/v1/models/stability/sdxl -H 'Authorization: Bearer ${DEMO_TOKEN}'

  # what ops sees
  curl -s ${admin}/readyz
  curl -s ${admin}/metrics | grep '^mythiq_proxy_requests_total'

Audit log lines follow below. Ctrl-C stops the demo.

`);

  const stop = (signal: NodeJS.Signals): void => {
    void proxy.stop(signal).then(() => {
      standIn.close();
      if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
      process.exitCode = 0;
    });
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

demo().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  if (err instanceof Error && "lines" in err) process.stderr.write(`${(err as { lines: string[] }).lines.join("\n")}\n`);
  process.exitCode = 1;
});
