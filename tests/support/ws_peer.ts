/**
 * Test support: a raw WebSocket client (RFC 6455) for ws:// and wss:// (node:net / node:tls,
 * so a test controls every byte: the upgrade request's headers, masking, fragmentation,
 * control frames), reading whole messages and control frames as events.
 * @module
 */
import net from "node:net";
import tls from "node:tls";
import {
  CLOSE,
  encodeFrame,
  FrameReader,
  OPCODE,
  type ReadEvent,
} from "../../plugins/websocket/frames.ts";
import { acceptKey, headEnd, parseHttpHead } from "../../plugins/websocket/handshake.ts";
import { DEFAULT_TIMEOUT_MS, SipMessage, waitUntil } from "./sip_peer.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** How to open a {@link WsClient}. */
export interface WsConnectOptions {
  port: number;
  /** wss:// (TLS, certificate not verified) instead of ws://. */
  secure?: boolean;
  /** SNI name for wss. */
  servername?: string;
  /** Request path (default `/`). */
  path?: string;
  /** Sec-WebSocket-Protocol values (default ["sip"]; empty: the header is left out). */
  protocols?: string[];
  /** Origin header (default none). */
  origin?: string;
  /** Raw request text to send instead of a proper upgrade request. */
  rawRequest?: string;
  /** Answer the server's pings (default true). */
  autoPong?: boolean;
  timeoutMs?: number;
}

/** The server's answer to the upgrade request. */
export interface WsAnswer {
  status: number;
  headers: Map<string, string>;
  /** The whole answer head and what followed it (for a refusal: the body). */
  text: string;
}

/** An event the client read. */
export type WsEvent = ReadEvent | { type: "end" };

/** A WebSocket client connection. */
export class WsClient implements AsyncDisposable {
  readonly socket: net.Socket;
  readonly answer: WsAnswer;
  /** Local port (sipedge's remote port for this client). */
  readonly localPort: number;
  readonly events: WsEvent[] = [];
  #reader = new FrameReader({ expectMasked: false, maxMessageSize: () => 1 << 24 });
  #closed = false;
  #closedPromise: Promise<void>;
  #autoPong: boolean;

  private constructor(
    socket: net.Socket,
    answer: WsAnswer,
    rest: Uint8Array,
    autoPong: boolean,
  ) {
    this.socket = socket;
    this.#autoPong = autoPong;
    this.answer = answer;
    this.localPort = socket.localPort ?? 0;
    this.#closedPromise = new Promise((resolve) =>
      socket.once("close", () => {
        this.#closed = true;
        this.events.push({ type: "end" });
        resolve();
      })
    );
    socket.on("data", (chunk: Uint8Array) => this.#read(chunk));
    if (rest.length > 0) this.#read(rest);
  }

  /**
   * Opens a connection and sends the upgrade request. Resolves with the client when the server
   * answered 101, else rejects with an error whose `answer` property has the server's answer.
   */
  static async connect(options: WsConnectOptions): Promise<WsClient> {
    const { socket, answer, rest } = await upgrade(options);
    if (answer.status !== 101) {
      socket.destroy();
      throw Object.assign(new Error(`upgrade refused: ${answer.status}`), { answer });
    }
    return new WsClient(socket, answer, rest, options.autoPong ?? true);
  }

  /** Sends the upgrade request and returns the server's answer; the connection is closed. */
  static async refusal(options: WsConnectOptions): Promise<WsAnswer> {
    const { socket, answer } = await upgrade(options);
    socket.destroy();
    return answer;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends a text message (masked), optionally in `fragments` frames. */
  send(message: string | Uint8Array, options: { fragments?: number; binary?: boolean } = {}) {
    const data = typeof message === "string" ? encoder.encode(message) : message;
    const parts = options.fragments ?? 1;
    const size = Math.ceil(data.length / parts);
    for (let i = 0; i < parts; i++) {
      const payload = data.subarray(i * size, Math.min(data.length, (i + 1) * size));
      const opcode = i > 0 ? OPCODE.continuation : options.binary ? OPCODE.binary : OPCODE.text;
      const frame = encodeFrame(opcode, payload, true);
      if (i < parts - 1) frame[0] &= 0x7f; // FIN off
      this.socket.write(frame);
    }
  }

  /** Writes raw bytes (a hand-made frame). */
  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Sends a ping with `payload`. */
  ping(payload = "hi"): void {
    this.socket.write(encodeFrame(OPCODE.ping, encoder.encode(payload), true));
  }

  /** Waits for the first event matching `match` not yet taken; removes and returns it. */
  async next<T extends WsEvent>(
    match: (event: WsEvent) => event is T,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    what = "a WebSocket event",
  ): Promise<T> {
    return await waitUntil(
      () => {
        const i = this.events.findIndex(match);
        if (i < 0) return undefined;
        return this.events.splice(i, 1)[0] as T;
      },
      timeoutMs,
      what,
    );
  }

  /** The next SIP message (parsed) that `match`es. */
  async message(
    match: (m: SipMessage) => boolean = () => true,
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<SipMessage> {
    const event = await this.next(
      (e): e is Extract<ReadEvent, { type: "message" }> =>
        e.type === "message" && match(SipMessage.parse(e.data)),
      timeoutMs,
      "a SIP message over the WebSocket",
    );
    return SipMessage.parse(event.data);
  }

  /** The close frame the server sent. */
  async closeFrame(timeoutMs = DEFAULT_TIMEOUT_MS) {
    return await this.next(
      (e): e is Extract<ReadEvent, { type: "close" }> => e.type === "close",
      timeoutMs,
      "a close frame",
    );
  }

  /** Resolves when the connection has closed. */
  async ended(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    await waitUntil(() => this.#closed ? true : undefined, timeoutMs, "the connection to close");
  }

  /** Sends a close frame (normal) and closes. */
  async close(): Promise<void> {
    if (!this.#closed) {
      const payload = new Uint8Array([CLOSE.normal >> 8, CLOSE.normal & 0xff]);
      this.socket.end(encodeFrame(OPCODE.close, payload, true));
      const timer = setTimeout(() => this.socket.destroy(), 500);
      await this.#closedPromise;
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#closed) this.socket.destroy();
    await this.#closedPromise;
  }

  #read(chunk: Uint8Array): void {
    this.#reader.feed(chunk, (event) => {
      // `data` is only valid during the callback.
      if (event.type === "message") this.events.push({ ...event, data: event.data.slice() });
      else if (event.type === "ping") {
        this.events.push({ type: "ping", data: event.data.slice() });
        if (this.#autoPong) this.socket.write(encodeFrame(OPCODE.pong, event.data, true));
      } else this.events.push(event);
    });
  }
}

async function upgrade(
  options: WsConnectOptions,
): Promise<{ socket: net.Socket; answer: WsAnswer; rest: Uint8Array }> {
  const socket = await open(options);
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  const protocols = options.protocols ?? ["sip"];
  const request = options.rawRequest ?? `GET ${options.path ?? "/"} HTTP/1.1\r\n` +
      `Host: 127.0.0.1:${options.port}\r\n` +
      "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
      (protocols.length > 0 ? `Sec-WebSocket-Protocol: ${protocols.join(", ")}\r\n` : "") +
      (options.origin ? `Origin: ${options.origin}\r\n` : "") + "\r\n";
  socket.write(request);
  let buffer = new Uint8Array(0);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return await new Promise((resolve, reject) => {
    let done = false;
    const finish = (closed: boolean) => {
      const end = headEnd(buffer);
      if (!closed && end < 0) return;
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off("data", onData);
      const headText = decoder.decode(buffer.subarray(0, end < 0 ? buffer.length : end));
      const head = parseHttpHead(headText.replace(/\r\n\r\n$/, ""));
      if (head === undefined) return reject(new Error(`no HTTP answer: ${headText}`));
      const status = Number(head.start[1]);
      if (status === 101 && head.headers.get("sec-websocket-accept") !== acceptKey(key)) {
        return reject(new Error("wrong Sec-WebSocket-Accept"));
      }
      const rest = end < 0 ? new Uint8Array(0) : buffer.slice(end);
      const text = status === 101 ? headText : decoder.decode(buffer);
      resolve({ socket, answer: { status, headers: head.headers, text }, rest });
    };
    const onData = (chunk: Uint8Array) => {
      const next = new Uint8Array(buffer.length + chunk.length);
      next.set(buffer);
      next.set(chunk, buffer.length);
      buffer = next;
      // A refusal's body follows its head: wait for the close to have all of it.
      const end = headEnd(buffer);
      if (end >= 0 && decoder.decode(buffer.subarray(0, 12)).includes(" 101")) finish(false);
    };
    socket.on("data", onData);
    socket.once("close", () => finish(true));
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      socket.destroy();
      reject(new Error(`no answer to the upgrade in ${timeoutMs} ms`));
    }, timeoutMs);
  });
}

function open(options: WsConnectOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket: net.Socket = options.secure
      ? tls.connect({
        host: "127.0.0.1",
        port: options.port,
        rejectUnauthorized: false,
        ...(options.servername ? { servername: options.servername } : {}),
      }, () => resolve(socket))
      : net.connect({ host: "127.0.0.1", port: options.port }, () => resolve(socket));
    socket.setNoDelay(true);
    socket.once("error", reject);
    socket.on("error", () => {});
  });
}
