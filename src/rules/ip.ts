/**
 * Caller addresses: normalisation, compiled CIDR sets and the `X-Forwarded-For` walk (SPEC §4 step 4).
 *
 * One canonical text form per address, so the allowlists, the rate-limit keys and the audit log
 * all agree on who called: IPv4 in dotted decimal, IPv6 lower-case and compressed (RFC 5952 style),
 * and an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is the IPv4 address it carries.
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
  /** Canonical address text (host bits as written; matching masks them). */
  readonly address: string;
  /** 0–32 for IPv4, 0–128 for IPv6. */
  readonly prefix: number;
}

const PREFIX = /^(0|[1-9][0-9]{0,2})$/;

/**
 * Parses `addr/prefix` or a bare address (read as /32 or /128). Returns `undefined` when invalid.
 *
 * An IPv6 CIDR inside `::ffff:0:0/96` (prefix ≥ 96 on a mapped address) is turned into the IPv4
 * CIDR it describes, because callers are normalised to IPv4 too. Any other IPv6 CIDR matches IPv6
 * callers only: `::/0` does not admit IPv4 callers (as in Kubernetes NetworkPolicy or AWS security
 * groups, where `0.0.0.0/0` and `::/0` are written separately).
 * Host bits below the prefix are allowed and ignored (`10.1.2.3/8` is `10.0.0.0/8`).
 */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf("/");
  const addressText = slash === -1 ? text : text.slice(0, slash);
  const prefixText = slash === -1 ? undefined : text.slice(slash + 1);
  if (addressText.includes("%")) return undefined;
  const family = isIP(addressText);
  if (family !== 4 && family !== 6) return undefined;
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!PREFIX.test(prefixText)) return undefined;
    prefix = Number(prefixText);
    if (prefix > max) return undefined;
  }
  const address = normalizeIp(addressText);
  if (address === undefined) return undefined;
  if (family === 6 && isIP(address) === 4) {
    // A mapped address: an IPv4 CIDR when the prefix covers the whole ::ffff:0:0/96 part.
    if (prefix >= 96) return { family: 4, address, prefix: prefix - 96 };
    return { family: 6, address: canonicalV6(addressText), prefix };
  }
  return { family, address, prefix };
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
 * config validation is expected to have refused it already, so this is a programming error.
 *
 * Two `BlockList`s, one per family: a single list would let an IPv6 rule such as `::/0` match
 * IPv4 addresses, because `BlockList` compares IPv4 as `::ffff:a.b.c.d` against IPv6 rules.
 */
export function compileCidrs(list: readonly string[]): CidrSet {
  const v4 = new BlockList();
  const v6 = new BlockList();
  list.forEach((text, index) => {
    const cidr = parseCidr(text);
    if (cidr === undefined) throw new Error(`CIDR #${index} is not a valid address or CIDR`);
    if (cidr.family === 4) v4.addSubnet(cidr.address, cidr.prefix, "ipv4");
    else v6.addSubnet(cidr.address, cidr.prefix, "ipv6");
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
