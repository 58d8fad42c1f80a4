/**
 * Logging setup (LogTape), the same in the supervisor and in every worker: one console sink,
 * categories under `sipedge` (`sipedge.proxy`, `sipedge.transport`, `sipedge.plugin.NAME`).
 *
 * Two formats (`[sipedge] log_format`): `text`, one readable line per record, and `json`, one
 * JSON object per line (JSON Lines) for log shippers:
 *
 * ```json
 * {"@timestamp":"2026-01-01T10:00:00.000Z","level":"WARN","logger":"sipedge.transport","message":"send failure send_timeout to tcp:10.0.0.5:5060 ...","properties":{"reason":"send_timeout","destination":"tcp:10.0.0.5:5060"}}
 * ```
 * @module
 */
import {
  configure,
  getConsoleSink,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
  type TextFormatter,
} from "@logtape/logtape";

/** Log output formats. */
export type LogFormat = "text" | "json";

/** Configures logging for this thread; call again to change the level or the format. */
export async function setupLogging(level: LogLevel, format: LogFormat = "text"): Promise<void> {
  const formatter = format === "json" ? jsonLinesFormatter : getTextFormatter({ value: "bare" });
  await configure({
    reset: true,
    // Strings bare (not quoted): log lines read as sentences and grep well.
    sinks: { console: getConsoleSink({ formatter }) },
    loggers: [
      { category: "sipedge", lowestLevel: level, sinks: ["console"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
    ],
  });
}

const LEVEL: Record<LogLevel, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};

/**
 * One JSON object per record, with LogTape's JSON Lines field names. Not LogTape's own
 * `jsonLinesFormatter`: that one quotes string values inside `message`, and the message should
 * read exactly like the text format's (operators grep for the same sentence in both).
 */
export const jsonLinesFormatter: TextFormatter = (record: LogRecord): string => {
  let message = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    message += i % 2 === 0 ? part as string : renderValue(part);
  }
  return JSON.stringify(
    {
      "@timestamp": new Date(record.timestamp).toISOString(),
      level: LEVEL[record.level],
      logger: record.category.join("."),
      message,
      properties: record.properties,
    },
    (_key, value) =>
      typeof value === "bigint"
        ? value.toString()
        : value instanceof Error
        ? { name: value.name, message: value.message }
        : value,
  ) + "\n";
};

function renderValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message;
  if (typeof value === "bigint") return value.toString();
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
