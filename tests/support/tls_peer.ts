/**
 * SIP peers over TLS for end-to-end tests, on 127.0.0.1, built on `node:tls` (client
 * certificates, SNI and "never read" need it):
 *
 * - {@linkcode TlsUac}: a client connection to sipedge that sends bytes and reads messages.
 * - {@linkcode TlsUas}: a TLS server that records requests and answers them (200 by default),
 *   or accepts and never reads (`read: false`) so that what sipedge sends backs up.
 *
 * Both are `AsyncDisposable`.
 * @module
 */
import tls from "node:tls";
import { parseHead } from "../../core/sip/parse_head.ts";
import { buildResponse, concatBytes, DEFAULT_TIMEOUT_MS, latin1, SipMessage } from "./sip_peer.ts";

/** Cuts complete messages (and single CRLFs, dropped) off the front of `buffer`. */
function extractMessages(
  buffer: Uint8Array,
  out: SipMessage[],
): Uint8Array {
  let b = buffer;
  while (b.length > 0) {
    if (b[0] === 13 || b[0] === 10) {
      b = b.subarray(b[0] === 13 && b[1] === 10 ? 2 : 1);
      continue;
    }
    const text = latin1(b.subarray(0, Math.min(b.length, 256 * 1024)));
    const headEnd = text.indexOf("\r\n\r\n");
    if (headEnd < 0) break;
    const headText = text.slice(0, headEnd + 4);
    const m = /\r\n(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*\r\n/i.exec(headText);
    const total = headEnd + 4 + (m === null ? 0 : Number(m[1]));
    if (b.length < total) break;
    out.push(new SipMessage(b.slice(0, total), parseHead(headText), headEnd + 4));
    b = b.subarray(total);
  }
  return b;
}

/** Options for {@linkcode TlsUac.connect}. */
export interface TlsUacOptions {
  /** SNI name to send (none by default). */
  servername?: string;
  /** CA certificates (PEM) to verify sipedge with; without: no verification. */
  ca?: string;
  /** Client certificate and key (PEM). */
  cert?: string;
  key?: string;
  /** Connect timeout in ms (default 3000). */
  timeoutMs?: number;
}

/** A TLS client connection to sipedge. */
export class TlsUac implements AsyncDisposable {
  readonly socket: tls.TLSSocket;
  /** Local port of the connection. */
  readonly localPort: number;
  #messages: SipMessage[] = [];
  #buffer: Uint8Array = new Uint8Array(0);
  #closed = false;
  #closedPromise: Promise<void>;

  private constructor(socket: tls.TLSSocket) {
    this.socket = socket;
    this.localPort = socket.localPort ?? 0;
    socket.on("data", (chunk: Uint8Array) => {
      this.#buffer = extractMessages(concatBytes(this.#buffer, chunk), this.#messages);
    });
    socket.on("error", () => {});
    this.#closedPromise = new Promise((resolve) =>
      socket.once("close", () => {
        this.#closed = true;
        resolve();
      })
    );
  }

  /** Connects and completes the handshake (rejects with the TLS error otherwise). */
  static connect(port: number, options: TlsUacOptions = {}): Promise<TlsUac> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port,
        ...(options.servername === undefined ? {} : { servername: options.servername }),
        ...(options.ca === undefined ? { rejectUnauthorized: false } : { ca: options.ca }),
        ...(options.cert === undefined ? {} : { cert: options.cert, key: options.key }),
        checkServerIdentity: () => undefined,
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error("TLS connect timed out"));
      }, options.timeoutMs ?? 3000);
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.once("secureConnect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        resolve(new TlsUac(socket));
      });
    });
  }

  /** Whether the connection has closed. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** The subject of sipedge's certificate (`CN=…` parts). */
  peerSubject(): string {
    const subject = this.socket.getPeerCertificate().subject as unknown as Record<string, string>;
    return Object.entries(subject ?? {}).map(([k, v]) => `${k}=${v}`).join(", ");
  }

  /** Writes bytes (latin1 text too). */
  send(data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    return new Promise((resolve, reject) => {
      this.socket.write(bytes, (error) => error ? reject(error) : resolve());
    });
  }

  /** The next message; rejects after `timeoutMs` or when the connection closed first. */
  async nextMessage(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<SipMessage> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const message = this.#messages.shift();
      if (message !== undefined) return message;
      if (this.#closed) throw new Error("TLS connection closed (no message)");
      if (Date.now() > deadline) throw new Error(`no message within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Waits until the peer closes the connection (rejects after `timeoutMs`). */
  async waitClosed(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#closedPromise,
      new Promise((_, reject) =>
        timer = setTimeout(() => reject(new Error("still open")), timeoutMs)
      ),
    ]);
    clearTimeout(timer);
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    this.socket.destroy();
    await this.#closedPromise;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Options for {@linkcode TlsUas.listen}. */
export interface TlsUasOptions {
  /** Server certificate and key (PEM). */
  cert: string;
  key: string;
  /** Ask for a client certificate that must chain to this CA (PEM). */
  requireClientCa?: string;
  /** false: accept and complete the handshake, then never read (default true). */
  read?: boolean;
  /** Status of the answer to every request but ACK (default 200). */
  status?: number;
}

/** A request read by a {@linkcode TlsUas}. */
export interface TlsUasReceived {
  message: SipMessage;
  /** The SNI name the client sent, if any. */
  servername: string | undefined;
  /** Subject CN of the client certificate, if one was sent. */
  clientCn: string | undefined;
}

/** A TLS SIP server on 127.0.0.1 (a port the kernel picks). */
export class TlsUas implements AsyncDisposable {
  /** Messages read, in order. */
  readonly received: TlsUasReceived[] = [];
  /** Handshakes that failed (client side errors as the server saw them). */
  readonly handshakeErrors: string[] = [];
  /** Connections accepted (handshake done). */
  connectionCount = 0;
  port = 0;
  #server: tls.Server;
  #sockets = new Set<tls.TLSSocket>();

  private constructor(options: TlsUasOptions) {
    this.#server = tls.createServer({
      cert: options.cert,
      key: options.key,
      ...(options.requireClientCa === undefined
        ? {}
        : { ca: options.requireClientCa, requestCert: true, rejectUnauthorized: true }),
    }, (socket) => {
      this.connectionCount++;
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
      socket.on("error", () => {});
      if (options.read === false) {
        socket.pause();
        return;
      }
      const servername = (socket as unknown as { servername?: string }).servername || undefined;
      const peer = socket.getPeerCertificate();
      const clientCn = (peer?.subject as unknown as Record<string, string> | undefined)?.CN;
      let buffer: Uint8Array = new Uint8Array(0);
      socket.on("data", (chunk: Uint8Array) => {
        const messages: SipMessage[] = [];
        buffer = extractMessages(concatBytes(buffer, chunk), messages);
        for (const message of messages) {
          this.received.push({ message, servername, clientCn });
          if (message.isRequest && message.method !== "ACK") {
            socket.write(buildResponse(message, options.status ?? 200));
          }
        }
      });
    });
    this.#server.on("tlsClientError", (error: Error) => this.handshakeErrors.push(error.message));
  }

  /** Starts listening. */
  static async listen(options: TlsUasOptions): Promise<TlsUas> {
    const uas = new TlsUas(options);
    await new Promise<void>((resolve) =>
      uas.#server.listen({ host: "127.0.0.1", port: 0 }, () => resolve())
    );
    uas.port = (uas.#server.address() as { port: number }).port;
    return uas;
  }

  /** The requests read, in order. */
  get requests(): TlsUasReceived[] {
    return this.received.filter((r) => r.message.isRequest);
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
