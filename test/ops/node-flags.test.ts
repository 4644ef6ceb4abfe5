// The Node flags the image ships with (Dockerfile ENTRYPOINT) are the ones `npm start` uses, and
// the ones the benchmark measures: one set of runtime settings, written three times, kept in step.
import { readFileSync } from "node:fs";
import t from "tap";

const root = new URL("../../", import.meta.url);
const dockerfile = readFileSync(new URL("Dockerfile", root), "utf8");
const pkg = JSON.parse(readFileSync(new URL("package.json", root), "utf8")) as { scripts: Record<string, string> };

t.test("npm start runs node with the image's flags", async (t) => {
  const entry = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1] ?? "[]") as string[];
  t.equal(entry[0], "node");
  t.equal(entry.at(-1), "dist/main.js");
  const flags = entry.slice(1, -1);
  t.ok(flags.length > 0, "the image sets Node flags");
  t.equal(pkg.scripts["start"], `node ${flags.join(" ")} dist/main.js --config config/proxy.yaml`);
  t.match(readFileSync(new URL("bench/run.ts", root), "utf8"), /shippedNodeFlags\(\)/, "the bench reads them from the Dockerfile");
});
