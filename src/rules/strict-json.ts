/**
 * A strict JSON reader for bodies the proxy checks (SPEC §4 step 7).
 *
 * `JSON.parse` is not enough: it keeps the *last* of two equal keys (`{"model":"allowed",
 * "model":"forbidden"}` reads as forbidden, while other parsers keep the first), accepts lone
 * surrogates and would let a deep document through to `JSON.stringify` elsewhere. This reader
 * accepts exactly RFC 8259 text in valid UTF-8, no byte-order mark, no duplicate keys at any depth
 * (compared after unescaping, so `"mod\u0065l"` is `model`), nesting bounded, no lone surrogates.
 * It builds no document: it only reports the top-level object's members, which is all the checks
 * need, so memory stays proportional to the key sets and not to the body.
 */

/** Nesting depth allowed by default (objects and arrays); image API bodies use 2 or 3. */
export const DEFAULT_MAX_DEPTH = 64;

/** What the checks learn about one top-level member. */
export type JsonMember =
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "number"; readonly value: number }
  | { readonly type: "boolean"; readonly value: boolean }
  | { readonly type: "null" | "object" | "array" };

export type StrictJsonResult =
  /** `members` is `undefined` when the top-level value is not an object. */
  | { readonly ok: true; readonly members: ReadonlyMap<string, JsonMember> | undefined }
  | { readonly ok: false; readonly reason: "invalid_json" | "duplicate_key"; readonly detail: string };

export interface StrictJsonOptions {
  /** Deepest nesting of objects/arrays accepted; default `DEFAULT_MAX_DEPTH`. */
  readonly maxDepth?: number;
}

/** Thrown inside the reader only; turned into a result at the top. */
class Refusal extends Error {
  readonly reason: "invalid_json" | "duplicate_key";
  constructor(reason: "invalid_json" | "duplicate_key", detail: string) {
    super(detail);
    this.reason = reason;
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Reads `bytes` as one strict JSON text. Refusals: `invalid_json` (not UTF-8, a BOM, bad grammar,
 * a lone surrogate escape, nesting past `maxDepth`, trailing bytes), `duplicate_key` (an object
 * with two equal keys). `detail` says where (a byte-free description, never body content).
 */
export function readStrictJson(bytes: Uint8Array, options: StrictJsonOptions = {}): StrictJsonResult {
  let text: string;
  try {
    // ignoreBOM keeps a leading U+FEFF in the text, where the grammar then refuses it.
    text = decoder.decode(bytes);
  } catch {
    return { ok: false, reason: "invalid_json", detail: "body is not valid UTF-8" };
  }
  try {
    return { ok: true, members: parse(text, options.maxDepth ?? DEFAULT_MAX_DEPTH) };
  } catch (err) {
    if (err instanceof Refusal) return { ok: false, reason: err.reason, detail: err.message };
    throw err;
  }
}

function parse(text: string, maxDepth: number): ReadonlyMap<string, JsonMember> | undefined {
  let at = 0;
  const fail = (what: string): never => {
    throw new Refusal("invalid_json", `${what} at character ${at}`);
  };

  const skipWhitespace = (): void => {
    for (;;) {
      const c = text.charCodeAt(at);
      // RFC 8259 whitespace only: no NBSP, no U+FEFF, no vertical tab or form feed.
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) at++;
      else return;
    }
  };

  const expect = (c: number, what: string): void => {
    if (text.charCodeAt(at) !== c) fail(`expected ${what}`);
    at++;
  };

  const readHex4 = (): number => {
    let value = 0;
    for (let i = 0; i < 4; i++) {
      const c = text.charCodeAt(at++);
      let digit: number;
      if (c >= 0x30 && c <= 0x39) digit = c - 0x30;
      else if (c >= 0x41 && c <= 0x46) digit = c - 0x37;
      else if (c >= 0x61 && c <= 0x66) digit = c - 0x57;
      else return fail("bad \\u escape");
      value = value * 16 + digit;
    }
    return value;
  };

  const readString = (): string => {
    expect(0x22, "a string");
    let out = "";
    let runStart = at;
    for (;;) {
      if (at >= text.length) fail("unterminated string");
      const c = text.charCodeAt(at);
      if (c === 0x22) {
        out += text.slice(runStart, at);
        at++;
        return out;
      }
      if (c < 0x20) fail("control character in a string");
      if (c !== 0x5c) {
        at++;
        continue;
      }
      out += text.slice(runStart, at);
      at++;
      const e = text.charCodeAt(at++);
      switch (e) {
        case 0x22: out += '"'; break;
        case 0x5c: out += "\\"; break;
        case 0x2f: out += "/"; break;
        case 0x62: out += "\b"; break;
        case 0x66: out += "\f"; break;
        case 0x6e: out += "\n"; break;
        case 0x72: out += "\r"; break;
        case 0x74: out += "\t"; break;
        case 0x75: {
          const unit = readHex4();
          if (unit >= 0xdc00 && unit <= 0xdfff) fail("lone low surrogate escape");
          if (unit >= 0xd800 && unit <= 0xdbff) {
            // A high surrogate must be followed by an escaped low one: Python keeps lone
            // surrogates, JavaScript keeps them as is, others replace them — a differential.
            if (text.charCodeAt(at) !== 0x5c || text.charCodeAt(at + 1) !== 0x75) fail("lone high surrogate escape");
            at += 2;
            const low = readHex4();
            if (low < 0xdc00 || low > 0xdfff) fail("lone high surrogate escape");
            out += String.fromCharCode(unit, low);
          } else {
            out += String.fromCharCode(unit);
          }
          break;
        }
        default:
          fail("bad escape");
      }
      runStart = at;
    }
  };

  const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

  const readNumber = (): number => {
    const start = at;
    if (text.charCodeAt(at) === 0x2d) at++;
    const first = text.charCodeAt(at);
    if (first === 0x30) at++;
    else if (first >= 0x31 && first <= 0x39) while (isDigit(text.charCodeAt(at))) at++;
    else fail("bad number");
    if (text.charCodeAt(at) === 0x2e) {
      at++;
      if (!isDigit(text.charCodeAt(at))) fail("bad number");
      while (isDigit(text.charCodeAt(at))) at++;
    }
    const e = text.charCodeAt(at);
    if (e === 0x65 || e === 0x45) {
      at++;
      const sign = text.charCodeAt(at);
      if (sign === 0x2b || sign === 0x2d) at++;
      if (!isDigit(text.charCodeAt(at))) fail("bad number");
      while (isDigit(text.charCodeAt(at))) at++;
    }
    return Number(text.slice(start, at));
  };

  const readLiteral = (word: string): void => {
    if (!text.startsWith(word, at)) fail("unexpected token");
    at += word.length;
  };

  /** Reads one value; `members` collects the top-level object's members when given. */
  const readValue = (depth: number, members?: Map<string, JsonMember>): JsonMember => {
    skipWhitespace();
    const c = text.charCodeAt(at);
    switch (c) {
      case 0x7b: {
        if (depth >= maxDepth) fail("nesting too deep");
        at++;
        const keys = new Set<string>();
        skipWhitespace();
        if (text.charCodeAt(at) === 0x7d) {
          at++;
          return { type: "object" };
        }
        for (;;) {
          skipWhitespace();
          const keyAt = at;
          const key = readString();
          if (keys.has(key)) throw new Refusal("duplicate_key", `duplicate key at character ${keyAt}`);
          keys.add(key);
          skipWhitespace();
          expect(0x3a, "':'");
          const value = readValue(depth + 1);
          members?.set(key, value);
          skipWhitespace();
          const next = text.charCodeAt(at++);
          if (next === 0x7d) return { type: "object" };
          if (next !== 0x2c) {
            at--;
            fail("expected ',' or '}'");
          }
        }
      }
      case 0x5b: {
        if (depth >= maxDepth) fail("nesting too deep");
        at++;
        skipWhitespace();
        if (text.charCodeAt(at) === 0x5d) {
          at++;
          return { type: "array" };
        }
        for (;;) {
          readValue(depth + 1);
          skipWhitespace();
          const next = text.charCodeAt(at++);
          if (next === 0x5d) return { type: "array" };
          if (next !== 0x2c) {
            at--;
            fail("expected ',' or ']'");
          }
        }
      }
      case 0x22:
        return { type: "string", value: readString() };
      case 0x74:
        readLiteral("true");
        return { type: "boolean", value: true };
      case 0x66:
        readLiteral("false");
        return { type: "boolean", value: false };
      case 0x6e:
        readLiteral("null");
        return { type: "null" };
      default:
        if (c === 0x2d || isDigit(c)) return { type: "number", value: readNumber() };
        return fail(at >= text.length ? "unexpected end" : "unexpected token");
    }
  };

  skipWhitespace();
  const topIsObject = text.charCodeAt(at) === 0x7b;
  const members = topIsObject ? new Map<string, JsonMember>() : undefined;
  readValue(0, members);
  skipWhitespace();
  if (at !== text.length) fail("trailing data");
  return members;
}
