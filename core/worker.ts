/**
 * Reader worker entry (a Web Worker). The supervisor sends `start` with the resolved config;
 * the worker loads its plugins, listens, and answers `started` with its bound listeners (or
 * `failed`). `stop` drains and closes everything and answers `stopped`; `stats` answers with
 * this worker's counters.
 * @module
 */
/// <reference lib="deno.worker" />
import type { ResolvedConfig } from "./config/load.ts";
import { setupLogging } from "./logging.ts";
import { WorkerEngine } from "./worker_engine.ts";

/** Messages from the supervisor to a worker. */
export type ToWorker =
  | { type: "start"; config: ResolvedConfig; workerId: number }
  | { type: "stop"; timeoutMs: number }
  | { type: "stats" };

/** Messages from a worker to the supervisor. */
export type FromWorker =
  | { type: "started"; listeners: { transport: string; hostname: string; port: number }[] }
  | { type: "failed"; error: string }
  | { type: "stopped" }
  | { type: "stats"; counters: Record<string, number>; connections: number };

let engine: WorkerEngine | undefined;

function post(message: FromWorker): void {
  self.postMessage(message);
}

self.onmessage = async (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  switch (message.type) {
    case "start":
      try {
        await setupLogging(message.config.sipedge.log_level);
        engine = new WorkerEngine(message.config, message.workerId);
        post({ type: "started", listeners: await engine.start() });
      } catch (error) {
        post({ type: "failed", error: (error as Error).message });
      }
      return;
    case "stop":
      await engine?.stop(message.timeoutMs);
      post({ type: "stopped" });
      self.close(); // a clean exit (lets --cpu-prof write this worker's profile)
      return;
    case "stats":
      post({
        type: "stats",
        counters: { ...(engine?.counters.values ?? {}) },
        connections: engine?.connectionCount ?? 0,
      });
      return;
  }
};
