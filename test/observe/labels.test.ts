import t from "tap";
import type { ProxyConfig } from "../../src/config/types.ts";
import {
  boundedValue,
  compileLabelSets,
  fingerprintLabel,
  labelSetsFromConfig,
  reasonLabel,
  routeLabel,
  statusLabel,
} from "../../src/observe/labels.ts";

void t.test("routeLabel drops the allowed-query list", (t) => {
  t.equal(routeLabel("GET /v1/generations?limit&after"), "GET /v1/generations");
  t.equal(routeLabel("GET /v1/models/{id}"), "GET /v1/models/{id}");
  t.end();
});

void t.test("labelSetsFromConfig collects clients, routes, models (allowlists and pricing) and keys", (t) => {
  // Only the fields the function reads; the rest of ProxyConfig does not matter here.
  const config = {
    keys: {
      default: { source: "env", refresh: { interval: 300_000, timeout: 5000, max_stale: 0 } },
      production: { source: "vault", refresh: { interval: 60_000, timeout: 5000, max_stale: 3_600_000 } },
    },
    clients: [
      { id: "web-app", key: "production", routes: ["GET /v1/models", "GET /v1/generations?limit&after"], models: ["stability/sdxl"], budget: { daily_usd: 25 } },
      { id: "batch", key: "default", routes: ["GET /v1/models", "POST /v1/images/generations"] },
    ],
    pricing: { "stability/sdxl": 0.004, "openai/dall-e-3": 0.04, default: 0.01 },
  } as unknown as ProxyConfig;
  t.same(labelSetsFromConfig(config), {
    clients: ["web-app", "batch"],
    routes: ["GET /v1/models", "GET /v1/generations", "POST /v1/images/generations"],
    models: ["stability/sdxl", "openai/dall-e-3"],
    keys: ["default", "production"],
    keySettings: [
      { key: "default", source: "env", intervalSeconds: 300, maxStaleSeconds: 0 },
      { key: "production", source: "vault", intervalSeconds: 60, maxStaleSeconds: 3600 },
    ],
    budgets: [{ client: "web-app", dailyUsd: 25 }],
    keyClients: [
      { key: "production", client: "web-app" },
      { key: "default", client: "batch" },
    ],
  });
  t.end();
});

void t.test("compiled sets keep settings and budgets only for configured names and sane numbers", (t) => {
  const b = compileLabelSets({
    clients: ["a"],
    routes: [],
    models: [],
    keys: ["k"],
    keySettings: [
      { key: "k", source: "file", intervalSeconds: 30, maxStaleSeconds: 0 },
      { key: "ghost", source: "env", intervalSeconds: 30, maxStaleSeconds: 0 },
      { key: "k", source: "file", intervalSeconds: Number.NaN, maxStaleSeconds: -1 },
    ],
    budgets: [
      { client: "a", dailyUsd: 5 },
      { client: "b", dailyUsd: 5 },
      { client: "a", dailyUsd: Number.POSITIVE_INFINITY },
    ],
  });
  t.same(b.sets.keySettings, [{ key: "k", source: "file", intervalSeconds: 30, maxStaleSeconds: 0 }]);
  t.same(b.sets.budgets, [{ client: "a", dailyUsd: 5 }]);
  const pairs = compileLabelSets({
    clients: ["a"],
    routes: [],
    models: [],
    keys: ["k"],
    keyClients: [
      { key: "k", client: "a" },
      { key: "ghost", client: "a" },
      { key: "k", client: "nobody" },
    ],
  });
  t.same(pairs.sets.keyClients, [{ key: "k", client: "a" }], "key/client pairs only of configured names");
  t.ok(Object.isFrozen(b.sets.keySettings) && Object.isFrozen(b.sets.keySettings?.[0]), "frozen");
  t.same(compileLabelSets({ clients: [], routes: [], models: [], keys: [] }).sets.budgets, [], "default none");
  t.end();
});

void t.test("compiled sets map unknown values to the fallbacks", (t) => {
  const b = compileLabelSets({ clients: ["a"], routes: ["GET /x?q"], models: ["m"], keys: ["k"] });
  t.equal(b.client("a"), "a");
  t.equal(b.client("b"), "unknown");
  t.equal(b.client(undefined), "unknown");
  t.equal(b.client("__proto__"), "unknown", "no prototype lookups");
  t.equal(b.route("GET /x"), "GET /x");
  t.equal(b.route("GET /x?q"), "GET /x");
  t.equal(b.route("GET /y"), "other");
  t.equal(b.route(undefined), "other");
  t.equal(b.model("m"), "m");
  t.equal(b.model("constructor"), "other");
  t.equal(b.model(undefined), "other");
  t.ok(b.hasKey("k"));
  t.notOk(b.hasKey("toString"));
  t.ok(b.allows("client", "unknown"));
  t.ok(b.allows("route", "other"));
  t.ok(b.allows("model", "other"));
  t.notOk(b.allows("key", "other"), "keys have no fallback series");
  t.notOk(b.allows("client", "b"));
  t.ok(Object.isFrozen(b.sets.clients));
  t.end();
});

void t.test("statusLabel and reasonLabel", (t) => {
  t.equal(statusLabel(100), "100");
  t.equal(statusLabel(599), "599");
  for (const bad of [0, 99, 600, -200, 200.1, Number.NaN, Number.POSITIVE_INFINITY]) t.equal(statusLabel(bad), "other", String(bad));
  t.equal(reasonLabel("rate_limited"), "rate_limited");
  t.equal(reasonLabel("hasOwnProperty"), "other");
  t.end();
});

void t.test("boundedValue and fingerprintLabel", (t) => {
  t.equal(boundedValue("", 10), "");
  t.equal(boundedValue("v12", 10), "v12");
  t.equal(boundedValue("2024-01-01 12:00", 20), "2024-01-01 12:00");
  t.equal(boundedValue("x".repeat(11), 10), "invalid");
  t.equal(boundedValue("a\nb", 10), "invalid");
  t.equal(boundedValue(" a", 10), "invalid", "no leading or trailing space");
  t.equal(boundedValue("é", 10), "invalid");
  t.equal(fingerprintLabel("0123abcd"), "0123abcd");
  for (const bad of ["0123ABCD", "0123abc", "0123abcde", "sk-live-abc", ""]) t.equal(fingerprintLabel(bad), "invalid", bad);
  t.end();
});
