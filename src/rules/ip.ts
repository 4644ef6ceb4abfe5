/**
 * Caller addresses: normalisation, the CIDR grammar (config validation uses it too), compiled CIDR
 * sets and the `X-Forwarded-For` walk (SPEC §4 step 4).
 *
 * The only place addresses are normalised: one canonical text form per address, so the
 * allowlists, the config's CIDRs, the rate-limit keys and the audit log all agree on who called:
 * IPv4 in dotted decimal, IPv6 lower-case and compressed (RFC 5952 style), and an IPv4-mapped
 * IPv6 address (`::ffff:1.2.3.4`) is the IPv4 address it carries.
 */
import { BlockList, isIP } from "node:net";

/**
 * What `resolveCallerIp` returns when a trusted proxy handed us an `X-Forwarded-For` hop that is
 * not an address. It is inside no CIDR, so `networks` refuse it (fail closed), and every such
 * caller shares one rate-limit / auth-failure bucket.
 */
export const UNKNOWN_IP = "unknown";

const MAPPED_V4 = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/**
 * The canonical text of an IP address, or `undefined` when `text` is not exactly one address.
 *
 * IPv4: dotted decimal as `net.isIP` accepts it (no leading zeros, no short forms).
 * IPv6: lower-case, compressed; IPv4-mapped (`::ffff:a.b.c.d` in any spelling) becomes IPv4.
 * Zone ids (`fe80::1%eth0`) are refused: a scoped link-local address names no stable caller.
 * Brackets, ports and surrounding spaces are refused here (the XFF parser strips them itself).
 */
export function normalizeIp(text: string): string | undefined {
  if (text.includes("%")) return undefined;
  const family = isIP(text);
  if (family === 4) return text;
  if (family !== 6) return undefined;
  const canonical = canonicalV6(text);
  const mapped = MAPPED_V4.exec(canonical);
  if (mapped) {
    const high = Number.parseInt(mapped[1] ?? "", 16);
    const low = Number.parseInt(mapped[2] ?? "", 16);
    return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  }
  return canonical;
}

/**
 * Lower-case compressed IPv6 text, IPv4-mapped addresses kept as IPv6 (`::ffff:102:304`).
 * `text` must already be a valid IPv6 address without a zone id (`net.isIP(text) === 6`).
 */
export function canonicalV6(text: string): string {
  // The WHATWG host serialiser gives the RFC 5952 shape (longest zero run as "::", no leading zeros).
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

/** One parsed CIDR in canonical form. */
export interface Cidr {
  readonly family: 4 | 6;
  /** Canonical network address (host bits are always zero: `parseCidr` refuses them). */
  readonly address: string;
  /** 0–32 for IPv4, 0–128 for IPv6. */
  readonly prefix: number;
  /** `address/prefix`: the canonical spelling, which is what the validated config holds. */
  readonly text: string;
}

/** `parseCidr`'s answer: the CIDR, or a message saying what is wrong and how to write it. */
export type ParsedCidr = { readonly ok: true; readonly value: Cidr } | { readonly ok: false; readonly message: string };

const PREFIX = /^(0|[1-9][0-9]{0,2})$/;
const CIDR_EXAMPLES = "use e.g. 10.0.0.0/8, 203.0.113.7, fd00::/8 or ::1";

/**
 * The one grammar for CIDRs (SPEC §3 `networks`, `trusted_proxies`): config validation reports its
 * messages, `compileCidrs` compiles what it returns. `addr/prefix` or a bare address (read as /32
 * or /128); the prefix in decimal without leading zeros; no zone ids.
 *
 * Host bits must be zero: `10.0.0.1/8` is refused with the fix (`write 10.0.0.0/8`), because
 * whoever wrote it surely did not mean "all of 10/8" and nothing should guess.
 * An IPv6 CIDR inside `::ffff:0:0/96` (a mapped network address, prefix ≥ 96) is the IPv4 CIDR it
 * describes, because callers are normalised to IPv4 too. Any other IPv6 CIDR matches IPv6 callers
 * only: `::/0` does not admit IPv4 callers (as in Kubernetes NetworkPolicy or AWS security groups,
 * where `0.0.0.0/0` and `::/0` are written separately).
 * Messages quote the text: a CIDR is never a secret.
 */
export function parseCidr(text: string): ParsedCidr {
  const slash = text.indexOf("/");
  const addressText = slash === -1 ? text : text.slice(0, slash);
  const prefixText = slash === -1 ? undefined : text.slice(slash + 1);
  const family = addressText.includes("%") ? 0 : isIP(addressText);
  if (family !== 4 && family !== 6) return { ok: false, message: `${JSON.stringify(text)} is not a CIDR block (${CIDR_EXAMPLES})` };
  const bits = family === 4 ? 32 : 128;
  let prefix = bits;
  if (prefixText !== undefined) {
    if (!PREFIX.test(prefixText) || Number(prefixText) > bits) {
      return { ok: false, message: `${JSON.stringify(text)}: the prefix length must be a number from 0 to ${bits}` };
    }
    prefix = Number(prefixText);
  }
  const value = family === 4 ? v4ToBigInt(addressText) : v6ToBigInt(canonicalV6(addressText));
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((value & hostMask) !== 0n) {
    const network = value & ~hostMask;
    const fixed = family === 4 ? bigIntToV4(network) : canonicalV6(bigIntToV6Groups(network));
    return { ok: false, message: `${JSON.stringify(text)} has host bits set: write ${fixed}/${prefix}` };
  }
  if (family === 4) return { ok: true, value: cidr(4, addressText, prefix) };
  const canonical = canonicalV6(addressText);
  const mapped = normalizeIp(canonical);
  // A mapped network address: the IPv4 CIDR it describes. (Host bits are zero, so a prefix under
  // 96 cannot have the ::ffff part in its address: `::ffff:0:0/80` was refused above as `::/80`.)
  if (mapped !== undefined && isIP(mapped) === 4 && prefix >= 96) return { ok: true, value: cidr(4, mapped, prefix - 96) };
  return { ok: true, value: cidr(6, canonical, prefix) };
}

function cidr(family: 4 | 6, address: string, prefix: number): Cidr {
  return { family, address, prefix, text: `${address}/${prefix}` };
}

// Arithmetic for the host-bits check only. Text in and out goes through `canonicalV6`, so the
// IPv6 text handled here is always the WHATWG form: hex groups, at most one "::", never dotted.

function v4ToBigInt(address: string): bigint {
  return address.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function bigIntToV4(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 255n)).join(".");
}

function v6ToBigInt(canonical: string): bigint {
  const [head = "", tail] = canonical.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill("0");
  return [...left, ...zeros, ...right].reduce((acc, g) => (acc << 16n) | BigInt(Number.parseInt(g, 16)), 0n);
}

/** Eight uncompressed hex groups; `canonicalV6` compresses them. */
function bigIntToV6Groups(v: bigint): string {
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((v >> BigInt(i * 16)) & 0xffffn).toString(16));
  return groups.join(":");
}

/** A compiled set of CIDRs. */
export interface CidrSet {
  /** True when `ip` (any spelling `normalizeIp` accepts) is inside one of the CIDRs; false for anything else, `UNKNOWN_IP` included. */
  contains(ip: string): boolean;
  /** Number of CIDRs compiled (0 = matches nothing). */
  readonly size: number;
}

/**
 * Compiles CIDR strings (see `parseCidr`) into a set. Throws on an entry `parseCidr` refuses:
 * config validation refuses it first with `parseCidr`'s own message, so this is a programming error.
 *
 * Two `BlockList`s, one per family: a single list would let an IPv6 rule such as `::/0` match
 * IPv4 addresses, because `BlockList` compares IPv4 as `::ffff:a.b.c.d` against IPv6 rules.
 */
export function compileCidrs(list: readonly string[]): CidrSet {
  const v4 = new BlockList();
  const v6 = new BlockList();
  list.forEach((text, index) => {
    const parsed = parseCidr(text);
    if (!parsed.ok) throw new Error(`CIDR #${index} is not a valid address or CIDR`);
    const { family, address, prefix } = parsed.value;
    if (family === 4) v4.addSubnet(address, prefix, "ipv4");
    else v6.addSubnet(address, prefix, "ipv6");
  });
  const size = list.length;
  return {
    size,
    contains(ip: string): boolean {
      if (size === 0) return false;
      const address = normalizeIp(ip);
      if (address === undefined) return false;
      return isIP(address) === 4 ? v4.check(address, "ipv4") : v6.check(address, "ipv6");
    },
  };
}

const OWS = /^[ \t]+|[ \t]+$/g;
const V4_WITH_PORT = /^([0-9.]+):[0-9]{1,5}$/;
const BRACKETED_V6 = /^\[([^\]]+)\](?::[0-9]{1,5})?$/;

/**
 * One `X-Forwarded-For` element to a canonical address, or `undefined` when it is not one.
 * Besides a bare address it accepts `a.b.c.d:port`, `[v6]` and `[v6]:port`, which some load
 * balancers (Azure Application Gateway) write; the port is dropped.
 */
function parseHop(hop: string): string | undefined {
  const bracketed = BRACKETED_V6.exec(hop);
  if (bracketed) {
    const inner = bracketed[1] ?? "";
    return isIP(inner) === 6 ? normalizeIp(inner) : undefined;
  }
  const withPort = V4_WITH_PORT.exec(hop);
  if (withPort) {
    const inner = withPort[1] ?? "";
    return isIP(inner) === 4 ? inner : undefined;
  }
  return normalizeIp(hop);
}

/**
 * Who called: the socket peer, or — only when the peer is a trusted proxy — the right-most
 * `X-Forwarded-For` hop that is not itself a trusted proxy.
 *
 * - Untrusted peer: its own address; `X-Forwarded-For` is ignored (anyone can write it).
 * - Several `X-Forwarded-For` headers are joined in order with `,` (as RFC 9110 lists are).
 *   Empty list elements are skipped; spaces and tabs around an element are trimmed.
 * - The walk goes from the right (the hop our peer saw) to the left, skipping trusted hops.
 * - Every hop trusted: the left-most hop (the furthest caller anyone vouches for).
 * - No hop at all: the peer's address.
 * - A hop that is not an address, reached before any untrusted one: `UNKNOWN_IP`. A trusted proxy
 *   wrote something we cannot read, so we do not know who called; falling back to the trusted hop
 *   next to it would grant the caller the proxy's own network, which `networks` often allow.
 * - A socket address that is not an address (cannot happen on a socket; test input): `UNKNOWN_IP`.
 */
export function resolveCallerIp(socketIp: string, xForwardedFor: string | readonly string[] | undefined, trusted: CidrSet): string {
  const peer = normalizeIp(socketIp);
  if (peer === undefined) return UNKNOWN_IP;
  if (xForwardedFor === undefined || !trusted.contains(peer)) return peer;
  const joined = typeof xForwardedFor === "string" ? xForwardedFor : xForwardedFor.join(",");
  const hops = joined.split(",");
  let furthest = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = (hops[i] ?? "").replace(OWS, "");
    if (hop === "") continue;
    const address = parseHop(hop);
    if (address === undefined) return UNKNOWN_IP;
    if (!trusted.contains(address)) return address;
    furthest = address;
  }
  return furthest;
}
