// The logger: JSON lines, levels, redaction of registered secrets, and stdout writes batched once
// per event-loop turn without losing lines at exit.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import t from "tap";
import { createLogger, errorFields } from "../../src/observe/log.ts";

const SECRET = "mq-live-0123456789abcdef";

t.test("lines are JSON with time, level and msg; below the level nothing is written", async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ write: (line) => lines.push(line), level: "info", now: () => new Date("2026-01-02T03:04:05Z") });
  logger.debug("hidden");
  logger.info("shown", { a: 1 });
  logger.audit({ request_id: "r1", status: 200 });
  t.same(lines.map((l) => JSON.parse(l) as unknown), [
    { time: "2026-01-02T03:04:05.000Z", level: "info", msg: "shown", a: 1 },
    { request_id: "r1", status: 200 },
  ]);
  t.ok(lines.every((l) => l.endsWith("\n")));
});

t.test("registered secrets are replaced wherever they appear, unless redaction is off", async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ write: (line) => lines.push(line) });
  logger.registerSecret(SECRET);
  logger.registerSecret("short");
  logger.warn(`refused ${SECRET}`, { nested: { value: SECRET }, short: "short" });
  t.notOk(lines[0]!.includes(SECRET));
  t.match(lines[0], /\[redacted\]/);
  t.match(lines[0], /"short":"short"/, "values under 8 characters are not treated as secrets");
  logger.forgetSecret(SECRET);
  logger.warn(SECRET);
  t.ok(lines[1]!.includes(SECRET), "a forgotten secret is written again");

  const raw: string[] = [];
  const unredacted = createLogger({ write: (line) => raw.push(line), redact: false });
  unredacted.registerSecret(SECRET);
  unredacted.info(SECRET);
  t.ok(raw[0]!.includes(SECRET), "redact: false writes what the code gave it");
});

t.test("a record that cannot be serialised still gives a line", async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ write: (line) => lines.push(line) });
  const cyclic: Record<string, unknown> = {};
  cyclic["self"] = cyclic;
  logger.error("boom", { cyclic });
  t.equal(JSON.parse(lines[0]!).msg, "log record could not be serialised");
  t.same(errorFields(Object.assign(new Error("x"), { code: "E1" })), { error: "x", code: "E1" });
  t.same(errorFields("plain"), { error: "plain" });
});

t.test("stdout: one write per event-loop turn, and every line reaches stdout at exit", async (t) => {
  const script = `
    import { createLogger } from ${JSON.stringify(fileURLToPath(new URL("../../src/observe/log.ts", import.meta.url)))};
    const writes = [];
    const real = process.stdout.write.bind(process.stdout);
    process.stdout.write = (chunk, ...rest) => { writes.push(String(chunk).split("\\n").length - 1); return real(chunk, ...rest); };
    const logger = createLogger();
    for (let i = 0; i < 5; i++) logger.info("turn one", { i });
    setImmediate(() => {
      for (let i = 0; i < 3; i++) logger.info("turn two", { i });
      // Exits in the same turn: the pending lines must still be written.
      process.on("exit", () => process.stderr.write(JSON.stringify(writes)));
      process.exit(0);
    });
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  t.equal(child.status, 0);
  const lines = child.stdout.trim().split("\n").map((l) => JSON.parse(l) as { msg: string });
  t.equal(lines.length, 8, "no line lost");
  t.same(JSON.parse(child.stderr), [5, 3], "five lines in one write, then the last three at exit");
});
