/**
 * Per-worker counters. Plain numbers owned by one thread (no locking needed); the supervisor
 * asks every worker for a snapshot and adds them up.
 * @module
 */
import type { ProxyCounter } from "./proxy/proxy_host.ts";

/** Counter names: the proxy's and the transport layer's. */
export type CounterName =
  | ProxyCounter
  | "connections_accepted"
  | "connections_opened"
  | "connect_failed"
  | "connections_closed"
  | "keepalive_pings"
  | "framing_errors"
  | "read_timeouts";

/** A set of counters, all starting at zero. */
export class Counters {
  readonly values: Record<CounterName, number> = {
    requests_in: 0,
    responses_in: 0,
    requests_forwarded: 0,
    responses_forwarded: 0,
    local_replies: 0,
    requests_rejected: 0,
    responses_dropped: 0,
    send_failed: 0,
    connections_accepted: 0,
    connections_opened: 0,
    connect_failed: 0,
    connections_closed: 0,
    keepalive_pings: 0,
    framing_errors: 0,
    read_timeouts: 0,
  };

  /** Adds one (or `n`). */
  inc(name: CounterName, n = 1): void {
    this.values[name] += n;
  }
}
