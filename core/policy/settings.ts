/**
 * Policy settings as the core applies them (durations in milliseconds). The values come from
 * the `timeouts`, `limits` and `blacklist` plugins' validated config tables.
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

/** Everything the policy plugins set. */
export interface PolicySettings {
  timeouts?: TimeoutSettings;
  limits?: LimitSettings;
  blacklist?: BlacklistSettings;
}
