import t from "tap";
import { UNKNOWN_IP, compileCidrs, normalizeIp, parseCidr, resolveCallerIp } from "../../src/rules/ip.ts";

void t.test("normalizeIp", (t) => {
  const cases: Array<[string, string | undefined]> = [
    ["1.2.3.4", "1.2.3.4"],
    ["0.0.0.0", "0.0.0.0"],
    ["255.255.255.255", "255.255.255.255"],
    ["::ffff:1.2.3.4", "1.2.3.4"],
    ["::FFFF:1.2.3.4", "1.2.3.4"],
    ["::ffff:102:304", "1.2.3.4"],
    ["0:0:0:0:0:ffff:7f00:1", "127.0.0.1"],
    ["::ffff:0:0", "0.0.0.0"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["2001:0db8::0001", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["::1", "::1"],
    ["::", "::"],
    ["::1.2.3.4", "::102:304"], // IPv4-compatible (deprecated) stays IPv6
    ["::ffff:1", "::ffff:1"], // not mapped: only 7 hextets before it
    ["64:ff9b::1.2.3.4", "64:ff9b::102:304"], // NAT64 stays IPv6
    ["fe80::1%eth0", undefined],
    ["fe80::1%25eth0", undefined],
    ["01.2.3.4", undefined],
    ["1.2.3", undefined],
    ["1.2.3.256", undefined],
    [" 1.2.3.4", undefined],
    ["1.2.3.4 ", undefined],
    ["[::1]", undefined],
    ["1.2.3.4:80", undefined],
    ["", undefined],
    ["unknown", undefined],
    ["1:2:3:4:5:6:7:8:9", undefined],
  ];
  for (const [input, want] of cases) t.equal(normalizeIp(input), want, JSON.stringify(input));
  t.end();
});

void t.test("parseCidr", (t) => {
  const good: Array<[string, { family: 4 | 6; address: string; prefix: number; text: string }]> = [
    ["10.0.0.0/8", { family: 4, address: "10.0.0.0", prefix: 8, text: "10.0.0.0/8" }],
    ["1.2.3.4", { family: 4, address: "1.2.3.4", prefix: 32, text: "1.2.3.4/32" }],
    ["0.0.0.0/0", { family: 4, address: "0.0.0.0", prefix: 0, text: "0.0.0.0/0" }],
    ["2001:DB8::/32", { family: 6, address: "2001:db8::", prefix: 32, text: "2001:db8::/32" }],
    ["::1", { family: 6, address: "::1", prefix: 128, text: "::1/128" }],
    ["::/0", { family: 6, address: "::", prefix: 0, text: "::/0" }],
    ["::ffff:10.0.0.0/104", { family: 4, address: "10.0.0.0", prefix: 8, text: "10.0.0.0/8" }],
    ["::ffff:0:0/96", { family: 4, address: "0.0.0.0", prefix: 0, text: "0.0.0.0/0" }],
    ["::ffff:1.2.3.4", { family: 4, address: "1.2.3.4", prefix: 32, text: "1.2.3.4/32" }],
    ["::/80", { family: 6, address: "::", prefix: 80, text: "::/80" }], // wider than ::ffff:0:0/96: stays IPv6
  ];
  for (const [input, want] of good) t.same(parseCidr(input), { ok: true, value: want }, JSON.stringify(input));
  const bad: Array<[string, string]> = [
    ["10.0.0.0/33", `"10.0.0.0/33": the prefix length must be a number from 0 to 32`],
    ["::/129", `"::/129": the prefix length must be a number from 0 to 128`],
    ["10.0.0.0/", `"10.0.0.0/": the prefix length must be a number from 0 to 32`],
    ["10.0.0.0/08", `"10.0.0.0/08": the prefix length must be a number from 0 to 32`],
    ["10.0.0.0/-1", `"10.0.0.0/-1": the prefix length must be a number from 0 to 32`],
    ["10.0.0.0/8/8", `"10.0.0.0/8/8": the prefix length must be a number from 0 to 32`],
    ["10.0.0/8", `"10.0.0/8" is not a CIDR block (use e.g. 10.0.0.0/8, 203.0.113.7, fd00::/8 or ::1)`],
    ["fe80::%eth0/64", `"fe80::%eth0/64" is not a CIDR block (use e.g. 10.0.0.0/8, 203.0.113.7, fd00::/8 or ::1)`],
    ["nonsense", `"nonsense" is not a CIDR block (use e.g. 10.0.0.0/8, 203.0.113.7, fd00::/8 or ::1)`],
    ["", `"" is not a CIDR block (use e.g. 10.0.0.0/8, 203.0.113.7, fd00::/8 or ::1)`],
    // Host bits are refused with the fix, in the canonical spelling.
    ["10.1.2.3/8", `"10.1.2.3/8" has host bits set: write 10.0.0.0/8`],
    ["2001:DB8::1/32", `"2001:DB8::1/32" has host bits set: write 2001:db8::/32`],
    ["::ffff:10.0.0.1/104", `"::ffff:10.0.0.1/104" has host bits set: write ::ffff:a00:0/104`],
    ["1:2:3:4:5:6:7:8/16", `"1:2:3:4:5:6:7:8/16" has host bits set: write 1::/16`],
    ["::ffff:0:0/80", `"::ffff:0:0/80" has host bits set: write ::/80`],
    ["1:0:1:0:0:1:0:1/112", `"1:0:1:0:0:1:0:1/112" has host bits set: write 1:0:1::1:0:0/112`],
  ];
  for (const [input, message] of bad) t.same(parseCidr(input), { ok: false, message }, JSON.stringify(input));
  t.end();
});

void t.test("compileCidrs: v4, v6, mapped and edge prefixes", (t) => {
  const cases: Array<{ cidrs: string[]; yes: string[]; no: string[] }> = [
    { cidrs: ["10.0.0.0/8"], yes: ["10.0.0.0", "10.255.255.255", "::ffff:10.1.2.3", "::ffff:a01:203"], no: ["11.0.0.0", "9.255.255.255", "::a01:203", UNKNOWN_IP, ""] },
    { cidrs: ["0.0.0.0/0"], yes: ["1.2.3.4", "255.255.255.255", "::ffff:8.8.8.8"], no: ["::1", "2001:db8::1", "::"] },
    { cidrs: ["203.0.113.7/32"], yes: ["203.0.113.7", "::ffff:203.0.113.7"], no: ["203.0.113.6", "203.0.113.8"] },
    { cidrs: ["203.0.113.7"], yes: ["203.0.113.7"], no: ["203.0.113.8"] },
    { cidrs: ["2001:db8::/32"], yes: ["2001:db8::1", "2001:DB8:ffff::1", "2001:0db8:0000::"], no: ["2001:db9::1", "1.2.3.4", "::ffff:1.2.3.4"] },
    // ::/0 is every IPv6 caller, never an IPv4 one (BlockList alone would say yes to IPv4 here).
    { cidrs: ["::/0"], yes: ["::1", "2001:db8::1", "::", "::1.2.3.4"], no: ["1.2.3.4", "::ffff:1.2.3.4", "0.0.0.0"] },
    { cidrs: ["2001:db8::1/128"], yes: ["2001:db8::1", "2001:db8:0:0:0:0:0:1"], no: ["2001:db8::2", "2001:db8::"] },
    { cidrs: ["::1"], yes: ["::1"], no: ["127.0.0.1", "::2"] },
    // An IPv4-mapped CIDR is read as the IPv4 CIDR it describes.
    { cidrs: ["::ffff:10.0.0.0/104"], yes: ["10.9.9.9", "::ffff:10.9.9.9"], no: ["11.0.0.1", "::a09:909"] },
    { cidrs: ["::ffff:0:0/96"], yes: ["1.2.3.4", "0.0.0.0"], no: ["::1", "::102:304"] },
    { cidrs: ["::/80"], yes: ["::1"], no: ["1.2.3.4", "::ffff:1.2.3.4"] }, // wider than the mapped block: IPv6 callers only
    { cidrs: [], yes: [], no: ["1.2.3.4", "::1", "0.0.0.0"] },
    { cidrs: ["10.0.0.0/8", "2001:db8::/32"], yes: ["10.0.0.1", "2001:db8::5"], no: ["192.168.0.1", "2002::1"] },
    { cidrs: ["fe80::/10"], yes: ["fe80::1"], no: ["fe80::1%eth0", "fec0::1"] },
  ];
  for (const { cidrs, yes, no } of cases) {
    const set = compileCidrs(cidrs);
    t.equal(set.size, cidrs.length);
    for (const ip of yes) t.ok(set.contains(ip), `${cidrs.join(",") || "[]"} contains ${ip}`);
    for (const ip of no) t.notOk(set.contains(ip), `${cidrs.join(",") || "[]"} does not contain ${ip}`);
  }
  t.end();
});

void t.test("compileCidrs refuses an invalid entry without quoting it", (t) => {
  t.throws(() => compileCidrs(["10.0.0.0/8", "10.0.0.0/33"]), { message: "CIDR #1 is not a valid address or CIDR" });
  t.throws(() => compileCidrs(["10.1.2.3/8"]), { message: "CIDR #0 is not a valid address or CIDR" }, "host bits, as config validation says");
  t.end();
});

void t.test("resolveCallerIp", (t) => {
  const trusted = compileCidrs(["10.0.0.0/8", "fd00::/8"]);
  const cases: Array<{ name: string; socket: string; xff: string | string[] | undefined; want: string }> = [
    { name: "untrusted peer, no XFF", socket: "198.51.100.1", xff: undefined, want: "198.51.100.1" },
    { name: "untrusted peer: spoofed XFF ignored", socket: "198.51.100.1", xff: "10.0.0.5", want: "198.51.100.1" },
    { name: "untrusted peer: spoofed garbage ignored", socket: "198.51.100.1", xff: "garbage", want: "198.51.100.1" },
    { name: "untrusted mapped peer normalised", socket: "::ffff:198.51.100.1", xff: "1.1.1.1", want: "198.51.100.1" },
    { name: "trusted peer, no XFF", socket: "10.0.0.1", xff: undefined, want: "10.0.0.1" },
    { name: "trusted mapped peer, XFF used", socket: "::ffff:10.0.0.1", xff: "203.0.113.9", want: "203.0.113.9" },
    { name: "trusted peer, one hop", socket: "10.0.0.1", xff: "203.0.113.9", want: "203.0.113.9" },
    { name: "client-supplied left part ignored", socket: "10.0.0.1", xff: "1.1.1.1, 203.0.113.9", want: "203.0.113.9" },
    { name: "through several trusted hops", socket: "10.0.0.1", xff: "1.1.1.1, 203.0.113.9, 10.0.0.3, 10.0.0.2", want: "203.0.113.9" },
    { name: "v6 trusted hops", socket: "fd00::1", xff: "2001:db8::7, fd00::2", want: "2001:db8::7" },
    { name: "mapped hop normalised", socket: "10.0.0.1", xff: "::ffff:203.0.113.9", want: "203.0.113.9" },
    { name: "v6 hop compressed", socket: "10.0.0.1", xff: "2001:DB8:0:0:0:0:0:7", want: "2001:db8::7" },
    { name: "hop with port", socket: "10.0.0.1", xff: "203.0.113.9:51234", want: "203.0.113.9" },
    { name: "bracketed v6 hop with port", socket: "10.0.0.1", xff: "[2001:db8::7]:443", want: "2001:db8::7" },
    { name: "bracketed v6 hop", socket: "10.0.0.1", xff: "[2001:db8::7]", want: "2001:db8::7" },
    { name: "tabs and spaces trimmed", socket: "10.0.0.1", xff: "\t203.0.113.9 \t,  10.0.0.2 ", want: "203.0.113.9" },
    { name: "empty elements skipped", socket: "10.0.0.1", xff: "203.0.113.9,,10.0.0.2,", want: "203.0.113.9" },
    { name: "several headers joined in order", socket: "10.0.0.1", xff: ["1.1.1.1, 203.0.113.9", "10.0.0.2"], want: "203.0.113.9" },
    { name: "several headers: the right-most header counts", socket: "10.0.0.1", xff: ["203.0.113.9", "198.51.100.4"], want: "198.51.100.4" },
    { name: "all hops trusted: left-most", socket: "10.0.0.1", xff: "10.0.0.9, 10.0.0.2", want: "10.0.0.9" },
    { name: "empty XFF: peer", socket: "10.0.0.1", xff: "", want: "10.0.0.1" },
    { name: "only commas: peer", socket: "10.0.0.1", xff: " , ,", want: "10.0.0.1" },
    { name: "garbage right-most hop: unknown", socket: "10.0.0.1", xff: "203.0.113.9, garbage", want: UNKNOWN_IP },
    { name: "garbage behind trusted hops: unknown", socket: "10.0.0.1", xff: "203.0.113.9, nope, 10.0.0.2", want: UNKNOWN_IP },
    { name: "garbage left of the untrusted hop: never reached", socket: "10.0.0.1", xff: "nope, 203.0.113.9, 10.0.0.2", want: "203.0.113.9" },
    { name: "zone id hop: unknown", socket: "10.0.0.1", xff: "fe80::1%eth0", want: UNKNOWN_IP },
    { name: "'unknown' hop: unknown", socket: "10.0.0.1", xff: "unknown", want: UNKNOWN_IP },
    { name: "obfuscated identifier hop: unknown", socket: "10.0.0.1", xff: "_hidden", want: UNKNOWN_IP },
    { name: "bad port hop: unknown", socket: "10.0.0.1", xff: "203.0.113.9:123456", want: UNKNOWN_IP },
    { name: "v6 with unbracketed port-like tail is a v6 address", socket: "10.0.0.1", xff: "2001:db8::1:80", want: "2001:db8::1:80" },
    { name: "invalid socket address: unknown", socket: "nonsense", xff: undefined, want: UNKNOWN_IP },
  ];
  for (const c of cases) t.equal(resolveCallerIp(c.socket, c.xff, trusted), c.want, c.name);
  t.end();
});

void t.test("resolveCallerIp with no trusted proxies never reads XFF", (t) => {
  t.equal(resolveCallerIp("10.0.0.1", "203.0.113.9", compileCidrs([])), "10.0.0.1");
  t.end();
});
