import t from "tap";
import { lazyImport } from "../src/lazy-import.ts";

void t.test("loads once, shares the load in progress, and keeps the module", async (t) => {
  let calls = 0;
  const load = lazyImport("lib", () => {
    calls += 1;
    return Promise.resolve({ value: 42 });
  });
  const [a, b] = await Promise.all([load(), load()]);
  t.equal(a, b);
  t.equal((await load()).value, 42);
  t.equal(calls, 1, "imported once");
});

void t.test("a failed import is retried on the next call, and its error names the library, not paths", async (t) => {
  let calls = 0;
  const load = lazyImport("node-vault", () => {
    calls += 1;
    return calls === 1 ? Promise.reject(new Error("Cannot find package '/secret/path/node_modules/node-vault'")) : Promise.resolve("module");
  });
  const err = await load().catch((e: unknown) => e as Error);
  t.ok(err instanceof Error);
  t.equal((err as Error).message, "node-vault could not be loaded (Error)");
  t.notMatch((err as Error).message, /secret\/path/);
  t.equal(await load(), "module", "retried");
  t.equal(calls, 2);
});
