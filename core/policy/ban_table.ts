/**
 * Banned sources (the flood guard's bans): entries keyed by source group — an IPv4 address, an
 * IPv6 prefix (`2001:db8:1:2::/64`) — each with a reason, the rate seen and an expiry, capped in
 * size. Shaped like the destination blacklist (./blacklist_table.ts) and kept apart from it:
 * the blacklist holds destinations sends must not go to, this table sources whose traffic is
 * dropped. The supervisor holds the authoritative table and every worker a copy, kept in step
 * by messages; each worker looks its copy up without locking.
 * @module
 */

/** Why a source is banned: over its rate (the flood guard), or an operator (control API). */
export type BanReason = "flood" | "admin";

/** One banned source group. */
export interface BanEntry {
  /** The group: `192.0.2.9`, or an IPv6 prefix `2001:db8:1:2::/64`. */
  key: string;
  /** The address that was seen or given. */
  address: string;
  reason: BanReason;
  /** Requests per second seen when the ban started (0 for `admin`). */
  rate: number;
  /** ms since epoch. */
  addedAt: number;
  /** ms since epoch. */
  expiresAt: number;
}

/** A ban change to apply to a worker's copy. */
export type BanChange =
  | { op: "add"; entry: BanEntry }
  | { op: "delete"; key: string }
  | { op: "clear" };

/** A size-capped table of bans with expiry. */
export class BanTable {
  #entries = new Map<string, BanEntry>();
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
  add(entry: BanEntry): void {
    this.#entries.delete(entry.key);
    if (this.#entries.size >= this.#max) this.purge(entry.addedAt);
    while (this.#entries.size >= this.#max) {
      let soonest: BanEntry | undefined;
      for (const e of this.#entries.values()) {
        if (soonest === undefined || e.expiresAt < soonest.expiresAt) soonest = e;
      }
      this.#entries.delete(soonest!.key);
    }
    this.#entries.set(entry.key, entry);
  }

  /** The live entry for `key`, or undefined (an expired entry is removed). */
  get(key: string, now: number): BanEntry | undefined {
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

  /** Removes expired entries and returns them. */
  purge(now: number): BanEntry[] {
    const expired: BanEntry[] = [];
    for (const [key, e] of this.#entries) {
      if (e.expiresAt > now) continue;
      this.#entries.delete(key);
      expired.push(e);
    }
    return expired;
  }

  /** Live entries, soonest expiry first. */
  list(now: number): BanEntry[] {
    this.purge(now);
    return [...this.#entries.values()].sort((a, b) => a.expiresAt - b.expiresAt);
  }
}
