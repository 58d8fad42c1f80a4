/**
 * The flood guard of one reader worker: per request, is its source trusted, banned, or within
 * its token bucket in the shared source table (./source_table.ts)? A source over its bucket
 * is banned: this worker drops its request, adds the ban to its copy of the ban table, and
 * reports it once ({@link FloodGuardOptions.onBan}: the engine closes the source's connections
 * and tells the supervisor, which tells every worker).
 *
 * What a source is costs a parse of its address; it is cached per address string (bounded),
 * so the per-request check is a map lookup, a ban lookup when bans exist, and one table take.
 * @module
 */
import { type BanChange, type BanEntry, BanTable } from "./ban_table.ts";
import { contains, formatPrefix, type IpPrefix, parseCidr, sourceGroup } from "./ip_prefix.ts";
import type { FloodGuardSettings } from "./settings.ts";
import {
  ALLOWED,
  BANNED,
  BANNED_NOW,
  type SourceKey,
  SourceTable,
  UNTRACKED,
} from "./source_table.ts";

export { ALLOWED, BANNED, BANNED_NOW };

/** IPv6 grouping when the plugin is off (admin bans still apply). */
export const DEFAULT_IPV6_PREFIX = 64;
/** Ban table cap when the plugin is off. */
export const DEFAULT_MAX_BANS = 65_536;
/** Addresses whose parse is cached. */
const CACHE_MAX = 16_384;

/** A source as the guard knows it (cached per address string). */
interface Source {
  key: SourceKey;
  /** The ban key: `192.0.2.9`, `2001:db8:1:2::/64`. */
  banKey: string;
  trusted: boolean;
}

/** Options for a {@link FloodGuard}. */
export interface FloodGuardOptions {
  table: SourceTable;
  /** This worker banned a source (already in its copy): close its connections, tell the rest. */
  onBan(entry: BanEntry): void;
}

/** The ban key of an address for `ipv6Prefix`: `192.0.2.9`, `2001:db8:1:2::/64`; or undefined. */
export function banKeyOf(address: string, ipv6Prefix: number): string | undefined {
  const group = sourceGroup(address, ipv6Prefix);
  return group === undefined ? undefined : formatPrefix(group);
}

/** One worker's flood guard. */
export class FloodGuard {
  readonly bans = new BanTable(DEFAULT_MAX_BANS);
  #table: SourceTable;
  #onBan: (entry: BanEntry) => void;
  #settings: FloodGuardSettings | undefined;
  #trusted: IpPrefix[] = [];
  #prefix = DEFAULT_IPV6_PREFIX;
  /** µs of bucket per token (1e6 / rate), the bucket's depth in µs, per-method costs. */
  #cost = 0;
  #window = 0;
  #costs = new Map<string, number>();
  #cache = new Map<string, Source | null>();

  constructor(options: FloodGuardOptions) {
    this.#table = options.table;
    this.#onBan = options.onBan;
  }

  /** The settings in force (undefined: the plugin is off; bans in force still apply). */
  get settings(): FloodGuardSettings | undefined {
    return this.#settings;
  }

  /** Puts new settings in force: from the next request, on every connection. */
  setSettings(settings: FloodGuardSettings | undefined): void {
    this.#settings = settings;
    this.#cache.clear();
    this.#prefix = settings?.ipv6_prefix ?? DEFAULT_IPV6_PREFIX;
    this.bans.maxEntries = settings?.max_sources ?? DEFAULT_MAX_BANS;
    this.#trusted = [];
    if (settings === undefined) return;
    this.#trusted = settings.trusted.map((t) => parseCidr(t) as IpPrefix);
    const perToken = 1e6 / settings.rate;
    this.#cost = Math.max(1, Math.round(perToken));
    this.#window = Math.round(settings.burst * perToken);
    this.#costs = new Map(
      Object.entries(settings.weights).map(([m, w]) => [m, Math.round(w * perToken)]),
    );
  }

  /**
   * A request from `address`: {@link ALLOWED}, or {@link BANNED} (drop it; a ban that just
   * started here has been reported through `onBan`).
   */
  check(address: string, method: string, time?: number): number {
    const settings = this.#settings;
    if (settings === undefined) {
      return this.bans.size === 0 || !this.isBanned(address, time) ? ALLOWED : BANNED;
    }
    const source = this.#source(address);
    if (source === null || source.trusted) return ALLOWED;
    const now = time ?? Date.now();
    if (this.bans.size > 0 && this.bans.get(source.banKey, now) !== undefined) return BANNED;
    const cost = this.#costs.get(method) ?? this.#cost;
    if (cost === 0) return ALLOWED;
    const verdict = this.#table.take(source.key, cost, this.#window, settings.ban, now);
    if (verdict === ALLOWED || verdict === UNTRACKED) return ALLOWED;
    if (verdict === BANNED_NOW) {
      const entry: BanEntry = {
        key: source.banKey,
        address,
        reason: "flood",
        rate: this.#table.lastRate,
        addedAt: now,
        expiresAt: now + settings.ban,
      };
      this.bans.add(entry);
      this.#onBan(entry);
    }
    return BANNED;
  }

  /**
   * Whether `address` is banned (this worker's copy; with `shared`, the shared table's ban word
   * too, which another worker may have set a moment before its report arrives). Trusted
   * sources are never banned.
   */
  isBanned(address: string, now = Date.now(), shared = false): boolean {
    if (this.bans.size === 0 && !(shared && this.#settings !== undefined)) return false;
    const source = this.#source(address);
    if (source === null || source.trusted) return false;
    if (this.bans.size > 0 && this.bans.get(source.banKey, now) !== undefined) return true;
    return shared && this.#settings !== undefined && this.#table.banned(source.key, now);
  }

  /** Whether `address` is in the group named by ban key `key`. */
  inGroup(key: string, address: string): boolean {
    const source = this.#source(address);
    return source !== null && source.banKey === key;
  }

  /** The ban key of `address` under the settings in force. */
  banKey(address: string): string | undefined {
    return banKeyOf(address, this.#prefix);
  }

  /** Whether `address` is in `trusted`. */
  isTrusted(address: string): boolean {
    return this.#source(address)?.trusted ?? false;
  }

  /** Applies a ban change from the supervisor. */
  apply(change: BanChange): void {
    this.bans.apply(change);
  }

  #source(address: string): Source | null {
    let source = this.#cache.get(address);
    if (source !== undefined) return source;
    const group = sourceGroup(address, this.#prefix);
    if (group === undefined) {
      source = null;
    } else {
      const ip = sourceGroup(address, 128)!;
      source = {
        key: this.#table.key(group),
        banKey: formatPrefix(group),
        trusted: this.#trusted.some((range) => contains(range, ip)),
      };
    }
    if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
    this.#cache.set(address, source);
    return source;
  }
}
