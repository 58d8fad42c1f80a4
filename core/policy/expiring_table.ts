/**
 * A size-capped table of entries with an expiry, keyed by string: the shape of the destination
 * blacklist (./blacklist_table.ts) and of the flood guard's bans (./ban_table.ts), two tables
 * with different meanings kept apart. The supervisor holds the authoritative table and every
 * worker a copy, kept in step by messages (entries change rarely; lookups happen per message,
 * so each worker looks up its own copy without locking).
 * @module
 */

/** What every entry has. */
export interface ExpiringEntry {
  key: string;
  /** ms since epoch. */
  addedAt: number;
  /** ms since epoch. */
  expiresAt: number;
}

/** A change to apply to a worker's copy of a table. */
export type TableChange<E extends ExpiringEntry> =
  | { op: "add"; entry: E }
  | { op: "delete"; key: string }
  | { op: "clear" };

/** A size-capped table with expiry. */
export class ExpiringTable<E extends ExpiringEntry> {
  #entries = new Map<string, E>();
  #max: number;

  constructor(maxEntries: number) {
    this.#max = maxEntries;
  }

  /** Number of entries (expired ones included until looked up or purged). */
  get size(): number {
    return this.#entries.size;
  }

  /** Changes the size cap (entries beyond it go at the next add). */
  set maxEntries(max: number) {
    this.#max = max;
  }

  /** Adds or replaces an entry; when full, the entry closest to expiry makes room. */
  add(entry: E): void {
    this.#entries.delete(entry.key);
    if (this.#entries.size >= this.#max) this.purge(entry.addedAt);
    while (this.#entries.size >= this.#max) {
      let soonest: E | undefined;
      for (const e of this.#entries.values()) {
        if (soonest === undefined || e.expiresAt < soonest.expiresAt) soonest = e;
      }
      this.#entries.delete(soonest!.key);
    }
    this.#entries.set(entry.key, entry);
  }

  /** The live entry for `key`, or undefined (an expired entry is removed). */
  get(key: string, now: number): E | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Removes one entry; true when it was there. */
  delete(key: string): boolean {
    return this.#entries.delete(key);
  }

  /** Removes every entry. */
  clear(): void {
    this.#entries.clear();
  }

  /** Applies a change made elsewhere. */
  apply(change: TableChange<E>): void {
    if (change.op === "add") this.add(change.entry);
    else if (change.op === "delete") this.delete(change.key);
    else this.clear();
  }

  /** Removes expired entries and returns them. */
  purge(now: number): E[] {
    const expired: E[] = [];
    for (const [key, e] of this.#entries) {
      if (e.expiresAt > now) continue;
      this.#entries.delete(key);
      expired.push(e);
    }
    return expired;
  }

  /** Live entries, soonest expiry first. */
  list(now: number): E[] {
    this.purge(now);
    return [...this.#entries.values()].sort((a, b) => a.expiresAt - b.expiresAt);
  }
}
