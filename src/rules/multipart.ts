/**
 * A strict `multipart/form-data` reader for bodies the proxy checks (SPEC §4 step 7: image edits
 * and variations upload files next to a `model` field).
 *
 * Why not @fastify/busboy (a dev dependency, used by the mutation test as a second opinion): it is a streaming parser that is lenient exactly where two
 * parsers disagree, and a disagreement is a model-allowlist bypass (checked: busboy 3.2.6 on
 * Node 24). It lets `name*=` override `name` (`name="x"; name*=utf-8''model` reads as `model`),
 * keeps the last of two `name` parameters, takes the first of two `Content-Disposition` headers,
 * skips a preamble and ignores an epilogue (where a second `model` part can hide), accepts folded
 * header lines, ignores `Content-Transfer-Encoding`, unescapes `\"` in names, and silently drops a
 * part whose delimiter carries padding. The body is already held in memory (at most `max_body`,
 * read by the handler) because nothing may reach MythIQ before the model is known, so streaming
 * buys nothing; this reader works on that buffer, copies nothing, and refuses every shape above.
 *
 * Accepted shape (what browsers' FormData, curl -F, Python requests/httpx and the OpenAI SDKs send):
 *
 * ```
 * --BOUNDARY CRLF
 * Content-Disposition: form-data; name="field"[; filename="x.png"] CRLF
 * [Content-Type: type/subtype[; params]] CRLF
 * CRLF
 * <bytes> CRLF
 * --BOUNDARY-- [CRLF]
 * ```
 */

/** Most parts in one body. */
export const MAX_PARTS = 256;
/** Most bytes in one part's header block. */
const MAX_PART_HEADER_BYTES = 8 * 1024;

export interface FormPart {
  /** The `name` parameter. */
  readonly name: string;
  /** The `filename` parameter, when the part is a file. */
  readonly filename: string | undefined;
  /** The part's `Content-Type`, lower-cased, when it has one. */
  readonly contentType: string | undefined;
  /** The part's bytes (a view into the body, not a copy). */
  readonly body: Buffer;
}

export type MultipartResult =
  | { readonly ok: true; readonly parts: readonly FormPart[] }
  | { readonly ok: false; readonly detail: string };

// RFC 2046 §5.1.1 bchars, 1–70 of them, not ending in a space.
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;

/** True when `boundary` is a valid multipart boundary (RFC 2046). */
export function isValidBoundary(boundary: string): boolean {
  return BOUNDARY.test(boundary);
}

// A field name as the image API uses them (`model`, `image[]`, `response_format`). Quotes,
// backslashes, `%`, `;`, `=` and spaces are refused: parsers disagree on escaping and decoding them.
const FIELD_NAME = /^[A-Za-z0-9_.\-[\]]{1,128}$/;
// A quoted filename: anything but quotes, backslashes and control characters (UTF-8 allowed, as
// browsers send it raw); browsers percent-encode `"` and CR/LF themselves.
// eslint-disable-next-line no-control-regex -- control characters are what this refuses
const FILENAME = /^[^"\\\u0000-\u001f\u007f]{0,1024}$/;
const CONTENT_TYPE = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+(?:[ \t]*;[ \t]*[a-z0-9!#$&^_.+-]+=(?:[a-z0-9!#$&^_.+-]+|"[^"\\\r\n]*"))*$/;
// `form-data; name="x"` or `name=x`, then optionally `; filename="y"`, in that order, once each.
const DISPOSITION = /^form-data[ \t]*;[ \t]*name=(?:"([^"]*)"|([A-Za-z0-9_.\-[\]]+))(?:[ \t]*;[ \t]*filename="([^"]*)")?$/i;

const CRLF = Buffer.from("\r\n");
const HEADER_END = Buffer.from("\r\n\r\n");

function parseHeaders(block: string): { name: string; filename: string | undefined; contentType: string | undefined } | string {
  let disposition: string | undefined;
  let contentType: string | undefined;
  for (const line of block.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) return "part header line without a name";
    const field = line.slice(0, colon);
    // No space before the colon (RFC 9112 §5.1); leading whitespace would be a folded line.
    if (!/^[A-Za-z0-9-]+$/.test(field)) return "part header name is not a token";
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    switch (field.toLowerCase()) {
      case "content-disposition":
        if (disposition !== undefined) return "two content-disposition headers in one part";
        disposition = value;
        break;
      case "content-type":
        if (contentType !== undefined) return "two content-type headers in one part";
        contentType = value.toLowerCase();
        if (!CONTENT_TYPE.test(contentType)) return "part content-type is malformed";
        break;
      default:
        // Content-Transfer-Encoding and friends change how the bytes read: refuse rather than guess.
        return "part header other than content-disposition and content-type";
    }
  }
  if (disposition === undefined) return "part without content-disposition";
  const match = DISPOSITION.exec(disposition);
  if (match === null) return "content-disposition is not form-data; name=...[; filename=...]";
  const name = match[1] ?? match[2] ?? "";
  if (!FIELD_NAME.test(name)) return "field name has characters parsers disagree on";
  const filename = match[3];
  if (filename !== undefined && !FILENAME.test(filename)) return "filename has characters parsers disagree on";
  return { name, filename, contentType };
}

/**
 * Reads `body` as `multipart/form-data` with `boundary` (already validated with
 * `isValidBoundary`). Refuses (with a `detail` that quotes no content): a preamble or epilogue,
 * bare LF line ends, padding after a delimiter, a part without exactly one
 * `Content-Disposition: form-data; name=...`, headers other than `Content-Disposition` and
 * `Content-Type`, folded or oversized part headers, `name*`/`filename*` parameters, odd field names,
 * a missing close delimiter, more than `MAX_PARTS` parts.
 */
export function readMultipart(body: Buffer, boundary: string): MultipartResult {
  const dashBoundary = Buffer.from(`--${boundary}`, "latin1");
  // Between parts the delimiter is CRLF + "--" + boundary (RFC 2046 §5.1.1).
  const delimiter = Buffer.concat([CRLF, dashBoundary]);
  if (!body.subarray(0, dashBoundary.length).equals(dashBoundary)) {
    return { ok: false, detail: "body does not start with the boundary (preamble or wrong boundary)" };
  }
  let at = dashBoundary.length;
  const parts: FormPart[] = [];
  for (;;) {
    // After a delimiter: "--" closes the body, CRLF opens a part; nothing else (no padding).
    if (body[at] === 0x2d && body[at + 1] === 0x2d) {
      at += 2;
      const rest = body.length - at;
      if (rest === 0 || (rest === 2 && body[at] === 0x0d && body[at + 1] === 0x0a)) return { ok: true, parts };
      return { ok: false, detail: "data after the close delimiter (epilogue)" };
    }
    if (body[at] !== 0x0d || body[at + 1] !== 0x0a) return { ok: false, detail: "delimiter not followed by CRLF or --" };
    at += 2;
    if (parts.length >= MAX_PARTS) return { ok: false, detail: `more than ${MAX_PARTS} parts` };

    const headerEnd = body.indexOf(HEADER_END, at);
    if (headerEnd === -1 || headerEnd - at > MAX_PART_HEADER_BYTES) return { ok: false, detail: "part headers missing or too large" };
    // Header bytes: latin1 keeps them one char per byte so the UTF-8 check below sees the raw bytes.
    const headerBytes = body.subarray(at, headerEnd);
    if (headerBytes.includes(0x00) || /\r(?!\n)|(?<!\r)\n/.test(headerBytes.toString("latin1"))) {
      return { ok: false, detail: "bare CR, LF or NUL in part headers" };
    }
    let headerText: string;
    try {
      headerText = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
    } catch {
      return { ok: false, detail: "part headers are not UTF-8" };
    }
    const headers = parseHeaders(headerText);
    if (typeof headers === "string") return { ok: false, detail: headers };

    const bodyStart = headerEnd + HEADER_END.length;
    const next = body.indexOf(delimiter, bodyStart);
    if (next === -1) return { ok: false, detail: "no close delimiter" };
    parts.push({ ...headers, body: body.subarray(bodyStart, next) });
    at = next + delimiter.length;
  }
}
