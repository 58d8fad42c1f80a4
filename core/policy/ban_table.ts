/**
 * Banned sources (the flood guard's bans): entries keyed by source group -- an IPv4 address, an
 * IPv6 prefix (`2001:db8:1:2::/64`) -- each with a reason, the rate seen and an expiry, capped in
 * size (./expiring_table.ts). Shaped like the destination blacklist and kept apart from it: the
 * blacklist holds destinations sends must not go to, this table sources whose traffic is
 * dropped.
 * @module
 */

import { ExpiringTable, type TableChange } from "./expiring_table.ts";

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
export type BanChange = TableChange<BanEntry>;

/** A size-capped table of bans with expiry. */
export class BanTable extends ExpiringTable<BanEntry> {}
