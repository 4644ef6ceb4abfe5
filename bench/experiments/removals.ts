/**
 * Removal experiments (issue 14): each takes one per-request component out of the built proxy
 * (dist/), so that `bench/components.ts` can price it in µs of CPU per request by comparison with
 * the unmodified proxy in the same run. The product code is untouched: hooks.ts edits the compiled
 * JavaScript as Node loads it, and refuses to start when an anchor is no longer found (so an
 * experiment cannot silently measure nothing after a refactor).
 *
 * What "removed" means is chosen so that the rest of the request path runs as before: a removed
 * check still sets what later steps read (the route label, the client), and the request is still
 * forwarded and answered in full.
 */
export type Edit =
  | {
      /** The end of the module's file URL, e.g. `/dist/observe/audit.js`. */
      readonly file: string;
      readonly find: string;
      readonly replace: string;
    }
  | {
      readonly file: string;
      /** A file in bench/experiments/ loaded in the module's place (its imports resolve from the module's folder). */
      readonly module: string;
    };

export interface Removal {
  readonly what: string;
  readonly edits: readonly Edit[];
}

export const REMOVALS: Readonly<Record<string, Removal>> = {
  audit: {
    what: "the audit record and its line (writeAudit returns at once)",
    edits: [{ file: "/dist/observe/audit.js", find: "export function writeAudit(logger, audit, input) {", replace: "export function writeAudit(logger, audit, input) { return;" }],
  },
  metrics: {
    what: "per-request metrics: requests_total, durations, bytes, key usage, in-flight (the Metrics methods return at once)",
    edits: [
      { file: "/dist/observe/metrics.js", find: "requestFinished(facts) {", replace: "requestFinished(facts) { return;" },
      { file: "/dist/observe/metrics.js", find: "upstreamDuration(template, seconds) {", replace: "upstreamDuration(template, seconds) { return;" },
      { file: "/dist/observe/metrics.js", find: "inflight(id, delta) {", replace: "inflight(id, delta) { return;" },
    ],
  },
  "token-hash": {
    what: "hashing the presented client token (SHA-256 once per token text, then remembered)",
    edits: [
      {
        file: "/dist/rules/tokens.js",
        find: 'const digest = Buffer.from(hash("sha256", token, "hex"), "hex");',
        replace: 'let digest = globalThis.__benchDigests?.get(token); if (digest === undefined) { digest = Buffer.from(hash("sha256", token, "hex"), "hex"); (globalThis.__benchDigests ??= new Map()).set(token, digest); }',
      },
    ],
  },
  "route-match": {
    what: "matching method and path against the client's routes (the match of a method + path remembered)",
    edits: [
      {
        file: "/dist/rules/route-check.js",
        find: "const route = table.match(ctx.method, ctx.path);",
        replace:
          "const memo = (globalThis.__benchRoutes ??= new Map()); const memoKey = ctx.method + ' ' + ctx.path; let route = memo.get(memoKey); if (route === undefined) { route = table.match(ctx.method, ctx.path); memo.set(memoKey, route); }",
      },
    ],
  },
  limits: {
    what: "the rate limit and concurrency rules (buildLimits hands back neither)",
    edits: [{ file: "/dist/limits/limits.js", find: "        rate,\n        concurrency,", replace: "        rate: undefined,\n        concurrency: undefined," }],
  },
  "header-rebuild": {
    what: "rebuilding the outgoing headers from the drop list (a fixed set: host, authorization, x-request-id, framing)",
    edits: [
      {
        file: "/dist/proxy/outgoing-headers.js",
        find: "export function buildOutgoingHeaders(input) {",
        replace:
          'export function buildOutgoingHeaders(input) { const fixed = { host: input.host, authorization: `Bearer ${input.key}`, "x-request-id": input.requestId }; if (input.body.kind === "held" && input.body.length > 0) fixed["content-length"] = String(input.body.length); else if (input.body.kind === "stream") fixed["transfer-encoding"] = "chunked"; return fixed;',
      },
    ],
  },
  relay: {
    what: "the chunk-by-chunk relay of a 2xx body (piped instead: no per-chunk scan, count or idle touch)",
    edits: [
      {
        file: "/dist/proxy/forward.js",
        find: "const relay = (pr, status, filter, tail) => {",
        replace: 'const relay = (pr, status, filter, tail) => { if (status < 300) { res.once("finish", () => settleFinal(status, undefined)); pr.pipe(res); return; }',
      },
    ],
  },
  "log-timer": {
    what: "not a removal: log lines flushed to stdout every 10 ms instead of once per event-loop turn (fewer, larger writes)",
    edits: [{ file: "/dist/observe/log.js", find: "setImmediate(flush)", replace: "setTimeout(flush, 10)" }],
  },
  shedding: {
    what: "load shedding on event-loop lag (bench/instructions.ts: a process under valgrind lags by nature)",
    edits: [{ file: "/dist/lifecycle/start.js", find: "options.overload === false", replace: "true" }],
  },
  forwarder: {
    what: "src/proxy/forward.ts as a whole (set-up, header rebuild, relay, timers, listeners), replaced by http-proxy-3's own passes as the bare pass-through uses them",
    edits: [{ file: "/dist/proxy/forward.js", module: "plain-forward.js" }],
  },
};

/** Removals that are not components of a request's cost: left out of the default lists. */
export const NOT_COMPONENTS: ReadonlySet<string> = new Set(["shedding", "log-timer"]);

/** The removals named in `BENCH_REMOVE` (comma-separated); throws on an unknown name. */
export function removalsFromEnv(value: string | undefined): Removal[] {
  if (value === undefined || value === "") return [];
  return value.split(",").map((name) => {
    const removal = REMOVALS[name];
    if (removal === undefined) throw new Error(`BENCH_REMOVE: unknown removal ${name} (known: ${Object.keys(REMOVALS).join(", ")})`);
    return removal;
  });
}
