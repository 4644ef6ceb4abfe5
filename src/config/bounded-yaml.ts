/**
 * YAML text → plain data, bounded so that a hostile or broken file is an error with a position and
 * never a crash, a hang or a polluted prototype (SPEC §3 "parsing is bounded").
 *
 * Order: size cap → character scan → nesting pre-scan with yaml's own lexer → parse (YAML 1.2 core
 * schema) → duplicate-key scan → conversion to null-prototype objects with an alias and value budget.
 *
 * Why the pre-scan: yaml's parser and composer recurse once per nesting level. On Node 20 a 2 KB file
 * of `[[[[…` overflows the stack and, parsed a second time in the same process, aborts the whole
 * process from inside V8's regexp compiler (docs/security.md §7). The lexer is an iterative state
 * machine, so counting depth with it first means the recursive stages only ever see shallow input.
 */
import { isAlias, isMap, isScalar, isSeq, Lexer, LineCounter, parseDocument } from "yaml";
import type { Document, Pair, YAMLMap, Node as YamlNode } from "yaml";
import { formatPath } from "./problems.ts";
import type { ConfigPath } from "./problems.ts";

export { MAX_CONFIG_BYTES } from "./file-facts.ts";
import { MAX_CONFIG_BYTES } from "./file-facts.ts";
/** Deepest flow nesting (`[`/`{`) accepted. A real config needs 2 or 3. */
export const MAX_FLOW_DEPTH = 64;
/** Largest block indentation, in columns, counting compact `- `/`? `/`: ` indicators. */
export const MAX_INDENT = 256;
/** Deepest nesting of the parsed data, aliases followed. A real config needs 6. */
export const MAX_NESTING = 64;
/** Alias expansions allowed while converting (the billion-laughs guard). */
export const MAX_ALIASES = 100;
/** Values (scalars, maps, lists) the converted data may hold, aliases expanded. */
export const MAX_VALUES = 500_000;

export interface Position {
  readonly line: number;
  readonly col: number;
}

/** A problem with a position but not yet a file name. */
export interface Located extends Position {
  readonly message: string;
}

export interface YamlTree {
  /** The document as plain data: null-prototype objects, arrays, strings, numbers, booleans, null. */
  readonly data: unknown;
  /** Position of the node at `path` (its key when `at` is "key"), or undefined when absent. */
  locate(path: ConfigPath, at?: "key" | "value"): Position | undefined;
  /** Like `locate`, but falls back to the nearest enclosing node that exists (for missing keys). */
  nearest(path: ConfigPath, at?: "key" | "value"): Position;
  /** The source text of the scalar at `path` (e.g. `1.10` where the data holds 1.1), if it is one. */
  source(path: ConfigPath): string | undefined;
  /** Problems found while converting (keys that are not strings, `__proto__`); the data lacks those keys. */
  readonly problems: readonly Located[];
}

export type BoundedParse = { ok: true; tree: YamlTree } | { ok: false; problems: Located[] };

const BOM = "\uFEFF";

// C0 controls other than TAB/LF/CR, DEL, C1 controls, BOMs past the start, non-characters, lone
// surrogates, and a CR not followed by LF (yaml does not treat a lone CR as a line break, so the
// file would be parsed as something else than it looks). NUL means "this is not a text file".
const FORBIDDEN_CHAR =
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\uFEFF\uFFFE\uFFFF]|\r(?!\n)|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Parses `text` within the caps above. A leading UTF-8 BOM is allowed (YAML permits it) and ignored. */
export function parseBoundedYaml(text: string): BoundedParse {
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_CONFIG_BYTES) {
    return fail(1, 1, `the file is ${bytes} bytes, more than the ${MAX_CONFIG_BYTES} bytes (1 MiB) a config may have`);
  }
  // Positions are counted without the BOM, as editors show them.
  const src = text.startsWith(BOM) ? text.slice(1) : text;

  const bad = FORBIDDEN_CHAR.exec(src);
  if (bad) {
    return failAt(src, bad.index, `the file contains ${describeChar(bad[0].codePointAt(0) ?? 0)}`);
  }

  const tooDeep = depthScan(src);
  if (tooDeep) return failAt(src, tooDeep.offset, tooDeep.message);

  const lineCounter = new LineCounter();
  let doc: Document.Parsed;
  try {
    doc = parseDocument(src, {
      lineCounter,
      version: "1.2",
      schema: "core",
      merge: false,
      // yaml's own check compares each key with every earlier key of its map: quadratic (a 1 MiB
      // file of 85 000 map entries took ~97 s). duplicateKeys() does the same check in one pass.
      uniqueKeys: false,
      strict: true,
      prettyErrors: false,
    });
  } catch (err) {
    // Not expected after the pre-scan; kept so a parser bug is a config error, not a crash.
    const name = err instanceof Error ? err.name : "error";
    return fail(1, 1, `the file could not be parsed as YAML (${name})`);
  }

  const pos = (offset: number): Position => {
    const p = lineCounter.linePos(offset);
    return { line: p.line, col: p.col };
  };

  const located = (offset: number, code: string, message: string): Located => ({
    ...pos(offset),
    message: `invalid YAML: ${yamlMessage(code, message, src.slice(offset, offset + 100))}`,
  });
  const syntax = [
    ...doc.errors.map((e) => located(e.pos[0], e.code, e.message)),
    ...duplicateKeys(doc, src).map((offset) => located(offset, "DUPLICATE_KEY", "Map keys must be unique")),
    ...doc.warnings.map((e) => located(e.pos[0], e.code, e.message)),
  ];
  if (syntax.length > 0) return { ok: false, problems: syntax };
  if (doc.contents === null) {
    return fail(1, 1, "the file is empty: a config needs at least `keys` and `clients`");
  }

  const converted = convert(doc, src, pos);
  if (!converted.ok) return { ok: false, problems: [converted.problem] };

  const pairs = pairFinder();
  const tree: YamlTree = {
    data: converted.data,
    problems: converted.problems,
    locate: (path, at = "value") => walk(doc, pairs, path, at, pos, false),
    nearest: (path, at = "value") => walk(doc, pairs, path, at, pos, true) ?? { line: 1, col: 1 },
    source: (path) => {
      const node = nodeAt(doc, pairs, path);
      return isScalar(node) && node.range ? src.slice(node.range[0], node.range[1]) : undefined;
    },
  };
  return { ok: true, tree };
}

function describeChar(code: number): string {
  const hex = code.toString(16).toUpperCase().padStart(4, "0");
  if (code === 0) return "a NUL byte (U+0000): this is not a text file";
  if (code === 0x0d) return "a carriage return without a line feed: save it with LF (or CRLF) line endings";
  if (code === 0xfeff) return "a byte order mark (U+FEFF) after the start of the file";
  if (code >= 0xd800 && code <= 0xdfff) return `an unpaired surrogate (U+${hex})`;
  return `the control character U+${hex}, which YAML does not allow`;
}

function fail(line: number, col: number, message: string): BoundedParse {
  return { ok: false, problems: [{ line, col, message }] };
}

function failAt(src: string, offset: number, message: string): BoundedParse {
  const p = offsetPosition(src, offset);
  return fail(p.line, p.col, message);
}

/** 1-based line and column of `offset`; lines end at LF (a CRLF's CR is the last column of its line). */
export function offsetPosition(src: string, offset: number): Position {
  let line = 1;
  let lineStart = 0;
  for (let i = src.indexOf("\n"); i !== -1 && i < offset; i = src.indexOf("\n", i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, col: offset - lineStart + 1 };
}

/** Lexer markers that are not source text (see yaml's `CST` module). */
const MARKERS = new Set(["\u0002", "\u0018", "\u001f"]);
const FLOW_END = "\u0018";

/**
 * Finds the first place where flow nesting or block indentation passes its cap, using yaml's
 * iterative lexer so quotes, comments and block scalars are understood exactly as the parser will.
 * Block depth is bounded by indentation: every nesting level needs at least one more column or one
 * more compact indicator (`- - x`) at the start of a line.
 */
function depthScan(src: string): { offset: number; message: string } | undefined {
  let offset = 0;
  let flow = 0;
  let lineStart = true;
  let indent = 0;
  for (const tok of new Lexer().lex(src)) {
    const start = offset;
    if (!MARKERS.has(tok)) offset += tok.length;
    if (tok === FLOW_END) flow = 0;
    if (tok === "[" || tok === "{") {
      flow++;
      if (flow > MAX_FLOW_DEPTH) {
        return { offset: start, message: `nesting is deeper than ${MAX_FLOW_DEPTH} levels of [ ] / { }` };
      }
    } else if ((tok === "]" || tok === "}") && flow > 0) {
      flow--;
    }
    if (/^(\r?\n|\r)$/.test(tok)) {
      lineStart = true;
      indent = 0;
    } else if (lineStart) {
      if (/^[ \t]+$/.test(tok) || tok === "-" || tok === "?" || tok === ":") {
        indent += tok.length;
        if (indent > MAX_INDENT) {
          return { offset: start, message: `indentation is deeper than ${MAX_INDENT} columns` };
        }
      } else if (!MARKERS.has(tok)) {
        lineStart = false;
      }
    }
  }
  return undefined;
}

function yamlMessage(code: string, message: string, atError: string): string {
  if (code === "DUPLICATE_KEY") {
    const key = /^("[^"\n]{0,80}"|'[^'\n]{0,80}'|[^\s:,{}[\]]{1,80})/.exec(atError)?.[0];
    return key ? `duplicate key ${key} (map keys must be unique)` : "duplicate key (map keys must be unique)";
  }
  if (code === "MULTIPLE_DOCS") return "the file holds more than one YAML document (---): a config is a single document";
  return message.split("\n")[0] ?? message;
}

/**
 * Offsets of keys that repeat an earlier key of the same map, in one pass with a Set per map.
 * The rule, position and message are yaml's own `uniqueKeys` check: scalar keys with equal values
 * (`===`: `1` and `"1"` differ, as do two `.nan`) are duplicates, other keys never are; the second
 * key is reported, at its first character. Every map node is checked once, as yaml does while
 * composing, including maps the conversion never reaches (under a complex key, under `__proto__`);
 * aliases are not followed, so an aliased map is not reported twice.
 */
function duplicateKeys(doc: Document.Parsed, src: string): number[] {
  const offsets: number[] = [];
  // Iterative: the pre-scan bounds nesting, but a stack of our own needs no such argument.
  const pending: unknown[] = [doc.contents];
  while (pending.length > 0) {
    const node = pending.pop();
    if (isMap(node)) {
      const seen = new Set<unknown>();
      for (const pair of node.items) {
        const key = pair.key;
        if (isScalar(key) && !(typeof key.value === "number" && Number.isNaN(key.value))) {
          if (seen.has(key.value)) offsets.push(keyOffset(key, src));
          else seen.add(key.value);
        }
        pending.push(pair.key, pair.value);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) pending.push(item);
    }
  }
  return offsets.sort((a, b) => a - b);
}

/**
 * Where a key starts. An empty key (`: value`) has an empty range that yaml may place before the
 * indentation or a comment: yaml's check points past those, at the `:`, and so do we.
 */
function keyOffset(key: YamlNode, src: string): number {
  const start = key.range?.[0] ?? 0;
  if (!isEmptyScalar(key)) return start;
  const blank = /(?:\s|#[^\n]*)*/y;
  blank.lastIndex = start;
  blank.exec(src);
  return blank.lastIndex;
}

type Converted = { ok: true; data: unknown; problems: Located[] } | { ok: false; problem: Located };

/**
 * Plain data from the document. Maps become null-prototype objects so no key (`__proto__`,
 * `constructor`, `toString`) can reach or shadow Object.prototype; `__proto__` is refused outright.
 */
function convert(doc: Document.Parsed, text: string, pos: (offset: number) => Position): Converted {
  const problems: Located[] = [];
  let aliases = 0;
  let values = 0;
  let outerAlias: YamlNode | undefined;

  // The first budget overrun; once set, every visit returns at once so the recursion unwinds.
  let aborted: Located | undefined;
  const abort = (problem: Located): null => {
    aborted ??= problem;
    return null;
  };
  const at = (node: YamlNode | null | undefined): Position => (node?.range ? pos(node.range[0]) : { line: 1, col: 1 });

  const visit = (node: unknown, path: (string | number)[]): unknown => {
    if (aborted || node === null || node === undefined) return null;
    const n = node as YamlNode;
    // An alias naming its own ancestor (`a: &x [*x]`) would recurse for ever; the path grows each time.
    if (path.length > MAX_NESTING) return abort({ ...at(n), message: `nesting is deeper than ${MAX_NESTING} levels` });
    if (++values > MAX_VALUES) {
      return abort({ ...at(n), message: `the document expands to more than ${MAX_VALUES} values` });
    }
    if (isAlias(n)) {
      if (++aliases > MAX_ALIASES) {
        // Point at the alias written at the top of the expansion, where the blow-up starts.
        return abort({ ...at(outerAlias ?? n), message: `more than ${MAX_ALIASES} alias expansions (*name): refusing a possible alias bomb` });
      }
      const target = n.resolve(doc);
      if (!target) return abort({ ...at(n), message: `alias *${n.source} does not name an anchor` });
      const outermost = outerAlias === undefined;
      if (outermost) outerAlias = n;
      const value = visit(target, path);
      if (outermost) outerAlias = undefined;
      return value;
    }
    if (isScalar(n)) return n.value;
    if (isSeq(n)) return n.items.map((item, i) => visit(item, [...path, i]));
    if (isMap(n)) {
      const out = Object.create(null) as Record<string, unknown>;
      for (const pair of n.items) {
        const key = pair.key as YamlNode | null;
        if (!isScalar(key)) {
          problems.push({ ...at(key ?? (pair.value as YamlNode | null)), message: `${formatPath(path)}: a map key must be a plain string` });
          continue;
        }
        if (typeof key.value !== "string") {
          const src = key.range ? text.slice(key.range[0], key.range[1]) : String(key.value);
          problems.push({
            ...at(key),
            message: `${formatPath(path)}: the key ${src} is read by YAML as ${keyKind(key.value)}; keys must be strings: quote it, e.g. "${src}"`,
          });
          continue;
        }
        if (key.value === "__proto__") {
          problems.push({ ...at(key), message: `${formatPath(path)}: the key "__proto__" is not allowed` });
          continue;
        }
        out[key.value] = visit(pair.value, [...path, key.value]);
      }
      return out;
    }
    return null;
  };

  const data = visit(doc.contents, []);
  return aborted ? { ok: false, problem: aborted } : { ok: true, data, problems };
}

function keyKind(v: unknown): string {
  return typeof v === "number" || typeof v === "boolean" ? `the ${typeof v} ${String(v)}` : typeName(v);
}

/** How a value reads in a message: its kind, never its content (it could be a pasted secret). */
export function typeName(v: unknown): string {
  if (v === null || v === undefined) return "null (no value)";
  if (Array.isArray(v)) return "a list";
  switch (typeof v) {
    case "string":
      return "a string";
    case "number":
      return "a number";
    case "boolean":
      return `the boolean ${String(v)}`;
    case "object":
      return "a map";
    default:
      return typeof v;
  }
}

/** Finds a map's pair by key value; the first pair wins, as `items.find` would. */
type PairFinder = (map: YAMLMap, key: string | number) => Pair | undefined;

/**
 * A `PairFinder` that indexes each map the first time it is asked about it, so placing one
 * problem per entry of a huge map (80 000 bad `pricing` values) stays linear, not quadratic.
 */
function pairFinder(): PairFinder {
  const indexes = new WeakMap<YAMLMap, Map<unknown, Pair>>();
  return (map, key) => {
    let index = indexes.get(map);
    if (index === undefined) {
      index = new Map();
      for (const pair of map.items) {
        if (isScalar(pair.key) && !index.has(pair.key.value)) index.set(pair.key.value, pair);
      }
      indexes.set(map, index);
    }
    return index.get(key);
  };
}

/** Walks the YAML nodes along `path`; `fallback` returns the nearest existing ancestor instead of undefined. */
function walk(
  doc: Document.Parsed,
  pairs: PairFinder,
  path: ConfigPath,
  at: "key" | "value",
  pos: (offset: number) => Position,
  fallback: boolean,
): Position | undefined {
  let node: unknown = doc.contents;
  // Where to point if the walk stops early: the key that led to the deepest node reached.
  let best: Position | undefined = startOf(node, pos);
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    node = deref(doc, node);
    const last = i === path.length - 1;
    if (isMap(node) && typeof seg === "string") {
      const pair = pairs(node, seg);
      if (!pair) return fallback ? best : undefined;
      const keyPos = startOf(pair.key, pos);
      if (last && at === "key") return keyPos;
      node = pair.value;
      const valuePos = startOf(deref(doc, node), pos);
      // An empty value (`key:`) has no text of its own: point at the key.
      best = valuePos && !isEmptyScalar(deref(doc, node)) ? (last ? valuePos : keyPos) : keyPos;
      if (last) return best;
    } else if (isSeq(node) && typeof seg === "number") {
      const item = node.items[seg];
      if (item === undefined) return fallback ? best : undefined;
      node = item;
      best = startOf(deref(doc, node), pos) ?? best;
      if (last) return best;
    } else {
      return fallback ? best : undefined;
    }
  }
  return startOf(deref(doc, node), pos) ?? (fallback ? best : undefined);
}

function nodeAt(doc: Document.Parsed, pairs: PairFinder, path: ConfigPath): unknown {
  let node: unknown = doc.contents;
  for (const seg of path) {
    node = deref(doc, node);
    if (isMap(node)) node = pairs(node, seg)?.value;
    else if (isSeq(node) && typeof seg === "number") node = node.items[seg];
    else return undefined;
  }
  return deref(doc, node);
}

function deref(doc: Document.Parsed, node: unknown): unknown {
  return isAlias(node) ? (node.resolve(doc) ?? node) : node;
}

function isEmptyScalar(node: unknown): boolean {
  return isScalar(node) && node.value === null && node.range !== undefined && node.range !== null && node.range[0] === node.range[1];
}

function startOf(node: unknown, pos: (offset: number) => Position): Position | undefined {
  const range = (node as { range?: [number, number, number] | null } | null)?.range;
  return range ? pos(range[0]) : undefined;
}
