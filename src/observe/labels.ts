/**
 * Metric label values, bounded by the config (SPEC §7).
 *
 * prom-client keeps every label combination it has ever seen until it is removed, so a label value
 * taken from a request (a path, a model string, a client id from a token) would let any caller grow
 * the process's memory and the scrape without limit, and could carry a secret into a dashboard.
 * Here every value the proxy reports is mapped onto a set that only the config can grow: configured
 * names pass, anything else becomes one fixed fallback value.
 */
import type { KeySourceKind, ProxyConfig } from "../config/types.ts";
import { isReason } from "../errors.ts";

/** `client` label of a request whose client is not (yet) known or not configured. */
export const UNKNOWN_CLIENT = "unknown";
/** `route`, `model`, `status`, `reason` label of anything outside the configured or known set. */
export const OTHER = "other";

/**
 * A configured key's refresh settings, exported as gauges because alert rules compare
 * `key_age_seconds` with them: Prometheus cannot read the config, and a threshold written into the
 * rules would be wrong for every key whose settings differ from it.
 */
export interface KeySettings {
  /** Key name; must also be in `LabelSets.keys`. */
  readonly key: string;
  readonly source: KeySourceKind;
  /** `refresh.interval`, seconds. */
  readonly intervalSeconds: number;
  /** `refresh.max_stale`, seconds; 0 = no limit (the last good key is served for ever). */
  readonly maxStaleSeconds: number;
}

/** A client's `budget.daily_usd`, exported so an alert can compare today's spend with it. */
export interface ClientBudget {
  /** Client id; must also be in `LabelSets.clients`. */
  readonly client: string;
  /** USD per UTC day. */
  readonly dailyUsd: number;
}

/**
 * The names the config defines (the only label values that pass), and the few numbers from the
 * config that alert rules compare metrics against.
 */
export interface LabelSets {
  /** Client ids. */
  readonly clients: readonly string[];
  /** Route templates, `METHOD /path` (a `?a&b` query list is ignored). */
  readonly routes: readonly string[];
  /** Model names (client allowlists and `pricing`). */
  readonly models: readonly string[];
  /** Key names. */
  readonly keys: readonly string[];
  /** Refresh settings per key (`key_refresh_interval_seconds`, `key_max_stale_seconds`); default none. */
  readonly keySettings?: readonly KeySettings[];
  /** Clients with a `budget` (`budget_daily_usd`, `budget_spent_usd`); default none. */
  readonly budgets?: readonly ClientBudget[];
  /** Each client's key (`key_requests_total{key, client}` has a series for these pairs only); default none. */
  readonly keyClients?: readonly KeyClient[];
}

/** A client and the key it is configured to use. */
export interface KeyClient {
  /** Key name; must also be in `LabelSets.keys`. */
  readonly key: string;
  /** Client id; must also be in `LabelSets.clients`. */
  readonly client: string;
}

/** The empty sets: every client is `unknown`, every route/model `other`, no key is reported. */
export const EMPTY_LABEL_SETS: LabelSets = Object.freeze({ clients: [], routes: [], models: [], keys: [] });

/**
 * The label of a configured route template: the template without its `?a&b` list of allowed query
 * names, so `GET /v1/generations?limit&after` and the route check's `GET /v1/generations` agree.
 */
export function routeLabel(template: string): string {
  const q = template.indexOf("?");
  return q === -1 ? template : template.slice(0, q);
}

/** Every name the config gives a client, route, model or key: the label sets for `setLabelSets`. */
export function labelSetsFromConfig(config: ProxyConfig): LabelSets {
  const routes = new Set<string>();
  const models = new Set<string>();
  for (const client of config.clients) {
    for (const route of client.routes) routes.add(routeLabel(route));
    for (const model of client.models ?? []) models.add(model);
  }
  // Pricing names the models whose cost is tracked; "default" is the price of every other model.
  for (const model of Object.keys(config.pricing)) if (model !== "default") models.add(model);
  const keySettings: KeySettings[] = Object.entries(config.keys).map(([key, settings]) => ({
    key,
    source: settings.source,
    intervalSeconds: settings.refresh.interval / 1000,
    maxStaleSeconds: settings.refresh.max_stale / 1000,
  }));
  const budgets: ClientBudget[] = [];
  for (const client of config.clients) if (client.budget !== undefined) budgets.push({ client: client.id, dailyUsd: client.budget.daily_usd });
  return {
    clients: config.clients.map((c) => c.id),
    routes: [...routes],
    models: [...models],
    keys: Object.keys(config.keys),
    keySettings,
    budgets,
    keyClients: config.clients.map((c) => ({ key: c.key, client: c.id })),
  };
}

const STATUS_LABELS: readonly string[] = Array.from({ length: 600 }, (_, i) => (i >= 100 ? String(i) : OTHER));

/** `status` label: the numeric status for 100–599, else `other` (0 = no response was sent, NaN, …). */
export function statusLabel(status: number): string {
  return Number.isInteger(status) ? (STATUS_LABELS[status] ?? OTHER) : OTHER;
}

/** `reason` label: a catalogue reason (SPEC §5), else `other`. The type already says so; this holds at run time too. */
export function reasonLabel(reason: string): string {
  return isReason(reason) ? reason : OTHER;
}

/** The label sets compiled for lookups on the hot path. */
export interface LabelBounds {
  readonly sets: LabelSets;
  client(id: string | undefined): string;
  route(template: string | undefined): string;
  model(name: string | undefined): string;
  /** True when `name` is a configured key; key series exist only for those. */
  hasKey(name: string): boolean;
  /** True when a label value of that kind is still allowed (fallback values always are). */
  allows(kind: "client" | "route" | "model" | "key", value: string): boolean;
}

function nonNegative(value: number): boolean {
  return Number.isFinite(value) && value >= 0;
}

export function compileLabelSets(sets: LabelSets): LabelBounds {
  const clients = new Set(sets.clients);
  const keys = new Set(sets.keys);
  const frozen: LabelSets = Object.freeze({
    clients: Object.freeze([...sets.clients]),
    routes: Object.freeze(sets.routes.map(routeLabel)),
    models: Object.freeze([...sets.models]),
    keys: Object.freeze([...sets.keys]),
    // Settings of names that are not in the sets would make series no other metric can join with.
    keySettings: Object.freeze(
      (sets.keySettings ?? [])
        .filter((k) => keys.has(k.key) && nonNegative(k.intervalSeconds) && nonNegative(k.maxStaleSeconds))
        .map((k) => Object.freeze({ ...k })),
    ),
    budgets: Object.freeze(
      (sets.budgets ?? []).filter((b) => clients.has(b.client) && nonNegative(b.dailyUsd)).map((b) => Object.freeze({ ...b })),
    ),
    keyClients: Object.freeze(
      (sets.keyClients ?? []).filter((p) => keys.has(p.key) && clients.has(p.client)).map((p) => Object.freeze({ ...p })),
    ),
  });
  const routes = new Set(frozen.routes);
  const models = new Set(frozen.models);
  return {
    sets: frozen,
    client: (id) => (id !== undefined && clients.has(id) ? id : UNKNOWN_CLIENT),
    route(template) {
      if (template === undefined) return OTHER;
      const label = routeLabel(template);
      return routes.has(label) ? label : OTHER;
    },
    model: (name) => (name !== undefined && models.has(name) ? name : OTHER),
    hasKey: (name) => keys.has(name),
    allows(kind, value) {
      switch (kind) {
        case "client":
          return value === UNKNOWN_CLIENT || clients.has(value);
        case "route":
          return value === OTHER || routes.has(value);
        case "model":
          return value === OTHER || models.has(value);
        case "key":
          return keys.has(value);
      }
    },
  };
}

const PRINTABLE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/**
 * A label value that comes from a system the operator trusts (a secret store's version id, the
 * config hash) but whose shape we do not control: printable ASCII up to `max` characters, else
 * `invalid`. One series per key or config, so this bounds size, not count.
 */
export function boundedValue(value: string, max: number): string {
  return value === "" ? "" : value.length <= max && PRINTABLE.test(value) ? value : "invalid";
}

const FINGERPRINT = /^[0-9a-f]{8}$/;

/**
 * A key fingerprint label: exactly 8 lowercase hex digits, else `invalid`. Anything longer could be
 * the key itself passed by mistake; it must never reach a label.
 */
export function fingerprintLabel(value: string): string {
  return FINGERPRINT.test(value) ? value : "invalid";
}
