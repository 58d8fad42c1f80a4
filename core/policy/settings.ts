/**
 * Policy settings as the core applies them (durations in milliseconds). The values come from
 * the `timeouts`, `limits`, `blacklist` and `flood_guard` plugins' validated config tables.
 * @module
 */
import type { BLACKLIST_REASONS } from "./failure.ts";

/** From the `timeouts` plugin. */
export interface TimeoutSettings {
  connect_timeout: number;
  send_timeout: number;
  idle_timeout: number;
  message_read_timeout: number;
  /** 0 turns keepalive pings off. */
  keepalive_interval: number;
  keepalive_timeout: number;
}

/** From the `limits` plugin. */
export interface LimitSettings {
  conn_wq_max: number;
  wq_max: number;
  on_queue_full: "close" | "drop";
  max_connections: number;
  max_connections_per_ip: number;
  max_message_size: number;
}

/** From the `blacklist` plugin. */
export interface BlacklistSettings {
  expire: number;
  max_entries: number;
  reasons: (typeof BLACKLIST_REASONS)[number][];
}

/** From the `flood_guard` plugin. */
export interface FloodGuardSettings {
  /** Requests per second per source (token bucket refill). */
  rate: number;
  /** Bucket depth: requests a source may send at once. */
  burst: number;
  /** Ban duration (ms). */
  ban: number;
  /** Addresses and CIDR ranges never limited (validated). */
  trusted: string[];
  /** IPv6 sources are grouped by this prefix length. */
  ipv6_prefix: number;
  /** Tracked sources (the shared table is sized at start). */
  max_sources: number;
  /** Tokens a request of a method takes (default 1). */
  weights: Record<string, number>;
}

/** Everything the policy plugins set. */
export interface PolicySettings {
  timeouts?: TimeoutSettings;
  limits?: LimitSettings;
  blacklist?: BlacklistSettings;
  flood_guard?: FloodGuardSettings;
}
