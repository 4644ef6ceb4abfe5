// DEBUG=node-vault (or DEBUG=*) makes node-vault print login bodies, secret ids and JWTs included,
// and axios' follow-redirects print request headers with the Vault token. The proxy's Vault source
// must print none of it: a child process runs it with DEBUG=* against a fake Vault and its whole
// output is scanned. A control run of node-vault used directly shows that the scan sees such leaks.
import t from "tap";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startFakeVault } from "../helpers/fake-vault.ts";

const KEY = "mq-vault-debug-a1b2c3d4e5f60718293a";
const JWT = "eyJhbGciOiJSUzI1NiJ9.debug-child-sa-token.signature";
const ROLE_ID = "role-id-debug";
const SECRET_ID = "secret-id-debug-5e6f7a8b9c0d1e2f";
const CHILD = fileURLToPath(new URL("./fixtures/vault-debug-child.ts", import.meta.url));

function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--no-warnings", CHILD, ...args], {
      env: { PATH: process.env["PATH"] ?? "", DEBUG: "*", DEBUG_DEPTH: "10", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString("utf8")));
    child.stderr.on("data", (d: Buffer) => (output += d.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

t.test("with DEBUG=* the Vault source prints no token, secret id, JWT or key", async (t) => {
  const vault = await startFakeVault();
  t.teardown(() => vault.close());
  vault.kubernetes("kubernetes", { role: "mythiq-proxy", jwt: JWT });
  vault.approle("approle", { role_id: ROLE_ID, secret_id: SECRET_ID });
  vault.kv("secret", 2);
  vault.put("secret", "mythiq/production", { api_key: KEY });
  const dir = mkdtempSync(join(tmpdir(), "mythiq-vault-debug-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "jwt"), JWT);
  writeFileSync(join(dir, "secret-id"), SECRET_ID);

  const ours = await run(["ours", vault.url, join(dir, "jwt"), join(dir, "secret-id")], { CHILD_ROLE_ID: ROLE_ID });
  t.equal(ours.code, 0, ours.output);
  t.equal(ours.output.split(`fetched ${KEY.length} characters, version 1\n`).length, 3, "both auth methods fetched the key");
  t.equal(vault.issued.length, 2, "both logins happened");
  const secrets = [KEY, JWT, SECRET_ID, ...vault.issued];
  t.same(secrets.filter((s) => ours.output.includes(s)), [], "nothing secret in the child's stdout or stderr");

  const library = await run(["library", vault.url, "", ""], { CHILD_SECRET_ID: "secret-id-debug-wrong-but-printed" });
  t.match(library.output, /secret-id-debug-wrong-but-printed/, "control: node-vault's own debug output prints the secret id");
});
