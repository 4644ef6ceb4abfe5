/**
 * JSON-lines logging to stdout (SPEC §7). Every line goes through one writer that replaces any
 * registered secret (the held keys) with "[redacted]" before it leaves the process: a second line of
 * defence behind the rule that secrets are never put into log fields in the first place.
 */

export type Level = "debug" | "info" | "warn" | "error";

export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** One audit record: written as-is (no `level`/`msg`), after redaction. */
  audit(record: LogFields): void;
  /** Values that must never appear in output (MythIQ keys). Shorter than 8 characters are ignored. */
  registerSecret(value: string): void;
  forgetSecret(value: string): void;
}

export interface LoggerOptions {
  /** Where lines go; default stdout. */
  readonly write?: (line: string) => void;
  readonly now?: () => Date;
  /** Lowest level written; default "info". */
  readonly level?: Level;
  /**
   * Replace registered secrets in output; default true. Tests turn it off to prove that no code
   * path puts a secret into a log line in the first place.
   */
  readonly redact?: boolean;
}

const LEVELS: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

const REDACTED = "[redacted]";

/** Turns an Error into fields without its stack (stacks can quote header values). */
export function errorFields(err: unknown): { error: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === "string" ? { error: err.message, code } : { error: err.message };
  }
  return { error: String(err) };
}

/**
 * Lines for stdout, written once per turn of the event loop. On Linux a write to a pipe or a file
 * is a synchronous system call; one per audit line was the largest single cost of a proxied
 * request. At most one turn's lines are lost if the process is killed outright; on a normal exit
 * they are flushed.
 */
function batchedStdout(): (line: string) => void {
  let pending: string[] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (pending.length === 0) return;
    const text = pending.join("");
    pending = [];
    process.stdout.write(text);
  };
  process.once("exit", flush);
  return (line) => {
    pending.push(line);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const write = options.write ?? batchedStdout();
  const now = options.now ?? (() => new Date());
  const minimum = LEVELS[options.level ?? "info"];
  const secrets = new Set<string>();
  const redact = options.redact ?? true;

  function emit(record: LogFields): void {
    let line: string;
    try {
      line = JSON.stringify(record);
    } catch {
      line = JSON.stringify({ time: record["time"], level: "error", msg: "log record could not be serialised" });
    }
    if (redact) {
      for (const secret of secrets) {
        if (line.includes(secret)) line = line.split(secret).join(REDACTED);
      }
    }
    write(line + "\n");
  }

  function at(level: Level) {
    return (msg: string, fields?: LogFields): void => {
      if (LEVELS[level] < minimum) return;
      emit({ time: now().toISOString(), level, msg, ...fields });
    };
  }

  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    audit(record) {
      emit(record);
    },
    registerSecret(value) {
      if (value.length >= 8) secrets.add(value);
    },
    forgetSecret(value) {
      secrets.delete(value);
    },
  };
}

/** A logger that drops everything (tools and tests that do not care). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  audit() {},
  registerSecret() {},
  forgetSecret() {},
};
