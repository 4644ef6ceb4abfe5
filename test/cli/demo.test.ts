// `npm run demo` prints curl commands "that work": run the demo on free ports and execute exactly
// what it printed, with curl, checking each answer.
import { execFileSync, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import t from "tap";
import { freePort } from "../helpers/free-port.ts";

const DEMO = fileURLToPath(new URL("../../src/demo.ts", import.meta.url));

t.test("the demo's printed commands work", async (t) => {
  const [listen, admin, upstream] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, [DEMO], {
    env: { PATH: process.env["PATH"], DEMO_PORT: String(listen), DEMO_ADMIN_PORT: String(admin), DEMO_UPSTREAM_PORT: String(upstream) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  t.teardown(() => child.kill("SIGKILL"));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start: ${stderr}`)), 15_000);
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes("Ctrl-C stops the demo")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });

  // The printed commands, with their continuation lines joined, as a user would paste them.
  const script = stderr.replace(/\\\n\s*/g, "");
  const commands = script.split("\n").map((line) => line.trim()).filter((line) => line.startsWith("curl ") || line.startsWith("BASE_URL="));
  t.ok(commands.length >= 8, `${commands.length} commands printed`);
  const run = (command: string): string => execFileSync("sh", ["-c", `${commands.find((c) => c.startsWith("BASE_URL=")) ?? ""}; ${command}`], { encoding: "utf8" });

  const answers = commands.filter((c) => c.startsWith("curl ")).map((c) => ({ command: c, out: run(c) }));
  const json = (i: number): Record<string, unknown> => JSON.parse(answers[i]?.out ?? "null") as Record<string, unknown>;
  t.equal(json(0)["object"], "list", "models listed with the client token");
  t.ok(Array.isArray(json(1)["data"]), "an image generated through the OpenAI-style base URL");
  t.equal(json(2)["reason"], "model_not_allowed");
  t.equal(json(3)["reason"], "missing_credentials");
  t.equal(json(4)["reason"], "invalid_credentials");
  t.equal(json(5)["reason"], "route_not_allowed");
  t.same(json(6), { ready: true });
  t.match(answers[7]?.out, /^mythiq_proxy_requests_total\{client="demo-app"/m, "the requests show in the metrics");
  t.notMatch(stderr + stdout, /mq-demo-/, "the demo's key is never printed");

  child.kill("SIGINT");
  t.equal(await exited, 0, "Ctrl-C stops the demo cleanly");
});
