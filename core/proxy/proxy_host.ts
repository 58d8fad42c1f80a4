/**
 * What the stateless proxy needs from the worker it runs in. Kept as an interface so the proxy
 * logic can be tested without sockets.
 * @module
 */
import type { Router } from "../plugin/types.ts";
import type { Destination } from "../transport/destination.ts";
import type { FailHandler } from "../transport/connection.ts";

/** Where a message came from. */
export interface MessageSource {
  /** Connection id (unique in the process). */
  connectionId: number;
  /** Transport plugin name. */
  transport: string;
  /** Peer IP and port. */
  hostname: string;
  port: number;
  /** Sends bytes back on the connection the message came in on; false when it is gone. */
  reply(bytes: Uint8Array): boolean;
}

/** Counters the proxy increments (see core/stats.ts). */
export type ProxyCounter =
  | "requests_in"
  | "responses_in"
  | "requests_forwarded"
  | "responses_forwarded"
  | "local_replies"
  | "requests_rejected"
  | "responses_dropped"
  | "send_failed"
  | "plugin_errors";

/** The worker side of the proxy. */
export interface ProxyHost {
  /** Routers from plugins, in config order. */
  readonly routers: readonly Router[];
  /** Whether `host:port` (port 0 = default) over `transport` is one of our addresses. */
  isLocal(host: string, port: number, transport?: string): boolean;
  /**
   * Host and port to advertise in Via / Record-Route for a transport: its first listener's
   * (or `advertise`); undefined when sipedge does not listen on that transport.
   */
  advertised(transport: string): { host: string; port: number } | undefined;
  /** Via transport token (`TCP`) for a transport name, or undefined when not enabled. */
  viaName(transport: string): string | undefined;
  /** Transport name for a Via transport token (`TCP` → `tcp`), or undefined. */
  transportForVia(viaName: string): string | undefined;
  /** Sends to a destination over a reused or new connection. */
  sendTo(destination: Destination, bytes: Uint8Array, onFail?: FailHandler): void;
  /** Sends on an existing connection by id; false when it is not open in this worker. */
  sendOnConnection(id: number, bytes: Uint8Array): boolean;
  /** Increments a counter. */
  count(counter: ProxyCounter): void;
}
