/**
 * Field policies (SPEC §11; README "Field policies"): per client, the values a named top-level field
 * of a JSON or multipart body may take, and whether it must be sent. MythIQ's generation routes
 * take `public` (default **true**), `provider` and `routing`: a privacy-minded operator requires
 * `public: false` and lists the providers allowed. Part of SPEC §4 step 7 (body-check.ts runs it on
 * the body it has already parsed strictly; `model` keeps its own check).
 *
 * - A value outside `allowed` is 403 `field_not_allowed`, compared by JSON type and value: the
 *   string `"false"` is not the boolean `false` (a lenient parser takes a non-empty string as true).
 *   Objects, arrays and `null` never match.
 * - In a multipart body every value is text: only a string in `allowed` can match there, never a
 *   boolean or a number, since how MythIQ would read the text `false` is not the proxy's to guess.
 *   A file part under a policed name never matches.
 * - A key spelled like a policed field but not exactly (`Public`, `PUBLIC`, `public[]`, `ſtream`
 *   for `stream`) is 403 `field_not_allowed`: parsers that match names case-insensitively (Go's
 *   encoding/json, for one) or read `name[]` as `name` would otherwise see a value nobody checked.
 * - A required field that is absent is 400 `field_required`. Values are checked before presence.
 *
 * Compiled once per config into a table by client and route; `check` only looks things up.
 */
import type { ClientConfig, FieldValue } from "../config/types.ts";
import { CONTINUE, deny, type Verdict } from "../pipeline/types.ts";
import type { FormPart } from "./multipart.ts";
import { parseRouteTemplate } from "./routes.ts";
import type { JsonMember } from "./strict-json.ts";

interface CompiledField {
  readonly name: string;
  /** `undefined` = any value. */
  readonly allowed: readonly FieldValue[] | undefined;
  readonly required: boolean;
}

/** The field policies that apply on one route of one client. */
export interface RouteFields {
  readonly fields: readonly CompiledField[];
  /** Folded names (see `foldFieldName`) of the policed fields, for the look-alike check. */
  readonly folded: ReadonlySet<string>;
  /** Some field is required: a POST/PUT/PATCH without a body is refused. */
  readonly anyRequired: boolean;
}

/** Client → route label (`METHOD /path`) → the policies on that route; clients without `fields` are absent. */
export type FieldPolicies = ReadonlyMap<ClientConfig, ReadonlyMap<string, RouteFields>>;

/**
 * A name as a lenient parser could read it: Unicode upper then lower case (so `ſ` meets `s` and
 * the Kelvin sign `k`, as Go's case folding does), without a trailing `[]`.
 */
export function foldFieldName(name: string): string {
  return name.toUpperCase().toLowerCase().replace(/\[\]$/, "");
}

function labelOf(route: string): string {
  const parsed = parseRouteTemplate(route);
  if (!parsed.ok) throw new Error(`field policy route: ${parsed.message}`);
  return parsed.value.label;
}

/** Compiles every client's `fields` (validated config) into the lookup table. */
export function compileFieldPolicies(clients: readonly ClientConfig[]): FieldPolicies {
  const table = new Map<ClientConfig, Map<string, RouteFields>>();
  for (const client of clients) {
    if (client.fields === undefined) continue;
    const byRoute = new Map<string, RouteFields>();
    for (const route of client.routes) {
      const label = labelOf(route);
      const fields: CompiledField[] = [];
      for (const [name, policy] of Object.entries(client.fields)) {
        if (policy.routes !== undefined && !policy.routes.some((r) => labelOf(r) === label)) continue;
        fields.push({ name, allowed: policy.allowed, required: policy.required });
      }
      if (fields.length === 0) continue;
      byRoute.set(label, {
        fields,
        folded: new Set(fields.map((f) => foldFieldName(f.name))),
        anyRequired: fields.some((f) => f.required),
      });
    }
    table.set(client, byRoute);
  }
  return table;
}

function lookalike(route: RouteFields, name: string): boolean {
  if (route.fields.some((f) => f.name === name)) return false;
  return route.folded.has(foldFieldName(name));
}

function jsonAllowed(member: JsonMember, allowed: readonly FieldValue[]): boolean {
  switch (member.type) {
    case "string":
    case "boolean":
      return allowed.includes(member.value);
    case "number":
      return allowed.some((a) => typeof a === "number" && a === member.value);
    default:
      return false;
  }
}

/** Checks the top-level members of a strictly parsed JSON object. */
export function checkJsonFields(route: RouteFields, members: ReadonlyMap<string, JsonMember>): Verdict {
  for (const name of members.keys()) {
    if (lookalike(route, name)) return deny("field_not_allowed", "a body key spelled like a policed field but not exactly");
  }
  for (const field of route.fields) {
    const member = members.get(field.name);
    if (member !== undefined && field.allowed !== undefined && !jsonAllowed(member, field.allowed)) {
      return deny("field_not_allowed", `field ${field.name}: value not in the client's allowed values`);
    }
  }
  return requiredPresent(route, (name) => members.has(name));
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The text of a plain (non-file) text part, or undefined when it is a file, not text/plain, or not UTF-8. */
function formText(part: FormPart): string | undefined {
  if (part.filename !== undefined) return undefined;
  if (part.contentType !== undefined && !/^text\/plain(?:;\s*charset="?utf-8"?)?$/.test(part.contentType)) return undefined;
  try {
    return utf8.decode(part.body);
  } catch {
    return undefined;
  }
}

/**
 * Checks the parts of a strictly parsed multipart body (a repeated plain field is already refused
 * as `duplicate_key` there).
 */
export function checkFormFields(route: RouteFields, parts: readonly FormPart[]): Verdict {
  for (const part of parts) {
    if (lookalike(route, part.name)) return deny("field_not_allowed", "a form field spelled like a policed field but not exactly");
    const field = route.fields.find((f) => f.name === part.name);
    if (field === undefined || field.allowed === undefined) continue;
    const text = formText(part);
    if (text === undefined || !field.allowed.some((a) => typeof a === "string" && a === text)) {
      return deny("field_not_allowed", `form field ${field.name}: a file, not text, or a value not in the client's allowed values`);
    }
  }
  return requiredPresent(route, (name) => parts.some((p) => p.name === name));
}

function requiredPresent(route: RouteFields, has: (name: string) => boolean): Verdict {
  for (const field of route.fields) {
    if (field.required && !has(field.name)) return deny("field_required", `field ${field.name} is required`);
  }
  return CONTINUE;
}
