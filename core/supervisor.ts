/**
 * The supervisor (main thread): starts the reader workers, tells them to stop, gathers their
 * counters. Worker 0 starts first so that listeners asked for on port 0 get a real port that
 * the other workers then share through SO_REUSEPORT.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ResolvedConfig } from "./config/load.ts";
import type { FromWorker, ToWorker } from "./worker.ts";

const log = getLogger(["sipedge", "supervisor"]);

/** A bound listener, as workers report it. */
export interface ListenerInfo {
  transport: string;
  hostname: string;
  port: number;
}

/** Runs and stops the reader workers. */
export class Supervisor {
  #config: ResolvedConfig;
  #workers: Worker[] = [];
  #listeners: ListenerInfo[] = [];

  constructor(config: ResolvedConfig) {
    this.#config = config;
  }

  /** Number of reader workers (resolving `workers = 0` to the CPU count). */
  get workerCount(): number {
    return this.#config.sipedge.workers || navigator.hardwareConcurrency || 1;
  }

  /** Bound listeners (after start). */
  get listeners(): readonly ListenerInfo[] {
    return this.#listeners;
  }

  /** Starts every worker; rejects (after stopping those started) if one fails. */
  async start(): Promise<void> {
    let config = this.#config;
    try {
      for (let id = 0; id < this.workerCount; id++) {
        const listeners = await this.#startWorker(config, id);
        if (id === 0) {
          this.#listeners = listeners;
          // Port 0 → the port worker 0 got, so every worker listens on the same one.
          config = {
            ...config,
            listen: config.listen.map((l, i) => ({ ...l, port: listeners[i].port })),
          };
        }
      }
    } catch (error) {
      await this.stop(0);
      throw error;
    }
  }

  /** Stops every worker: listeners close, queued data gets up to `timeoutMs` to go out. */
  async stop(timeoutMs: number): Promise<void> {
    const workers = this.#workers;
    this.#workers = [];
    await Promise.all(workers.map(async (worker) => {
      try {
        await this.#request(worker, { type: "stop", timeoutMs }, "stopped", timeoutMs + 2000);
        await new Promise((resolve) => setTimeout(resolve, 50)); // it closes itself
      } catch (error) {
        log.warn("worker did not stop cleanly: {error}", { error: (error as Error).message });
      }
      worker.terminate();
    }));
  }

  /** Sums the counters of all workers. */
  async stats(): Promise<{ counters: Record<string, number>; connections: number }> {
    const replies = await Promise.all(
      this.#workers.map((w) => this.#request(w, { type: "stats" }, "stats", 2000)),
    );
    const counters: Record<string, number> = {};
    let connections = 0;
    for (const r of replies) {
      if (r.type !== "stats") continue;
      connections += r.connections;
      for (const [k, v] of Object.entries(r.counters)) counters[k] = (counters[k] ?? 0) + v;
    }
    return { counters, connections };
  }

  async #startWorker(config: ResolvedConfig, workerId: number): Promise<ListenerInfo[]> {
    const worker = new Worker(new URL("./worker.ts", import.meta.url), {
      type: "module",
      name: `reader-${workerId}`,
    });
    this.#workers.push(worker);
    const reply = await this.#request(
      worker,
      { type: "start", config, workerId },
      "started",
      30_000,
    );
    if (reply.type !== "started") throw new Error("unexpected worker reply");
    return reply.listeners;
  }

  /** Sends a message and waits for the reply of type `expect` (or `failed`). */
  #request(worker: Worker, message: ToWorker, expect: FromWorker["type"], timeoutMs: number) {
    return new Promise<FromWorker>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`worker did not answer "${message.type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      const onMessage = (event: MessageEvent<FromWorker>) => {
        if (event.data.type === "failed") {
          cleanup();
          reject(new Error(event.data.error));
        } else if (event.data.type === expect) {
          cleanup();
          resolve(event.data);
        }
      };
      const onError = (event: ErrorEvent) => {
        event.preventDefault();
        cleanup();
        reject(new Error(`worker crashed: ${event.message}`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        worker.removeEventListener("message", onMessage);
        worker.removeEventListener("error", onError);
      };
      worker.addEventListener("message", onMessage);
      worker.addEventListener("error", onError);
      worker.postMessage(message);
    });
  }
}
