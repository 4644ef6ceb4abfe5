// Field policies in the body check (src/rules/field-policy.ts), table-driven: the order against the
// model check, per-route scope, typed comparison, look-alike names, multipart text.
import t from "tap";
import type { FieldPolicyConfig } from "../../src/config/types.ts";
import { createBodyPolicy } from "../../src/rules/body-check.ts";
import { compileFieldPolicies, foldFieldName } from "../../src/rules/field-policy.ts";
import { makeCaller, makeClient } from "../helpers/context.ts";

const GEN = "POST /v1/images/generations";
const fields: Record<string, FieldPolicyConfig> = {
  public: { allowed: [false], required: true, routes: [GEN] },
  provider: { allowed: ["stability", "openai"], required: false },
  stream: { allowed: [false], required: false },
  n: { allowed: [1], required: false },
  note: { required: true, routes: ["POST /v1/notes"] },
  forbidden: { allowed: [], required: false },
};
const client = makeClient({ id: "c", routes: [GEN, "POST /v1/media/{id}", "POST /v1/notes"], models: ["stability/sdxl"], fields });
const policy = createBodyPolicy([client]);

function run(route: string, path: string, body: string | undefined, contentType = "application/json"): string {
  const ctx = makeCaller({ method: "POST", path, headers: body === undefined ? {} : { "content-type": contentType }, client });
  ctx.route = route;
  const bytes = body === undefined ? undefined : Buffer.from(body, "utf8");
  const plan = policy.plan(ctx, bytes !== undefined, bytes?.length);
  if (!plan.ok) return plan.reason;
  if (bytes === undefined) return "no-body";
  const verdict = policy.check(ctx, bytes);
  return verdict.ok ? "ok" : verdict.reason;
}

const gen = (body: string | undefined) => run(GEN, "/v1/images/generations", body);
const sdxl = '"model":"stability/sdxl"';

void t.test("JSON: typed values, presence, order against the model check", async (t) => {
  const cases: Array<[string, string | undefined, string]> = [
    ["all good", `{${sdxl},"public":false,"provider":"openai","n":1}`, "ok"],
    ["public true", `{${sdxl},"public":true}`, "field_not_allowed"],
    ["public as a string", `{${sdxl},"public":"false"}`, "field_not_allowed"],
    ["public absent", `{${sdxl}}`, "field_required"],
    ["no body: the model is asked for first", undefined, "model_required"],
    ["model refused before fields", '{"model":"x","public":true}', "model_not_allowed"],
    ["model absent before fields", '{"public":true}', "model_required"],
    ["values before presence", `{${sdxl},"provider":"x"}`, "field_not_allowed"],
    ["n 1.0 is 1", `{${sdxl},"public":false,"n":1.0}`, "ok"],
    ["n 1e0 is 1", `{${sdxl},"public":false,"n":1e0}`, "ok"],
    ["a field allowed nothing", `{${sdxl},"public":false,"forbidden":"anything"}`, "field_not_allowed"],
    ["long s for stream (Go folds it)", `{${sdxl},"public":false,"ſtream":true}`, "field_not_allowed"],
    ["Kelvin sign is no threat to names without k", `{${sdxl},"public":false,"K":1}`, "ok"],
    ["a look-alike of an unpoliced name passes", `{${sdxl},"public":false,"Prompt":"x","prompt":"y"}`, "ok"],
    ["not an object", "[1]", "invalid_json"],
  ];
  for (const [name, body, expected] of cases) t.equal(gen(body), expected, name);
});

void t.test("routes scope a policy; others apply everywhere", async (t) => {
  t.equal(run("POST /v1/media/{id}", "/v1/media/x", `{${sdxl}}`), "ok", "public is not required off its routes");
  t.equal(run("POST /v1/media/{id}", "/v1/media/x", `{${sdxl},"provider":"x"}`), "field_not_allowed", "provider applies on every route");
  t.equal(run("POST /v1/notes", "/v1/notes", `{${sdxl}}`), "field_required", "note is required on its own route");
});

void t.test("multipart: only strings match, files never", async (t) => {
  const B = "b0undary";
  const form = (parts: string[]) => parts.map((p) => `--${B}\r\n${p}\r\n`).join("") + `--${B}--\r\n`;
  const field = (name: string, value: string, extra = "") => `Content-Disposition: form-data; name="${name}"${extra}\r\n\r\n${value}`;
  const mp = (parts: string[]) => run(GEN, "/v1/images/generations", form(parts), `multipart/form-data; boundary=${B}`);
  t.equal(mp([field("model", "stability/sdxl"), field("provider", "openai")]), "field_required", "public can never be satisfied in a form: a boolean policy");
  t.equal(mp([field("model", "stability/sdxl"), field("public", "false")]), "field_not_allowed", "the text false is not the boolean false");
  const noPublic = makeClient({ id: "d", routes: [GEN], fields: { provider: { allowed: ["openai"], required: true } } });
  const p2 = createBodyPolicy([noPublic]);
  const check = (parts: string[]) => {
    const ctx = makeCaller({ method: "POST", path: "/v1/images/generations", headers: { "content-type": `multipart/form-data; boundary=${B}` }, client: noPublic });
    ctx.route = GEN;
    const v = p2.check(ctx, Buffer.from(form(parts)));
    return v.ok ? "ok" : v.reason;
  };
  t.equal(check([field("provider", "openai")]), "ok");
  t.equal(check([field("provider", "openai", '; filename="p.txt"')]), "field_not_allowed", "a file part");
  t.equal(check([`Content-Disposition: form-data; name="provider"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nopenai`]), "ok", "text/plain is text");
  t.equal(check([field("PROVIDER", "openai"), field("provider", "openai")]), "field_not_allowed", "a look-alike name");
  t.equal(check([field("image", "x")]), "field_required");
});

void t.test("compiled once: clients without fields are absent; folding", async (t) => {
  const plain = makeClient({ id: "p", routes: [GEN] });
  const table = compileFieldPolicies([plain, client]);
  t.notOk(table.has(plain));
  t.same([...(table.get(client)?.keys() ?? [])].sort(), [GEN, "POST /v1/media/{id}", "POST /v1/notes"].sort());
  t.equal(table.get(client)?.get(GEN)?.anyRequired, true);
  t.equal(table.get(client)?.get("POST /v1/media/{id}")?.anyRequired, false);
  t.equal(foldFieldName("ſtream"), "stream");
  t.equal(foldFieldName("\u212Aey"), "key");
  t.equal(foldFieldName("Public[]"), "public");
});
