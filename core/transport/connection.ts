/**
 * One stream connection in the worker that owns it: framing on the read side, the async write
 * path on the write side (DESIGN.md §3, seed/tcp-supervisor-post.txt).
 *
 * Write path: `send()` queues the bytes; when the connection is open and no write is in
 * flight, a writer is started on the next microtask, so every message produced while handling
 * one read goes out in a single coalesced `write()`. While a write is in flight (the kernel
 * has not taken everything: "async mode"), further data queues behind it in order and the one
 * writer drains the queue; when it is empty the connection leaves async mode. While the
 * connection is still connecting, data waits in the queue.
 * @module
 */
import { type Frame, StreamFramer } from "../sip/stream_framer.ts";
import type { SocketAddress, StreamSocket, StreamTransport } from "./types.ts";

/** Why queued data was not sent (passed to failure handlers). */
export type SendFailure = "connect_failed" | "closed";

/** Called for queued data that will never be sent. */
export type FailHandler = (failure: SendFailure) => void;

/** Life-cycle states. */
export type ConnectionState = "connecting" | "open" | "closed";

/** Queued data that was never handed to the socket, with its failure handlers. */
export interface UnsentData {
  chunks: Uint8Array[];
  handlers: (FailHandler | undefined)[];
}

/** What a connection tells its owner. */
export interface ConnectionHooks {
  /** A frame was read (called synchronously while handling a read). */
  onFrame(connection: Connection, frame: Frame): void;
  /** The connection closed (once). Queued data was reported, or handed to `onUnsent`. */
  onClose(connection: Connection, reason: string): void;
  /**
   * An outbound connection was closed or reset by the peer with data that the peer cannot
   * have processed (never written, or its write failed): the owner sends it again over a new
   * connection.
   */
  onUnsent(connection: Connection, unsent: UnsentData): void;
}

/** Options for a {@link Connection}. */
export interface ConnectionOptions {
  id: number;
  transport: StreamTransport;
  direction: "in" | "out";
  /** Peer address (for outbound connections: the destination, known before connecting). */
  remote: SocketAddress;
  maxMessageSize: number;
  hooks: ConnectionHooks;
}

/** A stream connection. */
export class Connection {
  readonly id: number;
  readonly transport: StreamTransport;
  readonly direction: "in" | "out";
  readonly remote: SocketAddress;
  readonly createdAt = Date.now();
  local: SocketAddress | undefined;
  state: ConnectionState = "connecting";
  /** Time of the last byte read or written (ms since epoch, updated per read/write). */
  lastActivity = this.createdAt;
  /** When the incomplete message now buffered started (0 when none). */
  partialSince = 0;

  #socket: StreamSocket | undefined;
  #framer: StreamFramer;
  #hooks: ConnectionHooks;
  #chunks: Uint8Array[] = [];
  #failHandlers: (FailHandler | undefined)[] = [];
  #queuedBytes = 0;
  #writing = false;
  #closeAfterFlush = false;
  #drainWaiters: (() => void)[] = [];

  constructor(options: ConnectionOptions) {
    this.id = options.id;
    this.transport = options.transport;
    this.direction = options.direction;
    this.remote = options.remote;
    this.#hooks = options.hooks;
    this.#framer = new StreamFramer({ maxMessageSize: options.maxMessageSize });
  }

  /** Bytes queued in sipedge (not yet taken by the kernel). */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** True while a write is in flight or data is queued (async mode). */
  get asyncMode(): boolean {
    return this.#writing || this.#chunks.length > 0;
  }

  /** Attaches the connected socket and starts reading and writing. */
  attach(socket: StreamSocket): void {
    this.#socket = socket;
    this.local = socket.localAddr;
    this.state = "open";
    this.lastActivity = Date.now();
    socket.start(
      (chunk) => this.#onData(chunk),
      (error) =>
        this.#close(
          error === undefined ? "closed by peer" : `read error: ${error.message}`,
          "closed",
          this.direction === "out",
        ),
    );
    if (this.#chunks.length > 0) this.#startWriter();
  }

  /**
   * Queues `bytes` for sending. `onFail` is called if they are never sent. Returns false (and
   * does not call `onFail`) when the connection is already closed.
   */
  send(bytes: Uint8Array, onFail?: FailHandler): boolean {
    if (this.state === "closed") return false;
    this.#chunks.push(bytes);
    this.#failHandlers.push(onFail);
    this.#queuedBytes += bytes.length;
    if (this.state === "open" && !this.#writing) this.#startWriter();
    return true;
  }

  /** Closes once everything queued so far is written (used after a fatal framing error). */
  closeAfterFlush(): void {
    this.#closeAfterFlush = true;
    if (!this.asyncMode) this.close("closed after error response");
  }

  /** Resolves when nothing is queued (or the connection closed). */
  drained(): Promise<void> {
    if (!this.asyncMode || this.state === "closed") return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Fails the connect: queued data is reported with `connect_failed`. */
  connectFailed(reason: string): void {
    this.#close(reason, "connect_failed");
  }

  /** Closes now; queued data is reported as not sent. */
  close(reason: string): void {
    this.#close(reason, "closed");
  }

  /**
   * `resend`: the peer went away, not us — data never handed to the socket is given back to
   * the owner to send again (an upstream that closes an idle connection just as a request is
   * queued on it must not cost that request).
   */
  #close(reason: string, failure: SendFailure, resend = false): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.#socket?.close();
    const chunks = this.#chunks;
    const handlers = this.#failHandlers;
    this.#chunks = [];
    this.#failHandlers = [];
    this.#queuedBytes = 0;
    if (resend && chunks.length > 0) this.#hooks.onUnsent(this, { chunks, handlers });
    else for (const handler of handlers) handler?.(failure);
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
    this.#hooks.onClose(this, reason);
  }

  #onData(chunk: Uint8Array): void {
    this.lastActivity = Date.now();
    this.#framer.feed(chunk, (frame) => this.#hooks.onFrame(this, frame));
    if (this.#framer.buffered === 0) this.partialSince = 0;
    else if (this.partialSince === 0) this.partialSince = this.lastActivity;
  }

  #startWriter(): void {
    this.#writing = true;
    queueMicrotask(() => this.#drain());
  }

  async #drain(): Promise<void> {
    const socket = this.#socket!;
    try {
      while (this.#chunks.length > 0 && this.state === "open") {
        const chunks = this.#chunks;
        const handlers = this.#failHandlers;
        this.#chunks = [];
        this.#failHandlers = [];
        const data = chunks.length === 1 ? chunks[0] : concat(chunks);
        let offset = 0;
        try {
          while (offset < data.length) {
            const n = await socket.write(offset === 0 ? data : data.subarray(offset));
            offset += n;
            this.#queuedBytes -= n;
            this.lastActivity = Date.now();
          }
        } catch (error) {
          // The write failed: the peer closed or reset the connection, so it has not processed
          // this batch. Outbound, the batch goes out again on a new connection; inbound, it is
          // reported. If the connection closed meanwhile, the rest of the queue was dealt with
          // there.
          const resend = this.direction === "out";
          if ((this.state as ConnectionState) === "closed") {
            if (resend) this.#hooks.onUnsent(this, { chunks, handlers });
            else for (const handler of handlers) handler?.("closed");
          } else {
            this.#chunks = [...chunks, ...this.#chunks];
            this.#failHandlers = [...handlers, ...this.#failHandlers];
            this.#close(`write error: ${(error as Error).message}`, "closed", resend);
          }
          return;
        }
      }
    } finally {
      this.#writing = false;
    }
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
    if (this.#closeAfterFlush) this.close("closed after error response");
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const c of chunks) size += c.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
