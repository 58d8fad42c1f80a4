/**
 * The destination blacklist: entries keyed by `transport:host:port`, each with a reason and an
 * expiry, capped in size (./expiring_table.ts).
 * @module
 */
import type { FailureReason } from "./failure.ts";
import { ExpiringTable } from "./expiring_table.ts";

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
export class BlacklistTable extends ExpiringTable<BlacklistEntry> {}
