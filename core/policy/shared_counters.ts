/**
 * Counters shared by all reader workers, in one SharedArrayBuffer updated with Atomics (the
 * seed's "proper locking"): bytes queued in the whole process (for `wq_max`), open connections
 * per transport (`max_connections`) and inbound connections per source IP (`max_connections_
 * per_ip`, in hashed buckets: O(1), and a collision can only make the limit stricter).
 *
 * Every reservation is add-then-check: if the new total is over the limit the add is undone
 * and the caller refused, so concurrent reservations can never push a total past its limit.
 *
 * Each worker also keeps its own share of every total in a row of its own (written only by that
 * worker, with the totals): when a worker dies or hangs, the supervisor takes its share back
 * out of the totals ({@link SharedCounters.reclaim}), so the connections and queued bytes it
 * held stop counting against the limits. The row also holds the worker's heartbeat, which its
 * event loop advances and the supervisor watches.
 * @module
 */

const QUEUED = 0;
const TRANSPORT_BASE = 1;
/** Transports that can be counted (slots). */
export const MAX_TRANSPORTS = 15;
const IP_BASE = TRANSPORT_BASE + MAX_TRANSPORTS;
const IP_BUCKETS = 1 << 16;
/** Cells of the totals, and of each worker's row (its share, then its heartbeat). */
const ROW = IP_BASE + IP_BUCKETS;
const HEARTBEAT = ROW;
const WORKER_ROW = ROW + 1;

/** Creates the shared buffer for `workers` workers (in the supervisor; handed to every worker). */
export function createSharedBuffer(workers = 1): SharedArrayBuffer {
  return new SharedArrayBuffer((ROW + workers * WORKER_ROW) * 4);
}

/** What a worker held, taken back out of the totals. */
export interface ReclaimedShare {
  queuedBytes: number;
  /** Open connections, all transports. */
  connections: number;
}

/** A view of the shared counters: a worker's (its share kept in its row) or the supervisor's. */
export class SharedCounters {
  readonly #cells: Int32Array;
  /** This worker's row (its share), or undefined for the supervisor's view. */
  readonly #row: number | undefined;

  /** `workerId`: the worker whose share this view keeps (none: the supervisor's view). */
  constructor(buffer: SharedArrayBuffer, workerId?: number) {
    this.#cells = new Int32Array(buffer);
    this.#row = workerId === undefined ? undefined : ROW + workerId * WORKER_ROW;
    if (this.#row !== undefined && this.#row + WORKER_ROW > this.#cells.length) {
      throw new RangeError(`no row for worker ${workerId} in the shared counters`);
    }
  }

  /**
   * Marks progress of this worker's event loop (the supervisor watches it), every
   * {@link heartbeatInterval}.
   */
  beat(): void {
    if (this.#row !== undefined) Atomics.add(this.#cells, this.#row + HEARTBEAT, 1);
  }

  /** Worker `workerId`'s heartbeat count. */
  heartbeat(workerId: number): number {
    return Atomics.load(this.#cells, ROW + workerId * WORKER_ROW + HEARTBEAT);
  }

  /**
   * Takes worker `workerId`'s share back out of every total and clears its row (the worker is
   * gone: terminated, or stopped for good). Returns what it held.
   */
  reclaim(workerId: number): ReclaimedShare {
    const row = ROW + workerId * WORKER_ROW;
    const cells = this.#cells;
    const share: ReclaimedShare = { queuedBytes: 0, connections: 0 };
    for (let i = 0; i < ROW; i++) {
      const held = Atomics.exchange(cells, row + i, 0);
      if (held === 0) continue;
      Atomics.sub(cells, i, held);
      if (i === QUEUED) share.queuedBytes = held;
      else if (i < IP_BASE) share.connections += held;
    }
    return share;
  }

  /** Bytes queued over all connections. */
  get queuedBytes(): number {
    return Atomics.load(this.#cells, QUEUED);
  }

  /** Reserves `n` queued bytes unless the total would exceed `max`. */
  reserveQueued(n: number, max: number): boolean {
    return this.#reserve(QUEUED, n, max);
  }

  /** Gives back queued bytes (written, or dropped with their connection). */
  releaseQueued(n: number): void {
    if (n !== 0) this.#release(QUEUED, n);
  }

  /** Open connections of transport slot `slot`. */
  connections(slot: number): number {
    return Atomics.load(this.#cells, TRANSPORT_BASE + slot);
  }

  /** Takes a connection slot of a transport unless `max` are open. */
  reserveConnection(slot: number, max: number): boolean {
    return this.#reserve(TRANSPORT_BASE + slot, 1, max);
  }

  /** Gives back a connection slot. */
  releaseConnection(slot: number): void {
    this.#release(TRANSPORT_BASE + slot, 1);
  }

  /** Inbound connections counted for `ip` (its bucket). */
  connectionsFrom(ip: string): number {
    return Atomics.load(this.#cells, IP_BASE + bucketOf(ip));
  }

  /** Counts an inbound connection from `ip` unless `max` are open. */
  reserveFrom(ip: string, max: number): boolean {
    return this.#reserve(IP_BASE + bucketOf(ip), 1, max);
  }

  /** Un-counts an inbound connection from `ip`. */
  releaseFrom(ip: string): void {
    this.#release(IP_BASE + bucketOf(ip), 1);
  }

  /** Add-then-check on the total; on success the worker's share grows too. */
  #reserve(index: number, n: number, max: number): boolean {
    const cells = this.#cells;
    if (Atomics.add(cells, index, n) + n > max) {
      Atomics.sub(cells, index, n);
      return false;
    }
    if (this.#row !== undefined) Atomics.add(cells, this.#row + index, n);
    return true;
  }

  #release(index: number, n: number): void {
    Atomics.sub(this.#cells, index, n);
    if (this.#row !== undefined) Atomics.sub(this.#cells, this.#row + index, n);
  }
}

function bucketOf(ip: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < ip.length; i++) h = Math.imul(h ^ ip.charCodeAt(i), 0x01000193);
  return (h >>> 0) & (IP_BUCKETS - 1);
}

/**
 * How often a worker beats and the supervisor looks: a fifth of `worker_hang_timeout`, between
 * 100 ms and 1 s. A hang is seen between the timeout and the timeout plus two periods after the
 * last beat. Why not faster: each beat and each look wakes a thread, and at rest those wake-ups
 * are most of what sipedge costs (250 ms for both was 4 wake-ups a second per thread, with the
 * default timeout of 5 s one is enough).
 */
export function heartbeatInterval(hangTimeoutMs: number): number {
  if (!(hangTimeoutMs > 0)) return 1000; // never a zero-delay timer from a missing setting
  return Math.max(100, Math.min(1000, Math.floor(hangTimeoutMs / 5)));
}
