/**
 * Logging setup (LogTape), the same in the supervisor and in every worker: one console sink,
 * categories under `sipedge` (`sipedge.proxy`, `sipedge.transport`, `sipedge.plugin.NAME`).
 * @module
 */
import { configure, getConsoleSink, type LogLevel } from "@logtape/logtape";

/** Configures logging for this thread; call again to change the level. */
export async function setupLogging(level: LogLevel): Promise<void> {
  await configure({
    reset: true,
    sinks: { console: getConsoleSink() },
    loggers: [
      { category: "sipedge", lowestLevel: level, sinks: ["console"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
    ],
  });
}
