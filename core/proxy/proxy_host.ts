/**
 * What the stateless proxy needs from the worker it runs in. Kept as an interface so the proxy
 * logic can be tested without sockets.
 * @module
 */
import type { Router } from "../plugin/types.ts";
import type { Destination } from "../transport/destination.ts";
import type { FlowTokenCheck } from "./flow_token.ts";

/** Where a message came from. */
export interface MessageSource {
  /** Connection id (unique in the process; names the worker that owns it). */
  connectionId: number;
  /** Transport plugin name. */
  transport: string;
  /** Peer IP and port. */
  hostname: string;
  port: number;
  /** Sends bytes back on the connection the message came in on; false when it is gone. */
  reply(bytes: Uint8Array): boolean;
  /**
   * The RFC 5626 flow token naming this connection. With `create`, always (from then on the
   * connection is a flow); without, only once it is a flow.
   */
  flowToken(create: boolean): string | undefined;
  /**
   * The sender cannot be reached by address (a WebSocket client, RFC 7118 §5): its REGISTERs
   * and dialog-forming requests always get a flow.
   */
  flowsOnly?: boolean;
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
  | "plugin_errors"
  | "flows_registered"
  | "flow_failed"
  | "flow_token_invalid"
  | "acks_absorbed"
  | "udp_mtu_to_tcp"
  | "udp_over_mtu";

/** The `[flows]` settings the proxy applies (RFC 5626 edge proxy). */
export interface FlowSettings {
  /** Which REGISTERs get a Path with a flow token. */
  register: "outbound" | "all" | "off";
  /** Dialog-forming requests from or to a flow get a Record-Route with its token. */
  record_route: boolean;
}

/** A flow token checked: the connection and transport it names, or why not. */
export type FlowCheck =
  | {
    ok: true;
    /** The connection (stream flows) or the datagram socket (UDP flows) to send on. */
    connectionId: number;
    transport: string;
    /** A datagram flow: the client's address (the flow is this address and the socket). */
    address?: { hostname: string; port: number };
  }
  | Extract<FlowTokenCheck, { ok: false }>;

/** The worker side of the proxy. */
export interface ProxyHost {
  /** Routers from plugins, in config order. */
  readonly routers: readonly Router[];
  /** The `[flows]` settings in force. */
  readonly flows: FlowSettings;
  /** Whether `host:port` (port 0 = default) over `transport` is one of our addresses. */
  isLocal(host: string, port: number, transport?: string): boolean;
  /**
   * Host and port to advertise in Via / Record-Route for a transport: its first listener's
   * (or `advertise`); undefined when sipedge does not listen on that transport.
   */
  advertised(transport: string): { host: string; port: number } | undefined;
  /** Via transport token (`TCP`) for a transport name, or undefined when not enabled. */
  viaName(transport: string): string | undefined;
  /** Transport name for a Via transport token (`TCP` -> `tcp`), or undefined. */
  transportForVia(viaName: string): string | undefined;
  /**
   * The MTU of a datagram transport (`udp`): a larger request to it goes over TCP instead
   * (RFC 3261 §18.1.1); undefined for stream transports.
   */
  datagramMtu(transport: string): number | undefined;
  /** Checks a flow token (the user part of a Route that names us). */
  checkFlowToken(token: string): FlowCheck;
  /**
   * Sends to a destination over a reused or new connection (a client's connection in another
   * worker is handed to that worker). When it cannot be sent, the host answers it: see
   * {@link answerSendFailure}. `local`: a response sipedge made (counted as a local reply).
   */
  sendTo(destination: Destination, bytes: Uint8Array, local?: boolean): void;
  /**
   * Sends on connection `id`, in this worker or handed to the worker that owns it. When that
   * connection is gone: to `fallback` if given, else the message fails with `flow_failed`.
   */
  sendOnConnection(id: number, bytes: Uint8Array, fallback?: Destination, local?: boolean): void;
  /** Increments a counter. */
  count(counter: ProxyCounter): void;
}
