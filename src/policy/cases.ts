/**
 * Policy test case files (SPEC §9): a YAML list of cases, each a request and what the proxy should
 * decide. Strict like the config: unknown fields are errors, and every problem is reported at once
 * as `FILE:LINE:COL: message`.
 */
import * as z from "zod";
import { parseBoundedYaml } from "../config/bounded-yaml.ts";
import { sortProblems, type Problem } from "../config/problems.ts";
import { readYamlText } from "../config/read-text.ts";
import { errorMap, placeIssue, toPathIssues } from "../config/zod-issues.ts";
import { REASONS, type Reason } from "../errors.ts";

/** The caller's address when a case does not give one: TEST-NET-1, outside every private range. */
export const DEFAULT_CASE_IP = "192.0.2.10";

const scalar = z.union([z.string(), z.number(), z.boolean()]);

const requestSchema = z.strictObject({
  method: z.string().min(1).default("GET"),
  /** The request target: path, and optionally `?query`. */
  path: z.string().min(1),
  /** Query parameters appended to `path` (in this order, values URL-encoded). */
  query: z.record(z.string(), scalar).optional(),
  /** Sent as `Authorization: Bearer <token>`. */
  token: z.string().min(1).optional(),
  /** A session JWT, sent as `Authorization: Bearer <jwt>` (or in the session cookie with `cookie_session: true`). */
  jwt: z.string().min(1).optional(),
  /** Session claims: `test-policy` issues a session JWT carrying them (see the README). */
  claims: z.record(z.string(), z.unknown()).optional(),
  /** Send the session (`jwt` or `claims`) in the configured session cookie instead of the header. */
  cookie_session: z.boolean().default(false),
  /** A raw `Cookie` header. */
  cookie: z.string().optional(),
  origin: z.string().optional(),
  /** The TCP peer's address. */
  ip: z.string().min(1).default(DEFAULT_CASE_IP),
  /** An `X-Forwarded-For` header (only believed when `ip` is in `trusted_proxies`). */
  forwarded_for: z.string().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  /** A JSON body (sent with `Content-Type: application/json` unless `headers` sets one). */
  json: z.unknown().optional(),
  /** `multipart/form-data` text fields. */
  multipart: z.record(z.string(), scalar).optional(),
  /** A raw body, with `headers` giving its content type. */
  body: z.string().optional(),
});

const expectSchema = z
  .strictObject({
    allow: z.boolean().optional(),
    client: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
    status: z.number().int().min(100).max(599).optional(),
    reason: z.enum(REASONS as unknown as [Reason, ...Reason[]]).optional(),
  })
  .superRefine((e, ctx) => {
    if (e.allow === undefined && e.status === undefined && e.reason === undefined && e.client === undefined && e.key === undefined) {
      ctx.addIssue({ code: "custom", message: "says nothing: set allow, client, key, status or reason" });
    }
    if (e.allow === true && (e.status !== undefined || e.reason !== undefined)) {
      ctx.addIssue({ code: "custom", message: "allow: true cannot also expect a refusal status or reason" });
    }
  });

const caseSchema = z
  .strictObject({ name: z.string().min(1), request: requestSchema, expect: expectSchema })
  .superRefine((c, ctx) => {
    const bodies = [c.request.json !== undefined, c.request.multipart !== undefined, c.request.body !== undefined].filter(Boolean).length;
    if (bodies > 1) ctx.addIssue({ code: "custom", path: ["request"], message: "give at most one of json, multipart and body" });
    if (c.request.jwt !== undefined && c.request.claims !== undefined) {
      ctx.addIssue({ code: "custom", path: ["request"], message: "give either jwt or claims, not both" });
    }
  });

const casesSchema = z.array(caseSchema).min(1);

export type PolicyCase = z.output<typeof caseSchema>;
export type CaseRequest = PolicyCase["request"];
export type CaseExpectation = PolicyCase["expect"];

export interface LocatedCase {
  readonly case: PolicyCase;
  /** Where the case starts in its file, for the report. */
  readonly line: number;
  readonly col: number;
}

export type CasesResult = { readonly ok: true; readonly cases: readonly LocatedCase[] } | { readonly ok: false; readonly problems: readonly Problem[] };

/** Validates case-file text. Pure. */
export function parseCases(text: string, file: string): CasesResult {
  const parsed = parseBoundedYaml(text);
  if (!parsed.ok) return { ok: false, problems: sortProblems(parsed.problems.map((p) => ({ file, ...p }))) };
  const tree = parsed.tree;
  const result = casesSchema.safeParse(tree.data, { error: errorMap });
  const problems = [
    ...tree.problems.map((p) => ({ file, ...p })),
    ...(result.success ? [] : result.error.issues.flatMap(toPathIssues).map((issue) => placeIssue(file, tree, issue))),
  ];
  if (problems.length > 0 || !result.success) return { ok: false, problems: sortProblems(problems) };
  return {
    ok: true,
    cases: result.data.map((c, index) => ({ case: c, ...tree.nearest([index]) })),
  };
}

export async function loadCasesFile(file: string): Promise<CasesResult> {
  const read = await readYamlText(file, "cases file");
  if (!read.ok) return { ok: false, problems: [read.problem] };
  return parseCases(read.text, file);
}
