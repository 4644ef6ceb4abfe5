import t from "tap";
import type { IncomingHttpHeaders } from "node:http";
import { createBodyPolicy, REPLAYABLE_BODY_LIMIT } from "../../src/rules/body-check.ts";
import type { CallerContext } from "../../src/pipeline/types.ts";
import { makeCaller, makeClient } from "../helpers/context.ts";

const policy = createBodyPolicy();
const modelsClient = makeClient({ id: "models", models: ["stability/sdxl", "openai/gpt-image-1"], routes: ["POST /v1/images/generations"] });
const budgetClient = makeClient({ id: "budget", budget: { daily_usd: 5 }, routes: ["POST /v1/images/generations"] });
const plainClient = makeClient({ id: "plain", routes: ["POST /v1/images/generations"] });
const B = "XyZ";
const JSON_CT = { "content-type": "application/json" };
const FORM_CT = { "content-type": `multipart/form-data; boundary=${B}` };

function ctxFor(client = modelsClient, headers: IncomingHttpHeaders = JSON_CT, method = "POST"): CallerContext {
  return makeCaller({ method, path: "/v1/images/generations", headers, client });
}

/** plan + check as the handler runs them; "hold"/"stream" when the plan lets the body through unchecked. */
function run(ctx: CallerContext, body: string | Buffer | undefined): string {
  const bytes = typeof body === "string" ? Buffer.from(body, "latin1") : body;
  const plan = policy.plan(ctx, bytes !== undefined && bytes.length > 0, bytes?.length);
  if (!plan.ok) return plan.reason;
  if (bytes === undefined || bytes.length === 0) return "no-body";
  if (!plan.hold) return "stream";
  const verdict = policy.check(ctx, bytes);
  return verdict.ok ? "ok" : verdict.reason;
}

const form = (...parts: Array<[string, string] | [string, string, string]>) =>
  parts
    .map(([name, value, filename]) =>
      `--${B}\r\nContent-Disposition: form-data; name="${name}"${filename === undefined ? "" : `; filename="${filename}"`}\r\n\r\n${value}\r\n`,
    )
    .join("") + `--${B}--\r\n`;

void t.test("JSON bodies of a client with models", async (t) => {
  const cases: Array<[string, string, string]> = [
    ["allowed model", '{"model":"stability/sdxl","prompt":"x"}', "ok"],
    ["other allowed model", '{"prompt":"x","model":"openai/gpt-image-1","n":3}', "ok"],
    ["model not listed", '{"model":"openai/dall-e-3"}', "model_not_allowed"],
    ["model in other case", '{"model":"Stability/SDXL"}', "model_not_allowed"],
    ["model with trailing space", '{"model":"stability/sdxl "}', "model_not_allowed"],
    ["empty model", '{"model":""}', "model_not_allowed"],
    ["no model", '{"prompt":"x"}', "model_required"],
    ["model only nested", '{"options":{"model":"stability/sdxl"}}', "model_required"],
    ["model is a number", '{"model":1}', "invalid_json"],
    ["model is null", '{"model":null}', "invalid_json"],
    ["model is an array", '{"model":["stability/sdxl"]}', "invalid_json"],
    ["model is an object", '{"model":{"id":"stability/sdxl"}}', "invalid_json"],
    ["duplicate model, allowed last", '{"model":"openai/dall-e-3","model":"stability/sdxl"}', "duplicate_key"],
    ["duplicate model, escaped", '{"model":"stability/sdxl","mod\\u0065l":"openai/dall-e-3"}', "duplicate_key"],
    ["escaped allowed model", '{"model":"stability\\/sdxl"}', "ok"],
    ["top-level array", '[{"model":"stability/sdxl"}]', "invalid_json"],
    ["not JSON", "model=stability/sdxl", "invalid_json"],
    ["n as a string", '{"model":"stability/sdxl","n":"4"}', "invalid_json"],
    ["n fractional", '{"model":"stability/sdxl","n":1.5}', "invalid_json"],
    ["n zero", '{"model":"stability/sdxl","n":0}', "invalid_json"],
    ["n huge", '{"model":"stability/sdxl","n":1e9}', "invalid_json"],
  ];
  for (const [name, body, want] of cases) t.equal(run(ctxFor(), body), want, name);
});

void t.test("a checked body sets ctx.model and ctx.imageCount", async (t) => {
  const ctx = ctxFor();
  t.equal(run(ctx, '{"model":"openai/gpt-image-1","n":4}'), "ok");
  t.equal(ctx.model, "openai/gpt-image-1");
  t.equal(ctx.imageCount, 4);
  const noN = ctxFor();
  t.equal(run(noN, '{"model":"stability/sdxl"}'), "ok");
  t.equal(noN.imageCount, 1, "n defaults to 1");
  const formCtx = ctxFor(modelsClient, FORM_CT);
  t.equal(run(formCtx, form(["image", "PNG", "a.png"], ["n", "2"], ["model", "stability/sdxl"])), "ok");
  t.equal(formCtx.model, "stability/sdxl");
  t.equal(formCtx.imageCount, 2);
  const refused = ctxFor();
  t.equal(run(refused, '{"model":"openai/dall-e-3","n":2}'), "model_not_allowed");
  t.equal(refused.model, "openai/dall-e-3", "model_not_allowed names the model refused (SPEC §11: the audit line does)");
  t.equal(refused.imageCount, 1, "and nothing else");
  const invalid = ctxFor();
  t.equal(run(invalid, '{"model":"stability/sdxl","n":"2"}'), "invalid_json");
  t.equal(invalid.model, undefined, "other refusals set nothing");
});

void t.test("content types and encodings on checked routes", async (t) => {
  const body = '{"model":"stability/sdxl"}';
  t.equal(run(ctxFor(modelsClient, {}), body), "unsupported_media_type", "no content-type");
  t.equal(run(ctxFor(modelsClient, { "content-type": "text/plain" }), body), "unsupported_media_type");
  t.equal(run(ctxFor(modelsClient, { "content-type": "application/json; charset=iso-8859-1" }), body), "unsupported_media_type");
  t.equal(run(ctxFor(modelsClient, { ...JSON_CT, "content-encoding": "gzip" }), body), "unsupported_media_type");
  t.equal(run(ctxFor(modelsClient, { ...JSON_CT, "content-encoding": "identity" }), body), "unsupported_media_type");
  t.equal(run(ctxFor(modelsClient, { "content-type": "application/json; charset=utf-8" }), body), "ok");
});

void t.test("bodies without content", async (t) => {
  t.equal(run(ctxFor(modelsClient, {}), undefined), "model_required", "POST without a body");
  t.equal(run(ctxFor(modelsClient, {}, "PATCH"), undefined), "model_required", "PATCH without a body");
  t.equal(run(ctxFor(modelsClient, {}, "GET"), undefined), "no-body", "GET needs no body");
  t.equal(run(ctxFor(modelsClient, {}, "DELETE"), undefined), "no-body", "DELETE needs no body");
  t.equal(run(ctxFor(budgetClient, {}), undefined), "no-body", "a budget-only client may POST without a body");
});

void t.test("multipart bodies of a client with models", async (t) => {
  const cases: Array<[string, string, string]> = [
    ["model after the file", form(["image", "\x89PNG\r\n", "in.png"], ["prompt", "x"], ["model", "stability/sdxl"]), "ok"],
    ["model not listed", form(["model", "openai/dall-e-3"]), "model_not_allowed"],
    ["no model", form(["image", "PNG", "in.png"], ["prompt", "x"]), "model_required"],
    ["model twice", form(["model", "stability/sdxl"], ["model", "openai/dall-e-3"]), "duplicate_key"],
    ["model as a file", form(["model", "stability/sdxl", "model.txt"]), "invalid_json"],
    ["Model look-alike", form(["Model", "openai/dall-e-3"], ["model", "stability/sdxl"]), "invalid_json"],
    ["model[] look-alike", form(["model[]", "openai/dall-e-3"], ["model", "stability/sdxl"]), "invalid_json"],
    ["model not UTF-8", form(["model", "stability/sdxl\xff"]), "invalid_json"],
    ["prompt twice", form(["model", "stability/sdxl"], ["prompt", "a"], ["prompt", "b"]), "duplicate_key"],
    ["image[] files repeat", form(["model", "stability/sdxl"], ["image[]", "A", "a.png"], ["image[]", "B", "b.png"]), "ok"],
    ["n not a number", form(["model", "stability/sdxl"], ["n", "2x"]), "invalid_json"],
    ["n with a sign", form(["model", "stability/sdxl"], ["n", "+2"]), "invalid_json"],
    ["preamble", "x\r\n" + form(["model", "stability/sdxl"]), "malformed_request"],
    ["epilogue with a second model", form(["model", "stability/sdxl"]) + form(["model", "openai/dall-e-3"]), "malformed_request"],
  ];
  for (const [name, body, want] of cases) t.equal(run(ctxFor(modelsClient, FORM_CT), body), want, name);
});

void t.test("clients without models", async (t) => {
  const body = '{"model":"anything","n":2}';
  t.equal(run(ctxFor(plainClient, {}), body), "ok", "a small body is held for replay and not checked");
  t.equal(run(ctxFor(plainClient, { "content-type": "text/plain" }), "not json at all"), "ok");
  const big = Buffer.alloc(REPLAYABLE_BODY_LIMIT + 1, 0x20);
  t.equal(run(ctxFor(plainClient, JSON_CT), big), "stream", "a large body streams");
  const plan = policy.plan(ctxFor(plainClient, JSON_CT), true, undefined);
  t.same(plan, { ok: true, hold: false }, "a chunked body streams");

  const noted = ctxFor(plainClient, JSON_CT);
  t.equal(run(noted, '{"model":"some/model","n":3}'), "ok");
  t.equal(noted.model, "some/model", "an unchecked JSON body still names its model for the audit log");
  t.equal(noted.imageCount, 3);
  const unread = ctxFor(plainClient, JSON_CT);
  t.equal(run(unread, '{"model":"a","model":"b","n":7}'), "ok", "never refused when not checked");
  t.equal(unread.model, undefined, "but a body that does not read cleanly names nothing");
  t.equal(unread.imageCount, 1);

  const budget = ctxFor(budgetClient);
  t.equal(run(budget, '{"model":"whatever/model","n":3}'), "ok", "a budget client may use any model");
  t.equal(budget.model, "whatever/model");
  t.equal(budget.imageCount, 3);
  t.equal(run(ctxFor(budgetClient), '{"prompt":"x"}'), "ok", "and may leave it out");
  t.equal(run(ctxFor(budgetClient), '{"model":"a","model":"b"}'), "duplicate_key", "but its bodies are strict: they are priced");
  t.equal(run(ctxFor(budgetClient), '{"model":"a","n":"9"}'), "invalid_json");
  t.equal(run(ctxFor(budgetClient), JSON.stringify({ model: "m".repeat(257) })), "invalid_json", "an absurd model name");
  t.equal(run(ctxFor(budgetClient, {}), '{"model":"a"}'), "unsupported_media_type");
});
