/**
 * The catalogue of every response the proxy makes itself (SPEC §5).
 *
 * One table maps a stable machine-readable `reason` to its HTTP status, MythIQ-style `code` and a
 * human message. The README carries the same table with a "what to do" line per reason, and
 * `test/errors-readme.test.ts` fails when the two drift apart.
 */

export type ErrorCode =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "rate_limit_error"
  | "upstream_error"
  | "service_unavailable";

export interface ErrorEntry {
  readonly status: number;
  readonly code: ErrorCode;
  readonly message: string;
}

export const ERRORS = {
  malformed_request: { status: 400, code: "invalid_request_error", message: "The request could not be parsed" },
  invalid_path: { status: 400, code: "invalid_request_error", message: "The request path is not canonical" },
  invalid_header: { status: 400, code: "invalid_request_error", message: "A request header is not allowed" },
  invalid_json: { status: 400, code: "invalid_request_error", message: "The request body is not valid JSON" },
  duplicate_key: { status: 400, code: "invalid_request_error", message: "The request body repeats a key" },
  model_required: { status: 400, code: "invalid_request_error", message: "The request body must name a model" },
  field_required: { status: 400, code: "invalid_request_error", message: "The request body must set a field this client's policy requires" },
  query_not_allowed: { status: 400, code: "invalid_request_error", message: "A query parameter is not allowed on this route" },
  body_not_allowed: { status: 400, code: "invalid_request_error", message: "This method does not take a request body" },
  ambiguous_credentials: { status: 400, code: "invalid_request_error", message: "The request carries credentials for different clients" },
  missing_credentials: { status: 401, code: "authentication_error", message: "Credentials are missing" },
  invalid_credentials: { status: 401, code: "authentication_error", message: "Credentials are invalid" },
  origin_not_allowed: { status: 403, code: "permission_error", message: "Origin is not allowed for this client" },
  network_not_allowed: { status: 403, code: "permission_error", message: "Caller network is not allowed for this client" },
  route_not_allowed: { status: 403, code: "permission_error", message: "Route is not allowed for this client" },
  model_not_allowed: { status: 403, code: "permission_error", message: "Model is not allowed for this client" },
  field_not_allowed: { status: 403, code: "permission_error", message: "A field value is not allowed for this client" },
  not_found: { status: 404, code: "not_found_error", message: "Not found" },
  method_not_allowed: { status: 405, code: "invalid_request_error", message: "Method is not allowed" },
  request_timeout: { status: 408, code: "invalid_request_error", message: "The request was not received in time" },
  body_too_large: { status: 413, code: "invalid_request_error", message: "The request body is too large" },
  unsupported_media_type: { status: 415, code: "invalid_request_error", message: "The request body type is not supported" },
  expectation_failed: { status: 417, code: "invalid_request_error", message: "Only Expect: 100-continue is supported" },
  headers_too_large: { status: 431, code: "invalid_request_error", message: "The request headers are too large" },
  rate_limited: { status: 429, code: "rate_limit_error", message: "Rate limit exceeded" },
  concurrency_limited: { status: 429, code: "rate_limit_error", message: "Too many requests in flight" },
  budget_exhausted: { status: 429, code: "rate_limit_error", message: "Daily budget exhausted" },
  auth_failures: { status: 429, code: "rate_limit_error", message: "Too many failed authentication attempts" },
  upstream_unreachable: { status: 502, code: "upstream_error", message: "The MythIQ API could not be reached" },
  upstream_reset: { status: 502, code: "upstream_error", message: "The MythIQ API closed the connection" },
  upstream_redirect: { status: 502, code: "upstream_error", message: "The MythIQ API answered with a redirect" },
  upstream_auth_failed: { status: 502, code: "upstream_error", message: "The MythIQ API refused the proxy's key" },
  upstream_leak: { status: 502, code: "upstream_error", message: "The MythIQ API response was withheld" },
  upstream_unfilterable: { status: 502, code: "upstream_error", message: "The MythIQ API response could not be filtered to the caller's own items" },
  upstream_timeout: { status: 504, code: "upstream_error", message: "The MythIQ API did not answer in time" },
  key_unavailable: { status: 503, code: "service_unavailable", message: "The MythIQ key is not available yet" },
  draining: { status: 503, code: "service_unavailable", message: "The proxy is shutting down" },
  overloaded: { status: 503, code: "service_unavailable", message: "The proxy is overloaded" },
} as const satisfies Record<string, ErrorEntry>;

export type Reason = keyof typeof ERRORS;

export const REASONS = Object.keys(ERRORS) as readonly Reason[];

export function isReason(value: string): value is Reason {
  return Object.hasOwn(ERRORS, value);
}

// The catalogue is fixed, so each body is serialised once, not on every refusal.
const BODIES = new Map<Reason, string>(
  REASONS.map((reason) => {
    const entry = ERRORS[reason];
    return [reason, JSON.stringify({ success: false, message: entry.message, code: entry.code, reason })];
  }),
);

/** The JSON body of a local reply, in MythIQ's error shape plus `reason`. */
export function errorBody(reason: Reason): string {
  return BODIES.get(reason) ?? "";
}
