/**
 * Small real-socket SIP peers for end-to-end tests, on 127.0.0.1 only:
 *
 * - {@linkcode TestUas}: a listening user agent server that records every message it reads
 *   (framed with sipedge's own {@linkcode StreamFramer}) and answers requests on the same
 *   connection.
 * - {@linkcode TestUac}: a client connection that sends raw bytes (whole, or in chunks) and
 *   reads back frames — messages and single-CRLF keepalive pongs — with a timeout. Its reader
 *   frames independently of sipedge's code.
 * - {@linkcode buildRequest}: a request with sensible defaults.
 *
 * Every peer is `AsyncDisposable`: `await using` closes its sockets and waits for its loops,
 * so that Deno's resource and op sanitizers stay quiet.
 *
 * ```ts
 * await using uas = TestUas.listen();
 * await using uac = await TestUac.connect(proxyPort);
 * const request = buildRequest({ method: "OPTIONS", uri: "sip:bob@example.com" });
 * await uac.send(request.bytes);
 * const response = await uac.nextMessage();
 * ```
 *
 * @module
 */
import { StreamFramer } from "../../core/sip/stream_framer.ts";
import { parseHead } from "../../core/sip/parse_head.ts";
import {
  canonicalHeaderName,
  findHeaders,
  getHeader,
  headerValue,
  type SipHead,
} from "../../core/sip/head.ts";

/** Default time {@linkcode TestUac.next} and the `wait…` helpers wait, in ms. */
export const DEFAULT_TIMEOUT_MS = 3000;

// --- bytes and text --------------------------------------------------------------------------

/** Bytes → string, one byte per UTF-16 code unit (latin1), so string offsets are byte offsets. */
export function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, Math.min(i + 8192, bytes.length)));
  }
  return out;
}

/** String with code units ≤ 0xff → bytes (latin1). Throws on wider characters. */
export function latin1Bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff) throw new Error(`latin1Bytes: character ${c} at ${i} is not latin1`);
    out[i] = c;
  }
  return out;
}

/** Concatenates byte arrays (and latin1 strings). */
export function concatBytes(...parts: (Uint8Array | string)[]): Uint8Array {
  const arrays = parts.map((p) => typeof p === "string" ? latin1Bytes(p) : p);
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

/** Whether two byte arrays are equal. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

let idCounter = 0;

/** A short id unique in this process (random part + counter), usable in tags and Call-IDs. */
export function uniqueId(): string {
  return `${crypto.randomUUID().slice(0, 8)}${(++idCounter).toString(36)}`;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// --- messages --------------------------------------------------------------------------------

/** A complete SIP message as read from a socket. */
export class SipMessage {
  /** The whole message (head and body), a private copy. */
  readonly bytes: Uint8Array;
  /** The parsed head (sipedge's parser; offsets are into {@linkcode headText}). */
  readonly head: SipHead;
  /** Length of the head in bytes (where the body starts). */
  readonly bodyStart: number;

  constructor(bytes: Uint8Array, head: SipHead, bodyStart: number) {
    this.bytes = bytes;
    this.head = head;
    this.bodyStart = bodyStart;
  }

  /** Parses a complete message (head, empty line, Content-Length bytes of body). */
  static parse(bytes: Uint8Array): SipMessage {
    const text = latin1(bytes);
    let end = text.indexOf("\r\n\r\n");
    if (end < 0) throw new Error("SipMessage.parse: no end of head");
    end += 4;
    return new SipMessage(bytes, parseHead(text.slice(0, end)), end);
  }

  /** The head as latin1 text, including the empty line. */
  get headText(): string {
    return this.head.text;
  }

  /** The whole message as latin1 text. */
  get text(): string {
    return latin1(this.bytes);
  }

  /** The body bytes. */
  get body(): Uint8Array {
    return this.bytes.subarray(this.bodyStart);
  }

  get isRequest(): boolean {
    return this.head.isRequest;
  }

  /** Request method, or `""` for a response. */
  get method(): string {
    return this.head.method;
  }

  /** Request-URI, or `""` for a response. */
  get uri(): string {
    return this.head.uri;
  }

  /** Status code, or 0 for a request. */
  get status(): number {
    return this.head.status;
  }

  /** Reason phrase, or `""` for a request. */
  get reason(): string {
    return this.head.reason;
  }

  /** The start line, without CRLF. */
  get startLine(): string {
    return this.headText.slice(0, this.headText.indexOf("\r\n"));
  }

  /**
   * The header lines as written, without their CRLF, in order (a folded continuation line is a
   * line of its own). The start line and the empty line are not included.
   */
  get headerLines(): string[] {
    const lines = this.headText.split("\r\n");
    return lines.slice(1, lines.length - 2);
  }

  /** The value of the first header field named `name` (any case, compact forms too). */
  header(name: string): string | undefined {
    return getHeader(this.head, canonicalHeaderName(name));
  }

  /** The values of every field named `name`, in order (one per line, not split at commas). */
  headers(name: string): string[] {
    return findHeaders(this.head, canonicalHeaderName(name)).map((f) => headerValue(this.head, f));
  }

  /** The Call-ID, or `""`. */
  get callId(): string {
    return this.header("call-id") ?? "";
  }

  /** `status reason` or `METHOD uri`, for messages. */
  toString(): string {
    return this.startLine;
  }
}

// --- request builder -------------------------------------------------------------------------

/** Options for {@linkcode buildRequest}; every field has a default. */
export interface RequestOptions {
  /** Method (default `OPTIONS`); also used in CSeq. */
  method?: string;
  /** Request-URI (default `sip:bob@example.com`). */
  uri?: string;
  /** SIP version in the request line (default `SIP/2.0`). */
  version?: string;
  /** Top Via value (default `SIP/2.0/TCP client.invalid:5099;branch=z9hG4bK<id>;rport`). */
  via?: string;
  /** Call-ID (default: unique). */
  callId?: string;
  /** From value (default `<sip:alice@example.com>;tag=<id>`). */
  from?: string;
  /** To value (default `<sip:bob@example.com>`). */
  to?: string;
  /** CSeq number (default 1). */
  cseq?: number;
  /** CSeq method (default: `method`). */
  cseqMethod?: string;
  /** Max-Forwards (default 70). */
  maxForwards?: number;
  /** Extra header lines (without CRLF), written after the default ones, before Content-Length. */
  headers?: string[];
  /** Default headers to leave out, by name as written here: `Via`, `Call-ID`, `Max-Forwards`… */
  omit?: string[];
  /** Body (latin1 string or bytes; default empty). */
  body?: string | Uint8Array;
  /** Content-Length value to write (default: the body length). */
  contentLength?: number | string;
}

/** What {@linkcode buildRequest} made. */
export interface BuiltRequest {
  /** The whole request. */
  bytes: Uint8Array;
  /** The head as latin1 text (with the empty line). */
  headText: string;
  /** The header lines as written (without CRLF), in order. */
  headerLines: string[];
  callId: string;
  /** Branch of the top Via (when the default Via was used; else `""`). */
  branch: string;
  method: string;
}

/**
 * Builds a request: `METHOD uri SIP/2.0`, then Via, Max-Forwards, From, To, Call-ID, CSeq,
 * the extra `headers`, Content-Length (computed from the body), the empty line and the body.
 */
export function buildRequest(options: RequestOptions = {}): BuiltRequest {
  const method = options.method ?? "OPTIONS";
  const id = uniqueId();
  const branch = options.via === undefined ? `z9hG4bK${id}` : "";
  const callId = options.callId ?? `${id}@client.invalid`;
  const body = typeof options.body === "string"
    ? latin1Bytes(options.body)
    : options.body ?? new Uint8Array();
  const omit = new Set((options.omit ?? []).map((n) => n.toLowerCase()));
  const defaults: [string, string][] = [
    ["Via", options.via ?? `SIP/2.0/TCP client.invalid:5099;branch=${branch};rport`],
    ["Max-Forwards", String(options.maxForwards ?? 70)],
    ["From", options.from ?? `<sip:alice@example.com>;tag=${id}`],
    ["To", options.to ?? "<sip:bob@example.com>"],
    ["Call-ID", callId],
    ["CSeq", `${options.cseq ?? 1} ${options.cseqMethod ?? method}`],
  ];
  const lines = defaults.filter(([name]) => !omit.has(name.toLowerCase()))
    .map(([name, value]) => `${name}: ${value}`);
  lines.push(...options.headers ?? []);
  if (!omit.has("content-length")) {
    lines.push(`Content-Length: ${options.contentLength ?? body.length}`);
  }
  const headText = `${method} ${options.uri ?? "sip:bob@example.com"} ${
    options.version ?? "SIP/2.0"
  }\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`;
  return {
    bytes: concatBytes(headText, body),
    headText,
    headerLines: lines,
    callId,
    branch,
    method,
  };
}

const REASONS: Record<number, string> = {
  100: "Trying",
  180: "Ringing",
  200: "OK",
  202: "Accepted",
  400: "Bad Request",
  404: "Not Found",
  408: "Request Timeout",
  480: "Temporarily Unavailable",
  486: "Busy Here",
  500: "Server Internal Error",
  503: "Service Unavailable",
  603: "Decline",
};

/** Options for {@linkcode buildResponse}. */
export interface ResponseOptions {
  /** Reason phrase (default: the usual one for the status). */
  reason?: string;
  /** Extra header lines (without CRLF), after CSeq. */
  headers?: string[];
  /** Body (default empty). */
  body?: string | Uint8Array;
  /** To tag added when the request's To has none (default `uas`). */
  toTag?: string;
}

/**
 * Builds a response to `request` as a UAS does (RFC 3261 §8.2.6): every Via line copied in
 * order byte for byte, From, To (plus `;tag=uas` unless it has a tag), Call-ID, CSeq, the extra
 * headers and Content-Length.
 */
export function buildResponse(
  request: SipMessage,
  status: number,
  options: ResponseOptions = {},
): Uint8Array {
  const head = request.head;
  const rawLine = (name: string) =>
    findHeaders(head, name).map((f) => head.text.slice(f.start, f.end)).join("");
  let text = `SIP/2.0 ${status} ${options.reason ?? REASONS[status] ?? "Status"}\r\n`;
  text += rawLine("via");
  text += rawLine("from");
  const to = request.header("to");
  if (to !== undefined) {
    text += /;\s*tag=/i.test(to) ? rawLine("to") : `To: ${to};tag=${options.toTag ?? "uas"}\r\n`;
  }
  text += rawLine("call-id");
  text += rawLine("cseq");
  for (const line of options.headers ?? []) text += `${line}\r\n`;
  const body = typeof options.body === "string"
    ? latin1Bytes(options.body)
    : options.body ?? new Uint8Array();
  text += `Content-Length: ${body.length}\r\n\r\n`;
  return concatBytes(text, body);
}

// --- socket helpers --------------------------------------------------------------------------

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += await conn.write(data.subarray(offset));
}

function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // already closed
  }
}

/** Waits for `check()` to return a value other than undefined, polling every 10 ms. */
export async function waitUntil<T>(
  check: () => T | undefined,
  timeoutMs = DEFAULT_TIMEOUT_MS,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await delay(10);
  }
}

// --- UAS -------------------------------------------------------------------------------------

/** What a {@linkcode TestUas} read: a message, the connection it came on, what was answered. */
export interface UasReceived {
  message: SipMessage;
  /** Index of the accepted connection (0, 1, …) it was read from. */
  connection: number;
  /** Remote port of that connection (sipedge's side). */
  remotePort: number;
  /** The bytes written back, if any. */
  response?: Uint8Array;
}

/** How a {@linkcode TestUas} answers. */
export interface TestUasOptions {
  /** Status of the answer to every request but ACK (default 200). */
  status?: number;
  /** Reason phrase of the answer (default: the usual one). */
  reason?: string;
  /** false: record requests but never answer (default true). */
  answer?: boolean;
  /**
   * Custom answer: return the bytes (or latin1 text) to write back on the same connection,
   * or undefined for none. Called for every message read, ACKs and responses included.
   * Overrides `status`, `reason` and `answer`.
   */
  respond?: (request: SipMessage) => Uint8Array | string | undefined;
  /** false: accept connections but never read from them, so that they back up (default true). */
  read?: boolean;
  /** true: close the connection right after writing an answer (default false). */
  closeAfterAnswer?: boolean;
}

interface UasConnection {
  conn: Deno.TcpConn;
  index: number;
  /** The writes queued on this connection, in order. */
  writes: Promise<void>;
}

/** A user agent server on 127.0.0.1 (a port the kernel picks). */
export class TestUas implements AsyncDisposable {
  /** Every message read, in the order read. */
  readonly messages: UasReceived[] = [];
  /** Framing errors read (the connection is then closed). */
  readonly errors: string[] = [];
  /** The port it listens on. */
  readonly port: number;
  /** Connections accepted so far. */
  connectionCount = 0;

  #listener: Deno.TcpListener;
  #options: TestUasOptions;
  #conns = new Map<number, UasConnection>();
  #tasks = new Set<Promise<unknown>>();
  #closed = false;

  private constructor(options: TestUasOptions) {
    this.#options = options;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#track(this.#acceptLoop());
  }

  /** Starts listening. */
  static listen(options: TestUasOptions = {}): TestUas {
    return new TestUas(options);
  }

  /** `sip:127.0.0.1:PORT;transport=tcp`. */
  get uri(): string {
    return `sip:127.0.0.1:${this.port};transport=tcp`;
  }

  /** The requests read (not responses), in order. */
  get requests(): UasReceived[] {
    return this.messages.filter((m) => m.message.isRequest);
  }

  /** Number of accepted connections still open. */
  get openConnections(): number {
    return this.#conns.size;
  }

  /**
   * Writes `data` on accepted connection number `connection` (see {@linkcode UasReceived}),
   * after anything already being written on it. Rejects when that connection is not open.
   */
  async sendOn(connection: number, data: Uint8Array | string): Promise<void> {
    const c = this.#conns.get(connection);
    if (c === undefined) throw new Error(`UAS connection ${connection} is not open`);
    const bytes = typeof data === "string" ? latin1Bytes(data) : data;
    const write = c.writes.then(() => writeAll(c.conn, bytes));
    c.writes = write.catch(() => {});
    await write;
  }

  /** Waits until at least `count` messages have been read; returns the first `count`. */
  async waitForMessages(count: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<UasReceived[]> {
    await waitUntil(
      () => this.messages.length >= count ? true : undefined,
      timeoutMs,
      `${count} messages at the UAS (got ${this.messages.length})`,
    );
    return this.messages.slice(0, count);
  }

  /** Waits for a message that satisfies `predicate`. */
  waitFor(
    predicate: (m: SipMessage) => boolean,
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<UasReceived> {
    return waitUntil(
      () => this.messages.find((r) => predicate(r.message)),
      timeoutMs,
      "a matching message at the UAS",
    );
  }

  /** Waits for the request with this Call-ID. */
  waitForCallId(callId: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<UasReceived> {
    return waitUntil(
      () => this.messages.find((r) => r.message.isRequest && r.message.callId === callId),
      timeoutMs,
      `Call-ID ${callId} at the UAS`,
    );
  }

  /** Stops listening and closes every connection; waits for the reading loops to end. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      closeQuietly(this.#listener);
      for (const c of this.#conns.values()) closeQuietly(c.conn);
    }
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #track(task: Promise<unknown>): void {
    const settled = task.catch(() => {}).finally(() => this.#tasks.delete(settled));
    this.#tasks.add(settled);
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return;
      }
      if (this.#closed) {
        closeQuietly(conn);
        return;
      }
      conn.setNoDelay(true);
      const c: UasConnection = { conn, index: this.connectionCount++, writes: Promise.resolve() };
      this.#conns.set(c.index, c);
      if (this.#options.read !== false) this.#track(this.#readLoop(c));
    }
  }

  async #readLoop(c: UasConnection): Promise<void> {
    const framer = new StreamFramer({ maxMessageSize: 16 * 1024 * 1024 });
    const remotePort = (c.conn.remoteAddr as Deno.NetAddr).port;
    const buffer = new Uint8Array(65536);
    let closeNow = false;
    try {
      while (!this.#closed && !closeNow) {
        const n = await c.conn.read(buffer);
        if (n === null) break;
        framer.feed(buffer.subarray(0, n), (frame) => {
          if (frame.type === "error") {
            this.errors.push(`${frame.status} ${frame.reason}`);
            closeNow = true;
            return;
          }
          if (frame.type !== "message" || closeNow) return;
          const message = new SipMessage(frame.bytes.slice(), frame.head, frame.bodyStart);
          const record: UasReceived = { message, connection: c.index, remotePort };
          this.messages.push(record);
          const answer = this.#answer(message);
          if (answer !== undefined) {
            record.response = answer;
            c.writes = c.writes.then(() => writeAll(c.conn, answer)).catch(() => {});
            if (this.#options.closeAfterAnswer) closeNow = true;
          }
        });
      }
    } catch {
      // closed
    } finally {
      await c.writes;
      this.#conns.delete(c.index);
      closeQuietly(c.conn);
    }
  }

  #answer(message: SipMessage): Uint8Array | undefined {
    const o = this.#options;
    if (o.respond !== undefined) {
      const out = o.respond(message);
      return typeof out === "string" ? latin1Bytes(out) : out;
    }
    if (!message.isRequest || message.method === "ACK" || o.answer === false) return undefined;
    return buildResponse(message, o.status ?? 200, { reason: o.reason });
  }
}

// --- UAC -------------------------------------------------------------------------------------

/** What {@linkcode TestUac.next} reads. */
export type UacFrame =
  /** A complete message. */
  | { type: "message"; message: SipMessage }
  /** A single CRLF between messages (a keepalive pong). */
  | { type: "crlf" }
  /** The peer closed the connection (or it failed); every later call returns this too. */
  | { type: "closed"; error?: string };

/** Options for {@linkcode TestUac.send}. */
export interface SendOptions {
  /** Write at most this many bytes at a time (default: all at once). */
  chunkSize?: number;
  /** ms to wait between chunks (default 0: a macrotask turn). */
  delayMs?: number;
}

/** A client connection to sipedge. */
export class TestUac implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  /** The local port of the connection. */
  readonly localPort: number;

  #received: Uint8Array[] = [];
  #receivedLength = 0;
  #buffer: Uint8Array = new Uint8Array(0);
  #frames: UacFrame[] = [];
  #closedFrame: UacFrame | undefined;
  #waiters: (() => void)[] = [];
  #reader: Promise<void>;
  #closing = false;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    conn.setNoDelay(true);
    this.localPort = (conn.localAddr as Deno.NetAddr).port;
    this.#reader = this.#readLoop();
  }

  /** Connects to 127.0.0.1:`port`. */
  static async connect(port: number, hostname = "127.0.0.1"): Promise<TestUac> {
    const conn = await Deno.connect({ hostname, port, transport: "tcp" });
    return new TestUac(conn);
  }

  /** Every byte read so far. */
  get received(): Uint8Array {
    return concatBytes(...this.#received);
  }

  /** Number of bytes read so far. */
  get receivedLength(): number {
    return this.#receivedLength;
  }

  /** Whether the peer has closed the connection (as far as read so far). */
  get isClosed(): boolean {
    return this.#closedFrame !== undefined;
  }

  /**
   * Writes `data`, whole or in chunks of `chunkSize` bytes with a wait between chunks.
   * Rejects if the connection fails while writing.
   */
  async send(data: Uint8Array | string, options: SendOptions = {}): Promise<void> {
    const bytes = typeof data === "string" ? latin1Bytes(data) : data;
    const size = options.chunkSize ?? bytes.length;
    for (let at = 0; at < bytes.length; at += size) {
      if (at > 0) await delay(options.delayMs ?? 0);
      await writeAll(this.conn, bytes.subarray(at, Math.min(at + size, bytes.length)));
    }
  }

  /**
   * The next frame read: a message, a CRLF, or `closed`. Rejects when nothing arrives within
   * `timeoutMs`.
   */
  async next(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<UacFrame> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const frame = this.#frames.shift();
      if (frame !== undefined) return frame;
      if (this.#closedFrame !== undefined) return this.#closedFrame;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `no frame within ${timeoutMs} ms (${this.#buffer.length} bytes of an unfinished ` +
            `frame buffered: ${JSON.stringify(latin1(this.#buffer.subarray(0, 200)))})`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /** The next frame, which must be a message. */
  async nextMessage(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<SipMessage> {
    const frame = await this.next(timeoutMs);
    if (frame.type !== "message") {
      throw new Error(`expected a message, got ${JSON.stringify(frame)}`);
    }
    return frame.message;
  }

  /** The next `count` messages (skipping nothing: any other frame is an error). */
  async nextMessages(count: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<SipMessage[]> {
    const deadline = Date.now() + timeoutMs;
    const out: SipMessage[] = [];
    while (out.length < count) {
      out.push(await this.nextMessage(Math.max(1, deadline - Date.now())));
    }
    return out;
  }

  /**
   * Waits `ms` and throws if any frame (or any byte) arrived in that time, or if frames were
   * already waiting. A close by the peer counts as a frame unless `allowClose`.
   */
  async expectNothing(ms: number, allowClose = false): Promise<void> {
    const before = this.#receivedLength;
    await delay(ms);
    if (this.#frames.length > 0) {
      throw new Error(`expected nothing, got ${JSON.stringify(this.#frames[0])}`);
    }
    if (this.#receivedLength !== before || this.#buffer.length > 0) {
      throw new Error(`expected nothing, got bytes ${JSON.stringify(latin1(this.#buffer))}`);
    }
    if (!allowClose && this.#closedFrame !== undefined) {
      throw new Error("expected nothing, but the connection was closed");
    }
  }

  /**
   * Waits until the peer closes the connection; returns the frames read before that. Rejects
   * when it is still open after `timeoutMs`.
   */
  async waitClosed(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<UacFrame[]> {
    const deadline = Date.now() + timeoutMs;
    const before: UacFrame[] = [];
    while (true) {
      const frame = await this.next(Math.max(1, deadline - Date.now()));
      if (frame.type === "closed") return before;
      before.push(frame);
    }
  }

  /** Closes the connection (idempotent) and waits for the reader to end. */
  async close(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      closeQuietly(this.conn);
    }
    await this.#reader;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #readLoop(): Promise<void> {
    const buffer = new Uint8Array(65536);
    let error: string | undefined;
    try {
      while (true) {
        const n = await this.conn.read(buffer);
        if (n === null) break;
        const chunk = buffer.slice(0, n);
        this.#received.push(chunk);
        this.#receivedLength += n;
        this.#buffer = this.#buffer.length === 0 ? chunk : concatBytes(this.#buffer, chunk);
        this.#extract();
        this.#wake();
      }
    } catch (e) {
      if (!this.#closing) error = (e as Error).message;
    }
    this.#closedFrame = error === undefined ? { type: "closed" } : { type: "closed", error };
    this.#wake();
  }

  #wake(): void {
    for (const resolve of this.#waiters.splice(0)) resolve();
  }

  /** Cuts complete frames off the front of the buffer (framing independent of sipedge). */
  #extract(): void {
    while (this.#buffer.length > 0) {
      const b = this.#buffer;
      if (b[0] === 13 || b[0] === 10) {
        if (b[0] === 13 && b.length < 2) return;
        const size = b[0] === 13 && b[1] === 10 ? 2 : 1;
        this.#frames.push({ type: "crlf" });
        this.#buffer = b.subarray(size);
        continue;
      }
      const text = latin1(b.subarray(0, Math.min(b.length, 256 * 1024)));
      const headEnd = text.indexOf("\r\n\r\n");
      if (headEnd < 0) return;
      const headText = text.slice(0, headEnd + 4);
      const m = /\r\n(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*\r\n/i.exec(headText);
      const length = m === null ? 0 : Number(m[1]);
      const total = headEnd + 4 + length;
      if (b.length < total) return;
      const bytes = b.slice(0, total);
      this.#frames.push({
        type: "message",
        message: new SipMessage(bytes, parseHead(headText), headEnd + 4),
      });
      this.#buffer = b.subarray(total);
    }
  }
}
