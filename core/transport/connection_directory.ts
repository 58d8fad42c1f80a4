/**
 * The connection directory, shared by every reader worker (one SharedArrayBuffer, Atomics):
 * which worker owns a connection, and which connection a client opened from an address.
 *
 * **Ids name their owner.** A connection id is `sequence * MAX_WORKERS + workerId`, so the
 * owner of any id is `id % MAX_WORKERS` -- no lookup at all. Each worker's sequence lives in
 * this buffer, not in the worker: a worker started again in the same place (a replaced worker)
 * goes on from where the last one stopped, so an id is never given to two connections in one
 * process. That is the generation: a message for a connection that closed can never reach a
 * newer connection, because no newer connection has its id.
 *
 * **Client addresses.** Connections clients opened are published under their address
 * (`transport:ip:port`, the key sipedge reuses connections by), so that a request for a
 * client's address finds the client's connection from any worker. A bucketed hash table with
 * two choices: a key may sit in either of two buckets of 8 entries; readers scan both (16
 * entries, no locks, no probing chains), the owner inserts into the emptier one with a
 * compare-and-exchange and removes its own entries. A lookup is a hint: a torn or stale read
 * (the entry reused between two loads) is caught by the owner, which checks the connection's
 * address before writing anything.
 * @module
 */

/** Ids are `sequence * MAX_WORKERS + workerId`: the owner is `id % MAX_WORKERS`. */
export const MAX_WORKERS = 256;

const WAYS = 8;
/** Int32 cells per entry: tag, id low 32 bits, id high bits, spare. */
const CELLS = 4;
const EMPTY = 0;
/** An entry being written (readers skip it). */
const BUSY = -1;
const TWO_32 = 2 ** 32;

/** Smallest and largest number of address entries. */
export const MIN_DIRECTORY_ENTRIES = 1 << 12;
export const MAX_DIRECTORY_ENTRIES = 1 << 22;

/**
 * Creates the directory's buffer (in the supervisor) for about `entries` published addresses
 * (rounded up to a power of two, at least twice the number asked for, so buckets rarely fill).
 */
export function createDirectoryBuffer(entries: number): SharedArrayBuffer {
  const wanted = Math.min(MAX_DIRECTORY_ENTRIES, Math.max(MIN_DIRECTORY_ENTRIES, entries * 2));
  const size = 2 ** Math.ceil(Math.log2(wanted));
  // Sequences first (one float64 per worker), then the entries.
  return new SharedArrayBuffer(MAX_WORKERS * 8 + size * CELLS * 4);
}

/** The owner of a connection id. */
export function ownerOf(id: number): number {
  return id % MAX_WORKERS;
}

/** A view of the shared connection directory. */
export class ConnectionDirectory {
  readonly #sequences: Float64Array;
  readonly #cells: Int32Array;
  readonly #bucketMask: number;

  constructor(buffer: SharedArrayBuffer) {
    this.#sequences = new Float64Array(buffer, 0, MAX_WORKERS);
    this.#cells = new Int32Array(buffer, MAX_WORKERS * 8);
    this.#bucketMask = this.#cells.length / CELLS / WAYS - 1;
  }

  /** Number of address entries the table holds. */
  get capacity(): number {
    return this.#cells.length / CELLS;
  }

  /**
   * A new connection id owned by `workerId`. Only that worker calls this for its own id (its
   * sequence has one writer), so a plain store is enough.
   */
  nextId(workerId: number): number {
    const sequence = this.#sequences[workerId] + 1;
    this.#sequences[workerId] = sequence;
    return sequence * MAX_WORKERS + workerId;
  }

  /**
   * Publishes `key` -> `id` (by the connection's owner). Returns the entry's index, for
   * {@link unpublish}, or -1 when both buckets are full (the connection is then reachable by
   * address only from its own worker).
   */
  publish(key: string, id: number): number {
    const cells = this.#cells;
    const { tag, first, second } = this.#place(key);
    const a = this.#free(first);
    const b = this.#free(second);
    const order = b > a ? [second, first] : [first, second];
    for (const bucket of order) {
      for (let way = 0; way < WAYS; way++) {
        const entry = (bucket * WAYS + way) * CELLS;
        if (Atomics.compareExchange(cells, entry, EMPTY, BUSY) !== EMPTY) continue;
        Atomics.store(cells, entry + 1, id % TWO_32 | 0);
        Atomics.store(cells, entry + 2, Math.floor(id / TWO_32));
        Atomics.store(cells, entry, tag);
        return entry;
      }
    }
    return -1;
  }

  /** Removes an entry this worker published (`entry` from {@link publish}). */
  unpublish(entry: number, id: number): void {
    if (entry < 0 || this.#idAt(entry) !== id) return;
    Atomics.store(this.#cells, entry, EMPTY);
  }

  /** The id published under `key`, if any: a hint the owner verifies. */
  lookup(key: string): number | undefined {
    const cells = this.#cells;
    const { tag, first, second } = this.#place(key);
    for (const bucket of [first, second]) {
      for (let way = 0; way < WAYS; way++) {
        const entry = (bucket * WAYS + way) * CELLS;
        if (Atomics.load(cells, entry) !== tag) continue;
        const id = this.#idAt(entry);
        if (Atomics.load(cells, entry) === tag) return id;
      }
    }
    return undefined;
  }

  /** Removes every entry owned by `workerId` (a worker that is gone; its connections are too). */
  purgeWorker(workerId: number): number {
    const cells = this.#cells;
    let removed = 0;
    for (let entry = 0; entry < cells.length; entry += CELLS) {
      const tag = Atomics.load(cells, entry);
      if (tag === EMPTY || tag === BUSY) continue;
      if (ownerOf(this.#idAt(entry)) !== workerId) continue;
      if (Atomics.compareExchange(cells, entry, tag, EMPTY) === tag) removed++;
    }
    return removed;
  }

  #idAt(entry: number): number {
    const low = Atomics.load(this.#cells, entry + 1) >>> 0;
    return Atomics.load(this.#cells, entry + 2) * TWO_32 + low;
  }

  #free(bucket: number): number {
    let free = 0;
    for (let way = 0; way < WAYS; way++) {
      if (Atomics.load(this.#cells, (bucket * WAYS + way) * CELLS) === EMPTY) free++;
    }
    return free;
  }

  /** The key's tag (never EMPTY or BUSY) and its two buckets. */
  #place(key: string): { tag: number; first: number; second: number } {
    // Two FNV-1a hashes with different offsets.
    let h1 = 0x811c9dc5;
    let h2 = 0x01000193 ^ key.length;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    }
    h2 ^= h2 >>> 13;
    const first = (h1 >>> 0) & this.#bucketMask;
    let second = (h2 >>> 0) & this.#bucketMask;
    if (second === first) second = (first + 1) & this.#bucketMask;
    const tag = ((h1 ^ (h2 >>> 7)) & 0x3fffffff) | 0x40000000;
    return { tag, first, second };
  }
}
