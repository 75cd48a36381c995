import { type Logger, pino } from "pino";

export type { Logger };

/**
 * One structured logger for the process. JSON lines to stderr, so stdout stays free for a command's
 * own output (tables, JSON) and can be piped. `CLIPSIEVE_LOG_LEVEL` (default `info`) sets the level.
 */
export function createLogger(name = "clipsieve", level = process.env.CLIPSIEVE_LOG_LEVEL ?? "info"): Logger {
  return pino({ name, level, base: undefined }, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything: for tests and library use where the caller wants silence. */
export const silentLogger: Logger = pino({ level: "silent" });
