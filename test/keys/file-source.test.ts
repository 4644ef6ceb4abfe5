import t from "tap";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dropTrailingNewline } from "../../src/config/secret-ref.ts";
import { createFileSource, FILE_MAX_BYTES, type FileSourceOptions } from "../../src/keys/file-source.ts";
import { createKeyring, type KeyRefreshEvent } from "../../src/keys/keyring.ts";
import type { KeyConfig } from "../../src/config/types.ts";
import { createRecordingLogger, refresh } from "../helpers/keys-fakes.ts";

const KEY_A = "mq-live-fileAAAAAAAAAAAAA";
const KEY_B = "mq-live-fileBBBBBBBBBBBBB";
const KEY_C = "mq-live-fileCCCCCCCCCCCCC";
const signal = () => new AbortController().signal;

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-file-source-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * The source's watcher and poll never keep a process alive (by design); a test awaiting them needs
 * a handle of its own or Node exits with the test unfinished.
 */
function keepAlive(t: { teardown(fn: () => void): void }): void {
  const handle = setInterval(() => {}, 1_000);
  t.teardown(() => clearInterval(handle));
}

/** Resolves with the next refresh event that satisfies `match`; fails the test after `ms`. */
function nextEvent(
  events: { refreshed?: (e: KeyRefreshEvent) => void },
  match: (e: KeyRefreshEvent) => boolean,
  ms = 8_000,
): Promise<KeyRefreshEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no matching refresh event within ${ms} ms`)), ms);
    events.refreshed = (e) => {
      if (!match(e)) return;
      clearTimeout(timer);
      resolve(e);
    };
  });
}

/** A keyring over one file key whose interval (5 min) cannot explain a pickup during the test. */
function fileKeyring(t: { teardown(fn: () => void): void }, path: string, options: FileSourceOptions) {
  const logger = createRecordingLogger();
  const events: { refreshed?: (e: KeyRefreshEvent) => void } = {};
  const config: KeyConfig = { source: "file", file: path, refresh: refresh() };
  const source = createFileSource(config, { ...options, logger });
  const keyring = createKeyring({
    keys: { legacy: config },
    sources: { legacy: source },
    logger,
    events: { refreshed: (e) => events.refreshed?.(e) },
  });
  t.teardown(() => keyring.close());
  return { keyring, events, logger };
}

void t.test("reads the file, dropping one trailing newline; version is the mtime in ms", async (t) => {
  const dir = tempDir(t);
  const cases: Array<[string, string]> = [
    [KEY_A, KEY_A],
    [`${KEY_A}\n`, KEY_A],
    [`${KEY_A}\r\n`, KEY_A],
    [`${KEY_A}\n\n`, `${KEY_A}\n`],
  ];
  for (const [content, expected] of cases) {
    const path = join(dir, "api-key");
    writeFileSync(path, content);
    const source = createFileSource({ file: path }, { watch: false, pollInterval: 0 });
    const got = await source.fetch(signal());
    t.equal(got.value, expected, JSON.stringify(content));
    t.equal(got.version, String(Math.trunc(statSync(path).mtimeMs)));
    source.close?.();
  }
  t.equal(dropTrailingNewline("a\r"), "a\r", "a lone CR is kept (validation refuses it)");
});

void t.test("errors name the path and the cause, never the content", async (t) => {
  const dir = tempDir(t);
  const missing = createFileSource({ file: join(dir, "nope") });
  await t.rejects(missing.fetch(signal()), new Error(`cannot read key file ${join(dir, "nope")}: ENOENT`));

  const big = join(dir, "big");
  writeFileSync(big, "s".repeat(FILE_MAX_BYTES + 1));
  const tooBig = createFileSource({ file: big });
  const err = await tooBig.fetch(signal()).catch((e: unknown) => e as Error);
  t.equal((err as Error).message, `key file ${big} is larger than ${FILE_MAX_BYTES} bytes`);

  const limit = join(dir, "limit");
  writeFileSync(limit, "s".repeat(FILE_MAX_BYTES));
  t.equal((await createFileSource({ file: limit }).fetch(signal())).value.length, FILE_MAX_BYTES, "exactly the limit is read");

  await t.rejects(createFileSource({ file: dir }).fetch(signal()), new Error(`key file ${dir} is not a regular file`));
  await t.rejects(createFileSource({ file: "/dev/zero" }).fetch(signal()), new Error("key file /dev/zero is not a regular file"));

  const aborted = new AbortController();
  aborted.abort();
  await t.rejects(createFileSource({ file: limit }).fetch(aborted.signal), /aborted/);
});

void t.test("a FIFO is refused at once instead of blocking a libuv thread", { skip: process.platform === "win32" }, async (t) => {
  const dir = tempDir(t);
  const fifo = join(dir, "fifo");
  execFileSync("mkfifo", [fifo]);
  await t.rejects(createFileSource({ file: fifo }).fetch(signal()), new Error(`key file ${fifo} is not a regular file`));
});

void t.test("rotation by rewriting the file is picked up through fs.watch", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "api-key");
  writeFileSync(path, `${KEY_A}\n`);
  const { keyring, events, logger } = fileKeyring(t, path, { pollInterval: 0, debounce: 20 });
  const loaded = nextEvent(events, (e) => e.result === "changed");
  keyring.start();
  await loaded;
  t.equal(keyring.current("legacy")?.value, KEY_A);

  const rotated = nextEvent(events, (e) => e.result === "changed");
  writeFileSync(path, `${KEY_B}\n`);
  const event = await rotated;
  t.equal(event.rotated, true);
  t.equal(keyring.current("legacy")?.value, KEY_B);
  t.notOk(logger.text().includes(KEY_A) || logger.text().includes(KEY_B), "no value in the log");
});

void t.test("a Kubernetes Secret update (..data symlink swap) is picked up through fs.watch", async (t) => {
  const dir = tempDir(t);
  // The kubelet's layout: api-key -> ..data/api-key, ..data -> ..<timestamp>/
  mkdirSync(join(dir, "..2024_01_01_00_00_00.1"));
  writeFileSync(join(dir, "..2024_01_01_00_00_00.1", "api-key"), KEY_A);
  symlinkSync("..2024_01_01_00_00_00.1", join(dir, "..data"));
  symlinkSync("..data/api-key", join(dir, "api-key"));
  const { keyring, events } = fileKeyring(t, join(dir, "api-key"), { pollInterval: 0, debounce: 20 });
  const loaded = nextEvent(events, (e) => e.result === "changed");
  keyring.start();
  await loaded;
  t.equal(keyring.current("legacy")?.value, KEY_A);

  // The kubelet's update: new timestamped dir, new symlink, atomic rename over ..data, old dir removed.
  const rotated = nextEvent(events, (e) => e.result === "changed");
  mkdirSync(join(dir, "..2024_01_02_00_00_00.2"));
  writeFileSync(join(dir, "..2024_01_02_00_00_00.2", "api-key"), KEY_B);
  symlinkSync("..2024_01_02_00_00_00.2", join(dir, "..data_tmp"));
  renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
  rmSync(join(dir, "..2024_01_01_00_00_00.1"), { recursive: true });
  const event = await rotated;
  t.equal(event.rotated, true);
  t.equal(keyring.current("legacy")?.value, KEY_B);
  t.equal(keyring.current("legacy")?.fingerprint, event.key?.fingerprint);
});

void t.test("without fs.watch, the stat poll picks the change up", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "api-key");
  writeFileSync(path, KEY_A);
  const { keyring, events } = fileKeyring(t, path, { watch: false, pollInterval: 50 });
  const loaded = nextEvent(events, (e) => e.result === "changed");
  keyring.start();
  await loaded;
  const rotated = nextEvent(events, (e) => e.result === "changed");
  // Write elsewhere and rename: the inode changes, as with most atomic updates.
  writeFileSync(join(dir, "tmp"), KEY_C);
  renameSync(join(dir, "tmp"), path);
  await rotated;
  t.equal(keyring.current("legacy")?.value, KEY_C);
});

void t.test("an invalid rewrite is refused and the old key kept", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "api-key");
  writeFileSync(path, KEY_A);
  const { keyring, events, logger } = fileKeyring(t, path, { pollInterval: 0, debounce: 20 });
  const loaded = nextEvent(events, (e) => e.result === "changed");
  keyring.start();
  await loaded;
  const failed = nextEvent(events, (e) => e.result === "failed");
  writeFileSync(path, "mq-live file with spaces\n");
  const event = await failed;
  t.equal(event.error, "invalid key value: the value contains spaces or tabs");
  t.equal(keyring.current("legacy")?.value, KEY_A);
  t.notOk(logger.text().includes("file with spaces"));
});

void t.test("unrelated activity in the directory does not notify; close() stops watching", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "api-key");
  writeFileSync(path, KEY_A);
  keepAlive(t);
  const source = createFileSource({ file: path }, { pollInterval: 30, debounce: 10 });
  let calls = 0;
  let notified: () => void = () => {};
  source.onChange?.(() => {
    calls += 1;
    notified();
  });
  await source.fetch(signal());
  writeFileSync(join(dir, "unrelated"), "x");
  // No event to await for "nothing happened": give the watcher and several polls time to run.
  await new Promise((r) => setTimeout(r, 300));
  t.equal(calls, 0, "a stat that did not change does not notify");
  const changed = new Promise<void>((r) => (notified = r));
  writeFileSync(path, KEY_B);
  await changed;
  t.equal(calls, 1, "a change notifies once (debounced watch + poll)");
  await new Promise((r) => setTimeout(r, 300));
  t.equal(calls, 1, "and only once");
  source.close?.();
  writeFileSync(path, KEY_C);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(calls, 1, "nothing after close");
});

void t.test("a directory that cannot be watched falls back to polling", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "later", "api-key");
  keepAlive(t);
  const logger = createRecordingLogger();
  const source = createFileSource({ file: path }, { pollInterval: 30, logger });
  t.teardown(() => source.close?.());
  let resolve: () => void = () => {};
  const changed = new Promise<void>((r) => (resolve = r));
  source.onChange?.(() => resolve());
  t.match(logger.records, [{ level: "debug" }, { level: "warn", msg: "key file cannot be watched; polling only", fields: { error: "ENOENT" } }]);
  await new Promise((r) => setTimeout(r, 100));
  mkdirSync(join(dir, "later"));
  writeFileSync(path, KEY_A);
  await changed;
  t.equal((await source.fetch(signal())).value, KEY_A);
});
