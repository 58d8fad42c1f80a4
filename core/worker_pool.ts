/**
 * The reader workers, supervised: started in order, asked and answered by request id, watched
 * for progress and replaced when one hangs or exits.
 *
 * Liveness needs no messages: every worker's event loop advances a heartbeat in the shared
 * counters (core/policy/shared_counters.ts) and the pool checks it on a timer. A worker whose
 * heartbeat stands still for `worker_hang_timeout`, that says it is closing, or whose error
 * reaches this thread is terminated and replaced by a new worker with the config in force (it
 * opens the same listeners). What it held is taken back first: its share of the shared counters,
 * its entries in the connection directory; the other workers answer what they had handed it.
 * Restarts back off (immediately after a long run; then 1 s doubling to 60 s) while a worker
 * keeps dying, and a worker whose `start` fails counts as a failed start.
 *
 * Deno cannot stop a thread that runs JavaScript without ever yielding: `Worker.terminate()`
 * then leaves the thread running, and its listening sockets keep taking their share of new
 * connections (measured with Deno 2.9.6; see docs/decisions.md). The pool notices (the thread
 * is still there after a grace period) and, by `on_stuck_worker`, exits for the service manager
 * to start sipedge afresh, or keeps serving with the replacement and reports it.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ResolvedConfig } from "./config/load.ts";
import type { BlacklistEntry } from "./policy/blacklist_table.ts";
import { heartbeatInterval, type SharedCounters } from "./policy/shared_counters.ts";
import type { BanEntry } from "./policy/ban_table.ts";
import type { SourceTable } from "./policy/source_table.ts";
import type { ConnectionDirectory } from "./transport/connection_directory.ts";
import type { BoundListener } from "./worker_engine.ts";
import type { FromWorker, ToWorker } from "./worker.ts";

const log = getLogger(["sipedge", "supervisor"]);

/** Why a worker was replaced. */
export type RestartReason = "hang" | "exit" | "crash" | "start_failed";
export const RESTART_REASONS: readonly RestartReason[] = ["hang", "exit", "crash", "start_failed"];

/** A worker that ran this long before dying is restarted at once (no back-off). */
const STABLE_MS = 60_000;
const FIRST_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 60_000;
/**
 * How long a terminated worker's thread may take to end before it counts as stuck: a long loop
 * that ends by itself releases the thread, and only one that does not may stop sipedge. At
 * least 10 s, and 5 × worker_hang_timeout (so a hang of a few timeouts is not taken for one that
 * never ends).
 */
function stuckGraceMs(hangTimeoutMs: number): number {
  return Math.max(10_000, 5 * hangTimeoutMs);
}

type Request = ToWorker extends infer T ? T extends { id: number } ? T : never : never;
/** A request to a worker, without its id. */
export type RequestBody = Request extends infer T ? T extends Request ? Omit<T, "id"> : never
  : never;

/** One place in the pool: the worker in it and its history. */
interface Slot {
  id: number;
  worker: Worker | undefined;
  state: "starting" | "up" | "restarting" | "stopped";
  /** The OS thread of the worker (from its `started` reply), to see whether it ended. */
  thread: number | undefined;
  upAt: number;
  beat: number;
  beatAt: number;
  backoffMs: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** Options for a {@link WorkerPool}. */
export interface WorkerPoolOptions {
  count: number;
  /** The shared counters buffer and the supervisor's view of it. */
  shared: SharedArrayBuffer;
  counters: SharedCounters;
  directory: SharedArrayBuffer;
  directoryView: ConnectionDirectory;
  handoffProgress: SharedArrayBuffer;
  /** The config a (re)started worker gets: the one in force. */
  config(): ResolvedConfig;
  /** The blacklist a (re)started worker starts with. */
  blacklist(): BlacklistEntry[];
  /** A worker blacklisted a destination (copy it to the others). */
  onBlacklisted(entry: BlacklistEntry, from: Worker): void;
  /** The flood guard's source table and the supervisor's view of it. */
  sources: SharedArrayBuffer;
  sourcesView: SourceTable;
  /** The bans a (re)started worker starts with. */
  bans(): BanEntry[];
  /** A worker banned a source (log it, copy it to the others). */
  onFlooded(entry: BanEntry, from: Worker): void;
  /** Runs `task` after the reloads and restarts before it (one at a time, in order). */
  serialize<T>(task: () => Promise<T>): Promise<T>;
  /** A worker's thread could not be stopped and `on_stuck_worker` says exit. */
  onStuckExit(): void;
}

/** What the pool reports for /status and /metrics. */
export interface PoolStatus {
  configured: number;
  up: number[];
  restarting: number[];
  restarts: Record<RestartReason, number>;
  connectionsLost: number;
  /** Workers whose thread could not be stopped (still running, holding their sockets). */
  stuck: number;
}

/** The reader workers. */
export class WorkerPool {
  #options: WorkerPoolOptions;
  #slots: Slot[];
  #nextId = 1;
  #pending = new Map<
    number,
    { worker: Worker; resolve: (m: FromWorker) => void; reject: (e: Error) => void }
  >();
  #check: ReturnType<typeof setTimeout> | undefined;
  #stopping = false;
  #restarts = Object.fromEntries(RESTART_REASONS.map((r) => [r, 0])) as Record<
    RestartReason,
    number
  >;
  #connectionsLost = 0;
  #stuck = 0;

  constructor(options: WorkerPoolOptions) {
    this.#options = options;
    this.#slots = Array.from({ length: options.count }, (_, id) => ({
      id,
      worker: undefined,
      state: "stopped",
      thread: undefined,
      upAt: 0,
      beat: 0,
      beatAt: 0,
      backoffMs: 0,
      timer: undefined,
    }));
  }

  /** The workers that are up, with their ids. */
  up(): { id: number; worker: Worker }[] {
    return this.#slots.filter((s) => s.state === "up").map((s) => ({
      id: s.id,
      worker: s.worker!,
    }));
  }

  /** What /status and /metrics show. */
  status(): PoolStatus {
    return {
      configured: this.#slots.length,
      up: this.#slots.filter((s) => s.state === "up").map((s) => s.id),
      restarting: this.#slots.filter((s) => s.state === "restarting" || s.state === "starting")
        .map((s) => s.id),
      restarts: { ...this.#restarts },
      connectionsLost: this.#connectionsLost,
      stuck: this.#stuck,
    };
  }

  /**
   * Starts worker `id` with `config` and the hand-off ports to the workers before it; resolves
   * with its bound listeners. Used for the first start, in order (worker 0 first).
   */
  async start(id: number, config: ResolvedConfig): Promise<BoundListener[]> {
    const listeners = await this.#start(this.#slots[id], config);
    if (this.#check === undefined) this.#scheduleCheck();
    return listeners;
  }

  /** Sends a request to a worker and waits for the reply with its id. */
  request(
    worker: Worker,
    body: RequestBody,
    timeoutMs: number,
    transfer: Transferable[] = [],
  ): Promise<FromWorker> {
    const id = this.#nextId++;
    return new Promise<FromWorker>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`worker did not answer "${body.type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        worker,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      worker.postMessage({ ...body, id } as ToWorker, transfer);
    });
  }

  /** Posts a notice (no reply) to every worker that is up, but `except`. */
  broadcast(message: ToWorker, except?: Worker): void {
    for (const { worker } of this.up()) if (worker !== except) worker.postMessage(message);
  }

  /** Stops every worker: queued data gets up to `timeoutMs` to go out. */
  async stop(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#check);
    await Promise.all(this.#slots.map(async (slot) => {
      clearTimeout(slot.timer);
      const worker = slot.worker;
      const wasUp = slot.state === "up";
      slot.state = "stopped";
      slot.worker = undefined;
      if (worker === undefined) return;
      if (wasUp) {
        try {
          await this.request(worker, { type: "stop", timeoutMs }, timeoutMs + 2000);
          await new Promise((resolve) => setTimeout(resolve, 50)); // it closes itself
        } catch (error) {
          log.warn("worker did not stop cleanly: {error}", { error: (error as Error).message });
        }
      }
      this.#rejectPending(worker, "sipedge is stopping");
      worker.terminate();
    }));
  }

  // --- internals ---------------------------------------------------------------------------

  async #start(slot: Slot, config: ResolvedConfig): Promise<BoundListener[]> {
    const worker = new Worker(new URL("./worker.ts", import.meta.url), {
      type: "module",
      name: `reader-${slot.id}`,
    });
    slot.worker = worker;
    slot.state = "starting";
    worker.addEventListener("message", (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      if (message.type === "blacklisted") return this.#options.onBlacklisted(message.entry, worker);
      if (message.type === "flooded") return this.#options.onFlooded(message.entry, worker);
      if (message.type === "exiting") return this.#replace(slot, worker, "exit", message.reason);
      const pending = this.#pending.get(message.id);
      if (pending === undefined) return;
      this.#pending.delete(message.id);
      if (message.type === "failed") pending.reject(new Error(message.error));
      else pending.resolve(message);
    });
    worker.addEventListener("error", (event: ErrorEvent) => {
      event.preventDefault();
      this.#replace(slot, worker, "crash", event.message);
    });
    // A channel to every worker that is up; they get their end once this one has started.
    const ports: Record<number, MessagePort> = {};
    const peerEnds: { worker: Worker; port: MessagePort }[] = [];
    for (const other of this.#slots) {
      if (other === slot || other.state !== "up") continue;
      const channel = new MessageChannel();
      ports[other.id] = channel.port1;
      peerEnds.push({ worker: other.worker!, port: channel.port2 });
    }
    const reply = await this.request(
      worker,
      {
        type: "start",
        config,
        workerId: slot.id,
        shared: this.#options.shared,
        directory: this.#options.directory,
        handoffPorts: ports,
        handoffProgress: this.#options.handoffProgress,
        blacklist: this.#options.blacklist(),
        sources: this.#options.sources,
        bans: this.#options.bans(),
      },
      30_000,
      Object.values(ports),
    );
    if (reply.type !== "started") throw new Error("unexpected worker reply");
    slot.state = "up";
    slot.thread = reply.thread;
    slot.upAt = slot.beatAt = Date.now();
    slot.beat = this.#options.counters.heartbeat(slot.id);
    for (const peer of peerEnds) {
      peer.worker.postMessage({ type: "peer_up", worker: slot.id, port: peer.port }, [peer.port]);
    }
    return reply.listeners;
  }

  /** Looks at the heartbeats at the period the hang timeout in force asks for (reloadable). */
  #scheduleCheck(): void {
    const period = heartbeatInterval(this.#options.config().sipedge.worker_hang_timeout);
    this.#check = setTimeout(() => {
      if (this.#stopping) return;
      this.#checkHeartbeats();
      this.#scheduleCheck();
    }, period);
  }

  #checkHeartbeats(): void {
    const now = Date.now();
    const timeout = this.#options.config().sipedge.worker_hang_timeout;
    for (const slot of this.#slots) {
      if (slot.state !== "up") continue;
      const beat = this.#options.counters.heartbeat(slot.id);
      if (beat !== slot.beat) {
        slot.beat = beat;
        slot.beatAt = now;
      } else if (now - slot.beatAt > timeout) {
        this.#replace(slot, slot.worker!, "hang", `no progress for ${now - slot.beatAt} ms`);
      }
    }
  }

  /** Takes a worker out (terminated, its share reclaimed) and schedules its replacement. */
  #replace(slot: Slot, worker: Worker, reason: RestartReason, detail: string): void {
    if (slot.worker !== worker || this.#stopping) return;
    const wasUp = slot.state === "up";
    slot.worker = undefined;
    slot.state = "restarting";
    this.#rejectPending(worker, `worker ${slot.id} was replaced (${reason}: ${detail})`);
    worker.terminate();
    // The others answer what they handed it and stop handing it anything.
    this.broadcast({ type: "peer_down", worker: slot.id });
    const share = this.#options.counters.reclaim(slot.id);
    this.#options.directoryView.purgeWorker(slot.id);
    this.#options.sourcesView.reclaim(slot.id);
    this.#resetProgress(slot.id);
    this.#restarts[reason]++;
    this.#connectionsLost += share.connections;
    const now = Date.now();
    const ranLong = wasUp && now - slot.upAt >= STABLE_MS;
    slot.backoffMs = ranLong
      ? 0
      : Math.min(MAX_BACKOFF_MS, Math.max(FIRST_BACKOFF_MS, slot.backoffMs * 2));
    log.error(
      "reader worker {worker} replaced ({reason}: {detail}); {connections} connections lost, {bytes} queued bytes dropped; restarting in {delay} ms",
      {
        worker: slot.id,
        reason,
        detail,
        connections: share.connections,
        bytes: share.queuedBytes,
        delay: slot.backoffMs,
      },
    );
    if (reason === "hang") this.#watchThread(slot.id, slot.thread);
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      this.#options.serialize(() => this.#restart(slot)).catch(() => {});
    }, slot.backoffMs);
  }

  async #restart(slot: Slot): Promise<void> {
    if (this.#stopping || slot.state !== "restarting") return;
    try {
      await this.#start(slot, this.#options.config());
      log.info("reader worker {worker} is up again", { worker: slot.id });
    } catch (error) {
      const worker = slot.worker;
      if (worker === undefined || this.#stopping) return;
      slot.state = "up"; // so that #replace takes it out like any other
      slot.upAt = Date.now();
      this.#replace(slot, worker, "start_failed", (error as Error).message);
    }
  }

  /**
   * After a hang: a thread still there once the grace period is over could not be stopped
   * (see the module comment); by `on_stuck_worker`, exit or keep serving.
   */
  #watchThread(workerId: number, thread: number | undefined): void {
    if (thread === undefined) return;
    const grace = stuckGraceMs(this.#options.config().sipedge.worker_hang_timeout);
    setTimeout(() => {
      if (this.#stopping || !threadExists(thread)) return;
      this.#stuck++;
      const action = this.#options.config().sipedge.on_stuck_worker;
      log.error(
        "reader worker {worker}'s thread {thread} cannot be stopped (JavaScript that never yields); its listening sockets keep taking a share of new connections; on_stuck_worker = {action}",
        { worker: workerId, thread, action },
      );
      if (action === "exit") this.#options.onStuckExit();
    }, grace);
  }

  #rejectPending(worker: Worker, why: string): void {
    for (const [id, p] of this.#pending) {
      if (p.worker !== worker) continue;
      this.#pending.delete(id);
      p.reject(new Error(why));
    }
  }

  /** A replaced worker's batches start again from 0, both ways. */
  #resetProgress(workerId: number): void {
    const cells = new Int32Array(this.#options.handoffProgress);
    const n = this.#slots.length;
    for (let other = 0; other < n; other++) {
      Atomics.store(cells, workerId * n + other, 0);
      Atomics.store(cells, other * n + workerId, 0);
    }
  }
}

function threadExists(thread: number): boolean {
  try {
    Deno.statSync(`/proc/self/task/${thread}`);
    return true;
  } catch {
    return false;
  }
}
