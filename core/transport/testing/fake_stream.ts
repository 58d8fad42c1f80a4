/**
 * Test support: a {@link StreamSocket} and a {@link StreamTransport} driven by the test. Every
 * `write()` returns a promise the test settles (a full or partial byte count, an error) or
 * leaves pending, and what was written is recorded; reads are pushed (`push`, `end`,
 * `error`); every `connect()` is resolved or rejected by the test, or left pending. Plus a
 * clock that replaces `Date.now` while it is in use, and a helper that lets promise chains run.
 * No network, no timers (but {@link tick}).
 * @module
 */
import type {
  ConnectOptions,
  SocketAddress,
  StreamListener,
  StreamSocket,
  StreamTransport,
} from "../types.ts";

/** Lets every queued microtask (and the promise chains they start) run. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Bytes of a latin1 string. */
export function bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/** Latin1 text of bytes. */
export function text(data: Uint8Array): string {
  let out = "";
  for (const b of data) out += String.fromCharCode(b);
  return out;
}

/** Concatenation of byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Replaces `Date.now` with a clock the test moves, until disposed:
 * `using clock = new FakeClock(1_000_000); clock.advance(500);`.
 */
export class FakeClock implements Disposable {
  now: number;
  #original = Date.now;

  constructor(start = 1_000_000) {
    this.now = start;
    Date.now = () => this.now;
  }

  /** Moves the clock forward by `ms` and returns the new time. */
  advance(ms: number): number {
    this.now += ms;
    return this.now;
  }

  [Symbol.dispose](): void {
    Date.now = this.#original;
  }
}

/** One `write()` call on a {@link FakeSocket}. */
export interface FakeWrite {
  /** A copy of the bytes given to `write()`. */
  data: Uint8Array;
  /** How many bytes were taken (set when the write resolved). */
  taken?: number;
  /** The error it was rejected with. */
  error?: Error;
  /** Whether it is settled. */
  settled: boolean;
  resolve(n: number): void;
  reject(error: Error): void;
}

/** Options for a {@link FakeSocket}. */
export interface FakeSocketOptions {
  local?: SocketAddress;
  remote?: SocketAddress;
  /** Resolve every write at once with its full length (like a kernel with room). */
  autoWrite?: boolean;
}

/** A stream socket the test drives. */
export class FakeSocket implements StreamSocket {
  readonly localAddr: SocketAddress;
  readonly remoteAddr: SocketAddress;
  /** Resolve every write at once with its full length. Can be switched at any time. */
  autoWrite: boolean;
  /** Every `write()` call, in order. */
  readonly writes: FakeWrite[] = [];
  /** Whether `close()` was called. */
  closed = false;
  /** How many times `close()` was called. */
  closeCalls = 0;
  #onData: ((chunk: Uint8Array) => void) | undefined;
  #onClose: ((error?: Error) => void) | undefined;
  #ended = false;

  constructor(options: FakeSocketOptions = {}) {
    this.localAddr = options.local ?? { hostname: "192.0.2.10", port: 40000 };
    this.remoteAddr = options.remote ?? { hostname: "198.51.100.1", port: 5060 };
    this.autoWrite = options.autoWrite ?? false;
  }

  /** Whether `start()` was called. */
  get started(): boolean {
    return this.#onData !== undefined;
  }

  /** Writes not settled yet, oldest first. */
  get pending(): FakeWrite[] {
    return this.writes.filter((w) => !w.settled);
  }

  /** The bytes the "kernel" took, in order (the taken prefix of every resolved write). */
  get taken(): Uint8Array {
    return concatBytes(
      this.writes.filter((w) => w.taken !== undefined).map((w) => w.data.subarray(0, w.taken)),
    );
  }

  /** {@link taken} as latin1 text. */
  get takenText(): string {
    return text(this.taken);
  }

  start(onData: (chunk: Uint8Array) => void, onClose: (error?: Error) => void): void {
    if (this.#onData !== undefined) throw new Error("FakeSocket: start() called twice");
    this.#onData = onData;
    this.#onClose = onClose;
  }

  write(data: Uint8Array): Promise<number> {
    let resolve!: (n: number) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<number>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const w: FakeWrite = {
      data: data.slice(),
      settled: false,
      resolve: (n) => {
        if (w.settled) throw new Error("FakeSocket: write settled twice");
        if (n < 0 || n > w.data.length) throw new Error(`FakeSocket: bad byte count ${n}`);
        w.settled = true;
        w.taken = n;
        resolve(n);
      },
      reject: (e) => {
        if (w.settled) throw new Error("FakeSocket: write settled twice");
        w.settled = true;
        w.error = e;
        reject(e);
      },
    };
    this.writes.push(w);
    if (this.closed) w.reject(new Deno.errors.BadResource("Bad resource ID"));
    else if (this.autoWrite) w.resolve(w.data.length);
    return promise;
  }

  /** Resolves the oldest pending write with `n` bytes (default: all of it). */
  complete(n?: number): FakeWrite {
    const w = this.#oldestPending();
    w.resolve(n ?? w.data.length);
    return w;
  }

  /** Rejects the oldest pending write. */
  failWrite(error: Error = new Deno.errors.ConnectionReset("Connection reset by peer")): FakeWrite {
    const w = this.#oldestPending();
    w.reject(error);
    return w;
  }

  /** The peer sent `chunk`. */
  push(chunk: Uint8Array | string): void {
    if (this.#onData === undefined) throw new Error("FakeSocket: push() before start()");
    if (this.#ended) throw new Error("FakeSocket: push() after end");
    this.#onData(typeof chunk === "string" ? bytes(chunk) : chunk);
  }

  /** The peer closed the stream (EOF): like the real read loop, closes, then reports. */
  end(): void {
    this.#finish(undefined);
  }

  /** The stream failed (a read error). */
  error(e: Error = new Deno.errors.ConnectionReset("Connection reset by peer")): void {
    this.#finish(e);
  }

  close(): void {
    this.closeCalls++;
    if (this.closed) return;
    this.closed = true;
    for (const w of this.pending) w.reject(new Deno.errors.Interrupted("operation canceled"));
    // The real read loop ends when the socket closes and then reports the end (later).
    if (this.#onClose !== undefined && !this.#ended) {
      this.#ended = true;
      const onClose = this.#onClose;
      queueMicrotask(() => onClose());
    }
  }

  #finish(e: Error | undefined): void {
    if (this.#onClose === undefined) throw new Error("FakeSocket: end() before start()");
    if (this.#ended) return;
    this.#ended = true;
    this.close();
    this.#onClose(e);
  }

  #oldestPending(): FakeWrite {
    const w = this.writes.find((x) => !x.settled);
    if (w === undefined) throw new Error("FakeSocket: no pending write");
    return w;
  }
}

/** One `connect()` call on a {@link FakeTransport}. */
export interface FakeConnect {
  options: ConnectOptions;
  settled: boolean;
  /** The socket it resolved with. */
  socket?: FakeSocket;
  /** Resolves the connect with `socket` (default: a new socket to the asked address). */
  resolve(socket?: FakeSocket): FakeSocket;
  /** Rejects the connect. */
  reject(error: Error): void;
  /** Settles when the connect does (never rejects); for awaiting in tests. */
  done: Promise<void>;
}

/** Options for a {@link FakeTransport}. */
export interface FakeTransportOptions {
  name?: string;
  defaultPort?: number;
  /** Resolve every connect at once with a new socket. */
  autoConnect?: boolean;
  /** `autoWrite` of the sockets this transport creates. */
  autoWrite?: boolean;
  /** Reject a connect with the signal's reason when its signal aborts. */
  honorSignal?: boolean;
}

/** An error like the one an aborted `AbortSignal.timeout` gives. */
export function timeoutError(message = "Signal timed out."): Error {
  const e = new Error(message);
  e.name = "TimeoutError";
  return e;
}

/** A stream transport the test drives. */
export class FakeTransport implements StreamTransport {
  readonly name: string;
  readonly viaName: string;
  readonly secure = false;
  readonly defaultPort: number;
  autoConnect: boolean;
  autoWrite: boolean;
  honorSignal: boolean;
  /** Every `connect()` call, in order. */
  readonly connects: FakeConnect[] = [];
  /** Listeners opened. */
  readonly listeners: FakeListener[] = [];

  constructor(options: FakeTransportOptions = {}) {
    this.name = options.name ?? "tcp";
    this.viaName = this.name.toUpperCase();
    this.defaultPort = options.defaultPort ?? 5060;
    this.autoConnect = options.autoConnect ?? false;
    this.autoWrite = options.autoWrite ?? false;
    this.honorSignal = options.honorSignal ?? false;
  }

  /** Connects not settled yet. */
  get pending(): FakeConnect[] {
    return this.connects.filter((c) => !c.settled);
  }

  /** The sockets connects resolved with, in order. */
  get sockets(): FakeSocket[] {
    return this.connects.flatMap((c) => c.socket ? [c.socket] : []);
  }

  listen(address: SocketAddress): StreamListener {
    const listener = new FakeListener(address);
    this.listeners.push(listener);
    return listener;
  }

  connect(options: ConnectOptions): Promise<StreamSocket> {
    let resolve!: (s: FakeSocket) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<FakeSocket>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const c: FakeConnect = {
      options,
      settled: false,
      done: promise.then(() => {}, () => {}),
      resolve: (socket) => {
        if (c.settled) throw new Error("FakeTransport: connect settled twice");
        c.settled = true;
        c.socket = socket ?? new FakeSocket({
          remote: { hostname: options.hostname, port: options.port },
          autoWrite: this.autoWrite,
        });
        resolve(c.socket);
        return c.socket;
      },
      reject: (e) => {
        if (c.settled) throw new Error("FakeTransport: connect settled twice");
        c.settled = true;
        reject(e);
      },
    };
    this.connects.push(c);
    if (this.autoConnect) c.resolve();
    else if (this.honorSignal) {
      options.signal.addEventListener("abort", () => {
        if (!c.settled) c.reject(options.signal.reason);
      }, { once: true });
    }
    return promise;
  }
}

/** A listener whose accepted sockets the test hands in. */
export class FakeListener implements StreamListener {
  readonly addr: SocketAddress;
  closed = false;
  #onSocket: ((socket: StreamSocket) => void) | undefined;

  constructor(addr: SocketAddress) {
    this.addr = addr;
  }

  start(onSocket: (socket: StreamSocket) => void): void {
    this.#onSocket = onSocket;
  }

  /** A peer connected. */
  accept(socket: FakeSocket): void {
    if (this.#onSocket === undefined) throw new Error("FakeListener: accept() before start()");
    this.#onSocket(socket);
  }

  close(): void {
    this.closed = true;
  }
}
