// The Grafana dashboard of deploy/grafana: every PromQL expression in it (panels and template
// variables) goes through promtool's parser as a recording rule, names only metrics the proxy
// exports and only variables the dashboard defines, and the panels the issue asks for are there.
import t from "tap";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { metricFamilies, mentionedMetrics, promtool, seriesNames } from "../helpers/observe-checks.ts";

const FILE = join(import.meta.dirname, "../../deploy/grafana/mythiq-proxy.json");

interface Target {
  expr: string;
  refId: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  definition?: string;
  query?: unknown;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

const dashboard = JSON.parse(readFileSync(FILE, "utf8")) as Dashboard;
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = panels.filter((p) => p.type !== "row");
const variables = dashboard.templating.list;

/** Every PromQL expression: panel targets, and the selector inside each `label_values(selector, label)`. */
function expressions(): Array<{ where: string; expr: string }> {
  const found: Array<{ where: string; expr: string }> = [];
  for (const panel of queryPanels) for (const target of panel.targets ?? []) found.push({ where: `panel ${panel.id} "${panel.title}" ${target.refId}`, expr: target.expr });
  for (const variable of variables.filter((v) => v.type === "query")) {
    const match = /^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(variable.definition ?? "");
    if (match === null) throw new Error(`variable ${variable.name}: not a label_values() query`);
    found.push({ where: `variable ${variable.name}`, expr: match[1]! });
  }
  return found;
}

const GRAFANA_RANGES: Record<string, string> = { __rate_interval: "5m", __interval: "1m", __range: "1d" };

/** Grafana's substitution, enough for parsing: ranges become durations, variables match anything. */
function substitute(expr: string, defined: ReadonlySet<string>): { expr: string; unknown: string[] } {
  const unknown: string[] = [];
  const out = expr.replace(/\$\{?([a-zA-Z_][a-zA-Z0-9_]*)\}?/g, (_whole, name: string) => {
    const range = GRAFANA_RANGES[name];
    if (range !== undefined) return range;
    if (!defined.has(name)) unknown.push(name);
    return ".*";
  });
  return { expr: out, unknown };
}

void t.test("the dashboard is a well-formed Grafana dashboard", (t) => {
  t.equal(dashboard.uid, "mythiq-proxy");
  t.equal(dashboard.title, "mythiq-proxy");
  t.ok(dashboard.schemaVersion >= 36);
  const ids = panels.map((p) => p.id);
  t.equal(new Set(ids).size, ids.length, "panel ids are unique");
  for (const panel of panels) {
    const { x, w, h } = panel.gridPos;
    t.ok(x >= 0 && w > 0 && x + w <= 24 && h > 0, `panel ${panel.id} fits the 24-column grid`);
  }
  for (const panel of queryPanels) {
    t.ok((panel.targets ?? []).length > 0, `panel ${panel.id} has a query`);
    t.same(panel.datasource, { type: "prometheus", uid: "${datasource}" }, `panel ${panel.id} uses the datasource variable`);
    t.ok((panel.description ?? "").length > 10, `panel ${panel.id} "${panel.title}" explains itself`);
  }
  t.ok(variables.some((v) => v.name === "datasource" && v.type === "datasource"), "a datasource variable, so no UID is hard-coded");
  t.end();
});

void t.test("promtool parses every expression of the dashboard", async (t) => {
  const defined = new Set(variables.map((v) => v.name));
  const exprs = expressions();
  t.ok(exprs.length >= 40, `${exprs.length} expressions`);
  const rules = exprs.map(({ where, expr }, i) => {
    const { expr: parsed, unknown } = substitute(expr, defined);
    t.same(unknown, [], `${where}: uses only defined variables`);
    return { record: `dashboard:expr_${i}`, expr: parsed };
  });
  const dir = mkdtempSync(join(tmpdir(), "mythiq-dashboard-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "dashboard-rules.yaml");
  writeFileSync(file, stringify({ groups: [{ name: "dashboard", rules }] }));
  const { code, output } = await promtool(["check", "rules", file]);
  t.equal(code, 0, output);
  t.match(output, `SUCCESS: ${rules.length} rules found`);

  // The same path with one broken expression fails: the check is real.
  writeFileSync(file, stringify({ groups: [{ name: "dashboard", rules: [...rules, { record: "dashboard:broken", expr: "sum by (client (rate(mythiq_proxy_requests_total[5m]))" }] }] }));
  const broken = await promtool(["check", "rules", file]);
  t.not(broken.code, 0, "a syntax error is reported");
});

void t.test("every metric the dashboard names is one the proxy exports", (t) => {
  const names = seriesNames(metricFamilies());
  for (const { where, expr } of expressions()) {
    const used = mentionedMetrics(expr);
    t.ok(used.length > 0, `${where} reads a proxy metric`);
    for (const metric of used) t.ok(names.has(metric), `${where}: ${metric} exists`);
  }
  t.end();
});

void t.test("the panels the issue asks for are there", (t) => {
  const all = expressions().map((e) => e.expr.replace(/\s+/g, " "));
  const has = (what: string, pattern: RegExp) => t.ok(all.some((e) => pattern.test(e)), what);
  has("volume", /sum by \(client\) \(rate\(mythiq_proxy_requests_total/);
  for (const q of ["0.5", "0.9", "0.99"]) has(`latency p${Number(q) * 100}`, new RegExp(`histogram_quantile\\(${q}, sum by \\(le\\) \\(rate\\(mythiq_proxy_request_duration_seconds_bucket`));
  has("upstream latency", /histogram_quantile\(0\.99, sum by \(le\) \(rate\(mythiq_proxy_upstream_duration_seconds_bucket/);
  has("errors by reason", /sum by \(reason\) \(rate\(mythiq_proxy_upstream_errors_total/);
  has("denials by reason", /sum by \(reason\) \(rate\(mythiq_proxy_denied_total/);
  has("cost by client", /sum by \(client\) \(rate\(mythiq_proxy_estimated_cost_usd_total/);
  has("cost by model", /sum by \(model\) \(rate\(mythiq_proxy_estimated_cost_usd_total/);
  has("cost by client and model", /sum by \(client, model\) \(increase\(mythiq_proxy_estimated_cost_usd_total/);
  has("budget use", /mythiq_proxy_budget_spent_usd.*mythiq_proxy_budget_daily_usd/);
  has("key age", /mythiq_proxy_key_age_seconds/);
  has("key rotations", /increase\(mythiq_proxy_key_rotations_total/);
  has("keys in use", /mythiq_proxy_key_info/);
  // SPEC §11 / issue 17: which applications use each key, and when each key was last used.
  has("requests by key and application", /sum by \(key, client\) \(increase\(mythiq_proxy_key_requests_total/);
  has("last use of each key", /time\(\) - max by \(key\) \(max_over_time\(mythiq_proxy_key_last_used_timestamp_seconds/);
  has("tracing spans dropped", /sum by \(reason\) \(increase\(mythiq_proxy_trace_spans_dropped_total/);
  t.ok(panels.some((p) => p.type === "row" && p.title === "Key usage: which applications use each key"), "a row for it");
  t.end();
});
