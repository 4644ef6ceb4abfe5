/**
 * Reading a held JSON response of a create or list route (README "Ownership").
 *
 * A create response is sent on unchanged, so it is read as strictly as a request body
 * (src/rules/strict-json.ts: valid UTF-8, no duplicate keys, bounded depth): with
 * `{"id":"a","id":"b"}` the proxy and the client's parser could disagree on which id was created,
 * and such a response is not recorded. A list is re-serialised after filtering: the client gets the
 * proxy's own JSON, which says exactly what was checked, so `JSON.parse` is enough there (and four
 * times faster on a 1 MiB page). Content codings are undone first (src/proxy/leak-scan.ts), bounded
 * like the leak scan.
 */
import type { IncomingHttpHeaders } from "node:http";
import { contentCodings, decodeForScan } from "../proxy/leak-scan.ts";
import { readStrictJson } from "../rules/strict-json.ts";

/** A create or list response is held up to this many bytes (as received, before decoding). */
export const HOLD_BYTES = 1024 * 1024;

/** True for `application/json` and `*\/*+json` content types, whatever their parameters. */
export function isJsonType(header: string | undefined): boolean {
  if (header === undefined) return false;
  const essence = (header.split(";")[0] ?? "").trim().toLowerCase();
  return essence === "application/json" || /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+\+json$/.test(essence);
}

/** True when the response says up front that its body is longer than the hold limit. */
export function declaredTooLarge(headers: IncomingHttpHeaders): boolean {
  const length = Number(headers["content-length"]);
  return Number.isFinite(length) && length > HOLD_BYTES;
}

/**
 * The held body as a JSON value, or undefined when it cannot be decoded or is not JSON (`strict`:
 * not strict JSON, see above).
 */
export function readResponseJson(headers: IncomingHttpHeaders, body: Buffer, strict: boolean): unknown {
  const plain = decodeForScan(body, contentCodings(headers["content-encoding"]));
  if (plain === undefined) return undefined;
  if (strict && !readStrictJson(plain).ok) return undefined;
  try {
    return JSON.parse(plain.toString("utf8")) as unknown;
  } catch {
    return undefined;
  }
}
