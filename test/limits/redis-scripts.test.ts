// Every Lua script of the redis store touches exactly one key, KEYS[1]: one key is one hash slot,
// which is what lets the scripts run unchanged on a Redis Cluster (redis-scripts.ts). A script that
// reached for a second key, or built a key name inside Lua, would fail there with CROSSSLOT or
// touch a slot of another node.
import t from "tap";
import * as scripts from "../../src/limits/redis-scripts.ts";

const all: [string, string][] = Object.entries(scripts as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === "string");

t.ok(all.length >= 8, `${all.length} scripts`);
for (const [name, lua] of all) {
  t.test(name, async (t) => {
    const keyRefs = [...lua.matchAll(/KEYS\[([^\]]*)\]/g)].map((m) => m[1]);
    t.same([...new Set(keyRefs)].filter((k) => k !== "1"), [], "only KEYS[1]");
    t.notMatch(lua, /\bKEYS\s*\[\s*#|#KEYS|ipairs\(KEYS\)/, "no iteration over KEYS");
    // Every redis.call names its key as KEYS[1] (or a local bound to it), never a built string.
    for (const call of lua.matchAll(/redis\.call\('([A-Z]+)'(?:, ([^,)]+))?/g)) {
      const [, command, first] = call;
      if (command === "TIME") continue;
      t.ok(first === "KEYS[1]" || first === "key", `${command} on ${first ?? "nothing"}`);
    }
  });
}
