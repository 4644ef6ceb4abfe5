// The limits store's own series: each prefixed mythiq_proxy_, documented in docs/observability.md
// and docs/limits.md with its labels, accepted by promtool, and created once per registry (a
// reload builds the limits again against the same one).
import { readFileSync } from "node:fs";
import t from "tap";
import { Registry } from "prom-client";
import { createLimitsMetrics } from "../../src/observe/limits-metrics.ts";
import { promtool } from "../helpers/observe-checks.ts";
import { find, parseScrape, valueOf } from "../helpers/prom-text.ts";

const docs = (name: string) => readFileSync(new URL(`../../docs/${name}`, import.meta.url), "utf8");

t.test("every series is prefixed, documented with its labels, and passes promtool", async (t) => {
  const registry = new Registry();
  const metrics = createLimitsMetrics(registry);
  metrics.storeUp(true);
  metrics.storeError();
  metrics.failover();
  metrics.localDecision("budget", false);
  metrics.writtenBack("web", 0.25);
  const text = await registry.metrics();
  const families = registry.getMetricsAsArray();
  t.equal(families.length, 5);
  const observability = docs("observability.md");
  const limits = docs("limits.md");
  for (const family of families) {
    const name = family.name;
    t.match(name, /^mythiq_proxy_limits_/, name);
    const short = name.slice("mythiq_proxy_".length);
    const row = observability.split("\n").find((l) => l.startsWith(`| \`${short}\``));
    t.ok(row, `${short} has a row in docs/observability.md`);
    t.ok(limits.includes(`\`${name}`), `${name} is in docs/limits.md`);
    const labels = [...new Set(find(parseScrape(text), name).flatMap((s) => Object.keys(s.labels)))].sort();
    for (const label of labels) t.ok(row?.includes(`\`${label}\``), `${short}: label ${label} documented`);
  }
  const s = parseScrape(text);
  t.equal(valueOf(s, "mythiq_proxy_limits_local_decisions_total", { limit: "budget", result: "refused" }), 1);
  t.equal(find(s, "mythiq_proxy_limits_local_decisions_total").length, 6, "every limit × result starts at 0");
  t.equal(valueOf(s, "mythiq_proxy_limits_written_back_usd_total", { client: "web" }), 0.25);
  const checked = await promtool(["check", "metrics"], text);
  t.equal(checked.code, 0, checked.output);

  createLimitsMetrics(registry).failover();
  t.equal(valueOf(parseScrape(await registry.metrics()), "mythiq_proxy_limits_store_failovers_total"), 2, "found again by name, not created twice");
});
