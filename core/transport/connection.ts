/**
 * One stream connection in the worker that owns it: framing on the read side, the async write
 * path on the write side (DESIGN.md §3, seed/tcp-supervisor-post.txt).
 *
 * Write path: `send()` queues the bytes; when the connection is open and no write is in
 * flight, a writer is started on the next microtask, so every message produced while handling
 * one read goes out in a single coalesced `write()` ("direct" send). While a write is in flight
 * -- the kernel has not taken everything yet: **async mode** -- further data queues behind it in
 * order and the one writer drains the queue; when the queue is empty the connection leaves
 * async mode. While the connection is still connecting, data waits in the queue.
 *
 * Limits: data queued while in async mode counts against `conn_wq_max` (this connection) and
 * `wq_max` (all connections of all workers, a shared counter); over either the send fails
 * with `queue_full`. Timeouts are checked by the owner's timer sweep from the timestamps kept
 * here (`progressAt`, `lastRead`, ...).
 * @module
 */
import type { FailureReason } from "../policy/failure.ts";
import type { SharedCounters } from "../policy/shared_counters.ts";
import { type Frame, StreamFramer } from "../sip/stream_framer.ts";
import type {
  MessageFraming,
  SocketAddress,
  SocketControl,
  StreamSocket,
  StreamTransport,
} from "./types.ts";
import { allocBytes } from "../sip/bytes.ts";
import { frameDatagram, isKeepalive } from "./datagram.ts";

/** Called for queued data that will never be sent. */
export type FailHandler = (reason: FailureReason) => void;

/** Life-cycle states. */
export type ConnectionState = "connecting" | "open" | "closed";

/** What `send()` did with the data. */
export type SendResult = "queued" | "closed" | "queue_full";

/** Data that was queued and not written, with its failure handlers. */
export interface UnsentData {
  chunks: Uint8Array[];
  handlers: (FailHandler | undefined)[];
}

/** What was lost when a connection closed with data queued. */
export interface LostData {
  bytes: number;
  messages: number;
}

/** What a connection tells its owner. */
export interface ConnectionHooks {
  /** A frame was read (called synchronously while handling a read). */
  onFrame(connection: Connection, frame: Frame): void;
  /** The connection closed (once). Queued data was reported (`lost`), or given to `onUnsent`. */
  onClose(connection: Connection, reason: string, failure: FailureReason, lost: LostData): void;
  /**
   * An outbound connection was closed or reset by the peer with data that the peer cannot
   * have processed (never written, or its write failed): the owner sends it again over a new
   * connection.
   */
  onUnsent(connection: Connection, unsent: UnsentData): void;
}

/** Queue limits a connection applies (from the `limits` plugin). */
export interface QueueLimits {
  connWqMax: number;
  wqMax: number;
}

/** Options for a {@link Connection}. */
export interface ConnectionOptions {
  id: number;
  /** Transport plugin name (`tcp`). */
  transportName: string;
  transport: StreamTransport;
  direction: "in" | "out";
  /** Peer address (for outbound connections: the destination, known before connecting). */
  remote: SocketAddress;
  maxMessageSize: number;
  /** Shared accounting of queued bytes (wq_max). */
  shared: SharedCounters;
  /** Read on every send, so that a reload of the limits applies at once. */
  limits: () => QueueLimits;
  hooks: ConnectionHooks;
}

const PING = new Uint8Array([13, 10, 13, 10]);
const PING_FRAME: Frame = { type: "ping" };

/** A stream connection. */
export class Connection {
  readonly id: number;
  readonly transportName: string;
  readonly transport: StreamTransport;
  readonly direction: "in" | "out";
  readonly remote: SocketAddress;
  readonly createdAt = Date.now();
  local: SocketAddress | undefined;
  state: ConnectionState = "connecting";
  /** Time of the last byte read or written (ms since epoch). */
  lastActivity = this.createdAt;
  /** Time of the last byte read (ms since epoch; the connect time before any). */
  lastRead = this.createdAt;
  /** When the incomplete message now buffered started (0 when none). */
  get partialSince(): number {
    return this.#framing?.partialSince ?? this.#partialSince;
  }
  #partialSince = 0;
  /** When the current write started or last made progress (meaningful in async mode). */
  progressAt = 0;
  /** When the last keepalive ping was queued (0 when none is unanswered). */
  pingSentAt = 0;
  /** Whether data (other than pings) was written since the peer last sent a byte. */
  wroteSinceRead = false;
  /** A client's flow (RFC 5626): a Path or Record-Route with its flow token was sent. */
  flow = false;

  #socket: StreamSocket | undefined;
  #framer: StreamFramer;
  /** A message-oriented socket's framing (WebSocket); undefined for byte streams. */
  #framing: MessageFraming | undefined;
  #maxMessageSize: number;
  /** The last keepalive ping queued (a ping alone is not data: see wroteSinceRead). */
  #pingChunk: Uint8Array = PING;
  #hooks: ConnectionHooks;
  #shared: SharedCounters;
  #limits: () => QueueLimits;
  #chunks: Uint8Array[] = [];
  #failHandlers: (FailHandler | undefined)[] = [];
  /** Bytes in #chunks plus the unwritten rest of the write in flight. */
  #queuedBytes = 0;
  /** Bytes in #chunks (waiting behind the write in flight). */
  #waitingBytes = 0;
  #writing = false;
  /** A write has been handed to the socket and has not completed. */
  #writePending = false;
  /**
   * The kernel did not take all of a write (it returned fewer bytes than given): the seed's
   * async mode, where queued data counts against conn_wq_max. Ends when the queue drains.
   */
  #kernelFull = false;
  /** Messages in the write in flight. */
  #inFlight = 0;
  /** Why the connection closed (reported for the write in flight when it fails). */
  #failure: FailureReason = "closed";
  /** Whether the peer closed it (then the write in flight is sent again, outbound). */
  #closedByPeer = false;
  /** Unsent data held back until the write in flight settles, to keep the order. */
  #heldUnsent: UnsentData | undefined;
  /** Close once the queue is written, with this reason (false: no). */
  #closeAfterFlush: string | false = false;
  /** Callers of drained() (made on first use: most connections never have any). */
  #drainWaiters: (() => void)[] | undefined;
  /**
   * Outbound: failure handlers of messages written since the peer last sent a byte. A peer that
   * closes or resets without having answered anything has not processed them (an upstream that
   * goes away, a TLS server that refuses our certificate after a TLS 1.3 handshake): their
   * senders get a failure reply instead of waiting for a timeout. Cleared by every read. Made
   * on first use (outbound only).
   */
  #unanswered: FailHandler[] | undefined;

  constructor(options: ConnectionOptions) {
    this.id = options.id;
    this.transportName = options.transportName;
    this.transport = options.transport;
    this.direction = options.direction;
    this.remote = options.remote;
    this.#hooks = options.hooks;
    this.#shared = options.shared;
    this.#limits = options.limits;
    this.#framer = new StreamFramer({ maxMessageSize: options.maxMessageSize });
    this.#maxMessageSize = options.maxMessageSize;
  }

  /** Bytes queued in sipedge (not yet taken by the kernel). */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Async mode: the kernel did not take all of a write, and the queue has not drained yet. */
  get asyncMode(): boolean {
    return this.#kernelFull;
  }

  /** Largest message accepted from now on (limits reloaded). */
  set maxMessageSize(bytes: number) {
    this.#framer.maxMessageSize = bytes;
    this.#maxMessageSize = bytes;
    if (this.#framing !== undefined) this.#framing.maxMessageSize = bytes;
  }

  /** The transport's details for the control API (TLS version, cipher, ...), if it has any. */
  details(): Record<string, string | number | boolean | undefined> | undefined {
    return this.#socket?.details?.();
  }

  /** A write is pending (send_timeout measures its progress). */
  get writePending(): boolean {
    return this.#writePending;
  }

  /** Attaches the connected socket and starts reading and writing. */
  attach(socket: StreamSocket): void {
    this.#socket = socket;
    this.local = socket.localAddr;
    this.state = "open";
    this.lastActivity = this.lastRead = Date.now();
    if (socket.messages !== undefined) this.#useMessageFraming(socket.messages);
    socket.start(
      (chunk) => this.#onData(chunk),
      (error) =>
        this.#close(
          error === undefined ? "closed by peer" : `read error: ${error.message}`,
          "closed",
          this.direction === "out",
        ),
      this.#framing === undefined ? undefined : this.#control(),
    );
    if (this.#chunks.length > 0) this.#startWriter();
  }

  /**
   * Queues `bytes` for sending. `onFail` is called if they are never sent. Returns
   * `closed` or `queue_full` (without calling `onFail`) when they were not queued.
   */
  send(bytes: Uint8Array, onFail?: FailHandler): SendResult {
    // A message socket's messages are framed one by one (while connecting, at attach()).
    if (this.#framing !== undefined) bytes = this.#framing.encode(bytes);
    return this.#enqueue(bytes, onFail);
  }

  /** Queues bytes as they go on the wire. */
  #enqueue(bytes: Uint8Array, onFail?: FailHandler): SendResult {
    if (this.state === "closed") return "closed";
    if (this.#kernelFull || this.state === "connecting") {
      // Async mode (the kernel did not take all of a write, or a connect is under way):
      // conn_wq_max bounds what waits on this connection (a message alone always goes, even if
      // larger) and wq_max what waits on all connections together.
      const limits = this.#limits();
      if (this.#waitingBytes > 0 && this.#waitingBytes + bytes.length > limits.connWqMax) {
        return "queue_full";
      }
      if (!this.#shared.reserveQueued(bytes.length, limits.wqMax)) return "queue_full";
    } else if (this.#writePending) {
      // Behind a write the kernel is taking: not refused by conn_wq_max (a burst that the
      // kernel will take is no sign of a slow peer), but the process-wide wq_max holds.
      if (!this.#shared.reserveQueued(bytes.length, this.#limits().wqMax)) return "queue_full";
    } else {
      // Direct: handed to the kernel on the next microtask. Counted in the gauge until the
      // kernel took it, never refused (it is not waiting in a queue).
      this.#shared.reserveQueued(bytes.length, Infinity);
    }
    this.#chunks.push(bytes);
    this.#failHandlers.push(onFail);
    this.#queuedBytes += bytes.length;
    this.#waitingBytes += bytes.length;
    if (this.state === "open" && !this.#writing) this.#startWriter();
    return "queued";
  }

  /** Queues a keepalive ping (RFC 5626 double CRLF) and notes when. */
  ping(): void {
    const ping = this.#framing?.ping() ?? PING;
    this.#pingChunk = ping;
    if (this.#enqueue(ping) === "queued") this.pingSentAt = Date.now();
  }

  /** Closes once everything queued so far is written (used after a fatal framing error). */
  closeAfterFlush(reason = "closed after error response"): void {
    this.#closeAfterFlush = reason;
    if (!this.#writing && this.#chunks.length === 0) this.close(reason);
  }

  /**
   * A message socket (WebSocket): frames what was queued while connecting, and keeps the
   * socket's message size limit in step with ours.
   */
  #useMessageFraming(framing: MessageFraming): void {
    this.#framing = framing;
    framing.maxMessageSize = this.#maxMessageSize;
    if (this.#chunks.length === 0) return;
    let added = 0;
    this.#chunks = this.#chunks.map((chunk) => {
      const framed = framing.encode(chunk);
      added += framed.length - chunk.length;
      return framed;
    });
    this.#shared.reserveQueued(added, Infinity);
    this.#queuedBytes += added;
    this.#waitingBytes += added;
  }

  /** What a message socket may do on this connection besides reading messages. */
  #control(): SocketControl {
    return {
      send: (bytes) => void this.#enqueue(bytes),
      alive: () => {
        this.lastActivity = this.lastRead = Date.now();
        this.pingSentAt = 0;
        this.wroteSinceRead = false;
      },
      end: (reason) => this.closeAfterFlush(reason),
    };
  }

  /** Resolves when nothing is queued (or the connection closed). */
  drained(): Promise<void> {
    if ((!this.#writing && this.#chunks.length === 0) || this.state === "closed") {
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.#drainWaiters ??= []).push(resolve));
  }

  /** Closes now; queued data is reported as not sent because of `failure`. Returns what was lost. */
  fail(reason: string, failure: FailureReason): LostData {
    return this.#close(reason, failure);
  }

  /** Closes now; queued data is reported with `closed`. */
  close(reason: string): void {
    this.#close(reason, "closed");
  }

  /**
   * `resend`: the peer went away, not us -- data never handed to the socket is given back to
   * the owner to send again (an upstream that closes an idle connection just as a request is
   * queued on it must not cost that request).
   */
  #close(reason: string, failure: FailureReason, resend = false): LostData {
    if (this.state === "closed") return { bytes: 0, messages: 0 };
    this.state = "closed";
    this.#failure = failure;
    this.#closedByPeer = resend;
    this.#socket?.close();
    const chunks = this.#chunks;
    const handlers = this.#failHandlers;
    // The rest of an in-flight write is released when that write settles (see #drain).
    let unwritten = 0;
    for (const c of chunks) unwritten += c.length;
    this.#shared.releaseQueued(unwritten);
    this.#queuedBytes -= unwritten;
    this.#waitingBytes = 0;
    this.#chunks = [];
    this.#failHandlers = [];
    // What is lost: the queue, and the write in flight (its handlers run when it fails) --
    // nothing when the peer closed an outbound connection: that all goes out again.
    const lost = { bytes: 0, messages: 0 };
    // Written and never answered: when the peer went away (or the connection failed: a send or
    // keepalive timeout), they were not processed as far as we can tell; not sent again (they
    // may have been), failed back to their senders. Our own close (idle, shutdown) drops them:
    // their senders gave up long ago.
    const unanswered = (resend || failure !== "closed" ? this.#unanswered : undefined) ?? [];
    this.#unanswered = undefined;
    if (resend) {
      if (this.#writePending) this.#heldUnsent = { chunks, handlers };
      else if (chunks.length > 0) this.#hooks.onUnsent(this, { chunks, handlers });
      lost.messages = unanswered.length;
    } else {
      lost.bytes = this.#queuedBytes + unwritten;
      lost.messages = this.#inFlight + chunks.length + unanswered.length;
      for (const handler of handlers) handler?.(failure);
    }
    for (const handler of unanswered) handler(failure);
    this.#releaseDrainWaiters();
    this.#hooks.onClose(this, reason, failure, lost);
    return lost;
  }

  #onData(chunk: Uint8Array): void {
    const unanswered = this.#unanswered;
    if (unanswered !== undefined && unanswered.length > 0) unanswered.length = 0; // keep the array
    this.lastActivity = this.lastRead = Date.now();
    this.pingSentAt = 0;
    this.wroteSinceRead = false;
    if (this.#framing !== undefined) return this.#onMessage(chunk);
    let frames = 0;
    this.#framer.feed(chunk, (frame) => {
      frames++;
      this.#hooks.onFrame(this, frame);
    });
    // The read timeout runs per message: from the read that started the incomplete one.
    if (this.#framer.buffered === 0) this.#partialSince = 0;
    else if (this.#partialSince === 0 || frames > 0) this.#partialSince = this.lastRead;
  }

  /**
   * One whole message from a message socket (WebSocket): framed like a datagram (Content-Length
   * optional, RFC 7118); a bad one is answered or dropped and the connection stays open; CRLF
   * CRLF is a keepalive ping (SIP.js sends them as WebSocket messages).
   */
  #onMessage(data: Uint8Array): void {
    if (isKeepalive(data)) {
      if (data.length === 4) this.#hooks.onFrame(this, PING_FRAME);
      return;
    }
    const framed = frameDatagram(data, this.#maxMessageSize, false);
    if (framed.type === "message") {
      this.#hooks.onFrame(this, {
        type: "message",
        head: framed.head,
        bytes: framed.bytes,
        bodyStart: framed.bodyStart,
      });
    } else {
      this.#hooks.onFrame(this, {
        type: "error",
        status: 400,
        reason: framed.type === "reject" ? framed.why : `Bad Message (${framed.why})`,
        head: framed.type === "reject" ? framed.head : undefined,
        keepOpen: true,
      });
    }
  }

  #awaitAnswer(handlers: (FailHandler | undefined)[]): void {
    let unanswered = this.#unanswered;
    for (const handler of handlers) {
      if (handler !== undefined) (unanswered ??= this.#unanswered = []).push(handler);
    }
    if (unanswered !== undefined && unanswered.length > MAX_UNANSWERED) {
      unanswered.splice(0, unanswered.length - MAX_UNANSWERED);
    }
  }

  #releaseDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    if (waiters === undefined) return;
    this.#drainWaiters = undefined;
    for (const resolve of waiters) resolve();
  }

  #startWriter(): void {
    this.#writing = true;
    this.progressAt = Date.now();
    queueMicrotask(() => this.#drain());
  }

  async #drain(): Promise<void> {
    const socket = this.#socket!;
    while (this.#chunks.length > 0 && this.state === "open") {
      const chunks = this.#chunks;
      const handlers = this.#failHandlers;
      this.#chunks = [];
      this.#failHandlers = [];
      this.#waitingBytes = 0;
      const data = chunks.length === 1 ? chunks[0] : concat(chunks);
      this.#inFlight = chunks.length;
      if (chunks.length > 1 || chunks[0] !== this.#pingChunk) this.wroteSinceRead = true;
      let offset = 0;
      try {
        while (offset < data.length) {
          this.#writePending = true;
          const written = socket.write(offset === 0 ? data : data.subarray(offset));
          // A buffering socket (TLS) could not hand it all to the kernel: async mode.
          if (socket.congested === true) this.#kernelFull = true;
          const n = await written;
          this.#writePending = false;
          offset += n;
          if (offset < data.length) this.#kernelFull = true;
          this.#queuedBytes -= n;
          this.#shared.releaseQueued(n);
          this.lastActivity = this.progressAt = Date.now();
        }
        if (this.direction === "out") this.#awaitAnswer(handlers);
      } catch (error) {
        // The write failed: the peer closed or reset the connection, so it has not processed
        // this batch. Outbound, the batch goes out again on a new connection; inbound, it is
        // reported. If the connection closed meanwhile, the rest of the queue was dealt with
        // there.
        const rest = data.length - offset;
        this.#queuedBytes -= rest;
        this.#shared.releaseQueued(rest);
        this.#writing = this.#writePending = false;
        this.#inFlight = 0;
        if ((this.state as ConnectionState) === "closed") {
          if (this.#closedByPeer) {
            // In order: this batch, then what was queued behind it (held back by #close).
            const held = this.#heldUnsent ?? { chunks: [], handlers: [] };
            this.#heldUnsent = undefined;
            this.#hooks.onUnsent(this, {
              chunks: [...chunks, ...held.chunks],
              handlers: [...handlers, ...held.handlers],
            });
          } else {
            for (const handler of handlers) handler?.(this.#failure);
          }
        } else {
          const resend = this.direction === "out";
          // Put the batch back in front (re-counted) so that #close hands it over with the rest.
          this.#shared.reserveQueued(data.length, Infinity);
          this.#queuedBytes += data.length;
          this.#waitingBytes += data.length;
          this.#chunks = [...chunks, ...this.#chunks];
          this.#failHandlers = [...handlers, ...this.#failHandlers];
          this.#close(`write error: ${(error as Error).message}`, "closed", resend);
        }
        return;
      }
    }
    this.#writing = false;
    this.#kernelFull = false;
    this.#inFlight = 0;
    if (this.#heldUnsent !== undefined) {
      // Closed by the peer while the last write was pending, and that write went through:
      // what waited behind it goes out again elsewhere.
      const held = this.#heldUnsent;
      this.#heldUnsent = undefined;
      this.#hooks.onUnsent(this, held);
    }
    this.#releaseDrainWaiters();
    if (this.#closeAfterFlush !== false) this.close(this.#closeAfterFlush);
  }
}

/** At most this many written messages wait for the peer's first byte (the oldest go first). */
const MAX_UNANSWERED = 1024;

function concat(chunks: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const c of chunks) size += c.length;
  const out = allocBytes(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
