/**
 * Hand-off between reader workers: a message for a connection another worker owns (a
 * client's flow, the connection a request came in on) is passed to that worker, which writes
 * it through its own write path — queue limits, timeouts, async mode and keepalive apply there.
 *
 * One MessagePort per pair of workers (the supervisor creates the channels; nothing goes
 * through the main thread). Everything one event handed to one worker goes in one message: the
 * bytes packed into one ArrayBuffer that is transferred, not copied again. Per pair, messages
 * arrive in the order they were sent, so the order per connection is kept. The choice of
 * channel was measured (BENCHMARKS.md, scripts/bench_handoff.ts).
 * @module
 */
import type { Destination } from "./destination.ts";

/** A message handed to the worker that owns `connectionId`. */
export interface Handoff {
  connectionId: number;
  bytes: Uint8Array;
  /**
   * When the connection is gone (or, with `key`, is not the one expected): send here instead
   * (a response to its Via address, a request to the client's address). Undefined: the
   * message fails with `flow_failed` (a request for a flow that closed gets 430).
   */
  fallback?: Destination;
  /** The connection must have this destination key (`tcp:ip:port`): a directory lookup's check. */
  key?: string;
}

/** What goes over a port: the batch's bytes and, per message, its length and the rest. */
interface Batch {
  data: ArrayBuffer;
  items: Omit<Handoff, "bytes">[];
  lengths: number[];
}

/** Options for a {@link HandoffChannel}. */
export interface HandoffChannelOptions {
  /** Ports by peer worker id (none for this worker itself). */
  ports: Record<number, MessagePort>;
  /** Called for every message handed to this worker, in order. */
  onHandoff(handoff: Handoff): void;
}

/** This worker's ports to every other worker. */
export class HandoffChannel {
  #ports = new Map<number, MessagePort>();
  #pending = new Map<number, Handoff[]>();
  #flushQueued = false;

  constructor(options: HandoffChannelOptions) {
    for (const [peer, port] of Object.entries(options.ports)) {
      this.#ports.set(Number(peer), port);
      port.onmessage = (event: MessageEvent<Batch>) => {
        const { data, items, lengths } = event.data;
        const bytes = new Uint8Array(data);
        let at = 0;
        for (let i = 0; i < items.length; i++) {
          const length = lengths[i];
          options.onHandoff({ ...items[i], bytes: bytes.subarray(at, at + length) });
          at += length;
        }
      };
    }
  }

  /** Whether there is a channel to `worker`. */
  reaches(worker: number): boolean {
    return this.#ports.has(worker);
  }

  /** Hands `handoff` to `worker` (sent with everything else handed over in this event). */
  send(worker: number, handoff: Handoff): void {
    let queue = this.#pending.get(worker);
    if (queue === undefined) this.#pending.set(worker, queue = []);
    queue.push(handoff);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
  }

  /** Closes every port. */
  close(): void {
    for (const port of this.#ports.values()) port.close();
    this.#ports.clear();
  }

  #flush(): void {
    this.#flushQueued = false;
    for (const [worker, queue] of this.#pending) {
      if (queue.length === 0) continue;
      const port = this.#ports.get(worker);
      let size = 0;
      for (const h of queue) size += h.bytes.length;
      const packed = new Uint8Array(size);
      const items: Omit<Handoff, "bytes">[] = [];
      const lengths: number[] = [];
      let at = 0;
      for (const { bytes, ...rest } of queue) {
        packed.set(bytes, at);
        at += bytes.length;
        items.push(rest);
        lengths.push(bytes.length);
      }
      queue.length = 0;
      port?.postMessage({ data: packed.buffer, items, lengths } satisfies Batch, [packed.buffer]);
    }
  }
}
