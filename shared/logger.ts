import { pino, type Logger, type LevelWithSilent, type LoggerOptions } from "pino";
import { prettyStream, type LogFormat } from "./log-format.js";

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/**
 * Structured JSON logs on stdout, one object per line (or, with format "pretty", the same lines
 * made readable for a terminal). Secrets never reach a log line: the redact paths cover the
 * places a token could appear.
 */
export function createLogger(options: { name: string; level: LevelWithSilent; format?: LogFormat }): Logger {
  const settings: LoggerOptions = {
    name: options.name,
    level: options.level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: {
      paths: ["token", "*.token", "agentToken", "*.agentToken", "headers.authorization", "headers.cookie", 'headers["x-warren-token"]'],
      censor: "[redacted]",
    },
  };
  return options.format === "pretty" ? pino(settings, prettyStream(process.stdout)) : pino(settings);
}
