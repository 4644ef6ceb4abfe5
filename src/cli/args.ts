/**
 * Command-line parsing (SPEC §2). Pure: takes argv and env, returns what to do; `main.ts` does it.
 */
import { parseArgs } from "node:util";

export const DEFAULT_CONFIG_PATH = "config/proxy.yaml";

export type Command =
  | { readonly kind: "run"; readonly config: string }
  | { readonly kind: "check"; readonly config: string }
  | { readonly kind: "hash-token" }
  | { readonly kind: "test-policy"; readonly config: string; readonly cases: string }
  | { readonly kind: "version" }
  | { readonly kind: "help" }
  | { readonly kind: "usage-error"; readonly message: string };

export const USAGE = `Usage:
  mythiq-proxy [--config FILE]                          run the proxy
  mythiq-proxy check [--config FILE]                    validate a config file (exit 0 valid, 78 invalid)
  mythiq-proxy hash-token                               read a client token on stdin, print sha256:<hex>
  mythiq-proxy test-policy [--config FILE] CASES.yaml   run policy test cases against a config
  mythiq-proxy --version                                print the version

The config path defaults to $MYTHIQ_PROXY_CONFIG, else ${DEFAULT_CONFIG_PATH}.
`;

const VERBS = new Set(["check", "hash-token", "test-policy"]);

/** Parses `argv` (without the node and script entries). */
export function parseCommand(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: "string", short: "c" },
        version: { type: "boolean", short: "v" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    return { kind: "usage-error", message: err instanceof Error ? err.message : String(err) };
  }
  const { values, positionals } = parsed;
  if (values.help === true) return { kind: "help" };
  if (values.version === true) return { kind: "version" };

  const [verb, ...rest] = positionals;
  const config = values.config ?? env["MYTHIQ_PROXY_CONFIG"] ?? DEFAULT_CONFIG_PATH;
  if (verb === undefined) return { kind: "run", config };
  if (!VERBS.has(verb)) return { kind: "usage-error", message: `unknown command "${verb}"` };

  if (verb === "hash-token") {
    return rest.length === 0 ? { kind: "hash-token" } : { kind: "usage-error", message: "hash-token takes no arguments" };
  }
  // check and test-policy look at the same file the proxy would run with, so that
  // `mythiq-proxy check` inside a container checks what is deployed.
  if (verb === "check") {
    return rest.length === 0 ? { kind: "check", config } : { kind: "usage-error", message: "check takes no positional arguments" };
  }
  const [cases, ...extra] = rest;
  if (cases === undefined || extra.length > 0) return { kind: "usage-error", message: "test-policy needs exactly one CASES.yaml" };
  return { kind: "test-policy", config, cases };
}
