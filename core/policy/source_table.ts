/**
 * The flood guard's table of request sources, shared by every reader worker (one
 * SharedArrayBuffer created by the supervisor, Atomics): one token bucket per source group
 * (an IPv4 address, an IPv6 prefix), so a source is counted once whichever workers its
 * connections and datagrams land in.
 *
 * **Buckets.** A source sits in one of two buckets of 8 entries chosen by two hashes of its
 * address (like the connection directory): a lookup scans 16 entries, no locks, no chains.
 * An entry is claimed with a compare-and-exchange on its tag (EMPTY or a victim's tag -> BUSY),
 * its key written, then its tag published. When both buckets are full, the least active
 * entry that is not banned is evicted (its last request is the oldest): memory is bounded
 * whatever the number of sources; a source evicted and seen again starts with a full bucket.
 *
 * **Token bucket as one word (GCRA).** The bucket of `burst` tokens refilled at `rate` per
 * second is kept as its theoretical arrival time `tat` (µs, wrapping Int32): a request of cost
 * `c` (weight × 1/rate) is allowed when `max(tat, now) + c - now <= burst/rate`, and then
 * `tat` becomes `max(tat, now) + c`, written with a compare-and-exchange (retried when another
 * worker wrote first). One word, so refill and take can never tear.
 *
 * **Bans.** The first worker whose request finds the bucket empty sets the entry's `ban` word
 * (expiry, in seconds) with a compare-and-exchange from 0: exactly one worker reports the ban
 * to the supervisor; the others see the word and drop without reporting. The supervisor keeps
 * the authoritative ban table and clears the word when the ban ends ({@link unban}); a word
 * left by a worker that died before reporting expires by itself.
 *
 * Each entry is 16 Int32 cells (64 bytes, one cache line, so two busy sources never share a
 * line): tag, key (4 words), tat, seen (s), ban (s), window (s), count this second, count the
 * second before. The table holds a power of two of entries, at least `max_sources`.
 * @module
 */
import type { IpPrefix } from "./ip_prefix.ts";
import { MAX_WORKERS } from "../transport/connection_directory.ts";

const WAYS = 8;
/** Int32 cells per entry. */
export const ENTRY_CELLS = 16;
/** Compare-exchange retries of one take before it gives up (see `take`): never in practice. */
const MAX_TAKE_ATTEMPTS = 1 << 20;
/** Bytes of shared memory per entry. */
export const ENTRY_BYTES = ENTRY_CELLS * 4;
const KEY = 1, TAT = 5, SEEN = 6, BAN = 7, WINDOW = 8, COUNT = 9, PREVIOUS = 10;
const EMPTY = 0;
const BUSY = -1;
/** Header: the epoch (float64), then one cell per worker (the entry it is writing, + 1). */
const HEADER_BYTES = 8 + MAX_WORKERS * 4 + 56;
/** Seconds after which an entry's `tat` is stale (the window is at most 1000 s; Int32 µs wrap at 2147 s). */
const STALE_S = 1500;

/** Smallest and largest number of entries. */
export const MIN_SOURCES = 1024;
export const MAX_SOURCES = 1 << 24;

/** Entries of a table for `maxSources` sources (a power of two, at least that many). */
export function sourceTableEntries(maxSources: number): number {
  const wanted = Math.min(MAX_SOURCES, Math.max(MIN_SOURCES, maxSources));
  return 2 ** Math.ceil(Math.log2(wanted));
}

/** Creates the table's buffer (in the supervisor) for `maxSources` tracked sources. */
export function createSourceTableBuffer(maxSources: number, now = Date.now()): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(HEADER_BYTES + sourceTableEntries(maxSources) * ENTRY_BYTES);
  new Float64Array(buffer, 0, 1)[0] = now;
  return buffer;
}

/** What {@link SourceTable.take} decided. */
export const ALLOWED = 0;
/** The source is banned (by another request, maybe in another worker): drop, say nothing. */
export const BANNED = 1;
/** The bucket is empty and this call started the ban: drop, and report it. */
export const BANNED_NOW = 2;
/** The source could not be tracked (both buckets full of banned sources): allowed. */
export const UNTRACKED = 3;

/** A source's key as the table hashes it (from {@link sourceKey}). */
export interface SourceKey {
  words: Int32Array;
  tag: number;
  first: number;
  second: number;
}

/** A view of the shared source table: a worker's (`workerId`) or the supervisor's. */
export class SourceTable {
  readonly #cells: Int32Array;
  readonly #epoch: number;
  readonly #bucketMask: number;
  /** This worker's header cell (the entry it is claiming), or -1 for the supervisor. */
  readonly #busyCell: number;
  readonly #header: Int32Array;
  /** The rate seen when the last {@link take} returned BANNED_NOW (requests per second). */
  lastRate = 0;

  constructor(buffer: SharedArrayBuffer, workerId?: number) {
    this.#epoch = new Float64Array(buffer, 0, 1)[0];
    this.#cells = new Int32Array(buffer, HEADER_BYTES);
    this.#bucketMask = this.#cells.length / ENTRY_CELLS / WAYS - 1;
    this.#busyCell = workerId === undefined ? -1 : workerId;
    this.#header = new Int32Array(buffer, 8, MAX_WORKERS);
  }

  /** Number of entries. */
  get capacity(): number {
    return this.#cells.length / ENTRY_CELLS;
  }

  /** The key of a source group (an address cut to its prefix). */
  key(group: IpPrefix): SourceKey {
    const w = group.words;
    let h1 = 0x811c9dc5 ^ group.bits, h2 = 0x01000193;
    for (let i = 0; i < 4; i++) {
      h1 = Math.imul(h1 ^ w[i], 0x01000193);
      h1 ^= h1 >>> 15;
      h2 = Math.imul(h2 ^ w[i], 0x5bd1e995);
      h2 ^= h2 >>> 13;
    }
    const first = (h1 >>> 0) & this.#bucketMask;
    let second = (h2 >>> 0) & this.#bucketMask;
    if (second === first) second = (first + 1) & this.#bucketMask;
    const tag = ((h1 ^ (h2 >>> 7)) & 0x3fffffff) | 0x40000000;
    return { words: Int32Array.from(w), tag, first, second };
  }

  /**
   * Takes `cost` µs of the source's bucket (weight × 1e6 / rate) whose depth is `window` µs
   * (burst × 1e6 / rate); a source not in the table is added (evicting the least active
   * unbanned entry of its buckets when both are full). A source over its bucket is banned for
   * `banMs`. Returns {@link ALLOWED}, {@link BANNED}, {@link BANNED_NOW} or {@link UNTRACKED}.
   */
  take(key: SourceKey, cost: number, window: number, banMs: number, nowMs = Date.now()): number {
    const cells = this.#cells;
    const rel = nowMs - this.#epoch;
    const nowS = Math.floor(rel / 1000);
    const nowUs = (rel * 1000) | 0;
    let e = this.#find(key);
    if (e < 0) e = this.#claim(key, nowUs, nowS);
    if (e < 0) return UNTRACKED;
    const until = Atomics.load(cells, e + BAN);
    if (until !== 0) {
      if (nowS < until) return BANNED;
      Atomics.compareExchange(cells, e + BAN, until, 0);
    }
    const seen = Atomics.exchange(cells, e + SEEN, nowS);
    const windowStart = Atomics.load(cells, e + WINDOW);
    if (
      windowStart !== nowS && Atomics.compareExchange(cells, e + WINDOW, windowStart, nowS) ===
        windowStart
    ) {
      const count = Atomics.exchange(cells, e + COUNT, 0);
      Atomics.store(cells, e + PREVIOUS, windowStart === nowS - 1 ? count : 0);
    }
    Atomics.add(cells, e + COUNT, 1);
    // A failed compare-exchange means another worker took from this bucket meanwhile, so the
    // retries end when the bucket is empty (then the ban below). Giving up after a fixed number
    // of them banned a source that was not over its rate whenever two workers took from it at
    // once long enough (seen: 45,275 of a 50,000 burst allowed, then a ban). The cap only guards
    // against a bug; reaching it lets the message through rather than ban on no evidence.
    for (let attempt = 0; attempt < MAX_TAKE_ATTEMPTS; attempt++) {
      const tat = Atomics.load(cells, e + TAT);
      const base = nowS - seen > STALE_S || ((tat - nowUs) | 0) < 0 ? nowUs : tat;
      const next = (base + cost) | 0;
      if (((next - nowUs) | 0) > window) return this.#ban(e, nowS, rel, banMs);
      if (Atomics.compareExchange(cells, e + TAT, tat, next) === tat) return ALLOWED;
    }
    return ALLOWED;
  }

  /** The bucket of entry `e` is empty: bans it (BANNED_NOW), unless another worker just did. */
  #ban(e: number, nowS: number, rel: number, banMs: number): number {
    const cells = this.#cells;
    const banUntil = nowS + Math.max(1, Math.ceil(banMs / 1000));
    if (Atomics.compareExchange(cells, e + BAN, 0, banUntil) !== 0) return BANNED;
    // The rate seen: this second's count plus the part of the last second still in the window.
    const fraction = (rel % 1000) / 1000;
    this.lastRate = Math.round(
      Atomics.load(cells, e + COUNT) + Atomics.load(cells, e + PREVIOUS) * (1 - fraction),
    );
    return BANNED_NOW;
  }

  /** Whether the source is banned in the table now (its ban word has not expired). */
  banned(key: SourceKey, nowMs = Date.now()): boolean {
    const e = this.#find(key);
    if (e < 0) return false;
    const until = Atomics.load(this.#cells, e + BAN);
    return until !== 0 && Math.floor((nowMs - this.#epoch) / 1000) < until;
  }

  /** Ends a source's ban in the table and gives it a full bucket (the supervisor, at ban end). */
  unban(key: SourceKey, nowMs = Date.now()): void {
    const e = this.#find(key);
    if (e < 0) return;
    Atomics.store(this.#cells, e + TAT, ((nowMs - this.#epoch) * 1000) | 0);
    Atomics.store(this.#cells, e + BAN, 0);
  }

  /** Entries in use (a scan: for the control API, not the message path). */
  count(): number {
    let n = 0;
    for (let e = 0; e < this.#cells.length; e += ENTRY_CELLS) {
      const tag = Atomics.load(this.#cells, e);
      if (tag !== EMPTY && tag !== BUSY) n++;
    }
    return n;
  }

  /**
   * Frees the entry worker `workerId` was claiming when it was replaced (terminated between
   * taking an entry and publishing it), so that no entry stays BUSY for good.
   */
  reclaim(workerId: number): void {
    const held = Atomics.exchange(this.#header, workerId, 0);
    if (held !== 0) Atomics.compareExchange(this.#cells, held - 1, BUSY, EMPTY);
  }

  /** The entry holding `key`, or -1. */
  #find(key: SourceKey): number {
    const cells = this.#cells;
    const w = key.words;
    for (let pass = 0; pass < 2; pass++) {
      const bucket = pass === 0 ? key.first : key.second;
      for (let way = 0; way < WAYS; way++) {
        const e = (bucket * WAYS + way) * ENTRY_CELLS;
        if (Atomics.load(cells, e) !== key.tag) continue;
        if (
          Atomics.load(cells, e + KEY) === w[0] && Atomics.load(cells, e + KEY + 1) === w[1] &&
          Atomics.load(cells, e + KEY + 2) === w[2] && Atomics.load(cells, e + KEY + 3) === w[3]
        ) return e;
      }
    }
    return -1;
  }

  /**
   * Claims an entry for `key`: a free one in either bucket, else the least active
   * unbanned entry of both buckets. -1 when every entry is banned or being written.
   */
  #claim(key: SourceKey, nowUs: number, nowS: number): number {
    const cells = this.#cells;
    for (let attempt = 0; attempt < 4; attempt++) {
      let victim = -1, victimTag = EMPTY, victimSeen = Infinity;
      for (let pass = 0; pass < 2; pass++) {
        const bucket = pass === 0 ? key.first : key.second;
        for (let way = 0; way < WAYS; way++) {
          const e = (bucket * WAYS + way) * ENTRY_CELLS;
          const tag = Atomics.load(cells, e);
          if (tag === BUSY) continue;
          if (tag === EMPTY) {
            victim = e;
            victimTag = EMPTY;
            victimSeen = -Infinity;
            break;
          }
          const until = Atomics.load(cells, e + BAN);
          if (until !== 0 && nowS < until) continue;
          const seen = Atomics.load(cells, e + SEEN);
          if (seen < victimSeen) [victim, victimTag, victimSeen] = [e, tag, seen];
        }
        if (victimTag === EMPTY && victim >= 0) break;
      }
      if (victim < 0) return -1;
      if (Atomics.compareExchange(cells, victim, victimTag, BUSY) !== victimTag) continue;
      if (this.#busyCell >= 0) Atomics.store(this.#header, this.#busyCell, victim + 1);
      for (let i = 0; i < 4; i++) Atomics.store(cells, victim + KEY + i, key.words[i]);
      Atomics.store(cells, victim + TAT, nowUs);
      Atomics.store(cells, victim + SEEN, nowS);
      Atomics.store(cells, victim + BAN, 0);
      Atomics.store(cells, victim + WINDOW, nowS);
      Atomics.store(cells, victim + COUNT, 0);
      Atomics.store(cells, victim + PREVIOUS, 0);
      Atomics.store(cells, victim, key.tag);
      if (this.#busyCell >= 0) Atomics.store(this.#header, this.#busyCell, 0);
      return victim;
    }
    return -1;
  }
}
