// The Vault and AWS client libraries are loaded by the first fetch of a key that needs them, never
// at start-up: a proxy with only env/file keys starts without node-vault, axios or the 17 MB AWS SDK.
import t from "tap";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const CHILD = fileURLToPath(new URL("./fixtures/lazy-load-child.ts", import.meta.url));

t.test("node-vault and the AWS SDK are imported only when a key of theirs is fetched", async (t) => {
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ["--no-warnings", CHILD], {
      env: { PATH: process.env["PATH"] ?? "", AWS_EC2_METADATA_DISABLED: "true" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`child exited with ${code}`))));
  });
  t.same(JSON.parse(output), {
    "built, env fetched": { aws: false, vault: false },
    "vault fetched": { aws: false, vault: true },
    "aws fetched": { aws: true, vault: true },
  });
});
