/**
 * Why a send failed, and how each reason is reported: the SIP status a request's sender
 * gets (408 for timeouts, 503 otherwise, RFC 3261 §16.7 / §21), the Reason header text,
 * and whether the reason may blacklist the destination.
 * @module
 */

/** Reasons that (by the blacklist plugin's `reasons` setting) can blacklist a destination. */
export const BLACKLIST_REASONS = [
  "connect_refused",
  "connect_timeout",
  "connect_failed",
  "send_timeout",
  "queue_full",
  "keepalive_timeout",
] as const;

/** Why data was not sent. */
export type FailureReason =
  | (typeof BLACKLIST_REASONS)[number]
  /** The destination is blacklisted: failed at once, no connect attempt. */
  | "blacklisted"
  /** max_connections reached: no new connection could be opened. */
  | "connection_limit"
  /** The connection closed (by us or by the peer) before the data was written. */
  | "closed"
  /** A request for a client's flow (RFC 5626) whose connection is gone: 430 Flow Failed. */
  | "flow_failed";

/** How a failure is answered to a request's sender (408 for timeouts, 430 for a flow, 503). */
export interface FailureReply {
  status: 408 | 430 | 503;
  reason: string;
  /** Text for `Reason: SIP;cause=...;text="..."`. */
  text: string;
}

const TEXT: Record<FailureReason, string> = {
  connect_refused: "connect refused",
  connect_timeout: "connect timeout",
  connect_failed: "connect failed",
  send_timeout: "send timeout",
  queue_full: "queue full",
  keepalive_timeout: "keepalive timeout",
  blacklisted: "destination blacklisted",
  connection_limit: "connection limit",
  closed: "connection closed",
  flow_failed: "flow failed",
};

/** The reply for a failure reason. */
export function failureReply(reason: FailureReason): FailureReply {
  const timeout = reason === "connect_timeout" || reason === "send_timeout" ||
    reason === "keepalive_timeout";
  if (timeout) return { status: 408, reason: "Request Timeout", text: TEXT[reason] };
  // RFC 5626 §5.3: the flow named in the Route is gone; the client must register again.
  if (reason === "flow_failed") return { status: 430, reason: "Flow Failed", text: TEXT[reason] };
  return { status: 503, reason: "Service Unavailable", text: TEXT[reason] };
}

/** The Reason header line (RFC 3326) for a failure. */
export function reasonHeader(reason: FailureReason): string {
  const reply = failureReply(reason);
  return `Reason: SIP;cause=${reply.status};text="${reply.text}"`;
}
