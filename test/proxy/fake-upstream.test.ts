// The recording fake MythIQ is itself code the tests rely on: check its waiting helper.
import t from "tap";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";

t.test("waitForRequests(n) resolves once n requests arrived, however many came in between", async (t) => {
  const fake = await startFakeUpstream();
  t.teardown(() => fake.close());
  const waiting = fake.waitForRequests(3);
  let resolved = false;
  void waiting.then(() => (resolved = true));
  for (let i = 0; i < 2; i++) {
    await fetch(`${fake.url}/v1/models`);
  }
  await new Promise((r) => setTimeout(r, 20));
  t.equal(resolved, false, "not after two");
  await fetch(`${fake.url}/v1/models`);
  t.equal((await waiting).length, 3);
});
