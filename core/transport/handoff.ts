/**
 * Hand-off between reader workers: a message for a connection another worker owns (a
 * client's flow, the connection a request came in on) is passed to that worker, which writes
 * it through its own write path -- queue limits, timeouts, async mode and keepalive apply there.
 *
 * One MessagePort per pair of workers (the supervisor creates the channels; nothing goes
 * through the main thread). Everything one event handed to one worker goes in one message: the
 * bytes packed into one ArrayBuffer that is transferred, not copied again. Per pair, messages
 * arrive in the order they were sent, so the order per connection is kept. The choice of
 * channel was measured (BENCHMARKS.md, scripts/bench_handoff.ts).
 *
 * A batch is kept by its sender until the receiver has handled it: each receiver writes the
 * number of the last batch it handled from each sender into a shared progress table (one
 * Atomics store per batch, no reply message). When a worker dies or hangs, its peers answer
 * what they handed it and it never handled (`onLost`: a request's sender gets 503).
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

/** What goes over a port: the batch's number, its bytes and, per message, the rest. */
interface Batch {
  seq: number;
  data: ArrayBuffer;
  items: Omit<Handoff, "bytes">[];
  lengths: number[];
}

/** Creates the progress table for `workers` workers (in the supervisor). */
export function createHandoffProgress(workers: number): SharedArrayBuffer {
  return new SharedArrayBuffer(workers * workers * 4);
}

/** Options for a {@link HandoffChannel}. */
export interface HandoffChannelOptions {
  /** This worker's id. */
  workerId: number;
  /** The progress table (see {@link createHandoffProgress}). */
  progress: SharedArrayBuffer;
  /** Ports by peer worker id (none for this worker itself). */
  ports: Record<number, MessagePort>;
  /** Called for every message handed to this worker, in order. */
  onHandoff(handoff: Handoff): void;
  /** Called for every message handed to a peer that went away before handling it. */
  onLost(handoff: Handoff): void;
}

/** A peer: its port, what is waiting to go, and what went and is not handled yet. */
interface Peer {
  port: MessagePort;
  queue: Handoff[];
  sent: { seq: number; handoffs: Handoff[] }[];
  seq: number;
}

/** This worker's ports to every other worker. */
export class HandoffChannel {
  #options: HandoffChannelOptions;
  #progress: Int32Array;
  #workers: number;
  #peers = new Map<number, Peer>();
  #flushQueued = false;

  constructor(options: HandoffChannelOptions) {
    this.#options = options;
    this.#progress = new Int32Array(options.progress);
    this.#workers = Math.round(Math.sqrt(this.#progress.length));
    for (const [peer, port] of Object.entries(options.ports)) this.connect(Number(peer), port);
  }

  /** Whether there is a channel to `worker`. */
  reaches(worker: number): boolean {
    return this.#peers.has(worker);
  }

  /** Hands `handoff` to `worker` (sent with everything else handed over in this event). */
  send(worker: number, handoff: Handoff): void {
    this.#peers.get(worker)!.queue.push(handoff);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
  }

  /** Opens the channel to a (new) peer worker. */
  connect(worker: number, port: MessagePort): void {
    this.disconnect(worker);
    const me = this.#options.workerId;
    port.onmessage = (event: MessageEvent<Batch>) => {
      const { seq, data, items, lengths } = event.data;
      const bytes = new Uint8Array(data);
      let at = 0;
      for (let i = 0; i < items.length; i++) {
        const length = lengths[i];
        this.#options.onHandoff({ ...items[i], bytes: bytes.subarray(at, at + length) });
        at += length;
      }
      Atomics.store(this.#progress, me * this.#workers + worker, seq);
    };
    this.#peers.set(worker, { port, queue: [], sent: [], seq: 0 });
  }

  /**
   * Closes the channel to a peer that went away: what was handed to it and not handled, and
   * what still waited to go, is given to `onLost`.
   */
  disconnect(worker: number): void {
    const peer = this.#peers.get(worker);
    if (peer === undefined) return;
    this.#peers.delete(worker);
    peer.port.close();
    this.#prune(worker, peer);
    for (const batch of peer.sent) for (const h of batch.handoffs) this.#options.onLost(h);
    for (const h of peer.queue) this.#options.onLost(h);
  }

  /** Forgets batches the peers have handled (also done on every send). */
  prune(): void {
    for (const [worker, peer] of this.#peers) this.#prune(worker, peer);
  }

  /** Closes every port (shutdown: nothing is answered). */
  close(): void {
    for (const peer of this.#peers.values()) peer.port.close();
    this.#peers.clear();
  }

  #prune(worker: number, peer: Peer): void {
    if (peer.sent.length === 0) return;
    const handled = Atomics.load(this.#progress, worker * this.#workers + this.#options.workerId);
    let done = 0;
    while (done < peer.sent.length && peer.sent[done].seq <= handled) done++;
    if (done > 0) peer.sent.splice(0, done);
  }

  #flush(): void {
    this.#flushQueued = false;
    for (const [worker, peer] of this.#peers) {
      const queue = peer.queue;
      if (queue.length === 0) continue;
      this.#prune(worker, peer);
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
      const seq = ++peer.seq;
      peer.sent.push({ seq, handoffs: queue });
      peer.queue = [];
      const batch: Batch = { seq, data: packed.buffer, items, lengths };
      peer.port.postMessage(batch, [packed.buffer]);
    }
  }
}
