import type { ServerResponse } from "node:http";
import t from "tap";
import { OpenResponses } from "../../src/http/open-responses.ts";

/** Stand-ins: the list only stores and hands back the objects it is given. */
function responses(n: number): ServerResponse[] {
  return Array.from({ length: n }, (_, i) => ({ id: i }) as unknown as ServerResponse);
}

t.test("counts and lists what was added and not yet removed, in any removal order", async (t) => {
  const open = new OpenResponses();
  const all = responses(6);
  const entries = all.map((res) => open.add(res));
  t.equal(open.size, 6);
  t.same([...open], [...all].reverse(), "newest first");

  // Head, tail and middle removals.
  open.remove(entries[5]!);
  open.remove(entries[0]!);
  open.remove(entries[3]!);
  t.equal(open.size, 3);
  t.same([...open], [all[4], all[2], all[1]]);

  open.remove(entries[3]!);
  t.equal(open.size, 3, "a second removal of the same entry changes nothing");

  for (const i of [1, 2, 4]) open.remove(entries[i]!);
  t.equal(open.size, 0);
  t.same([...open], []);
  const again = open.add(all[0]!);
  t.same([...open], [all[0]], "usable after it was emptied");
  open.remove(again);
  t.equal(open.size, 0);
});

t.test("a removed entry keeps no pointer: neither to its response nor to its neighbours", async (t) => {
  const open = new OpenResponses();
  const [a, b, c] = responses(3).map((res) => open.add(res));
  open.remove(b!);
  t.same(b, { res: undefined, prev: undefined, next: undefined });
  t.equal(a!.prev, c, "the neighbours are linked to each other instead");
  t.equal(c!.next, a);
});

t.test("a random sequence of adds and removes agrees with a Set", async (t) => {
  let seed = 7;
  const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const open = new OpenResponses();
  const model = new Set<ServerResponse>();
  const live: { res: ServerResponse; entry: ReturnType<OpenResponses["add"]> }[] = [];
  for (let step = 0; step < 5000; step++) {
    if (live.length === 0 || random() < 0.55) {
      const res = responses(1)[0]!;
      live.push({ res, entry: open.add(res) });
      model.add(res);
    } else {
      const [gone] = live.splice(Math.floor(random() * live.length), 1);
      open.remove(gone!.entry);
      model.delete(gone!.res);
    }
  }
  t.equal(open.size, model.size);
  t.same(new Set(open), model);
});
