import t from "tap";
import { createRouteCheck } from "../../src/rules/route-check.ts";
import { compileRoutes, parseRouteTemplate } from "../../src/rules/routes.ts";
import { makeCaller, makeClient } from "../helpers/context.ts";
import { InvariantError } from "../../src/pipeline/types.ts";

void t.test("parseRouteTemplate", (t) => {
  const good = parseRouteTemplate("GET /v1/models/{id}?limit&after");
  t.same(good, { ok: true, value: { method: "GET", label: "GET /v1/models/{id}", segments: ["v1", "models", null], query: ["limit", "after"] } });
  t.same(parseRouteTemplate("GET /"), { ok: true, value: { method: "GET", label: "GET /", segments: [""], query: [] } });
  t.same(parseRouteTemplate("GET /v1/models/"), { ok: true, value: { method: "GET", label: "GET /v1/models/", segments: ["v1", "models", ""], query: [] } });
  const bad = [
    "GET",
    "get /v1/models",
    "GET  /v1/models",
    "GET\t/v1/models",
    "GET v1/models",
    "GET /v1//models",
    "GET /v1/./models",
    "GET /v1/../models",
    "GET /v1/models.",
    "GET /v1/%6dodels",
    "GET /v1/models;x",
    "GET /v1/models/*",
    "GET /v1/models/{id",
    "GET /v1/models/{}",
    "GET /v1/models/{1d}",
    "GET /v1/models/x{id}",
    "GET /v1/models?",
    "GET /v1/models?a&&b",
    "GET /v1/models?a=1",
    "GET /v1/models?a b",
    "GET /v1/models ",
    // Methods the listener refuses (or answers itself) could never be forwarded.
    "OPTIONS /v1/models",
    "TRACE /v1/models",
    "BREW /v1/models",
    // Names listed twice in one entry, parameters named twice.
    "GET /v1/models?a&a",
    "GET /v1/{id}/{id}",
  ];
  for (const text of bad) t.equal(parseRouteTemplate(text).ok, false, JSON.stringify(text));
  t.end();
});

void t.test("compileRoutes: exact segment matching", (t) => {
  const table = compileRoutes([
    "GET /v1/models",
    "GET /v1/models/{id}",
    "POST /v1/images/generations",
    "GET /v1/generations?limit&after&cursor",
    "GET /v1/things/{id}/parts",
    "GET /v1/things/special/parts?x",
    "GET /v1/dir/",
  ]);
  const cases: Array<[string, string, string | undefined]> = [
    ["GET", "/v1/models", "GET /v1/models"],
    ["GET", "/v1/models/", undefined], // trailing slash is another path
    ["GET", "/v1/models/stability-sdxl", "GET /v1/models/{id}"],
    ["GET", "/v1/models/a:b@c", "GET /v1/models/{id}"],
    ["GET", "/v1/models//", undefined],
    ["GET", "/v1/models/a/b", undefined], // {id} is exactly one segment
    ["GET", "/v1/models/..", undefined],
    ["GET", "/v1/models/.", undefined],
    ["GET", "/V1/models", undefined], // case-sensitive
    ["GET", "/v1/Models", undefined],
    ["get", "/v1/models", undefined],
    ["HEAD", "/v1/models", undefined], // GET does not allow HEAD
    ["POST", "/v1/models", undefined],
    ["POST", "/v1/images/generations", "POST /v1/images/generations"],
    ["POST", "/v1/images/generations/", undefined],
    ["POST", "/v1/images/generations/x", undefined], // extra segment
    ["POST", "/v1/images", undefined],
    ["GET", "/v1/things/a/parts", "GET /v1/things/{id}/parts"],
    ["GET", "/v1/things/special/parts", "GET /v1/things/special/parts"], // literal beats placeholder
    ["GET", "/v1/dir/", "GET /v1/dir/"],
    ["GET", "/v1/dir", undefined],
    ["GET", "/", undefined],
    ["GET", "v1/models", undefined],
    ["GET", "", undefined],
  ];
  for (const [method, path, want] of cases) t.equal(table.match(method, path)?.label, want, `${method} ${path}`);
  t.same([...(table.match("GET", "/v1/generations")?.query ?? [])].sort(), ["after", "cursor", "limit"]);
  t.same([...(table.match("GET", "/v1/things/special/parts")?.query ?? [])], ["x"]);
  t.same([...(table.match("GET", "/v1/things/other/parts")?.query ?? [])], []);
  t.end();
});

void t.test("compileRoutes: specificity does not depend on order", (t) => {
  for (const routes of [["GET /a/{x}/c", "GET /a/b/{y}"], ["GET /a/b/{y}", "GET /a/{x}/c"]]) {
    const table = compileRoutes(routes);
    t.equal(table.match("GET", "/a/b/c")?.label, "GET /a/b/{y}", routes.join(" | "));
    t.equal(table.match("GET", "/a/z/c")?.label, "GET /a/{x}/c");
    t.equal(table.match("GET", "/a/z/d"), undefined);
  }
  t.end();
});

void t.test("compileRoutes throws on a bad template or the same route twice", (t) => {
  t.throws(() => compileRoutes(["GET /ok", "GET /v1/../x"]), { message: /^route #1: / });
  // Config validation refuses the same METHOD /path twice in a client (whatever the query names).
  t.throws(() => compileRoutes(["GET /x?a", "POST /x", "GET /x?b"]), { message: "route #2: GET /x is already listed at route #0" });
  t.end();
});

void t.test("route check", async (t) => {
  const client = makeClient({ routes: ["GET /v1/models", "GET /v1/models/{id}", "GET /v1/generations?limit&after", "HEAD /v1/models"] });
  const foreign = makeClient({ routes: ["GET /v1/models"] });
  const rule = createRouteCheck([client]);
  t.equal(rule.name, "route");
  const cases: Array<{ name: string; method?: string; path: string; queryNames?: string[]; client?: typeof client; want: string | undefined; route: string | undefined }> = [
    { name: "listed", path: "/v1/models", want: undefined, route: "GET /v1/models" },
    { name: "placeholder", path: "/v1/models/sdxl", want: undefined, route: "GET /v1/models/{id}" },
    { name: "HEAD listed", method: "HEAD", path: "/v1/models", want: undefined, route: "HEAD /v1/models" },
    { name: "HEAD not listed", method: "HEAD", path: "/v1/models/sdxl", want: "route_not_allowed", route: undefined },
    { name: "not listed", method: "POST", path: "/v1/models", want: "route_not_allowed", route: undefined },
    { name: "trailing slash", path: "/v1/models/", want: "route_not_allowed", route: undefined },
    { name: "query on a route without names", path: "/v1/models", queryNames: ["limit"], want: "query_not_allowed", route: "GET /v1/models" },
    { name: "listed query names", path: "/v1/generations", queryNames: ["limit", "after"], want: undefined, route: "GET /v1/generations" },
    { name: "duplicate listed name", path: "/v1/generations", queryNames: ["limit", "limit"], want: undefined, route: "GET /v1/generations" },
    { name: "one unlisted name", path: "/v1/generations", queryNames: ["limit", "admin"], want: "query_not_allowed", route: "GET /v1/generations" },
    { name: "query names are case-sensitive", path: "/v1/generations", queryNames: ["Limit"], want: "query_not_allowed", route: "GET /v1/generations" },
    { name: "empty query name", path: "/v1/generations", queryNames: [""], want: "query_not_allowed", route: "GET /v1/generations" },
  ];
  for (const c of cases) {
    const ctx = makeCaller({ client: c.client ?? client, method: c.method ?? "GET", path: c.path, queryNames: c.queryNames ?? [] });
    const verdict = await rule.check(ctx);
    t.equal(verdict.ok ? undefined : verdict.reason, c.want, c.name);
    t.equal(ctx.route, c.route, `${c.name}: ctx.route`);
  }
  // A client the rule was not compiled for is a bug in the proxy, never the caller's fault.
  t.throws(() => rule.check(makeCaller({ client: foreign, path: "/v1/models" })), InvariantError, "client from another config");
});
