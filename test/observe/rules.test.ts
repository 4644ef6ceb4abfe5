// The alert rules of deploy/prometheus: promtool accepts them, their unit tests (rules.test.yaml,
// evaluated every minute, and rules.days.test.yaml for alerts that count days, every hour) pass and can fail,
// every alert is tested firing and not firing and carries a runbook line, the PrometheusRule holds
// exactly the same rules, and every metric they name is one the proxy exports.
import t from "tap";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { metricFamilies, mentionedMetrics, PROMTOOL, promtool, seriesNames } from "../helpers/observe-checks.ts";

const DIR = join(import.meta.dirname, "../../deploy/prometheus");
const RULES = join(DIR, "rules.yaml");
/** The unit test files: every minute, and every hour for alerts that count days. */
const TEST_FILES = ["rules.test.yaml", "rules.days.test.yaml"] as const;
const OPERATOR = join(DIR, "prometheusrule.yaml");

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Group {
  name: string;
  rules: Rule[];
}
interface AlertTest {
  eval_time: string;
  alertname: string;
  exp_alerts: unknown[] | null;
}
interface TestGroup {
  name: string;
  alert_rule_test?: AlertTest[];
  [k: string]: unknown;
}

const rulesFile = parse(readFileSync(RULES, "utf8")) as { groups: Group[] };
type TestsFile = { rule_files: string[]; evaluation_interval: string; tests: TestGroup[] };
const testsFiles = new Map(TEST_FILES.map((name) => [name, parse(readFileSync(join(DIR, name), "utf8")) as TestsFile]));
const alerts = rulesFile.groups.flatMap((g) => g.rules).filter((r): r is Rule & { alert: string } => r.alert !== undefined);

void t.test("promtool is installed", (t) => {
  t.ok(existsSync(PROMTOOL), `promtool at ${PROMTOOL} (install Debian's prometheus package, or set PROMTOOL)`);
  t.end();
});

void t.test("promtool check rules accepts rules.yaml", async (t) => {
  const { code, output } = await promtool(["check", "rules", RULES]);
  t.equal(code, 0, output);
  t.match(output, `SUCCESS: ${alerts.length} rules found`);
});

void t.test("promtool test rules: every unit test passes", async (t) => {
  for (const name of TEST_FILES) {
    const { code, output } = await promtool(["test", "rules", name], "", DIR);
    t.equal(code, 0, `${name}: ${output}`);
    t.match(output, /SUCCESS/);
  }
});

void t.test("every alert is tested firing and not firing", (t) => {
  t.ok(alerts.length >= 15, `${alerts.length} alerts`);
  const cases = [...testsFiles.values()].flatMap((f) => f.tests.flatMap((g) => g.alert_rule_test ?? []));
  for (const alert of alerts) {
    const mine = cases.filter((c) => c.alertname === alert.alert);
    t.ok(
      mine.some((c) => (c.exp_alerts ?? []).length > 0),
      `${alert.alert} has a case where it fires`,
    );
    t.ok(
      mine.some((c) => (c.exp_alerts ?? []).length === 0),
      `${alert.alert} has a case where it does not fire`,
    );
  }
  const known = new Set(alerts.map((a) => a.alert));
  for (const c of cases) t.ok(known.has(c.alertname), `test case names an existing alert (${c.alertname})`);
  t.end();
});

void t.test("every alert has a severity, a summary, a description and a runbook line", (t) => {
  const names = new Set<string>();
  for (const alert of alerts) {
    t.notOk(names.has(alert.alert), `${alert.alert} is unique`);
    names.add(alert.alert);
    t.match(alert.alert, /^MythiqProxy[A-Z][A-Za-z]+$/, "named MythiqProxy…");
    t.ok(["critical", "warning"].includes(alert.labels?.["severity"] ?? ""), `${alert.alert} severity`);
    for (const field of ["summary", "description", "runbook"]) {
      const text = alert.annotations?.[field] ?? "";
      t.ok(text.length >= 20, `${alert.alert} ${field}`);
    }
    t.notMatch(alert.annotations?.["runbook"] ?? "", /\n/, "the runbook is one line");
  }
  t.end();
});

void t.test("the rules use only metrics the proxy exports (plus Prometheus's own up)", (t) => {
  const names = seriesNames(metricFamilies());
  for (const rule of rulesFile.groups.flatMap((g) => g.rules)) {
    for (const metric of mentionedMetrics(rule.expr)) t.ok(names.has(metric), `${rule.alert}: ${metric} exists`);
    const others = [...rule.expr.matchAll(/\b([a-z_]+)\{/g)].map((m) => m[1]!).filter((n) => !n.startsWith("mythiq_proxy_"));
    for (const other of others) t.equal(other, "up", `${rule.alert}: only up besides the proxy's metrics`);
  }
  t.end();
});

void t.test("prometheusrule.yaml is a standalone PrometheusRule with exactly the same groups", async (t) => {
  const docs = readFileSync(OPERATOR, "utf8").split(/^---$/m).filter((d) => d.trim() !== "");
  t.equal(docs.length, 1, "one object");
  const object = parse(readFileSync(OPERATOR, "utf8")) as {
    apiVersion: string;
    kind: string;
    metadata: { name: string; namespace?: string; labels?: Record<string, string> };
    spec: { groups: Group[] };
  };
  t.equal(object.apiVersion, "monitoring.coreos.com/v1");
  t.equal(object.kind, "PrometheusRule");
  t.equal(object.metadata.name, "mythiq-proxy");
  t.equal(object.metadata.namespace, undefined, "no namespace: the kustomization sets it");
  t.same(Object.keys(object).sort(), ["apiVersion", "kind", "metadata", "spec"]);
  t.strictSame(object.spec.groups, rulesFile.groups, "spec.groups equals rules.yaml's groups");

  // The operator's copy must pass promtool on its own too.
  const dir = mkdtempSync(join(tmpdir(), "mythiq-rules-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "spec.yaml"), stringify({ groups: object.spec.groups }));
  const { code, output } = await promtool(["check", "rules", join(dir, "spec.yaml")]);
  t.equal(code, 0, output);
});

// Mutations that must make the unit tests fail: each removes one safeguard of a rule, and the
// test group named next to it has a series that would then fire (or stop firing).
const MUTATIONS: Array<{ name: string; from: string | RegExp; to: string; group: string; file?: (typeof TEST_FILES)[number] }> = [
  {
    name: "no baseline: steady traffic counts as a spike",
    from: /> 3 \* \(/g,
    to: "> 0 * (",
    group: "request volume per client against the previous 6 hours",
  },
  {
    name: "successful retries ignored",
    from: `{result!="failed"}`,
    to: `{result="no-such-result"}`,
    group: "refresh failures without a success fire after 5 minutes; failures with successes do not",
  },
  {
    name: "max_stale warning without an overdue refresh",
    from: "> 1.2 * mythiq_proxy_key_refresh_interval_seconds",
    to: "> 0 * mythiq_proxy_key_refresh_interval_seconds",
    group: "max_stale close to the interval does not alert on a normal refresh cycle",
  },
  {
    name: "budget threshold lowered",
    from: ">= 0.8 * max by",
    to: ">= 0.5 * max by",
    group: "today's spend over replicas against the daily budget",
  },
  {
    name: "any job counts as the proxy",
    from: `up{job=~".*mythiq-proxy.*"} == 0`,
    to: `up == 0`,
    group: "down for 5 minutes fires; up, or another job down, does not",
  },
  {
    name: "a key's uses are not seen",
    from: "max_over_time(mythiq_proxy_key_last_used_timestamp_seconds[1h]) > time() - 3600",
    to: "max_over_time(mythiq_proxy_key_last_used_timestamp_seconds[1h]) > time() + 3600",
    group: "a configured key unused for 30 days fires; used, recently used or recently added keys do not",
    file: "rules.days.test.yaml",
  },
  {
    name: "unused for a day is enough",
    from: "for: 30d",
    to: "for: 1d",
    group: "a configured key unused for 30 days fires; used, recently used or recently added keys do not",
    file: "rules.days.test.yaml",
  },
];

void t.test("the unit tests catch a rule that lost a safeguard", async (t) => {
  const source = readFileSync(RULES, "utf8");
  const dir = mkdtempSync(join(tmpdir(), "mythiq-rules-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const runs = MUTATIONS.map(async (mutation, i) => {
    const mutated = typeof mutation.from === "string" ? source.replace(mutation.from, mutation.to) : source.replace(mutation.from, mutation.to);
    const testsFile = testsFiles.get(mutation.file ?? "rules.test.yaml")!;
    const tests = testsFile.tests.filter((g) => g.name === mutation.group);
    writeFileSync(join(dir, `rules-${i}.yaml`), mutated);
    writeFileSync(join(dir, `tests-${i}.yaml`), stringify({ ...testsFile, rule_files: [`rules-${i}.yaml`], tests }));
    return { mutation, changed: mutated !== source, tests: tests.length, result: await promtool(["test", "rules", `tests-${i}.yaml`], "", dir) };
  });
  for (const { mutation, changed, tests, result } of await Promise.all(runs)) {
    t.ok(changed, `${mutation.name}: the mutation applies`);
    t.equal(tests, 1, `${mutation.name}: its test group exists`);
    t.not(result.code, 0, `${mutation.name}: promtool test rules fails`);
    t.match(result.output, /FAILED/, mutation.name);
  }
});
