/**
 * The `Content-Type` of a body the proxy checks (SPEC §4 step 7): JSON in UTF-8, or
 * `multipart/form-data` with a boundary. Anything else on a checked route is 415, because a body
 * the proxy cannot read is a body whose `model` it cannot check.
 */
import { isValidBoundary } from "./multipart.ts";

export type CheckedMediaType =
  | { readonly kind: "json" }
  | { readonly kind: "multipart"; readonly boundary: string }
  /** `detail` is a fixed description, never the header value. */
  | { readonly kind: "unsupported"; readonly detail: string };

const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

/** Splits `type/subtype; a=b; c="d"` into the lower-cased essence and parameters; `undefined` when malformed. */
function split(value: string): { essence: string; params: Array<[string, string]> } | undefined {
  const [head = "", ...rest] = value.split(";");
  const essence = head.trim().toLowerCase();
  const slash = essence.indexOf("/");
  if (slash <= 0 || !TOKEN.test(essence.slice(0, slash)) || !TOKEN.test(essence.slice(slash + 1))) return undefined;
  const params: Array<[string, string]> = [];
  for (const raw of rest) {
    const param = raw.trim();
    const eq = param.indexOf("=");
    if (eq <= 0) return undefined;
    const name = param.slice(0, eq).toLowerCase();
    let v = param.slice(eq + 1);
    if (!TOKEN.test(name)) return undefined;
    if (v.startsWith('"')) {
      // Quoted values without escapes only: a backslash is where parsers start to disagree.
      if (v.length < 2 || !v.endsWith('"') || /["\\]/.test(v.slice(1, -1))) return undefined;
      v = v.slice(1, -1);
    } else if (!TOKEN.test(v)) {
      return undefined;
    }
    params.push([name, v]);
  }
  return { essence, params };
}

/**
 * Classifies a request's `Content-Type` for a checked body:
 * - `application/json`, with no parameter or only `charset=utf-8` (any case, quoted or not) → json;
 * - `multipart/form-data` with exactly one valid `boundary` parameter and no other → multipart;
 * - anything else (missing, another type, another charset, a repeated or unknown parameter, a
 *   `;` in a quoted value) → unsupported.
 * A semicolon inside a quoted boundary is refused too: RFC 2046 allows none there.
 */
export function classifyMediaType(header: string | undefined): CheckedMediaType {
  if (header === undefined || header.trim() === "") return { kind: "unsupported", detail: "no content-type" };
  const parsed = split(header);
  if (parsed === undefined) return { kind: "unsupported", detail: "malformed content-type" };
  const { essence, params } = parsed;
  if (essence === "application/json") {
    if (params.length === 0) return { kind: "json" };
    const [only] = params;
    if (params.length === 1 && only?.[0] === "charset" && only[1].toLowerCase() === "utf-8") return { kind: "json" };
    return { kind: "unsupported", detail: "json with a charset other than utf-8 or other parameters" };
  }
  if (essence === "multipart/form-data") {
    const [only] = params;
    if (params.length !== 1 || only?.[0] !== "boundary") return { kind: "unsupported", detail: "multipart without exactly one boundary parameter" };
    if (!isValidBoundary(only[1])) return { kind: "unsupported", detail: "multipart boundary is not valid" };
    return { kind: "multipart", boundary: only[1] };
  }
  return { kind: "unsupported", detail: "content-type is neither application/json nor multipart/form-data" };
}
