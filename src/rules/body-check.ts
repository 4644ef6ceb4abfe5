/**
 * SPEC §4 step 7, the body. Decides before reading whether a body is held in memory (it must be
 * checked, or it is small enough to replay after a key rotation) or streamed, and checks held
 * bodies against the client's model allowlist.
 *
 * A client with `models`, `fields` (field-policy.ts) or a `budget` (which prices the model and `n`)
 * has its bodies *checked*:
 * held whole (never more than `max_body`, which the handler enforces while reading), parsed
 * strictly, and forwarded as the very bytes that were checked — never re-serialised, so what MythIQ
 * parses is what we parsed. Nothing reaches MythIQ before the check: a multipart upload is held
 * too, because its `model` part may come after the file.
 */
import type { ClientConfig } from "../config/types.ts";
import { CONTINUE, deny, type BodyPlan, type CallerContext, type Verdict } from "../pipeline/types.ts";
import { checkFormFields, checkJsonFields, compileFieldPolicies, type FieldPolicies, type RouteFields } from "./field-policy.ts";
import { classifyMediaType } from "./media-type.ts";
import { readMultipart, type FormPart } from "./multipart.ts";
import { readStrictJson, type JsonMember } from "./strict-json.ts";

/** Bodies up to this size are held even when unchecked, so a 401 retry can replay them. */
export const REPLAYABLE_BODY_LIMIT = 64 * 1024;

/** Largest `n` taken as an image count; anything larger is refused (MythIQ allows far fewer). */
export const MAX_IMAGE_COUNT = 1000;

/** Longest `model` value taken: model names are short, and the value reaches the audit log. */
export const MAX_MODEL_LENGTH = 256;

/** Methods whose body carries the request's content: without one, no model can be checked. */
const CONTENT_METHODS: ReadonlySet<string> = new Set(["POST", "PUT", "PATCH"]);

export interface BodyPolicy {
  readonly plan: (ctx: CallerContext, hasBody: boolean, declaredLength: number | undefined) => BodyPlan;
  readonly check: (ctx: CallerContext, body: Buffer) => Verdict;
}

/** True when the client's bodies are parsed and checked rather than passed through. */
export function checksBodies(client: ClientConfig): boolean {
  return client.models !== undefined || client.budget !== undefined || client.fields !== undefined;
}

/** What a checked body says: the fields the checks and the budget read. */
interface BodyFacts {
  /** The `model` field; `undefined` when absent. */
  readonly model: string | undefined;
  /** The `n` field; 1 when absent. */
  readonly imageCount: number;
  /** For the field policies: a JSON body's top-level members (undefined for multipart). */
  readonly members: ReadonlyMap<string, JsonMember> | undefined;
  /** For the field policies: a multipart body's parts (undefined for JSON). */
  readonly parts: readonly FormPart[] | undefined;
}

type Read = { readonly ok: true; readonly facts: BodyFacts } | ReturnType<typeof deny>;

function imageCountFromJson(member: JsonMember | undefined): number | undefined {
  if (member === undefined) return 1;
  if (member.type !== "number") return undefined;
  const n = member.value;
  return Number.isSafeInteger(n) && n >= 1 && n <= MAX_IMAGE_COUNT ? n : undefined;
}

function readJsonBody(body: Buffer): Read {
  const parsed = readStrictJson(body);
  if (!parsed.ok) return deny(parsed.reason, parsed.detail);
  if (parsed.members === undefined) return deny("invalid_json", "top-level value is not an object");
  const model = parsed.members.get("model");
  if (model !== undefined && model.type !== "string") return deny("invalid_json", "model is not a string");
  // `n` is priced by the budget: a string "10" that a lenient upstream coerces to 10 would be
  // priced as one image, so only a JSON integer is taken.
  const imageCount = imageCountFromJson(parsed.members.get("n"));
  if (imageCount === undefined) return deny("invalid_json", `n is not an integer from 1 to ${MAX_IMAGE_COUNT}`);
  return { ok: true, facts: { model: model?.value, imageCount, members: parsed.members, parts: undefined } };
}

/** A field name some parser could take for `model` (`Model`, `model[]`) without being exactly it. */
function looksLikeModel(name: string): boolean {
  return name !== "model" && name.toLowerCase().replace(/\[\]$/, "") === "model";
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function textOf(part: FormPart): string | undefined {
  try {
    return utf8.decode(part.body);
  } catch {
    return undefined;
  }
}

function readMultipartBody(body: Buffer, boundary: string): Read {
  const parsed = readMultipart(body, boundary);
  if (!parsed.ok) return deny("malformed_request", `multipart: ${parsed.detail}`);
  const fields = new Set<string>();
  let model: string | undefined;
  let imageCount = 1;
  for (const part of parsed.parts) {
    if (looksLikeModel(part.name)) return deny("invalid_json", "a form field spelled like model but not exactly model");
    // Files may repeat (`image[]`); a repeated plain field is read as the first by some parsers
    // and the last by others.
    if (part.filename === undefined) {
      if (fields.has(part.name)) return deny("duplicate_key", "form field repeated");
      fields.add(part.name);
    }
    if (part.name === "model") {
      // "Checked the same way" as JSON: the model must be a text value, not a file.
      const text = part.filename === undefined ? textOf(part) : undefined;
      if (text === undefined) return deny("invalid_json", "model form field is a file or not UTF-8");
      if (part.contentType !== undefined && !/^text\/plain(?:;\s*charset="?utf-8"?)?$/.test(part.contentType)) {
        return deny("invalid_json", "model form field is not text/plain");
      }
      model = text;
    } else if (part.name === "n") {
      const text = part.filename === undefined ? textOf(part) : undefined;
      const n = text !== undefined && /^[1-9][0-9]{0,3}$/.test(text) ? Number(text) : undefined;
      if (n === undefined || n > MAX_IMAGE_COUNT) return deny("invalid_json", `n is not an integer from 1 to ${MAX_IMAGE_COUNT}`);
      imageCount = n;
    }
  }
  return { ok: true, facts: { model, imageCount, members: undefined, parts: parsed.parts } };
}

/**
 * For the audit log and the cost metrics only: what a held but unchecked JSON body says, when it
 * reads cleanly. Never refuses; an unreadable body leaves `ctx.model` unset (priced as `default`).
 */
function noteUncheckedBody(ctx: CallerContext, body: Buffer): void {
  if (body.length === 0 || ctx.headers["content-encoding"] !== undefined) return;
  if (classifyMediaType(ctx.headers["content-type"]).kind !== "json") return;
  const read = readJsonBody(body);
  if (!read.ok) return;
  const { model, imageCount } = read.facts;
  if (model !== undefined && model.length <= MAX_MODEL_LENGTH) ctx.model = model;
  ctx.imageCount = imageCount;
}

/**
 * The body policy. Per client, from `ctx.client`:
 *
 * Clients whose bodies are checked (`checksBodies`):
 * - no body on POST/PUT/PATCH: 400 `model_required` when the client has `models` (MythIQ would
 *   pick its default model, which the allowlist never saw); other methods pass;
 * - any `Content-Encoding`: 415 (a compressed body cannot be checked as sent);
 * - `Content-Type` other than JSON in UTF-8 or `multipart/form-data` with a boundary: 415;
 * - otherwise the body is held and `check` reads it: JSON strictly (`invalid_json`,
 *   `duplicate_key`), multipart strictly (`malformed_request` for broken framing, `duplicate_key`
 *   for a repeated non-file field); `model` must be a string (`invalid_json`), present when the
 *   client has `models` (`model_required`) and listed (`model_not_allowed`); `n`, when present,
 *   an integer 1–1000 (`invalid_json`); without `models`, a `model` over 256 characters is
 *   `invalid_json` (it would only bloat the audit log); then the field policies of the client on
 *   this route (field-policy.ts: `field_not_allowed`, `field_required`, also for a POST/PUT/PATCH
 *   without a body when a field is required). Sets `ctx.model` and `ctx.imageCount`;
 *   a `model_not_allowed` refusal sets `ctx.model` to the model refused.
 *
 * Other clients: bodies up to `REPLAYABLE_BODY_LIMIT` with a `Content-Length` are held (so a 401
 * retry can replay them), larger or chunked ones stream; nothing is refused, but a held JSON body
 * that reads cleanly sets `ctx.model` and `ctx.imageCount` for the audit log and cost metrics.
 */
export function createBodyPolicy(clients: readonly ClientConfig[] = []): BodyPolicy {
  const policies: FieldPolicies = compileFieldPolicies(clients);
  /** The field policies on this request's route; undefined for clients without `fields` at the cost of one read. */
  const fieldsOn = (ctx: CallerContext): RouteFields | undefined =>
    ctx.client.fields === undefined || ctx.route === undefined ? undefined : policies.get(ctx.client)?.get(ctx.route);

  return {
    plan: (ctx, hasBody, declaredLength) => {
      const client = ctx.client;
      if (!checksBodies(client)) {
        if (!hasBody) return { ok: true, hold: false };
        return { ok: true, hold: declaredLength !== undefined && declaredLength <= REPLAYABLE_BODY_LIMIT };
      }
      if (!hasBody) {
        if (client.models !== undefined && CONTENT_METHODS.has(ctx.method)) return deny("model_required", "no request body");
        // Absent means MythIQ's default: for `public` that is true, which is what `required` rules out.
        if (CONTENT_METHODS.has(ctx.method) && fieldsOn(ctx)?.anyRequired === true) return deny("field_required", "no request body");
        return { ok: true, hold: false };
      }
      if (ctx.headers["content-encoding"] !== undefined) return deny("unsupported_media_type", "content-encoding on a checked body");
      const media = classifyMediaType(ctx.headers["content-type"]);
      if (media.kind === "unsupported") return deny("unsupported_media_type", media.detail);
      return { ok: true, hold: true };
    },

    check: (ctx, body) => {
      const client = ctx.client;
      if (!checksBodies(client)) {
        noteUncheckedBody(ctx, body);
        return CONTINUE;
      }
      // The plan refused every other content type; classifying again keeps check() safe on its own.
      const media = classifyMediaType(ctx.headers["content-type"]);
      if (media.kind === "unsupported") return deny("unsupported_media_type", media.detail);
      if (ctx.headers["content-encoding"] !== undefined) return deny("unsupported_media_type", "content-encoding on a checked body");
      const read = media.kind === "json" ? readJsonBody(body) : readMultipartBody(body, media.boundary);
      if (!read.ok) return read;
      const { model, imageCount } = read.facts;
      if (client.models !== undefined) {
        if (model === undefined) return deny("model_required", "body names no model");
        if (!client.models.includes(model)) {
          // The refusal names the model that was asked for (SPEC §11; the audit line cuts it).
          ctx.model = model;
          return deny("model_not_allowed", "model not in the client's models");
        }
      } else if (model !== undefined && model.length > MAX_MODEL_LENGTH) {
        return deny("invalid_json", `model longer than ${MAX_MODEL_LENGTH} characters`);
      }
      const fields = fieldsOn(ctx);
      if (fields !== undefined) {
        const { members, parts } = read.facts;
        const verdict = members !== undefined ? checkJsonFields(fields, members) : checkFormFields(fields, parts ?? []);
        if (!verdict.ok) return verdict;
      }
      ctx.model = model;
      ctx.imageCount = imageCount;
      return CONTINUE;
    },
  };
}
