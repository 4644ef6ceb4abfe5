import t from "tap";
import { EventEmitter } from "node:events";
import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { watchFile, type FileWatchOptions, type WatchDirectory, type WatchTrouble } from "../../src/fs/watch-file.ts";

type Tap = { teardown(fn: () => void): void };

function tempDir(t: Tap): string {
  const dir = mkdtempSync(join(tmpdir(), "mythiq-watch-file-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The watcher's timers never keep a process alive (by design): a test awaiting them needs its own handle. */
function keepAlive(t: Tap): void {
  const handle = setInterval(() => {}, 1_000);
  t.teardown(() => clearInterval(handle));
}

/** A directory watcher driven by the test: `fire()` is a directory event, `fail()` an fs.watch error. */
function fakeWatch() {
  const watched: string[] = [];
  let listener: (() => void) | undefined;
  const emitter = new EventEmitter();
  const state = { closed: 0 };
  const watch: WatchDirectory = (directory, next) => {
    watched.push(directory);
    listener = next;
    return {
      on: (event, fn) => emitter.on(event, fn),
      close: () => {
        state.closed += 1;
      },
    };
  };
  return {
    watch,
    watched,
    state,
    fire: () => listener?.(),
    fail: (err: Error) => emitter.emit("error", err),
  };
}

/** Starts a watch whose changes and troubles are recorded; `next()` resolves at the next change. */
function start(t: Tap, file: string, options: Partial<FileWatchOptions>) {
  keepAlive(t);
  const troubles: WatchTrouble[] = [];
  let changes = 0;
  let wake: (() => void) | undefined;
  const watcher = watchFile(file, {
    pollInterval: 0,
    debounce: 5,
    onTrouble: (trouble) => troubles.push(trouble),
    ...options,
    onChange: () => {
      changes += 1;
      wake?.();
      options.onChange?.();
    },
  });
  t.teardown(() => watcher.close());
  return {
    watcher,
    troubles,
    changes: () => changes,
    next: () => new Promise<void>((resolve) => (wake = resolve)),
  };
}

/** There is no event for "nothing happened": give debounced checks and polls time to run. */
const quiet = (ms = 100) => new Promise((resolve) => setTimeout(resolve, ms));

void t.test("a directory event triggers one debounced check; only a real change is reported", async (t) => {
  const dir = tempDir(t);
  const file = join(dir, "config.yaml");
  writeFileSync(file, "a");
  const fake = fakeWatch();
  const w = start(t, file, { watch: fake.watch });
  await w.watcher.ready;
  t.same(fake.watched, [dir], "the directory is watched, not the file");

  fake.fire();
  writeFileSync(join(dir, "unrelated"), "x");
  await quiet();
  t.equal(w.changes(), 0, "an event without a change to the file reports nothing");

  const changed = w.next();
  writeFileSync(file, "bb");
  for (let i = 0; i < 5; i++) fake.fire();
  await changed;
  await quiet();
  t.equal(w.changes(), 1, "a burst of events reports the change once");
});

void t.test("a ..data symlink swap is a change of the file", async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, "..v1"));
  writeFileSync(join(dir, "..v1", "file"), "one");
  symlinkSync("..v1", join(dir, "..data"));
  symlinkSync("..data/file", join(dir, "file"));
  const fake = fakeWatch();
  const w = start(t, join(dir, "file"), { watch: fake.watch });
  await w.watcher.ready;
  const changed = w.next();
  mkdirSync(join(dir, "..v2"));
  writeFileSync(join(dir, "..v2", "file"), "two");
  symlinkSync("..v2", join(dir, "..data_tmp"));
  renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
  fake.fire();
  await changed;
  t.equal(w.changes(), 1);
});

void t.test("without a watch, the poll finds the change; a missing file appearing is a change", async (t) => {
  const dir = tempDir(t);
  const file = join(dir, "later");
  const w = start(t, file, { watch: false, pollInterval: 10 });
  await w.watcher.ready;
  const changed = w.next();
  writeFileSync(file, "x");
  await changed;
  t.equal(w.changes(), 1);
  t.same(w.troubles, []);
});

void t.test("a directory that cannot be watched falls back to the poll", async (t) => {
  const dir = tempDir(t);
  const file = join(dir, "missing-dir", "file");
  const failing: WatchDirectory = () => {
    throw Object.assign(new Error("no such directory"), { code: "ENOENT" });
  };
  const w = start(t, file, { watch: failing, pollInterval: 10 });
  t.same(w.troubles, [{ kind: "unwatchable", directory: join(dir, "missing-dir"), error: "ENOENT" }]);
  await w.watcher.ready;
  const changed = w.next();
  mkdirSync(join(dir, "missing-dir"));
  writeFileSync(file, "x");
  await changed;
  t.equal(w.changes(), 1);
});

void t.test("a watch that fails later is closed and the poll goes on", async (t) => {
  const dir = tempDir(t);
  const file = join(dir, "file");
  writeFileSync(file, "a");
  const fake = fakeWatch();
  const w = start(t, file, { watch: fake.watch, pollInterval: 10 });
  await w.watcher.ready;
  fake.fail(Object.assign(new Error("inotify gone"), { code: "ENOSPC" }));
  t.same(w.troubles, [{ kind: "stopped", directory: dir, error: "ENOSPC" }]);
  t.equal(fake.state.closed, 1, "the failed watcher is closed");
  const changed = w.next();
  writeFileSync(file, "bb");
  await changed;
  t.equal(w.changes(), 1);
  w.watcher.close();
  t.equal(fake.state.closed, 1, "not closed twice");
});

void t.test("a listener that throws is reported, and later changes still are", async (t) => {
  const dir = tempDir(t);
  const file = join(dir, "file");
  writeFileSync(file, "a");
  const fake = fakeWatch();
  let throwNext = true;
  const w = start(t, file, {
    watch: fake.watch,
    onChange: () => {
      if (throwNext) {
        throwNext = false;
        throw new Error("listener bug");
      }
    },
  });
  await w.watcher.ready;
  let changed = w.next();
  writeFileSync(file, "bb");
  fake.fire();
  await changed;
  t.same(w.troubles, [{ kind: "listener", directory: dir, error: "listener bug" }]);
  changed = w.next();
  writeFileSync(file, "ccc");
  fake.fire();
  await changed;
  t.equal(w.changes(), 2);
});

void t.test("seen() makes the caller's own read the baseline", async (t) => {
  const dir = tempDir(t);
  const file = join(dir, "file");
  writeFileSync(file, "a");
  const fake = fakeWatch();
  const w = start(t, file, { watch: fake.watch });
  await w.watcher.ready;
  writeFileSync(file, "read by the caller");
  w.watcher.seen(statSync(file));
  fake.fire();
  await quiet();
  t.equal(w.changes(), 0, "the state the caller read is not a change");
  const changed = w.next();
  writeFileSync(file, "changed after the read");
  fake.fire();
  await changed;
  t.equal(w.changes(), 1, "a change after it is");
});

void t.test("close() stops the watch, the poll and a pending check", async (t) => {
  const dir = tempDir(t);
  const file = join(dir, "file");
  writeFileSync(file, "a");
  const fake = fakeWatch();
  const w = start(t, file, { watch: fake.watch, pollInterval: 10, debounce: 20 });
  await w.watcher.ready;
  writeFileSync(file, "bb");
  fake.fire();
  w.watcher.close();
  t.equal(fake.state.closed, 1);
  await quiet();
  t.equal(w.changes(), 0, "nothing is reported after close");
});
