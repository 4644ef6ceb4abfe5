/**
 * Cross-field rules of the per-client field policies (`clients[].fields`) and of `ownership`
 * (SPEC §11; README "Field policies" and "Ownership"): they relate a policy to the client's routes,
 * ownership routes to each other and to the clients. Like cross-checks.ts, they read the raw parsed
 * data, look only at values of the right type and stay silent otherwise (the schema reports those).
 */
import { placeholders } from "../ownership/route-ids.ts";
import { parseRouteTemplate } from "../rules/routes.ts";
import { checkName } from "./formats.ts";
import type { ConfigPath } from "./problems.ts";

type Obj = Record<string, unknown>;
type Report = (path: ConfigPath, message: string, at?: "key" | "value") => void;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** A field name as the body checks can match it in JSON and in multipart form fields alike. */
const FIELD_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

const QUERY_IN_ROUTE = "write METHOD /path only: the query names a route allows belong in the client's routes";

/** `METHOD /path` of a route entry, or undefined when the schema refuses the entry anyway. */
function labelOf(route: unknown): string | undefined {
  if (typeof route !== "string") return undefined;
  const parsed = parseRouteTemplate(route);
  return parsed.ok ? parsed.value.label : undefined;
}

/** Every route label a client lists. */
function clientLabels(client: Obj): Set<string> {
  const labels = new Set<string>();
  for (const route of list(client.routes)) {
    const label = labelOf(route);
    if (label !== undefined) labels.add(label);
  }
  return labels;
}

/** `clients[].fields`: names, what each policy checks, and the routes it is scoped to. */
export function checkFieldPolicies(clients: readonly unknown[], err: Report): void {
  clients.forEach((c, i) => {
    if (!isObj(c) || !isObj(c.fields)) return;
    const labels = clientLabels(c);
    for (const [name, policy] of Object.entries(c.fields)) {
      const base: ConfigPath = ["clients", i, "fields", name];
      if (name === "model") {
        err(base, "model is checked by models: a field policy cannot name it", "key");
      } else if (!FIELD_NAME.test(name)) {
        err(base, `${JSON.stringify(name)} is not a field name: use 1 to 128 letters, digits, "_", "." or "-"`, "key");
      }
      if (!isObj(policy)) continue;
      if (!Object.hasOwn(policy, "allowed") && policy.required !== true) {
        err(base, "checks nothing: set allowed (the values accepted), required: true, or both", "key");
      }
      list(policy.routes).forEach((route, j) => {
        const label = labelOf(route);
        if (label === undefined) return;
        if (typeof route === "string" && route.includes("?")) err([...base, "routes", j], QUERY_IN_ROUTE);
        else if (!labels.has(label)) err([...base, "routes", j], `${label} is not one of this client's routes`);
      });
    }
  });
}

const ROLES = ["create", "use", "list"] as const;

/** `ownership`: kind names, routes (each once, in the right form), use placeholders, clients. */
export function checkOwnership(ownership: unknown, clients: readonly unknown[], err: Report, warn: Report): void {
  if (!isObj(ownership)) return;
  const clientObjs = clients.filter(isObj);
  const ids = new Set(clientObjs.map((c) => c.id).filter((id): id is string => typeof id === "string"));
  const seen = new Map<string, string>();

  for (const [kind, cfg] of Object.entries(ownership)) {
    const n = checkName(kind);
    if (!n.ok) err(["ownership", kind], `kind name ${n.message}`, "key");
    if (!isObj(cfg)) continue;

    const named = Array.isArray(cfg.clients) ? cfg.clients : undefined;
    named?.forEach((id, j) => {
      if (typeof id === "string" && !ids.has(id)) err(["ownership", kind, "clients", j], `${JSON.stringify(id)} is not the id of a client`);
    });
    // The routes of the clients the kind applies to: a rule on a route none of them lists never applies.
    const applying = clientObjs.filter((c) => named === undefined || named.includes(c.id));
    const reachable = new Set(applying.flatMap((c) => [...clientLabels(c)]));

    for (const role of ROLES) {
      list(cfg[role]).forEach((entry, j) => {
        if (!isObj(entry)) return;
        const path: ConfigPath = ["ownership", kind, role, j, "route"];
        const route = entry.route;
        const label = labelOf(route);
        if (label === undefined || typeof route !== "string") return;
        if (route.includes("?")) {
          err(path, QUERY_IN_ROUTE);
          return;
        }
        const first = seen.get(label);
        if (first !== undefined) err(path, `${label} is already listed at ${first}: a route has one ownership role`);
        else seen.set(label, `ownership.${kind}.${role}[${j}]`);
        if (role !== "use" && label.startsWith("HEAD ")) err(path, `a ${role} route must have a response body to read: not HEAD`);
        if (role === "use") checkUsePlaceholder(entry, route, ["ownership", kind, role, j], err);
        if (!reachable.has(label)) warn(path, "no client it applies to lists this route, so this rule never applies");
      });
    }
    if (list(cfg.create).length === 0 && (list(cfg.use).length > 0 || list(cfg.list).length > 0)) {
      warn(["ownership", kind], "has no create route: nothing is ever recorded, so every use is refused (404) and every list comes back empty", "key");
    }
  }
}

function checkUsePlaceholder(entry: Obj, route: string, base: ConfigPath, err: Report): void {
  const found = placeholders(route);
  const names = found.map((p) => `{${p.name}}`).join(", ");
  if (found.length === 0) {
    err([...base, "route"], "a use route needs a {placeholder} segment holding the id, e.g. GET /v1/media/{id}");
  } else if (typeof entry.param === "string") {
    if (!found.some((p) => p.name === entry.param)) err([...base, "param"], `names no placeholder of the route (it has ${names})`);
  } else if (found.length > 1) {
    err([...base, "route"], `has several placeholders (${names}): say which holds the id with param`);
  }
}
