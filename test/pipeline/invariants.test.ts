// A broken invariant inside the proxy is a bug, never the caller's fault (issue: "the caller is known
// after identity"): the pipeline throws, the connection is reset (an RST, no status line), the error
// is logged and counted in mythiq_proxy_internal_errors_total, the request is still audited and its
// concurrency slot given back, and MythIQ receives nothing.
import net from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import t from "tap";
import { loadConfigFile } from "../../src/config/load.ts";
import { createListener } from "../../src/http/listener.ts";
import { createLogger } from "../../src/observe/log.ts";
import { createMetrics } from "../../src/observe/metrics.ts";
import { compileConfig, type CompiledConfig } from "../../src/pipeline/compile.ts";
import { createRequestHandler } from "../../src/pipeline/listen-handler.ts";
import { InvariantError } from "../../src/pipeline/types.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { parseScrape, valueOf } from "../helpers/prom-text.ts";
import { configYaml, TEST_KEY, TOKEN } from "../helpers/proxy-harness.ts";

/** Sends one request; resolves with what came back and how the connection ended. */
function exchange(port: number, request: string): Promise<{ received: string; reset: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
    let received = "";
    let reset = false;
    socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
    socket.on("error", (err: Error & { code?: string }) => (reset = err.code === "ECONNRESET"));
    socket.on("close", () => resolve({ received, reset }));
  });
}

void t.test("a rule that meets a client it was not compiled for resets the connection, logs and counts it", async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const dir = mkdtempSync(join(tmpdir(), "mythiq-invariant-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "proxy.yaml");
  // `web` holds a concurrency slot from step 6 on: the breach comes after it (a body-step rule).
  writeFileSync(file, configYaml(upstream.url).replace("    max_body: 1KiB\n", "    max_body: 1KiB\n    concurrency: 1\n"));
  const loaded = await loadConfigFile(file);
  if (!loaded.ok) throw new Error(loaded.problems.map((p) => p.message).join("; "));

  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ level: "debug", redact: false, write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const metrics = createMetrics({ version: "t", processMetrics: false });
  const compiled = compileConfig(loaded.config, loaded.hash, { logger, metrics, env: { MYTHIQ_API_KEY: TEST_KEY } });
  compiled.keyring.start();
  t.teardown(() => compiled.close());
  for (let waited = 0; compiled.keyring.current("default") === undefined; waited += 10) {
    if (waited > 5_000) throw new Error("key not held");
    await new Promise((r) => setTimeout(r, 10));
  }
  const broken: CompiledConfig = {
    ...compiled,
    body: {
      ...compiled.body,
      plan: () => {
        throw new InvariantError("body plan: client web is not part of this policy");
      },
    },
  };
  const listener = createListener(
    loaded.config.server,
    createRequestHandler(broken, { metrics, logger, now: () => performance.now(), draining: () => false }),
  );
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => listener.close(() => resolve())));
  const port = (listener.address() as AddressInfo).port;

  const request = `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`;
  for (const round of [1, 2]) {
    const result = await exchange(port, request);
    t.equal(result.received, "", `round ${round}: no status line, no JSON blaming the caller`);
    t.ok(result.reset, `round ${round}: the connection was reset`);
  }
  t.equal(upstream.requests.length, 0, "MythIQ received nothing");

  const failures = lines.filter((l) => l["msg"] === "request handling failed: connection reset");
  t.equal(failures.length, 2, "each breach is logged");
  t.match(failures[0], { level: "error", request_id: /^[0-9a-f-]{36}$/ });
  const scrape = parseScrape(await metrics.metricsText());
  t.equal(valueOf(scrape, "mythiq_proxy_internal_errors_total"), 2, "and counted");
  t.equal(valueOf(scrape, "mythiq_proxy_denied_total", { client: "web", reason: "missing_credentials" }), undefined, "never a refusal");
  const audits = lines.filter((l) => "status" in l && l["client"] === "web");
  t.same(audits.map((l) => l["status"]), [0, 0], "audited, with no status sent");
  // concurrency: 1, yet the second request got as far as the first: the slot was given back.
  t.notOk(lines.some((l) => l["reason"] === "concurrency_limited"), "the concurrency slot was released after the first breach");
});
