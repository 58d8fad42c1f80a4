/**
 * The destination blacklist: entries keyed by `transport:host:port`, each with a reason and an
 * expiry, capped in size. The supervisor holds the authoritative table and every worker a
 * copy, kept in step by messages (entries change rarely; lookups happen per send, so each
 * worker looks up its own copy without locking).
 * @module
 */
import type { FailureReason } from "./failure.ts";

/** Why an entry is there: a failure, or an operator (control API). */
export type BlacklistReason = FailureReason | "admin";

/** One blacklisted destination. */
export interface BlacklistEntry {
  /** `transport:host:port`. */
  key: string;
  reason: BlacklistReason;
  /** ms since epoch. */
  addedAt: number;
  /** ms since epoch. */
  expiresAt: number;
}

/** A size-capped table of blacklist entries with expiry. */
export class BlacklistTable {
  #entries = new Map<string, BlacklistEntry>();
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
  add(entry: BlacklistEntry): void {
    this.#entries.delete(entry.key);
    this.purge(entry.addedAt);
    while (this.#entries.size >= this.#max) {
      let soonest: BlacklistEntry | undefined;
      for (const e of this.#entries.values()) {
        if (soonest === undefined || e.expiresAt < soonest.expiresAt) soonest = e;
      }
      this.#entries.delete(soonest!.key);
    }
    this.#entries.set(entry.key, entry);
  }

  /** The live entry for `key`, or undefined (an expired entry is removed). */
  get(key: string, now: number): BlacklistEntry | undefined {
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

  /** Removes expired entries. */
  purge(now: number): void {
    for (const [key, e] of this.#entries) if (e.expiresAt <= now) this.#entries.delete(key);
  }

  /** Live entries, soonest expiry first. */
  list(now: number): BlacklistEntry[] {
    this.purge(now);
    return [...this.#entries.values()].sort((a, b) => a.expiresAt - b.expiresAt);
  }
}
