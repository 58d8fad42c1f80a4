/**
 * sipedge command line: `sipedge [--config FILE] [--listen ADDR]... [--forward URI] ...`.
 * Loads and validates the config, starts the supervisor and its reader workers, stops
 * gracefully on SIGTERM/SIGINT.
 * @module
 */
import denoJson from "./deno.json" with { type: "json" };
import { startMemoryTrim } from "./core/memory_trim.ts";
import { parseCli, USAGE } from "./core/cli.ts";
import { ConfigError, loadConfig, type ResolvedConfig } from "./core/config/load.ts";
import { setupLogging } from "./core/logging.ts";
import { Supervisor } from "./core/supervisor.ts";
import { type ControlApi, startControlApi } from "./core/control_api.ts";
import { getLogger, type LogLevel } from "@logtape/logtape";

async function main(args: string[]): Promise<number> {
  // `sipedge ctl ...`: the control API's command-line client (core/ctl.ts), not a proxy. Loaded
  // only for that: a running proxy would keep its source and code for nothing (docs/decisions.md).
  if (args[0] === "ctl") return await (await import("./core/ctl.ts")).runCtl(args.slice(1));
  let cli;
  try {
    cli = parseCli(args);
  } catch (error) {
    console.error(`sipedge: ${(error as Error).message}`);
    return 2;
  }
  if (cli.help) {
    console.log(USAGE);
    return 0;
  }
  if (cli.version) {
    console.log(`sipedge ${denoJson.version} (deno ${Deno.version.deno})`);
    return 0;
  }
  const path = cli.config ?? (await exists("config.toml") ? "config.toml" : undefined);
  let config: ResolvedConfig;
  try {
    config = await loadConfig(path, {
      listen: cli.listen,
      forward: cli.forward,
      workers: cli.workers,
      control: cli.control,
    });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`sipedge: invalid configuration:\n${error.message}`);
    return 1;
  }
  if (cli.logLevel !== undefined) config.sipedge.log_level = cli.logLevel as LogLevel;
  if (cli.logFormat !== undefined) config.sipedge.log_format = cli.logFormat;
  if (cli.checkConfig) {
    console.log(`${config.source}: configuration is valid`);
    return 0;
  }
  await setupLogging(config.sipedge.log_level, config.sipedge.log_format);
  const log = getLogger(["sipedge"]);

  const supervisor = new Supervisor(config, {
    path,
    overrides: {
      listen: cli.listen,
      forward: cli.forward,
      workers: cli.workers,
      control: cli.control,
    },
    logLevel: cli.logLevel as LogLevel | undefined,
    logFormat: cli.logFormat,
    // A hung worker's thread could not be stopped: exit for the service manager to restart us.
    onStuckWorker: () => {
      exitCode = EXIT_STUCK_WORKER;
      requestStop("stuck reader worker");
    },
  });
  // Signal listeners go in before anything starts: a signal that arrives before its listener
  // is registered kills the process with the default action.
  let stopRequested: string | undefined;
  let exitCode = 0;
  let requestStop: (signal: string) => void = (signal) => stopRequested ??= signal;
  Deno.addSignalListener("SIGTERM", () => requestStop("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => requestStop("SIGINT"));
  let started = false;
  Deno.addSignalListener("SIGHUP", () => {
    if (!started) return void log.warn("SIGHUP while starting: ignored");
    log.info("SIGHUP: reloading {source}", { source: config.source });
    void supervisor.reload(); // reports in the log; refused reloads change nothing
  });

  try {
    await supervisor.start();
  } catch (error) {
    console.error(`sipedge: cannot start: ${(error as Error).message}`);
    return 1;
  }
  let control: ControlApi | undefined;
  if (config.control.address !== "") {
    const { host, port } = splitHostPort(config.control.address);
    try {
      control = startControlApi(supervisor, {
        hostname: host,
        port,
        token: config.control.token || undefined,
        version: denoJson.version,
      });
    } catch (error) {
      console.error(`sipedge: cannot start the control API: ${(error as Error).message}`);
      await supervisor.stop(0);
      return 1;
    }
    console.log(`sipedge control API: ${control.url}`);
  }
  const addresses = supervisor.listeners.map((l) =>
    `${l.transport}:${l.hostname.includes(":") ? `[${l.hostname}]` : l.hostname}:${l.port}`
  );
  started = true;
  const memoryTrim = startMemoryTrim();
  console.log(
    `sipedge ready: listening on ${addresses.join(", ")} (${supervisor.workerCount} workers)`,
  );

  const stopped = new Promise<void>((resolve) => {
    let stopping = false;
    requestStop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info("{signal}: stopping (up to {ms} ms to write what is queued)", {
        signal,
        ms: supervisor.config.sipedge.shutdown_timeout,
      });
      await control?.close();
      await supervisor.stop(supervisor.config.sipedge.shutdown_timeout);
      resolve();
    };
    if (stopRequested !== undefined) requestStop(stopRequested);
  });
  await stopped;
  memoryTrim?.stop();
  log.info("stopped");
  return exitCode;
}

/** Exit status after a hung worker's thread could not be stopped (EX_SOFTWARE). */
const EXIT_STUCK_WORKER = 70;

function splitHostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(":");
  return {
    host: address.slice(0, colon).replace(/^\[(.*)\]$/, "$1"),
    port: Number(address.slice(colon + 1)),
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
