/** The config cannot be used; `lines` are `FILE:LINE:COL: message` lines for the operator (exit 78). */
export class ConfigError extends Error {
  readonly lines: readonly string[];
  constructor(lines: readonly string[]) {
    super(`invalid config (${lines.length} problem${lines.length === 1 ? "" : "s"})`);
    this.name = "ConfigError";
    this.lines = lines;
  }
}
