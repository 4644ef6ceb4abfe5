import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import t from "tap";
import { hashToken, runHashToken } from "../../src/cli/hash-token.ts";
import { checkTokenHash } from "../../src/config/formats.ts";

// SPEC §3's example entry "sha256:5e88...42d8" is the hash of "password".
const PASSWORD = "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

function capture() {
  const out = { stdout: "", stderr: "" };
  return { out, sink: { stdout: (s: string) => void (out.stdout += s), stderr: (s: string) => void (out.stderr += s) } };
}

t.test("hashToken: sha256 of the token, exactly one trailing newline dropped", async (t) => {
  t.equal(hashToken("password"), PASSWORD);
  t.equal(hashToken("password\n"), PASSWORD);
  t.equal(hashToken("password\r\n"), PASSWORD);
  const token = "tok-0123456789abcdef0123456789abcdef";
  t.equal(hashToken(token), `sha256:${createHash("sha256").update(token).digest("hex")}`);
  t.ok(checkTokenHash(hashToken(token)).ok, "the output is accepted in auth.tokens");
});

t.test("hashToken: refuses empty and unsendable tokens without echoing them", async (t) => {
  t.throws(() => hashToken(""), { message: "the token is empty" });
  t.throws(() => hashToken("\n"), { message: "the token is empty" });
  t.throws(() => hashToken("\r\n"), { message: "the token is empty" });
  for (const bad of ["secret-token\n\n", " secret-token", "secret token", "secret\ttoken", "sécret-token", "secret-token\r"]) {
    try {
      hashToken(bad);
      t.fail(`accepted ${JSON.stringify(bad)}`);
    } catch (err) {
      t.ok(err instanceof Error);
      t.notMatch((err as Error).message, "secret", "the token is not in the message");
    }
  }
});

t.test("runHashToken: stdin to stdout, exit 0", async (t) => {
  const { out, sink } = capture();
  t.equal(await runHashToken(Readable.from([Buffer.from("pass"), Buffer.from("word\n")]), sink), 0);
  t.equal(out.stdout, `${PASSWORD}\n`);
  t.match(out.stderr, /warning: the token is only 8 characters/);
  t.notMatch(out.stderr, "password");
});

t.test("runHashToken: a long random token gets no warning", async (t) => {
  const { out, sink } = capture();
  const token = "a".repeat(40);
  t.equal(await runHashToken(Readable.from([`${token}\n`]), sink), 0);
  t.equal(out.stderr, "");
  t.equal(out.stdout, `${hashToken(token)}\n`);
});

t.test("runHashToken: bad input is exit 1 with a reason on stderr, nothing on stdout", async (t) => {
  const cases: [Buffer[], RegExp][] = [
    [[], /the token is empty/],
    [[Buffer.from("\n")], /the token is empty/],
    [[Buffer.from([0x61, 0xff])], /not valid UTF-8/],
    [[Buffer.alloc(5000, 0x61)], /longer than 4096 bytes/],
    [[Buffer.from("two\nlines\n")], /printable ASCII/],
  ];
  for (const [chunks, re] of cases) {
    const { out, sink } = capture();
    t.equal(await runHashToken(Readable.from(chunks), sink), 1);
    t.match(out.stderr, re);
    t.equal(out.stdout, "");
  }
});

t.test("runHashToken: prompts on stderr when stdin is a terminal", async (t) => {
  const stdin = Object.assign(Readable.from(["0123456789abcdef0123\n"]), { isTTY: true });
  const { out, sink } = capture();
  t.equal(await runHashToken(stdin, sink), 0);
  t.match(out.stderr, /paste the client token/);
  t.match(out.stdout, /^sha256:[0-9a-f]{64}\n$/);
});
