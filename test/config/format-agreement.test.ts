// Config validation and the rules' compilers agree on every string format they share.
//
// Thousands of strings near each grammar (seeded mutations of valid routes, CIDRs, origins and token
// hashes) go through the real config path (`parseConfig` on a YAML file) and through the compiler
// the runtime uses. Accepted by one ⇔ accepted by the other: a config that validates can never make
// `buildRuntime` throw at start-up or on reload. Every accepted string is then checked against an
// oracle written here, independently of the implementation: the compiled value does what the text
// says (a route matches the requests it names, a CIDR contains exactly its block, an origin matches
// what browsers send for it).
import t from "tap";
import type { Test } from "tap";
import { parseConfig } from "../../src/config/load.ts";
import { parseTarget } from "../../src/http/target.ts";
import { compileCidrs, parseCidr } from "../../src/rules/ip.ts";
import { canonicalOrigin, compileOrigins } from "../../src/rules/origins.ts";
import { compileRoutes, ROUTE_METHODS } from "../../src/rules/routes.ts";
import { compileTokens, hashToken } from "../../src/rules/tokens.ts";
import { makeClient } from "../helpers/context.ts";

/** Strings per grammar, on top of the seeds themselves. */
const PER_GRAMMAR = 2500;

// mulberry32: small, seeded, good enough to spread mutations; the seed makes failures reproducible.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

type Random = () => number;
const int = (rnd: Random, n: number): number => Math.floor(rnd() * n);
const pick = <T>(rnd: Random, list: readonly T[]): T => list[int(rnd, list.length)] as T;

/** One to three edits: insert, delete, replace, duplicate a slice, flip case, truncate, splice seeds. */
function mutate(rnd: Random, seeds: readonly string[], alphabet: readonly string[]): string {
  let s = pick(rnd, seeds);
  const edits = 1 + int(rnd, 3);
  for (let e = 0; e < edits; e++) {
    const at = int(rnd, s.length + 1);
    switch (int(rnd, 7)) {
      case 0:
        s = s.slice(0, at) + pick(rnd, alphabet) + s.slice(at);
        break;
      case 1:
        s = s.slice(0, at) + s.slice(at + 1);
        break;
      case 2:
        s = s.slice(0, at) + pick(rnd, alphabet) + s.slice(at + 1);
        break;
      case 3: {
        const end = Math.min(s.length, at + 1 + int(rnd, 4));
        s = s.slice(0, end) + s.slice(at, end) + s.slice(end);
        break;
      }
      case 4: {
        const ch = s.charAt(at);
        const flipped = ch === ch.toUpperCase() ? ch.toLowerCase() : ch.toUpperCase();
        s = s.slice(0, at) + flipped + s.slice(at + 1);
        break;
      }
      case 5:
        s = s.slice(0, at);
        break;
      default: {
        const other = pick(rnd, seeds);
        s = s.slice(0, at) + other.slice(int(rnd, other.length + 1));
      }
    }
  }
  return s;
}

function corpus(seed: number, seeds: readonly string[], alphabet: readonly string[]): string[] {
  const rnd = prng(seed);
  const out = new Set(seeds);
  while (out.size < seeds.length + PER_GRAMMAR) out.add(mutate(rnd, seeds, alphabet));
  return [...out];
}

const chars = (s: string): string[] => [...s];

/** A valid config with `client` (YAML lines, indented for a list item) as its only client. */
function configWith(clientLines: string[]): string {
  return ["keys:", "  default: { source: env, env: MYTHIQ_API_KEY }", "clients:", "  - id: web", ...clientLines.map((l) => `    ${l}`), ""].join("\n");
}

/** A JSON string is a YAML double-quoted scalar with the same value. */
const yamlString = (s: string): string => JSON.stringify(s);

function accepts(text: string): { ok: boolean; messages: string[]; config?: ReturnType<typeof parseConfig> } {
  const result = parseConfig(text, "agree.yaml");
  return { ok: result.ok, messages: result.ok ? [] : result.problems.map((p) => p.message), config: result };
}

function compiles(compile: () => unknown): boolean {
  try {
    compile();
    return true;
  } catch {
    return false;
  }
}

interface Tally {
  accepted: number;
  refused: number;
}

function agreementReport(t: Test, name: string, tally: Tally, disagreements: string[]): void {
  t.strictSame(disagreements.slice(0, 10), [], `${name}: config validation and the compiler agree on every string`);
  // A corpus that is all accepted or all refused would prove little.
  t.ok(tally.accepted > PER_GRAMMAR / 10, `${name}: ${tally.accepted} accepted`);
  t.ok(tally.refused > PER_GRAMMAR / 10, `${name}: ${tally.refused} refused`);
}

// ---------------------------------------------------------------------------------------------
// Routes

const ROUTE_SEEDS = [
  "GET /v1/models",
  "GET /v1/models/{id}",
  "POST /v1/images/generations",
  "GET /v1/generations?limit&after",
  "DELETE /v1/things/{id}/parts/{part_2}",
  "HEAD /",
  "PUT /v1/dir/",
  "PATCH /a-b.c_d~e/x:y@z/!$&'()+,=",
  "GET /v1/x?a.b&c-d&e_f",
];
const ROUTE_ALPHABET = chars("GETPOSHADLUCget /{}?&=.%;*#\\\"<>|^`[]~!$'()+,:@-_aZ09\té");

/** Segment values a `{name}` may stand for in a request (all canonical path characters). */
const PARAM_VALUES = ["abc", "x-1", "a:b@c", "~", "A.b", "1", "!$&'()*+,="];

function checkRouteBehaviour(t: Test, text: string, configValue: string, rnd: Random): void {
  // The oracle reads the text on its own: METHOD SP path [? names].
  const space = text.indexOf(" ");
  const method = text.slice(0, space);
  const target = text.slice(space + 1);
  const mark = target.indexOf("?");
  const path = mark === -1 ? target : target.slice(0, mark);
  const names = mark === -1 ? [] : target.slice(mark + 1).split("&");
  const parts = path.slice(1).split("/");
  const concrete = `/${parts.map((p) => (/^\{.*\}$/.test(p) ? pick(rnd, PARAM_VALUES) : p)).join("/")}`;

  t.equal(configValue, text, `${text}: kept as written`);
  const table = compileRoutes([configValue]);
  const request = names.length === 0 ? concrete : `${concrete}?${names.map((n) => `${n}=1`).join("&")}`;
  const parsed = parseTarget(request);
  // Every accepted route can be reached: some request passes the listener's target check...
  t.ok(parsed.ok, `${text}: ${request} passes the target check`);
  // ...and matches it, with exactly the listed query names.
  const match = table.match(method, concrete);
  t.equal(match?.label, `${method} ${path}`, `${text}: matches ${concrete}`);
  t.strictSame([...(match?.query ?? [])].sort(), [...names].sort(), `${text}: query names`);
  for (const other of ROUTE_METHODS) if (other !== method) t.equal(table.match(other, concrete), undefined, `${text}: not ${other}`);
  t.equal(table.match(method, `${concrete}/x`), undefined, `${text}: not one segment more`);
  const literal = parts.findIndex((p) => p !== "" && !p.startsWith("{"));
  if (literal !== -1) {
    const changed = parts.map((p, i) => (i === literal ? `${p}x` : /^\{.*\}$/.test(p) ? "v" : p));
    t.equal(table.match(method, `/${changed.join("/")}`), undefined, `${text}: a literal is compared exactly`);
  }
  const param = parts.findIndex((p) => p.startsWith("{"));
  if (param !== -1) {
    const empty = parts.map((p, i) => (i === param ? "" : /^\{.*\}$/.test(p) ? "v" : p));
    t.equal(table.match(method, `/${empty.join("/")}`), undefined, `${text}: a placeholder is never empty`);
  }
}

t.test("routes: config validation ⇔ compileRoutes, and a compiled route matches what it says", async (t) => {
  const rnd = prng(0x5eed_0001);
  const tally: Tally = { accepted: 0, refused: 0 };
  const disagreements: string[] = [];
  for (const text of corpus(1, ROUTE_SEEDS, ROUTE_ALPHABET)) {
    const config = accepts(configWith(["auth: { anonymous: true }", "networks: [127.0.0.1]", `routes: [${yamlString(text)}]`]));
    const compiled = compiles(() => compileRoutes([text]));
    if (config.ok !== compiled) disagreements.push(`${JSON.stringify(text)}: config ${config.ok}, compile ${compiled} ${config.messages.join("; ")}`);
    if (!config.ok) {
      tally.refused++;
      continue;
    }
    tally.accepted++;
    const result = config.config;
    if (result?.ok) checkRouteBehaviour(t, text, result.config.clients[0]?.routes[0] ?? "", rnd);
  }
  agreementReport(t, "routes", tally, disagreements);
});

// ---------------------------------------------------------------------------------------------
// CIDRs

const CIDR_SEEDS = [
  "10.0.0.0/8",
  "192.168.1.0/24",
  "203.0.113.7",
  "203.0.113.7/32",
  "0.0.0.0/0",
  "172.16.0.0/12",
  "::1",
  "::/0",
  "fd00::/8",
  "2001:db8::/32",
  "2001:DB8:0:0:8:800:200c:417a/128",
  "fe80::/10",
  "::ffff:10.0.0.0/104",
  "::ffff:0:0/96",
  "::ffff:192.168.1.1",
  "64:ff9b::/96",
  "1:2:3:4:5:6:7:8",
];
const CIDR_ALPHABET = chars("0123456789abcdefABCDEF:./%x ");

/** The oracle's own address parser: 32- or 128-bit value of a text `net.isIP` accepts. */
function addressValue(text: string): { bits: 32 | 128; value: bigint } {
  const v4 = (s: string): bigint => s.split(".").reduce((acc, p) => acc * 256n + BigInt(p), 0n);
  if (!text.includes(":")) return { bits: 32, value: v4(text) };
  const halves = text.split("::");
  const read = (half: string | undefined): bigint[] => {
    if (half === undefined || half === "") return [];
    const out: bigint[] = [];
    for (const g of half.split(":")) {
      if (g.includes(".")) {
        const v = v4(g);
        out.push(v >> 16n, v & 0xffffn);
      } else out.push(BigInt(`0x${g}`));
    }
    return out;
  };
  const left = read(halves[0]);
  const right = read(halves[1]);
  const groups = halves.length === 2 ? [...left, ...Array<bigint>(8 - left.length - right.length).fill(0n), ...right] : left;
  return { bits: 128, value: groups.reduce((acc, g) => acc * 65536n + g, 0n) };
}

function addressText(bits: 32 | 128, value: bigint): string {
  if (bits === 32) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join(".");
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((value >> BigInt(16 * i)) & 0xffffn).toString(16));
  return groups.join(":");
}

function randomBits(rnd: Random, count: number): bigint {
  let v = 0n;
  for (let i = 0; i < count; i++) v = (v << 1n) | (rnd() < 0.5 ? 1n : 0n);
  return v;
}

const MAPPED = 0xffffn << 32n;

function checkCidrBehaviour(t: Test, text: string, configValue: string, rnd: Random): void {
  const slash = text.indexOf("/");
  const address = addressValue(slash === -1 ? text : text.slice(0, slash));
  const prefix = slash === -1 ? address.bits : Number(text.slice(slash + 1));
  const hostBits = BigInt(address.bits - prefix);
  t.equal(address.value & ((1n << hostBits) - 1n), 0n, `${text}: accepted only without host bits`);
  // Inside ::ffff:0:0/96 the block is an IPv4 block; callers are normalised to IPv4 too.
  const mapped = address.bits === 128 && prefix >= 96 && address.value >> 32n === 0xffffn;

  const fromText = compileCidrs([text]);
  const fromConfig = compileCidrs([configValue]);
  const both = (ip: string): boolean => {
    const a = fromText.contains(ip);
    t.equal(fromConfig.contains(ip), a, `${text} and its config value ${configValue} agree on ${ip}`);
    return a;
  };
  for (let i = 0; i < 4; i++) {
    const inside = address.value | randomBits(rnd, Number(hostBits));
    t.ok(both(addressText(address.bits, inside)), `${text} contains ${addressText(address.bits, inside)}`);
    if (mapped) t.ok(both(addressText(32, inside & 0xffffffffn)), `${text} contains the IPv4 form of ${addressText(128, inside)}`);
    if (address.bits === 32) t.ok(both(addressText(128, MAPPED | inside)), `${text} contains ::ffff:${addressText(32, inside)}`);
  }
  if (prefix > 0) {
    const outside = address.value ^ (1n << hostBits);
    t.notOk(both(addressText(address.bits, outside)), `${text} does not contain ${addressText(address.bits, outside)}`);
  }
  if (address.bits === 32 || mapped) t.notOk(both("2001:db8::1"), `${text}: no IPv6 caller`);
  else t.notOk(both("203.0.113.9"), `${text}: no IPv4 caller`);
  const again = parseCidr(configValue);
  t.ok(again.ok && again.value.text === configValue, `${text}: the config value ${configValue} is canonical`);
}

t.test("CIDRs: config validation ⇔ compileCidrs, and a compiled CIDR contains exactly its block", async (t) => {
  const rnd = prng(0x5eed_0002);
  const tally: Tally = { accepted: 0, refused: 0 };
  const disagreements: string[] = [];
  for (const text of corpus(2, CIDR_SEEDS, CIDR_ALPHABET)) {
    const config = accepts(configWith(["auth: { anonymous: true }", `networks: [${yamlString(text)}]`, 'routes: ["GET /v1/models"]']));
    const compiled = compiles(() => compileCidrs([text]));
    if (config.ok !== compiled) disagreements.push(`${JSON.stringify(text)}: config ${config.ok}, compile ${compiled} ${config.messages.join("; ")}`);
    if (!config.ok) {
      tally.refused++;
      continue;
    }
    tally.accepted++;
    const result = config.config;
    if (result?.ok) checkCidrBehaviour(t, text, result.config.clients[0]?.networks?.[0] ?? "", rnd);
  }
  agreementReport(t, "CIDRs", tally, disagreements);
});

// ---------------------------------------------------------------------------------------------
// Origins

const ORIGIN_SEEDS = [
  "https://app.example.com",
  "http://localhost:5173",
  "http://127.0.0.1:3000",
  "https://*.example.com",
  "http://*.example.co.uk:8443",
  "http://[::1]:8080",
  "https://a_b-c.example.org",
  "https://xn--bcher-kva.example",
  "https://example.com:65535",
];
const ORIGIN_ALPHABET = chars("httpsHTTPS:/.*[]@?#%!_-0123456789aeEx é");

const DEFAULT_PORT: Record<string, string> = { http: "80", https: "443" };

function checkOriginBehaviour(t: Test, text: string, configValue: string): void {
  t.equal(configValue, text, `${text}: kept as written`);
  const m = /^(https?):\/\/(\*\.)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(text);
  t.ok(m, `${text}: scheme://host[:port]`);
  if (!m) return;
  const [, scheme = "", wildcard, host = "", port] = m;
  const other = scheme === "https" ? "http" : "https";
  const portPart = port === undefined ? "" : `:${port}`;
  const matcher = compileOrigins([configValue]);
  t.notOk(matcher.matches(`${text}/`), `${text}: not with a trailing slash`);
  t.notOk(matcher.matches(`${other}://${wildcard === undefined ? "" : "a."}${host}${portPart}`), `${text}: not the other scheme`);
  t.notOk(matcher.matches("null"), `${text}: not null`);
  const otherPort = port === "8081" ? ":8082" : ":8081";
  if (wildcard === undefined) {
    // An exact entry is the canonical form a browser's Origin is compared in.
    t.equal(canonicalOrigin(text), text, `${text}: already canonical`);
    t.ok(matcher.matches(text), `${text}: matches itself`);
    t.ok(matcher.matches(`${scheme.toUpperCase()}://${host.toUpperCase()}${portPart}`), `${text}: case-insensitive`);
    if (port === undefined) t.ok(matcher.matches(`${text}:${DEFAULT_PORT[scheme]}`), `${text}: with its default port`);
    t.notOk(matcher.matches(`${scheme}://${host}${otherPort}`), `${text}: not another port`);
    if (!host.startsWith("[")) t.notOk(matcher.matches(`${scheme}://x${host}${portPart}`), `${text}: not a look-alike`);
  } else {
    t.ok(matcher.matches(`${scheme}://a.${host}${portPart}`), `${text}: one label below`);
    t.ok(matcher.matches(`${scheme}://a.b-c.${host}${portPart}`), `${text}: any depth`);
    t.notOk(matcher.matches(`${scheme}://${host}${portPart}`), `${text}: never the apex`);
    t.notOk(matcher.matches(`${scheme}://evil${host}${portPart}`), `${text}: not a look-alike`);
    t.notOk(matcher.matches(`${scheme}://a.${host}${otherPort}`), `${text}: not another port`);
  }
}

t.test("origins: config validation ⇔ compileOrigins, and a compiled origin matches what browsers send", async (t) => {
  const tally: Tally = { accepted: 0, refused: 0 };
  const disagreements: string[] = [];
  for (const text of corpus(3, ORIGIN_SEEDS, ORIGIN_ALPHABET)) {
    const config = accepts(configWith(["auth: { anonymous: true }", `origins: [${yamlString(text)}]`, 'routes: ["GET /v1/models"]']));
    const compiled = compiles(() => compileOrigins([text]));
    if (config.ok !== compiled) disagreements.push(`${JSON.stringify(text)}: config ${config.ok}, compile ${compiled} ${config.messages.join("; ")}`);
    if (!config.ok) {
      tally.refused++;
      continue;
    }
    tally.accepted++;
    const result = config.config;
    if (result?.ok) checkOriginBehaviour(t, text, result.config.clients[0]?.origins?.[0] ?? "");
  }
  agreementReport(t, "origins", tally, disagreements);
});

// ---------------------------------------------------------------------------------------------
// Token hashes

t.test("token hashes: config validation ⇔ compileTokens, and a compiled hash matches its token", async (t) => {
  const tokens = ["tok-live-0123456789abcdef", "another-token-value-ABC", "x".repeat(40)];
  const seeds = tokens.map(hashToken);
  const tally: Tally = { accepted: 0, refused: 0 };
  const disagreements: string[] = [];
  for (const text of corpus(4, seeds, chars("0123456789abcdefABCDEF:sha256 "))) {
    const config = accepts(configWith([`auth: { tokens: [${yamlString(text)}] }`, 'routes: ["GET /v1/models"]']));
    const compiled = compiles(() => compileTokens([makeClient({ auth: { tokens: [text] } })]));
    if (config.ok !== compiled) disagreements.push(`${JSON.stringify(text)}: config ${config.ok}, compile ${compiled}`);
    if (!config.ok) {
      tally.refused++;
      continue;
    }
    tally.accepted++;
    const client = makeClient({ auth: { tokens: [text] } });
    const index = compileTokens([client]);
    const token = tokens.find((tok) => hashToken(tok) === text);
    if (token !== undefined) t.same(index.match(token), { kind: "client", client }, `${text}: matches its token`);
    for (const tok of tokens) if (tok !== token) t.same(index.match(tok), { kind: "none" }, `${text}: no other token`);
  }
  // Mutated hashes are almost all refused; the seeds and a few lucky hex edits are accepted.
  t.strictSame(disagreements.slice(0, 10), [], "token hashes: config validation and the compiler agree on every string");
  t.ok(tally.accepted >= seeds.length && tally.refused > PER_GRAMMAR / 2, `${tally.accepted} accepted, ${tally.refused} refused`);
});
