/**
 * Fallback for the `/metrics` scrape run while a client with `models` cannot send bodies (so no
 * traffic can create per-model series yet): the proxy's own metrics module and admin server, from
 * dist/, filled with the series that 50 clients × 10 routes × 20 models of traffic would leave.
 * Run as its own process by bench/run.ts once the proxy refuses model-checked bodies:
 *
 *   node bench/metrics-fixture.ts <admin port>
 */
import { fileURLToPath, pathToFileURL } from "node:url";
import type { createAdminServer as CreateAdminServer } from "../src/http/admin.ts";
import type { createMetrics as CreateMetrics } from "../src/observe/metrics.ts";
import type { silentLogger as SilentLogger } from "../src/observe/log.ts";
import { WIDE } from "./config.ts";

const port = Number(process.argv[2]);
const dist = fileURLToPath(new URL("../dist/", import.meta.url));
// Runtime from the build the benchmark measures; types from the source it was built from.
const load = async <T>(path: string): Promise<T> => (await import(pathToFileURL(dist + path).href)) as T;
const { createMetrics } = await load<{ createMetrics: typeof CreateMetrics }>("observe/metrics.js");
const { createAdminServer } = await load<{ createAdminServer: typeof CreateAdminServer }>("http/admin.js");
const { silentLogger } = await load<{ silentLogger: typeof SilentLogger }>("observe/log.js");

const clients = Array.from({ length: WIDE.clients }, (_, i) => `tenant-${String(i).padStart(2, "0")}`);
const metrics = createMetrics({ version: "bench" });
metrics.setLabelSets({ clients, routes: [...WIDE.routes], models: [...WIDE.models], keys: ["default"] });
metrics.configLoaded("bench");
for (const client of clients) {
  for (const route of WIDE.routes) {
    for (const model of WIDE.models) {
      metrics.requestFinished({ client, route, model, status: 200, durationSeconds: 0.002, bytesIn: 200, bytesOut: 300 });
    }
  }
}
for (const route of WIDE.routes) metrics.upstreamDuration(route, 0.001);

const server = createAdminServer({ metrics, readiness: () => ({ ready: true, reasons: [] }), logger: silentLogger });
server.listen(port, "127.0.0.1", () => process.stdout.write("ready\n"));
process.on("SIGTERM", () => server.close());
