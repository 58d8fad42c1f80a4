/**
 * WebSocket over any stream socket (TCP for ws, TLS for wss): the server and client opening
 * handshakes, and {@link WebSocketSocket}, the message-oriented StreamSocket the core sees --
 * one SIP message per WebSocket message (RFC 7118 §5.1), pings answered and sent, a close
 * frame answered.
 *
 * Writes go straight to the stream underneath, so the core's async write path, its limits and
 * send_timeout work as for tcp and tls (`congested` is the stream's). The core frames each SIP
 * message with `messages.encode` and queues protocol frames (pong, close) through the
 * connection's control, so a frame is never split by another.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type {
  MessageFraming,
  SocketAddress,
  SocketControl,
  StreamListener,
  StreamSocket,
} from "../../core/transport/types.ts";
import { CLOSE, closeFrame, encodeFrame, FrameReader, OPCODE, type ReadEvent } from "./frames.ts";
import {
  answerHandshake,
  checkServerAnswer,
  clientRequest,
  headEnd,
  httpError,
  MAX_HANDSHAKE_BYTES,
  parseHttpHead,
  type ServerPolicy,
} from "./handshake.ts";

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Routes a stream's reads to whoever holds it now (the handshake, then the WebSocket): a
 * stream is started once, its callbacks are fixed then.
 */
class Tap {
  onData: (chunk: Uint8Array) => void = () => {};
  onClose: (error?: Error) => void = () => {};
  constructor(inner: StreamSocket) {
    inner.start((chunk) => this.onData(chunk), (error) => this.onClose(error));
  }
}

/** What a connection's handshake left for the control API. */
interface HandshakeInfo {
  path: string;
  origin: string | undefined;
}

/** A WebSocket connection as a message-oriented stream socket. */
export class WebSocketSocket implements StreamSocket {
  readonly localAddr: SocketAddress;
  readonly remoteAddr: SocketAddress;
  readonly messages: MessageFraming;
  #inner: StreamSocket;
  #reader: FrameReader;
  /** We are the client: our frames are masked, the server's are not. */
  #client: boolean;
  #info: HandshakeInfo;
  #onData: ((message: Uint8Array) => void) | undefined;
  #onClose: ((error?: Error) => void) | undefined;
  #control: SocketControl | undefined;
  /** Bytes read before start(): the frames that followed the handshake at once. */
  #early: Uint8Array[] = [];
  #ended: { error?: Error } | undefined;
  /** When the frame or message being read started (0: none), for message_read_timeout. */
  #partialSince = 0;

  constructor(inner: StreamSocket, tap: Tap, client: boolean, info: HandshakeInfo) {
    this.#inner = inner;
    this.#client = client;
    this.#info = info;
    this.localAddr = inner.localAddr;
    this.remoteAddr = inner.remoteAddr;
    const masked = client;
    // deno-lint-ignore no-this-alias
    const socket = this;
    this.messages = {
      encode: (message) =>
        encodeFrame(isText(message) ? OPCODE.text : OPCODE.binary, message, masked),
      ping: () => encodeFrame(OPCODE.ping, EMPTY, masked),
      maxMessageSize: 65535,
      get partialSince() {
        return socket.#partialSince;
      },
    };
    this.#reader = new FrameReader({
      expectMasked: !client,
      maxMessageSize: () => this.messages.maxMessageSize,
    });
    tap.onData = (chunk) => {
      if (this.#onData === undefined) this.#early.push(chunk.slice());
      else this.#read(chunk);
    };
    tap.onClose = (error) => {
      if (this.#onClose === undefined) this.#ended ??= { error };
      else this.#onClose(error);
    };
  }

  get congested(): boolean {
    return this.#inner.congested === true;
  }

  start(
    onData: (chunk: Uint8Array) => void,
    onClose: (error?: Error) => void,
    control?: SocketControl,
  ): void {
    if (control === undefined) throw new Error("a WebSocket needs the connection's control");
    this.#onData = onData;
    this.#control = control;
    for (const chunk of this.#early.splice(0)) this.#read(chunk);
    if (this.#ended !== undefined) return onClose(this.#ended.error);
    this.#onClose = onClose;
  }

  write(data: Uint8Array): Promise<number> {
    return this.#inner.write(data);
  }

  details(): Record<string, string | number | boolean | undefined> {
    return { ...this.#inner.details?.(), ws_path: this.#info.path, ws_origin: this.#info.origin };
  }

  close(): void {
    this.#inner.close();
  }

  #read(chunk: Uint8Array): void {
    let messages = 0;
    this.#reader.feed(chunk, (event) => {
      if (event.type === "message") messages++;
      this.#event(event);
    });
    // As for streams: the timeout runs per message, from the read that started the incomplete
    // one; control frames do not restart it.
    if (!this.#reader.partial) this.#partialSince = 0;
    else if (this.#partialSince === 0 || messages > 0) this.#partialSince = Date.now();
  }

  #event(event: ReadEvent): void {
    const control = this.#control!;
    switch (event.type) {
      case "message":
        return this.#onData!(event.data);
      case "ping":
        control.alive();
        return control.send(encodeFrame(OPCODE.pong, event.data, this.#client));
      case "pong":
        return control.alive();
      case "close": {
        // Echo the code (RFC 6455 §5.5.1); then the server closes the TCP connection.
        const code = event.code === 1005 ? CLOSE.normal : event.code;
        control.send(closeFrame(code, "", this.#client));
        return control.end(
          `WebSocket closed by peer (${event.code}${
            event.reason === "" ? "" : ` ${event.reason}`
          })`,
        );
      }
      case "error":
        control.send(closeFrame(event.code, event.why, this.#client));
        return control.end(`WebSocket error: ${event.why} (closing with ${event.code})`);
    }
  }
}

/**
 * Whether a message goes as a text frame: when it is valid UTF-8 (nearly every SIP message;
 * a browser fails the connection on a text frame that is not). Others go as binary.
 */
function isText(message: Uint8Array): boolean {
  for (let i = 0; i < message.length; i++) {
    if (message[i] >= 0x80) {
      try {
        utf8.decode(message);
        return true;
      } catch {
        return false;
      }
    }
  }
  return true;
}

/** What a server handshake needs. */
export interface AcceptOptions {
  policy: ServerPolicy;
  /** Milliseconds the upgrade request may take. */
  timeout: number;
  log: Logger;
}

/**
 * Runs the server handshake on an accepted stream: resolves with the WebSocket once the 101
 * is written, or undefined when the request was refused (answered with an HTTP error) or the
 * stream closed or timed out (then it is closed).
 */
export function acceptWebSocket(
  inner: StreamSocket,
  options: AcceptOptions,
): Promise<WebSocketSocket | undefined> {
  const tap = new Tap(inner);
  const remote = `${inner.remoteAddr.hostname}:${inner.remoteAddr.port}`;
  return new Promise((resolve) => {
    let head: Uint8Array = EMPTY;
    let settled = false;
    const finish = (socket: WebSocketSocket | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (socket === undefined) {
        tap.onData = () => {};
        inner.close();
      }
      resolve(socket);
    };
    const timer = setTimeout(() => {
      options.log.debug("WebSocket handshake from {remote} timed out", { remote });
      finish(undefined);
    }, options.timeout);
    tap.onClose = () => finish(undefined);
    tap.onData = (chunk) => {
      head = join(head, chunk);
      const end = headEnd(head);
      if (end < 0) {
        if (head.length > MAX_HANDSHAKE_BYTES) {
          refuse(inner, httpError(431, "Request Header Fields Too Large", "request too large"))
            .then(() => finish(undefined));
          tap.onData = () => {};
        }
        return;
      }
      // A client may send its first frames as soon as it reads the 101: kept until the
      // WebSocket exists.
      const early: Uint8Array[] = [head.subarray(end)];
      tap.onData = (more) => void early.push(more.slice());
      const parsed = parseHttpHead(new TextDecoder().decode(head.subarray(0, end - 4)));
      const decision = parsed === undefined
        ? {
          ok: false as const,
          status: 400,
          why: "not an HTTP request",
          response: httpError(400, "Bad Request", "not an HTTP request"),
        }
        : answerHandshake(parsed, options.policy);
      if (!decision.ok) {
        options.log.info("WebSocket handshake from {remote} refused: {status} {why}", {
          remote,
          status: decision.status,
          why: decision.why,
        });
        refuse(inner, decision.response).then(() => finish(undefined));
        return;
      }
      inner.write(encoder.encode(decision.response)).then(
        () => {
          if (settled) return;
          const socket = new WebSocketSocket(inner, tap, false, {
            path: decision.path,
            origin: decision.origin,
          });
          for (const chunk of early) if (chunk.length > 0) tap.onData(chunk);
          finish(socket);
        },
        () => finish(undefined),
      );
    };
  });
}

/** Writes an HTTP error answer; resolves when written or failed (the caller closes). */
function refuse(inner: StreamSocket, response: string): Promise<void> {
  return inner.write(encoder.encode(response)).then(() => {}, () => {});
}

/** What a client handshake needs. */
export interface ConnectOptions {
  /** The destination as named (Host header). */
  hostname: string;
  port: number;
  /** The transport's default port (omitted from Host when equal). */
  defaultPort: number;
  path: string;
  signal: AbortSignal;
}

/** Runs the client handshake on a connected stream; rejects (closing it) when refused. */
export function connectWebSocket(
  inner: StreamSocket,
  options: ConnectOptions,
): Promise<WebSocketSocket> {
  const tap = new Tap(inner);
  const { hostname, port, path, signal } = options;
  const { request, key } = clientRequest(hostname, port, path, options.defaultPort);
  const destination = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  return new Promise((resolve, reject) => {
    let head: Uint8Array = EMPTY;
    let settled = false;
    const fail = (why: string, name?: string) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      tap.onData = () => {};
      inner.close();
      const error = new Error(`WebSocket connect to ${destination}: ${why}`);
      if (name !== undefined) error.name = name;
      reject(error);
    };
    const onAbort = () => fail("handshake timed out", "TimeoutError");
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    tap.onClose = () => fail("closed during the handshake");
    tap.onData = (chunk) => {
      head = join(head, chunk);
      const end = headEnd(head);
      if (end < 0) {
        if (head.length > MAX_HANDSHAKE_BYTES) fail("answer too large");
        return;
      }
      const parsed = parseHttpHead(new TextDecoder().decode(head.subarray(0, end - 4)));
      const problem = parsed === undefined ? "not an HTTP answer" : checkServerAnswer(parsed, key);
      if (problem !== undefined) return fail(problem);
      settled = true;
      signal.removeEventListener("abort", onAbort);
      const socket = new WebSocketSocket(inner, tap, true, { path, origin: undefined });
      const rest = head.subarray(end);
      if (rest.length > 0) tap.onData(rest);
      resolve(socket);
    };
    inner.write(encoder.encode(request)).catch((error) => fail((error as Error).message));
  });
}

/** A listener that upgrades every accepted stream before the core gets it. */
export class WebSocketListener implements StreamListener {
  #inner: StreamListener;
  #options: () => AcceptOptions;

  /** `options` is read per connection, so a reload applies to the next handshake. */
  constructor(inner: StreamListener, options: () => AcceptOptions) {
    this.#inner = inner;
    this.#options = options;
  }

  get addr(): SocketAddress {
    return this.#inner.addr;
  }

  start(onSocket: (socket: StreamSocket) => void, admit?: (ip: string) => boolean): void {
    this.#inner.start((raw) => {
      // A banned source is closed before its handshake costs anything (tls asks too).
      if (admit?.(raw.remoteAddr.hostname) === false) return raw.close();
      acceptWebSocket(raw, this.#options()).then((socket) => {
        if (socket !== undefined) onSocket(socket);
      });
    }, admit);
  }

  close(): void {
    this.#inner.close();
  }
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
