/**
 * Logging setup (LogTape), the same in the supervisor and in every worker: one console sink,
 * categories under `sipedge` (`sipedge.proxy`, `sipedge.transport`, `sipedge.plugin.NAME`).
 * @module
 */
import { configure, getConsoleSink, getTextFormatter, type LogLevel } from "@logtape/logtape";

/** Configures logging for this thread; call again to change the level. */
export async function setupLogging(level: LogLevel): Promise<void> {
  await configure({
    reset: true,
    // Strings bare (not quoted): log lines read as sentences and grep well.
    sinks: { console: getConsoleSink({ formatter: getTextFormatter({ value: "bare" }) }) },
    loggers: [
      { category: "sipedge", lowestLevel: level, sinks: ["console"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
    ],
  });
}
