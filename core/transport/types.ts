/**
 * What a stream transport plugin (tcp, tls, ...) provides to the core: listening sockets and
 * outbound connects, as byte streams. Framing, write queues, timeouts and routing live in the
 * core and are shared by every stream transport.
 * @module
 */

/** A socket address; `hostname` is a bare IP (no IPv6 brackets) or a host name. */
export interface SocketAddress {
  hostname: string;
  port: number;
}

/**
 * What a message-oriented socket (WebSocket, RFC 7118: one SIP message per WebSocket message)
 * asks of the core: how a message is put on the wire and how a keepalive ping looks.
 */
export interface MessageFraming {
  /** One SIP message as the bytes to write (a WebSocket frame). */
  encode(message: Uint8Array): Uint8Array;
  /** A keepalive ping for the wire (a WebSocket ping frame); its answer calls `alive()`. */
  ping(): Uint8Array;
  /** Largest message accepted; the core sets it from the limits (and on reload). */
  maxMessageSize: number;
  /**
   * When the message being read started (ms since epoch; 0 between messages), for the core's
   * message_read_timeout: a frame trickled in byte by byte is a slowloris like any other.
   */
  readonly partialSince: number;
}

/** What the core gives a socket that speaks a protocol of its own under SIP (WebSocket). */
export interface SocketControl {
  /** Queues protocol bytes (a pong, a close frame) on the connection's write path, in order. */
  send(bytes: Uint8Array): void;
  /** The peer answered a ping (it is alive; not a SIP message). */
  alive(): void;
  /** Closes the connection once what is queued is written (after a close frame). */
  end(reason: string): void;
}

/** One connected byte stream. */
export interface StreamSocket {
  readonly localAddr: SocketAddress;
  readonly remoteAddr: SocketAddress;
  /**
   * Starts reading. `onData` gets each chunk read; the chunk may be reused after the call
   * returns. `onClose` is called once when the stream ends or fails (after `close()` too).
   * A message-oriented socket (`messages` set) hands `onData` one whole message per call and
   * uses `control` for its own protocol.
   */
  start(
    onData: (chunk: Uint8Array) => void,
    onClose: (error?: Error) => void,
    control?: SocketControl,
  ): void;
  /**
   * Set when each `onData` chunk is one whole SIP message and each message must be written as
   * `encode(message)` (WebSocket): the core then frames by message (Content-Length optional)
   * and never coalesces two messages into one.
   */
  readonly messages?: MessageFraming;
  /**
   * Writes bytes; resolves with how many the kernel took (may be fewer than given: the
   * caller writes the rest). Stays pending while the peer does not read; `close()` rejects it.
   */
  write(data: Uint8Array): Promise<number>;
  /**
   * For sockets that buffer what the kernel did not take (Node-style streams, TLS): true right
   * after a `write()` that could not be handed to the kernel at once. The connection then
   * enters async mode (conn_wq_max applies) exactly as when a write resolves short.
   */
  readonly congested?: boolean;
  /**
   * Transport details for the control API's connection list (TLS: version, cipher, SNI, peer
   * certificate). Plain data; called rarely.
   */
  details?(): Record<string, string | number | boolean | undefined>;
  /** Closes the stream at once; pending writes reject. */
  close(): void;
}

/** A listening socket. */
export interface StreamListener {
  /** The bound address (the real port when 0 was asked for). */
  readonly addr: SocketAddress;
  /**
   * Starts accepting; `onSocket` gets each accepted stream. A listener that does work before
   * handing a stream over (a TLS handshake) asks `admit` with the peer's IP first and closes
   * the raw connection when it says false (a banned source); others may ignore it (the core
   * checks again when it gets the socket).
   */
  start(onSocket: (socket: StreamSocket) => void, admit?: (ip: string) => boolean): void;
  /** Stops accepting. Accepted sockets are not affected. */
  close(): void;
}

/** Options for {@link StreamTransport.connect}. */
export interface ConnectOptions extends SocketAddress {
  /** Aborts the connect (used for connect_timeout). */
  signal: AbortSignal;
}

/** A stream transport, as a transport plugin provides it. */
export interface StreamTransport {
  /** Name used in listen addresses and the `transport` URI parameter: `tcp`, `tls`. */
  readonly name: string;
  /** Transport token in Via headers: `TCP`, `TLS`. */
  readonly viaName: string;
  /** Whether this transport is secure (used for `sips:` URIs). */
  readonly secure: boolean;
  /** Port used when a URI has none: 5060, or 5061 for TLS. */
  readonly defaultPort: number;
  /**
   * Clients of this transport cannot be reached by address (WebSocket clients put an `.invalid`
   * host in Contact and Via, RFC 7118 §5): every REGISTER and dialog-forming request from them
   * gets a flow (RFC 5626 Path / Record-Route with a flow token), asked for or not.
   */
  readonly flowsOnly?: boolean;
  /**
   * Keepalive pings on every connection of this transport, both directions (WebSocket pings),
   * in ms; read on every timer sweep, so a reload applies. Without it, the `timeouts` plugin's
   * keepalive applies to outbound connections only.
   */
  readonly keepalive?: { readonly interval: number; readonly timeout: number };
  /**
   * Opens a listening socket (with SO_REUSEPORT, so every worker can listen on it), bound when
   * it returns or resolves; accepting starts with `start()`.
   */
  listen(address: SocketAddress): StreamListener | Promise<StreamListener>;
  /** Opens an outbound stream. */
  connect(options: ConnectOptions): Promise<StreamSocket>;
}

/** A bound datagram socket (UDP): one datagram is one message (RFC 3261 §18.3). */
export interface DatagramSocket {
  /** The bound address (the real port when 0 was asked for). */
  readonly addr: SocketAddress;
  /**
   * Starts receiving. `onDatagram` gets each datagram and its sender; the bytes may be reused
   * after the call returns.
   */
  start(onDatagram: (data: Uint8Array, from: SocketAddress) => void): void;
  /** Sends one datagram; rejects when the kernel reports an error (unreachable, refused). */
  send(data: Uint8Array, to: SocketAddress): Promise<void>;
  /** Stops receiving and closes the socket. */
  close(): void;
}

/** A datagram transport, as a transport plugin provides it (`udp`). */
export interface DatagramTransport {
  /** Marks a datagram transport (stream transports have no such field). */
  readonly datagram: true;
  /** Name used in listen addresses and the `transport` URI parameter: `udp`. */
  readonly name: string;
  /** Transport token in Via headers: `UDP`. */
  readonly viaName: string;
  readonly secure: false;
  /** Port used when a URI has none: 5060. */
  readonly defaultPort: number;
  /**
   * A request larger than this many bytes that would go to a datagram destination goes over
   * TCP instead (RFC 3261 §18.1.1), when TCP is enabled.
   */
  readonly mtu: number;
  /** Binds a socket (one per address in the process: see plugins/udp.ts). */
  bind(address: SocketAddress): DatagramSocket | Promise<DatagramSocket>;
}

/** Either kind of transport a transport plugin provides. */
export type Transport = StreamTransport | DatagramTransport;

/** Whether a transport is a datagram transport. */
export function isDatagram(transport: Transport): transport is DatagramTransport {
  return (transport as DatagramTransport).datagram === true;
}
