/**
 * `npm run soak -- [options]`: the command line of the soak.
 *
 *   --duration 10m        how long traffic and faults run (30s … 24h; default 2m), drain not included
 *   --rate 300            requests per second of the short-request mix (default 300)
 *   --seed 1              seed of the traffic mix and fault picks (default: random, printed)
 *   --json FILE           also write the whole result as JSON
 *   --node-flag=FLAG      a Node flag for the proxy (repeatable; default: the Dockerfile ENTRYPOINT's)
 *   --env NAME=VALUE      an environment variable for the proxy (repeatable; e.g. MALLOC_ARENA_MAX=2)
 */

export interface SoakArgs {
  readonly durationMs: number;
  readonly rate: number;
  readonly seed: number;
  readonly json: string | undefined;
  /** Undefined: the flags the container image ships with. */
  readonly nodeFlags: readonly string[] | undefined;
  readonly env: Readonly<Record<string, string>>;
}

export const USAGE = `usage: npm run soak -- [--duration 2m] [--rate 300] [--seed N] [--json FILE] [--node-flag=FLAG ...] [--env NAME=VALUE ...]
`;

const MIN_MS = 30_000;
const MAX_MS = 24 * 3_600_000;

/** "90s", "10m", "1h", "1h30m"; plain numbers are seconds. */
export function parseDuration(text: string): number | undefined {
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const parts = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (parts === null || text === "") return undefined;
  const [, h = "0", m = "0", s = "0"] = parts;
  return ((Number(h) * 60 + Number(m)) * 60 + Number(s)) * 1000;
}

export function parseArgs(argv: readonly string[]): SoakArgs | { error: string } {
  let durationMs = 120_000;
  let rate = 300;
  let seed = Math.floor(Math.random() * 2 ** 31);
  let json: string | undefined;
  const nodeFlags: string[] = [];
  const env: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [name, inline] = arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (name) {
      case "--duration": {
        const ms = parseDuration(value() ?? "");
        if (ms === undefined || ms < MIN_MS || ms > MAX_MS) return { error: "--duration takes 30s … 24h, e.g. 60s, 10m, 1h" };
        durationMs = ms;
        break;
      }
      case "--rate": {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 10 || n > 20_000) return { error: "--rate takes an integer 10 … 20000 (requests per second)" };
        rate = n;
        break;
      }
      case "--seed": {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 0) return { error: "--seed takes a non-negative integer" };
        seed = n;
        break;
      }
      case "--json": {
        const file = value();
        if (file === undefined || file === "") return { error: "--json takes a file name" };
        json = file;
        break;
      }
      case "--node-flag": {
        const flag = value();
        if (flag === undefined || !flag.startsWith("-")) return { error: "--node-flag takes a Node flag, e.g. --node-flag=--max-semi-space-size=8" };
        nodeFlags.push(flag);
        break;
      }
      case "--env": {
        const pair = value() ?? "";
        const at = pair.indexOf("=");
        if (at < 1) return { error: "--env takes NAME=VALUE" };
        env[pair.slice(0, at)] = pair.slice(at + 1);
        break;
      }
      default:
        return { error: `unknown argument ${arg}` };
    }
  }
  return { durationMs, rate, seed, json, nodeFlags: nodeFlags.length > 0 ? nodeFlags : undefined, env };
}
