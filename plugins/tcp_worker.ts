/**
 * The `tcp` transport plugin's worker side: SIP over TCP with `Deno.listen` (SO_REUSEPORT, one
 * listener per worker) and `Deno.connect`, reading with `conn.read` into a per-connection buffer
 * (the cheapest Deno read path measured, DESIGN.md §6) and Nagle off on every socket. Reader
 * workers import this module, not ./tcp.ts (the schema, zod: see docs/decisions.md, "Memory at
 * rest").
 * @module
 */
import type { PluginWorker } from "../core/plugin/types.ts";
import type {
  ConnectOptions,
  SocketAddress,
  StreamListener,
  StreamSocket,
  StreamTransport,
} from "../core/transport/types.ts";
import type { TcpConfig } from "./tcp.ts";

/** Reads that fit the small buffer before a connection gives the large one back. */
const SHRINK_AFTER = 16;

const EMPTY = new Uint8Array(0);

class TcpSocket implements StreamSocket {
  readonly localAddr: SocketAddress;
  readonly remoteAddr: SocketAddress;
  #conn: Deno.TcpConn;
  /** Read buffer sizes: while reads fit, and while they fill it. */
  #small: number;
  #large: number;
  #buffer: Uint8Array = EMPTY;
  /** Reads in a row that fit the small buffer while the large one is in use. */
  #fitting = 0;
  #onData: ((chunk: Uint8Array) => void) | undefined;
  #onClose: ((error?: Error) => void) | undefined;
  #closed = false;

  constructor(conn: Deno.TcpConn, settings: TcpConfig) {
    this.#conn = conn;
    this.#large = settings.read_buffer_size;
    this.#small = Math.min(settings.idle_read_buffer_size, this.#large);
    conn.setNoDelay(true);
    const local = conn.localAddr as Deno.NetAddr;
    const remote = conn.remoteAddr as Deno.NetAddr;
    this.localAddr = { hostname: local.hostname, port: local.port };
    this.remoteAddr = { hostname: remote.hostname, port: remote.port };
  }

  start(onData: (chunk: Uint8Array) => void, onClose: (error?: Error) => void): void {
    this.#onData = onData;
    this.#onClose = onClose;
    this.#buffer = new Uint8Array(this.#small);
    this.#read();
  }

  // The read loop is a chain of callbacks, not an async function: a suspended async function
  // keeps its generator, register file, await closures and result promise for as long as the
  // connection is idle (measured: ~300 B more per idle connection, heap snapshots).
  //
  // One buffer per connection, not one per worker: every connection keeps a read pending, and
  // the runtime fills a pending read's buffer when its data arrives, possibly for several
  // connections before any of their continuations run -- a shared buffer would be overwritten.
  // The buffer is zero-filled, so all of it is committed memory (measured: a 16 KB buffer is
  // 12 KB more per idle connection than a 4 KB one). So a connection reads into a small buffer
  // and takes the large one only while reads fill it (a busy trunk), and goes back to the
  // small one after a run of reads that fit: idle clients cost little, busy peers still read
  // in large gulps.
  #read(): void {
    this.#conn.read(this.#buffer).then(this.#onRead, this.#onReadError);
  }

  #onRead = (n: number | null): void => {
    if (n === null) return this.#end(undefined);
    const buffer = this.#buffer;
    try {
      this.#onData!(buffer.subarray(0, n));
    } catch (error) {
      return this.#end(error as Error);
    }
    if (this.#closed) return this.#end(undefined);
    if (n === buffer.length && buffer.length < this.#large) {
      this.#buffer = new Uint8Array(this.#large);
      this.#fitting = 0;
    } else if (buffer.length > this.#small && n <= this.#small && ++this.#fitting >= SHRINK_AFTER) {
      this.#buffer = new Uint8Array(this.#small);
      this.#fitting = 0;
    }
    this.#read();
  };

  #onReadError = (error: Error): void => {
    // A read that fails because we closed the socket is a close, not an error.
    this.#end(this.#closed ? undefined : error);
  };

  /** Ends reading: closes the socket and reports it, once. */
  #end(error: Error | undefined): void {
    this.close();
    const onClose = this.#onClose;
    if (onClose === undefined) return;
    this.#onClose = undefined;
    this.#onData = undefined;
    onClose(error);
  }

  write(data: Uint8Array): Promise<number> {
    return this.#conn.write(data);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed by the runtime
    }
  }
}

class TcpListener implements StreamListener {
  readonly addr: SocketAddress;
  #listener: Deno.TcpListener;
  #settings: TcpConfig;
  #closed = false;

  constructor(address: SocketAddress, settings: TcpConfig) {
    this.#listener = Deno.listen({
      hostname: address.hostname,
      port: address.port,
      transport: "tcp",
      reusePort: true,
    });
    this.#settings = settings;
    const addr = this.#listener.addr;
    this.addr = { hostname: addr.hostname, port: addr.port };
  }

  start(onSocket: (socket: StreamSocket) => void): void {
    (async () => {
      while (!this.#closed) {
        let conn: Deno.TcpConn;
        try {
          conn = await this.#listener.accept();
        } catch (error) {
          if (this.#closed || error instanceof Deno.errors.BadResource) return;
          // EMFILE and friends: back off instead of spinning, keep accepting afterwards.
          await new Promise((resolve) => setTimeout(resolve, 100));
          continue;
        }
        onSocket(new TcpSocket(conn, this.#settings));
      }
    })();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
  }
}

function tcpTransport(cfg: TcpConfig): StreamTransport {
  return {
    name: "tcp",
    viaName: "TCP",
    secure: false,
    defaultPort: 5060,
    listen: (address) => new TcpListener(address, cfg),
    connect: async (options: ConnectOptions) => {
      const conn = await Deno.connect({
        hostname: options.hostname,
        port: options.port,
        transport: "tcp",
        signal: options.signal,
      });
      return new TcpSocket(conn, cfg);
    },
  };
}

/** The tcp plugin's `worker` hook. */
export const worker: PluginWorker<TcpConfig> = (cfg) => {
  // One settings object shared by the transport and its listeners: a reload changes it in
  // place, so listeners keep accepting and new connections get the new buffer size.
  const settings = { ...cfg };
  return {
    transport: tcpTransport(settings),
    reload: (next) => () => Object.assign(settings, next),
  };
};
