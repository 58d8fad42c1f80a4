/**
 * Reader worker entry (a Web Worker). The supervisor sends `start` with the resolved config
 * and the shared counters; the worker loads its plugins, listens, and answers `started` with
 * its bound listeners (or `failed`). Requests carrying an `id` are answered with the same id.
 * @module
 */
/// <reference lib="deno.worker" />
import type { ResolvedConfig } from "./config/load.ts";
import { setupLogging } from "./logging.ts";
import { getLogger } from "@logtape/logtape";
import { type CounterTables, emptyTables } from "./stats.ts";
import type { BlacklistEntry } from "./policy/blacklist_table.ts";
import type { BanChange, BanEntry } from "./policy/ban_table.ts";
import type { BlacklistChange, ConnectionInfo } from "./transport/connection_manager.ts";
import { type BoundListener, WorkerEngine } from "./worker_engine.ts";

/** Messages from the supervisor to a worker. */
export type ToWorker =
  | {
    type: "start";
    id: number;
    config: ResolvedConfig;
    workerId: number;
    shared: SharedArrayBuffer;
    /** The connection directory (core/transport/connection_directory.ts). */
    directory: SharedArrayBuffer;
    /** Ports to the other workers for hand-offs, by worker id. */
    handoffPorts: Record<number, MessagePort>;
    /** The hand-off progress table (core/transport/handoff.ts). */
    handoffProgress: SharedArrayBuffer;
    blacklist: BlacklistEntry[];
    /** The flood guard's source table (core/policy/source_table.ts). */
    sources: SharedArrayBuffer;
    /** Bans in force (core/policy/ban_table.ts). */
    bans: BanEntry[];
  }
  | { type: "prepare"; id: number; config: ResolvedConfig }
  | { type: "commit"; id: number }
  | { type: "abort"; id: number }
  | { type: "stop"; id: number; timeoutMs: number }
  | { type: "stats"; id: number }
  | { type: "connections"; id: number }
  | { type: "blacklist"; change: BlacklistChange }
  | { type: "bans"; change: BanChange }
  /** Worker `worker` went away: stop handing it messages, fail what it did not handle. */
  | { type: "peer_down"; worker: number }
  /** Worker `worker` (replaced) is up: hand-offs to it go over `port`. */
  | { type: "peer_up"; worker: number; port: MessagePort };

/** Replies from a worker (`id` of the request), and its own notices. */
export type FromWorker =
  | {
    type: "started";
    id: number;
    listeners: BoundListener[];
    /** The worker's OS thread id (Linux), so the supervisor can see whether it ended. */
    thread?: number;
  }
  | { type: "prepared"; id: number; listeners: BoundListener[] }
  | { type: "committed"; id: number }
  | { type: "aborted"; id: number }
  | { type: "failed"; id: number; error: string }
  | { type: "stopped"; id: number }
  | {
    type: "stats";
    id: number;
    counters: Record<string, number>;
    connections: number;
    /** Messages by method / status class, failures by reason (core/stats.ts). */
    tables: CounterTables;
    /** Connections by `"transport direction state"`. */
    connectionStates: Record<string, number>;
    /** This worker's JavaScript heap in use (its own isolate). */
    heapUsedBytes: number;
  }
  | { type: "connections"; id: number; connections: ConnectionInfo[] }
  | { type: "blacklisted"; entry: BlacklistEntry }
  /** This worker banned a source (the supervisor logs it and tells the others). */
  | { type: "flooded"; entry: BanEntry }
  /** The worker is closing itself (a plugin called `close()`): the supervisor replaces it. */
  | { type: "exiting"; reason: string };

let engine: WorkerEngine | undefined;
let stopping = false;

function post(message: FromWorker): void {
  self.postMessage(message);
}

// An exception nothing caught (a plugin's timer, a rejected promise no one awaited) would end
// this worker and every connection it owns. It is one event's failure, not the worker's: log it
// with its stack, count it, and keep serving.
const uncaughtLog = getLogger(["sipedge", "worker"]);
self.addEventListener("error", (event: ErrorEvent) => {
  event.preventDefault();
  reportUncaught(event.error ?? event.message);
});
self.addEventListener("unhandledrejection", (event: PromiseRejectionEvent) => {
  event.preventDefault();
  reportUncaught(event.reason);
});

// A worker that closes itself other than on "stop" (a plugin calling close()) says so first, so
// that the supervisor replaces it at once instead of waiting for its heartbeat to stop.
const closeWorker = self.close.bind(self);
self.close = () => {
  if (!stopping) post({ type: "exiting", reason: "close() called" });
  closeWorker();
};

function threadId(): number | undefined {
  try {
    return Number(Deno.readTextFileSync("/proc/thread-self/stat").split(" ")[0]) || undefined;
  } catch {
    return undefined; // not Linux, or no read permission for /proc
  }
}

function reportUncaught(error: unknown): void {
  engine?.counters.inc("uncaught_errors");
  uncaughtLog.error("uncaught error in reader worker {worker}, contained: {error}", {
    worker: engine?.workerId ?? "?",
    error: error instanceof Error ? (error.stack ?? error.message) : String(error),
  });
}

self.onmessage = async (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  switch (message.type) {
    case "start":
      try {
        await setupLogging(message.config.sipedge.log_level, message.config.sipedge.log_format);
        engine = new WorkerEngine({
          config: message.config,
          workerId: message.workerId,
          shared: message.shared,
          directory: message.directory,
          handoffPorts: message.handoffPorts,
          handoffProgress: message.handoffProgress,
          blacklist: message.blacklist,
          onBlacklisted: (entry) => post({ type: "blacklisted", entry }),
          sources: message.sources,
          bans: message.bans,
          onFlooded: (entry) => post({ type: "flooded", entry }),
        });
        post({
          type: "started",
          id: message.id,
          listeners: await engine.start(),
          thread: threadId(),
        });
      } catch (error) {
        post({ type: "failed", id: message.id, error: (error as Error).message });
      }
      return;
    case "prepare":
      try {
        if (engine === undefined) throw new Error("worker not started");
        post({
          type: "prepared",
          id: message.id,
          listeners: await engine.prepareReload(message.config),
        });
      } catch (error) {
        post({ type: "failed", id: message.id, error: (error as Error).message });
      }
      return;
    case "commit": {
      const logging = JSON.stringify([
        engine?.config.sipedge.log_level,
        engine?.config.sipedge.log_format,
      ]);
      engine?.commitReload();
      const now = [engine?.config.sipedge.log_level, engine?.config.sipedge.log_format];
      if (engine !== undefined && JSON.stringify(now) !== logging) {
        await setupLogging(engine.config.sipedge.log_level, engine.config.sipedge.log_format);
      }
      post({ type: "committed", id: message.id });
      return;
    }
    case "abort":
      await engine?.abortReload();
      post({ type: "aborted", id: message.id });
      return;
    case "stop":
      stopping = true;
      await engine?.stop(message.timeoutMs);
      post({ type: "stopped", id: message.id });
      self.close(); // a clean exit (lets --cpu-prof write this worker's profile)
      return;
    case "stats":
      post({
        type: "stats",
        id: message.id,
        counters: { ...(engine?.counters.values ?? {}) },
        connections: engine?.connectionCount ?? 0,
        tables: engine?.counters.snapshotTables() ?? emptyTables(),
        // connectionCount > 0 means the connection manager exists (the engine started).
        connectionStates: engine?.connectionCount ? engine.connections.countByState() : {},
        heapUsedBytes: Deno.memoryUsage().heapUsed,
      });
      return;
    case "connections":
      post({ type: "connections", id: message.id, connections: engine?.listConnections() ?? [] });
      return;
    case "blacklist":
      engine?.applyBlacklist(message.change);
      return;
    case "bans":
      engine?.applyBans(message.change);
      return;
    case "peer_down":
      engine?.peerDown(message.worker);
      return;
    case "peer_up":
      engine?.peerUp(message.worker, message.port);
      return;
  }
};
