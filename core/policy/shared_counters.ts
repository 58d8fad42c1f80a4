/**
 * Counters shared by all reader workers, in one SharedArrayBuffer updated with Atomics (the
 * seed's "proper locking"): bytes queued in the whole process (for `wq_max`), open connections
 * per transport (`max_connections`) and inbound connections per source IP (`max_connections_
 * per_ip`, in hashed buckets: O(1), and a collision can only make the limit stricter).
 *
 * Every reservation is add-then-check: if the new total is over the limit the add is undone
 * and the caller refused, so concurrent reservations can never push a total past its limit.
 * @module
 */

const QUEUED = 0;
const TRANSPORT_BASE = 1;
/** Transports that can be counted (slots). */
export const MAX_TRANSPORTS = 15;
const IP_BASE = TRANSPORT_BASE + MAX_TRANSPORTS;
const IP_BUCKETS = 1 << 16;

/** Creates the shared buffer (in the supervisor; handed to every worker). */
export function createSharedBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer((IP_BASE + IP_BUCKETS) * 4);
}

/** A view of the shared counters. */
export class SharedCounters {
  readonly #cells: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.#cells = new Int32Array(buffer);
  }

  /** Bytes queued over all connections. */
  get queuedBytes(): number {
    return Atomics.load(this.#cells, QUEUED);
  }

  /** Reserves `n` queued bytes unless the total would exceed `max`. */
  reserveQueued(n: number, max: number): boolean {
    return reserve(this.#cells, QUEUED, n, max);
  }

  /** Gives back queued bytes (written, or dropped with their connection). */
  releaseQueued(n: number): void {
    if (n !== 0) Atomics.sub(this.#cells, QUEUED, n);
  }

  /** Open connections of transport slot `slot`. */
  connections(slot: number): number {
    return Atomics.load(this.#cells, TRANSPORT_BASE + slot);
  }

  /** Takes a connection slot of a transport unless `max` are open. */
  reserveConnection(slot: number, max: number): boolean {
    return reserve(this.#cells, TRANSPORT_BASE + slot, 1, max);
  }

  /** Gives back a connection slot. */
  releaseConnection(slot: number): void {
    Atomics.sub(this.#cells, TRANSPORT_BASE + slot, 1);
  }

  /** Inbound connections counted for `ip` (its bucket). */
  connectionsFrom(ip: string): number {
    return Atomics.load(this.#cells, IP_BASE + bucketOf(ip));
  }

  /** Counts an inbound connection from `ip` unless `max` are open. */
  reserveFrom(ip: string, max: number): boolean {
    return reserve(this.#cells, IP_BASE + bucketOf(ip), 1, max);
  }

  /** Un-counts an inbound connection from `ip`. */
  releaseFrom(ip: string): void {
    Atomics.sub(this.#cells, IP_BASE + bucketOf(ip), 1);
  }
}

function reserve(cells: Int32Array, index: number, n: number, max: number): boolean {
  if (Atomics.add(cells, index, n) + n <= max) return true;
  Atomics.sub(cells, index, n);
  return false;
}

function bucketOf(ip: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < ip.length; i++) h = Math.imul(h ^ ip.charCodeAt(i), 0x01000193);
  return (h >>> 0) & (IP_BUCKETS - 1);
}
