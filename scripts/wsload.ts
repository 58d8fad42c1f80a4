/**
 * wsload — a SIP-over-WebSocket (RFC 7118) load tool for benchmarks: thousands of ws:// or
 * wss:// clients in one process, without the runtime's WebSocket class (each client is a plain
 * stream socket with a minimal RFC 6455 client on top: HTTP upgrade with
 * `Sec-WebSocket-Protocol: sip`, 101 and Sec-WebSocket-Accept checked, masked client frames,
 * server frames parsed: text/binary, fragments, ping → pong, close).
 *
 *   deno run -A scripts/wsload.ts idle --url ws://127.0.0.1:5062 --connections 5000 --hold 20
 *   deno run -A scripts/wsload.ts load --url wss://127.0.0.1:5063 --connections 10 \
 *     --rate 2000 --duration 10 --target "sip:uas@127.0.0.1:5070;transport=tcp"
 *
 * Modes:
 *  - `idle`: opens N connections (at most --concurrency at a time); each sends one OPTIONS and
 *    waits for its answer, then stays open. When every connection is up (or failed) it prints
 *    `WSLOAD_READY conns=N established=E responded=R failed=F` on stdout, so a script can read
 *    the server's memory then; it holds the connections for --hold seconds (0: until SIGINT /
 *    SIGTERM), closes them (close frame, then FIN) and prints the JSON summary.
 *  - `load`: opens K connections, then sends OPTIONS open loop at --rate in total for
 *    --duration seconds, round-robin over the connections, in 1 ms slots (the requests of a
 *    slot for one connection go out in one write). Waits up to --timeout-ms for the answers and
 *    prints the JSON summary: sent, ok (2xx), non2xx, timeouts, conn_lost, failed, latency
 *    percentiles in µs (from the moment a request is queued to the moment its answer is read).
 *
 * Every OPTIONS has a unique Via branch and Call-ID (`wl<run>-<seq>@wsload`); answers are matched
 * by Call-ID. The last line of stdout is one JSON object (`"wsload": "summary"`). Exit status 0
 * when nothing failed.
 *
 * TLS (wss://): with `--tls-client node` (the default) through node:tls, the server certificate
 * not verified (rejectUnauthorized false), TCP_NODELAY on; with `--tls-client deno`,
 * Deno.connectTls, which verifies: it needs --ca FILE (an end-entity certificate, CA:FALSE, is
 * accepted as its own anchor; host names are not checked then) or deno's own
 * `--unsafely-ignore-certificate-errors=HOST` flag for a self-signed certificate. Deno.TlsConn
 * has no setNoDelay, so that client keeps Nagle's algorithm on.
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import process from "node:process";
import tls from "node:tls";

const HELP = `wsload — SIP over WebSocket load tool (RFC 7118 / RFC 6455 client, no WebSocket class)

usage:
  deno run -A scripts/wsload.ts idle --url URL --connections N [--hold S] [options]
  deno run -A scripts/wsload.ts load --url URL --connections K --rate R --duration S
                                     [--target URI] [options]

options:
  --url URL            ws://HOST:PORT[/path] or wss://HOST:PORT[/path] (required)
  --connections N      WebSocket connections (default 1)
  --concurrency C      connections being opened at once (default 100)
  --rate R             load: OPTIONS per second over all connections (default 1000)
  --duration S         load: seconds of load (default 10)
  --warmup S           load: unmeasured load at --rate before the measured window (default 0)
  --hold S             idle: seconds to hold the connections once all are up; 0 = until
                       SIGINT/SIGTERM (default 0)
  --target URI         Request-URI of the OPTIONS (default sip:uas@HOST:PORT of --url)
  --timeout-ms MS      answer timeout, also for connect + handshake (default 5000)
  --origin ORIGIN      send an Origin header (default none, as a non-browser client)
  --sni NAME           TLS server name (default the URL's host when it is a name)
  --ca FILE            PEM CA certificate to verify the server with (implies --tls-client deno)
  --tls-client node|deno   TLS client implementation for wss:// (default node; deno needs --ca
                       or deno's --unsafely-ignore-certificate-errors flag for self-signed certs)
  --read-buffer B      read buffer per connection for --tls-client deno and ws:// (default 16384)
  --quiet              no progress lines on stderr
  --help
`;

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  mode: "idle" | "load";
  secure: boolean;
  host: string;
  port: number;
  path: string;
  connections: number;
  concurrency: number;
  rate: number;
  duration: number;
  warmup: number;
  hold: number;
  target: string;
  timeoutMs: number;
  origin: string | undefined;
  sni: string | undefined;
  ca: string | undefined;
  tlsClient: "node" | "deno";
  readBuffer: number;
  quiet: boolean;
}

function usage(message: string): never {
  console.error(`wsload: ${message}\n\n${HELP}`);
  Deno.exit(2);
}

function parseOptions(args: string[]): Options {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(HELP);
    Deno.exit(0);
  }
  const mode = args[0];
  if (mode !== "idle" && mode !== "load") usage("the first argument must be idle or load");
  const values = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 1; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) usage(`unexpected argument ${arg}`);
    const eq = arg.indexOf("=");
    if (eq > 0) values.set(arg.slice(2, eq), arg.slice(eq + 1));
    else if (arg === "--quiet") flags.add(arg.slice(2));
    else if (i + 1 < args.length) values.set(arg.slice(2), args[++i]);
    else usage(`${arg} needs a value`);
  }
  const known = [
    "url",
    "connections",
    "concurrency",
    "rate",
    "duration",
    "warmup",
    "hold",
    "target",
    "timeout-ms",
    "origin",
    "sni",
    "ca",
    "tls-client",
    "read-buffer",
  ];
  for (const key of values.keys()) if (!known.includes(key)) usage(`unknown option --${key}`);
  const num = (key: string, def: number, min = 0): number => {
    const v = values.get(key);
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) usage(`--${key} must be a number ≥ ${min}`);
    return n;
  };
  const urlText = values.get("url") ?? usage("--url is required");
  let url: URL;
  try {
    url = new URL(urlText);
  } catch {
    usage(`--url ${urlText} is not a URL`);
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") usage("--url must be ws:// or wss://");
  const secure = url.protocol === "wss:";
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port ? Number(url.port) : secure ? 443 : 80;
  const hostPort = url.hostname + ":" + port;
  const ca = values.get("ca");
  const tlsClient = values.get("tls-client") ?? (ca ? "deno" : "node");
  if (tlsClient !== "node" && tlsClient !== "deno") usage("--tls-client must be node or deno");
  return {
    mode,
    secure,
    host,
    port,
    path: url.pathname + url.search || "/",
    connections: Math.floor(num("connections", 1, 1)),
    concurrency: Math.floor(num("concurrency", 100, 1)),
    rate: num("rate", 1000, 0.001),
    duration: num("duration", 10, 0),
    warmup: num("warmup", 0, 0),
    hold: num("hold", 0, 0),
    target: values.get("target") ?? `sip:uas@${hostPort}`,
    timeoutMs: num("timeout-ms", 5000, 1),
    origin: values.get("origin"),
    sni: values.get("sni"),
    ca: ca ? Deno.readTextFileSync(ca) : undefined,
    tlsClient,
    readBuffer: Math.floor(num("read-buffer", 16384, 256)),
    quiet: flags.has("quiet"),
  };
}

const opts = parseOptions(Deno.args);
const say = (text: string) => {
  if (!opts.quiet) console.error(`${new Date().toISOString().slice(11, 23)} wsload: ${text}`);
};

// ---------------------------------------------------------------------------------------------
// The SIP request template: one frame payload per request, three fixed-width slots (branch,
// From tag, Call-ID) filled with the request's sequence number in decimal.

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const RUN = randomBytes(4).toString("hex");
const SEQ_DIGITS = 12;
const SLOT = "#".repeat(SEQ_DIGITS);
const CALL_ID_PREFIX = `wl${RUN}-`;
const viaHost = `${randomBytes(5).toString("hex")}.invalid`;
const sipRequest = [
  `OPTIONS ${opts.target} SIP/2.0`,
  `Via: SIP/2.0/${opts.secure ? "WSS" : "WS"} ${viaHost};branch=z9hG4bK-wl${SLOT};rport`,
  "Max-Forwards: 70",
  `From: <sip:wsload@${viaHost}>;tag=${SLOT}`,
  `To: <${opts.target.replace(/;.*$/, "")}>`,
  `Call-ID: ${CALL_ID_PREFIX}${SLOT}@wsload`,
  "CSeq: 1 OPTIONS",
  `Contact: <sip:wsload@${viaHost};transport=ws>`,
  "Accept: application/sdp",
  "User-Agent: sipedge-wsload",
  "Content-Length: 0",
  "",
  "",
].join("\r\n");
const TEMPLATE = encoder.encode(sipRequest);
const SLOTS: number[] = [];
for (let i = sipRequest.indexOf(SLOT); i >= 0; i = sipRequest.indexOf(SLOT, i + SEQ_DIGITS)) {
  SLOTS.push(i);
}
const PAYLOAD_LEN = TEMPLATE.length;
const FRAME_HEAD = PAYLOAD_LEN < 126 ? 6 : PAYLOAD_LEN < 65536 ? 8 : 14;
const FRAME_LEN = FRAME_HEAD + PAYLOAD_LEN;

// Random masking keys, drawn in bulk (RFC 6455 §5.3: unpredictable per frame).
const maskPool = new Uint8Array(65536);
let maskAt = maskPool.length;
function nextMask(): number {
  if (maskAt + 4 > maskPool.length) {
    crypto.getRandomValues(maskPool);
    maskAt = 0;
  }
  const m = (maskPool[maskAt] << 24) | (maskPool[maskAt + 1] << 16) | (maskPool[maskAt + 2] << 8) |
    maskPool[maskAt + 3];
  maskAt += 4;
  return m;
}

/** Writes a masked client frame header for `len` payload bytes at `at`; returns header length. */
function writeHead(out: Uint8Array, at: number, opcode: number, len: number, mask: number): number {
  out[at] = 0x80 | opcode;
  let h: number;
  if (len < 126) {
    out[at + 1] = 0x80 | len;
    h = 2;
  } else if (len < 65536) {
    out[at + 1] = 0x80 | 126;
    out[at + 2] = len >>> 8;
    out[at + 3] = len & 0xff;
    h = 4;
  } else {
    out[at + 1] = 0x80 | 127;
    out[at + 2] =
      out[at + 3] =
      out[at + 4] =
      out[at + 5] =
        0;
    out[at + 6] = (len / 2 ** 24) & 0xff;
    out[at + 7] = (len >>> 16) & 0xff;
    out[at + 8] = (len >>> 8) & 0xff;
    out[at + 9] = len & 0xff;
    h = 10;
  }
  out[at + h] = mask >>> 24;
  out[at + h + 1] = (mask >>> 16) & 0xff;
  out[at + h + 2] = (mask >>> 8) & 0xff;
  out[at + h + 3] = mask & 0xff;
  return h + 4;
}

function maskInPlace(buf: Uint8Array, from: number, to: number, mask: number): void {
  const m0 = mask >>> 24, m1 = (mask >>> 16) & 0xff, m2 = (mask >>> 8) & 0xff, m3 = mask & 0xff;
  let i = from;
  for (; i + 4 <= to; i += 4) {
    buf[i] ^= m0;
    buf[i + 1] ^= m1;
    buf[i + 2] ^= m2;
    buf[i + 3] ^= m3;
  }
  const ms = [m0, m1, m2, m3];
  for (let k = 0; i < to; i++, k++) buf[i] ^= ms[k];
}

/** Writes the OPTIONS frame with sequence number `seq` into `out` at `at`. */
function writeRequest(out: Uint8Array, at: number, seq: number): void {
  const mask = nextMask();
  const h = writeHead(out, at, 0x1, PAYLOAD_LEN, mask);
  const p = at + h;
  out.set(TEMPLATE, p);
  let s = seq;
  for (let d = SEQ_DIGITS - 1; d >= 0; d--) {
    const digit = 48 + (s % 10);
    s = Math.floor(s / 10);
    for (const slot of SLOTS) out[p + slot + d] = digit;
  }
  maskInPlace(out, p, p + PAYLOAD_LEN, mask);
}

/** A masked control or data frame with `payload`. */
function controlFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(14 + payload.length);
  const mask = nextMask();
  const h = writeHead(out, 0, opcode, payload.length, mask);
  out.set(payload, h);
  maskInPlace(out, h, h + payload.length, mask);
  return out.subarray(0, h + payload.length);
}

// ---------------------------------------------------------------------------------------------
// Transactions and statistics

const pending = new Map<number, number>(); // seq → send time (performance.now() ms)
const owner = new Map<number, WsConn>(); // seq → connection, for conn_lost
let nextSeq = 1;
const stats = {
  sent: 0,
  ok: 0,
  non2xx: 0,
  timeouts: 0,
  connLost: 0,
  late: 0,
  unmatched: 0,
  provisional: 0,
  noConn: 0,
  pings: 0,
  closedByPeer: 0,
  connectFailed: 0,
  established: 0,
  responded: 0,
};
let recording = true;
let latencies = new Float64Array(1 << 16); // µs
let nLat = 0;
const connectTimes: number[] = [];
let lastAnswerAt = 0;

function recordLatency(us: number): void {
  if (nLat === latencies.length) {
    const bigger = new Float64Array(latencies.length * 2);
    bigger.set(latencies);
    latencies = bigger;
  }
  latencies[nLat++] = us;
}

function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round(sorted[Math.max(0, i)]);
}

/** Handles one SIP message received on `conn` (a response, or a request we do not expect). */
function onSipMessage(conn: WsConn, payload: Uint8Array): void {
  // "SIP/2.0 200 ..." → status at bytes 8..10.
  if (payload.length < 12 || payload[0] !== 0x53 || payload[3] !== 0x2f) {
    stats.unmatched++;
    return;
  }
  const status = (payload[8] - 48) * 100 + (payload[9] - 48) * 10 + (payload[10] - 48);
  const text = decoder.decode(payload);
  const at = text.indexOf(CALL_ID_PREFIX);
  if (at < 0) {
    stats.unmatched++;
    return;
  }
  const seq = Number(text.substr(at + CALL_ID_PREFIX.length, SEQ_DIGITS));
  if (status < 200) {
    stats.provisional++;
    return;
  }
  const sentAt = pending.get(seq);
  if (sentAt === undefined) {
    if (seq > 0 && seq < nextSeq) stats.late++;
    else stats.unmatched++;
    return;
  }
  pending.delete(seq);
  owner.delete(seq);
  conn.inFlight--;
  const now = performance.now();
  lastAnswerAt = now;
  if (conn.firstSeq === seq) {
    // idle mode's one request per connection: counted by openAll
    if (status >= 200 && status < 300) recordLatency((now - sentAt) * 1000);
    conn.firstSeq = 0;
    conn.firstAnswered(status);
    return;
  }
  if (!recording) return;
  if (status >= 200 && status < 300) {
    stats.ok++;
    recordLatency((now - sentAt) * 1000);
  } else {
    stats.non2xx++;
  }
}

// ---------------------------------------------------------------------------------------------
// Connections: a byte link (Deno conn or node:tls socket) + handshake + frame parser

interface Link {
  write(data: Uint8Array): void;
  close(): void;
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const HEAD_END = encoder.encode("\r\n\r\n");

class WsConn {
  link: Link | undefined;
  open = false;
  closed = false;
  inFlight = 0;
  firstSeq = 0;
  #key = randomBytes(16).toString("base64");
  #handshaking = true;
  #acc: Uint8Array | undefined; // bytes not yet parsed
  #fragments: Uint8Array[] = [];
  #onOpen: ((error?: string) => void) | undefined;
  #onFirst: ((status: number) => void) | undefined;
  // Requests queued during a slot, written together.
  out: Uint8Array | undefined;
  outLen = 0;

  constructor(readonly index: number) {}

  /** The upgrade request. */
  request(): Uint8Array {
    const hostHeader = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
    const lines = [
      `GET ${opts.path} HTTP/1.1`,
      `Host: ${hostHeader}:${opts.port}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${this.#key}`,
      "Sec-WebSocket-Version: 13",
      "Sec-WebSocket-Protocol: sip",
    ];
    if (opts.origin) lines.push(`Origin: ${opts.origin}`);
    return encoder.encode(lines.join("\r\n") + "\r\n\r\n");
  }

  /** Resolves when the 101 was checked (or rejects with the reason). */
  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#onOpen = (error) => error === undefined ? resolve() : reject(new Error(error));
    });
  }

  /** Sends one OPTIONS now and resolves with its status (or 0 on timeout/close). */
  first(seq: number): Promise<number> {
    return new Promise((resolve) => {
      this.#onFirst = resolve;
      this.firstSeq = seq;
      const frame = new Uint8Array(FRAME_LEN);
      writeRequest(frame, 0, seq);
      pending.set(seq, performance.now());
      owner.set(seq, this);
      this.inFlight++;
      stats.sent++;
      this.link!.write(frame);
    });
  }

  firstAnswered(status: number): void {
    const f = this.#onFirst;
    this.#onFirst = undefined;
    f?.(status);
  }

  /** Queues the request `seq` into this slot's batch. */
  queue(seq: number, now: number): void {
    if (this.out === undefined || this.outLen + FRAME_LEN > this.out.length) {
      this.flush();
      this.out = new Uint8Array(FRAME_LEN * 16);
      this.outLen = 0;
    }
    writeRequest(this.out, this.outLen, seq);
    this.outLen += FRAME_LEN;
    pending.set(seq, now);
    owner.set(seq, this);
    this.inFlight++;
  }

  flush(): void {
    if (this.out !== undefined && this.outLen > 0) {
      this.link?.write(this.out.subarray(0, this.outLen));
      this.out = undefined;
      this.outLen = 0;
    }
  }

  /** Bytes from the link (the view may be reused by the caller after this returns). */
  onBytes(chunk: Uint8Array): void {
    let data = chunk;
    if (this.#acc !== undefined) {
      const joined = new Uint8Array(this.#acc.length + chunk.length);
      joined.set(this.#acc);
      joined.set(chunk, this.#acc.length);
      data = joined;
      this.#acc = undefined;
    }
    let at = 0;
    if (this.#handshaking) {
      const end = indexOf(data, HEAD_END);
      if (end < 0) {
        if (data.length > 16384) this.fail("handshake answer too long");
        else this.#acc = data.slice();
        return;
      }
      const head = decoder.decode(data.subarray(0, end));
      at = end + 4;
      const problem = this.#checkAnswer(head);
      if (problem !== undefined) {
        this.fail(problem);
        return;
      }
      this.#handshaking = false;
      this.open = true;
      const cb = this.#onOpen;
      this.#onOpen = undefined;
      cb?.();
    }
    while (at < data.length && !this.closed) {
      const used = this.#frame(data, at);
      if (used === 0) break;
      at += used;
    }
    if (at < data.length && !this.closed) this.#acc = data.slice(at);
  }

  #checkAnswer(head: string): string | undefined {
    const lines = head.split("\r\n");
    const status = lines[0].split(" ")[1];
    if (status !== "101") return `handshake refused: ${lines[0]}`;
    let accept: string | undefined, protocol: string | undefined;
    for (const line of lines) {
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === "sec-websocket-accept") accept = value;
      else if (name === "sec-websocket-protocol") protocol = value;
    }
    const expected = createHash("sha1").update(this.#key + GUID).digest("base64");
    if (accept !== expected) return `bad Sec-WebSocket-Accept ${accept}`;
    if (protocol?.toLowerCase() !== "sip") return `subprotocol not sip: ${protocol}`;
    return undefined;
  }

  /** Parses one frame at `at`; returns its length, or 0 when it is incomplete. */
  #frame(data: Uint8Array, at: number): number {
    const avail = data.length - at;
    if (avail < 2) return 0;
    const b0 = data[at], b1 = data[at + 1];
    let len = b1 & 0x7f;
    let h = 2;
    if (len === 126) {
      if (avail < 4) return 0;
      len = (data[at + 2] << 8) | data[at + 3];
      h = 4;
    } else if (len === 127) {
      if (avail < 10) return 0;
      len = (data[at + 6] * 2 ** 24) + ((data[at + 7] << 16) | (data[at + 8] << 8) | data[at + 9]);
      h = 10;
    }
    const masked = (b1 & 0x80) !== 0;
    if (masked) h += 4;
    if (avail < h + len) return 0;
    let payload = data.subarray(at + h, at + h + len);
    if (masked) {
      payload = payload.slice();
      const m = (data[at + h - 4] << 24) | (data[at + h - 3] << 16) | (data[at + h - 2] << 8) |
        data[at + h - 1];
      maskInPlace(payload, 0, payload.length, m);
    }
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    switch (opcode) {
      case 0x0: // continuation
        this.#fragments.push(payload.slice());
        if (fin) {
          const whole = concat(this.#fragments);
          this.#fragments = [];
          onSipMessage(this, whole);
        }
        break;
      case 0x1:
      case 0x2:
        if (fin) onSipMessage(this, payload);
        else this.#fragments = [payload.slice()];
        break;
      case 0x8: // close
        stats.closedByPeer++;
        this.link?.write(controlFrame(0x8, payload.subarray(0, 2)));
        this.shutdown("closed by server");
        return h + len;
      case 0x9: // ping
        stats.pings++;
        this.link?.write(controlFrame(0xa, payload));
        break;
      case 0xa: // pong
        break;
      default:
        this.fail(`unknown opcode ${opcode}`);
    }
    return h + len;
  }

  fail(why: string): void {
    if (this.#onOpen) {
      const cb = this.#onOpen;
      this.#onOpen = undefined;
      cb(why);
    }
    this.shutdown(why);
  }

  /** The link ended (or we end it): requests in flight on it are lost. */
  shutdown(_why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.open = false;
    this.link?.close();
    if (this.#onOpen) {
      const cb = this.#onOpen;
      this.#onOpen = undefined;
      cb(`connection closed during the handshake (${_why})`);
    }
    if (this.inFlight > 0) {
      for (const [seq, conn] of owner) {
        if (conn !== this) continue;
        owner.delete(seq);
        pending.delete(seq);
        if (recording || seq === this.firstSeq) stats.connLost++;
      }
      this.inFlight = 0;
    }
    this.firstAnswered(0);
  }

  /** Ends the connection politely: close frame 1000, then FIN. */
  goodbye(): void {
    if (this.closed) return;
    if (this.open) this.link?.write(controlFrame(0x8, new Uint8Array([0x03, 0xe8])));
    this.closed = true;
    this.open = false;
    const link = this.link;
    setTimeout(() => link?.close(), 50);
  }
}

function indexOf(data: Uint8Array, pattern: Uint8Array): number {
  outer: for (let i = 0; i + pattern.length <= data.length; i++) {
    for (let j = 0; j < pattern.length; j++) if (data[i + j] !== pattern[j]) continue outer;
    return i;
  }
  return -1;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

// Deno stream sockets (ws:// and wss:// with --tls-client deno): a read loop, a write queue.
class DenoLink implements Link {
  #queue: Uint8Array[] = [];
  #writing = false;
  #closed = false;
  constructor(readonly conn: Deno.Conn, readonly ws: WsConn) {}

  start(): void {
    const buf = new Uint8Array(opts.readBuffer);
    (async () => {
      let why = "connection ended";
      try {
        while (true) {
          const n = await this.conn.read(buf);
          if (n === null) break;
          this.ws.onBytes(buf.subarray(0, n));
        }
      } catch (e) {
        // reset, a TLS error, or closed by us
        why = `read failed: ${(e as Error).message}`;
      }
      this.ws.shutdown(why);
    })();
  }

  write(data: Uint8Array): void {
    if (this.#closed) return;
    this.#queue.push(data);
    if (!this.#writing) this.#drain();
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const chunk = this.#queue.length === 1 ? this.#queue[0] : concat(this.#queue);
        this.#queue = [];
        let off = 0;
        while (off < chunk.length) off += await this.conn.write(chunk.subarray(off));
      }
    } catch (e) {
      this.ws.shutdown(`write failed: ${(e as Error).message}`);
    }
    this.#writing = false;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

class NodeLink implements Link {
  constructor(readonly socket: tls.TLSSocket) {}
  write(data: Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }
  close(): void {
    this.socket.destroy();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Opens one WebSocket connection (TCP/TLS connect + upgrade). */
async function openConn(index: number): Promise<WsConn> {
  const ws = new WsConn(index);
  const t0 = performance.now();
  const opened = ws.opened();
  opened.catch(() => {});
  const connect = async () => {
    if (!opts.secure) {
      const conn = await Deno.connect({ hostname: opts.host, port: opts.port });
      conn.setNoDelay(true);
      const link = new DenoLink(conn, ws);
      ws.link = link;
      link.start();
    } else if (opts.tlsClient === "deno") {
      const conn = await Deno.connectTls({
        hostname: opts.host,
        port: opts.port,
        caCerts: opts.ca ? [opts.ca] : undefined,
        unsafelyDisableHostnameVerification: opts.ca !== undefined,
      });
      const link = new DenoLink(conn, ws);
      ws.link = link;
      link.start();
    } else {
      const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({
          host: opts.host,
          port: opts.port,
          servername: opts.sni ?? (/^[\d.:]+$/.test(opts.host) ? undefined : opts.host),
          rejectUnauthorized: false,
        });
        s.once("secureConnect", () => resolve(s));
        s.once("error", reject);
      });
      socket.setNoDelay(true);
      ws.link = new NodeLink(socket);
      socket.on("data", (b: Uint8Array) => ws.onBytes(b));
      socket.on("error", () => ws.shutdown("socket error"));
      socket.on("close", () => ws.shutdown("socket closed"));
    }
    ws.link!.write(ws.request());
    await opened;
  };
  try {
    await withTimeout(connect(), opts.timeoutMs, "connect + handshake");
  } catch (e) {
    ws.shutdown("connect failed");
    throw e;
  }
  connectTimes.push((performance.now() - t0) * 1000);
  return ws;
}

/**
 * Opens `n` connections, at most opts.concurrency at a time; with `answerOne`, each sends one
 * OPTIONS and waits for its answer before its slot is free. Returns the connections that are up.
 */
async function openAll(n: number, answerOne: boolean): Promise<WsConn[]> {
  const conns: WsConn[] = [];
  let next = 0;
  let lastReport = performance.now();
  const errors = new Map<string, number>();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      let ws: WsConn;
      try {
        ws = await openConn(i);
      } catch (e) {
        stats.connectFailed++;
        const msg = (e as Error).message.slice(0, 120);
        errors.set(msg, (errors.get(msg) ?? 0) + 1);
        continue;
      }
      stats.established++;
      conns.push(ws);
      if (answerOne) {
        const seq = nextSeq++;
        const status = await withTimeout(ws.first(seq), opts.timeoutMs, "answer").catch(() => {
          if (pending.delete(seq)) {
            owner.delete(seq);
            ws.inFlight--;
            stats.timeouts++;
          }
          return 0;
        });
        if (status >= 200 && status < 300) stats.responded++;
        else if (status >= 300) stats.non2xx++;
      }
      const now = performance.now();
      if (now - lastReport > 2000) {
        lastReport = now;
        say(`${stats.established}/${n} connections up, ${stats.connectFailed} failed`);
      }
    }
  };
  const workers = [];
  for (let i = 0; i < Math.min(opts.concurrency, n); i++) workers.push(worker());
  await Promise.all(workers);
  for (const [msg, count] of errors) console.error(`wsload: ${count} connection(s) failed: ${msg}`);
  return conns;
}

// ---------------------------------------------------------------------------------------------
// Modes

let stopRequested = false;
let wakeStop: (() => void) | undefined;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => {
    if (stopRequested) Deno.exit(130);
    stopRequested = true;
    wakeStop?.();
  });
}

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      wakeStop = undefined;
      resolve();
    }, ms);
    wakeStop = () => {
      clearTimeout(t);
      resolve();
    };
  });

/** Fails requests older than the timeout. */
function sweepTimeouts(now: number): void {
  const limit = now - opts.timeoutMs;
  for (const [seq, at] of pending) {
    if (at > limit) break; // insertion order = send order
    pending.delete(seq);
    const conn = owner.get(seq);
    owner.delete(seq);
    if (conn) conn.inFlight--;
    if (recording) stats.timeouts++;
  }
}

async function idleMode(): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const conns = await openAll(opts.connections, true);
  const setupS = (performance.now() - t0) / 1000;
  console.log(
    `WSLOAD_READY conns=${opts.connections} established=${stats.established} ` +
      `responded=${stats.responded} failed=${opts.connections - stats.responded}`,
  );
  say(
    `all up in ${setupS.toFixed(1)} s; holding ${
      opts.hold > 0 ? `${opts.hold} s` : "until signalled"
    }`,
  );
  const holdStart = performance.now();
  const closedBefore = stats.closedByPeer;
  while (!stopRequested && (opts.hold === 0 || performance.now() - holdStart < opts.hold * 1000)) {
    await sleep(
      opts.hold === 0 ? 1000 : Math.min(1000, opts.hold * 1000 - (performance.now() - holdStart)),
    );
  }
  let stillOpen = 0;
  for (const c of conns) if (c.open) stillOpen++;
  for (const c of conns) c.goodbye();
  await new Promise((r) => setTimeout(r, 200));
  return {
    setup_s: round(setupS, 3),
    hold_s: round((performance.now() - holdStart) / 1000, 3),
    still_open: stillOpen,
    closed_during_hold: stats.closedByPeer - closedBefore,
  };
}

async function loadMode(): Promise<Record<string, unknown>> {
  const conns = await openAll(opts.connections, false);
  if (conns.length === 0) throw new Error("no connection could be opened");
  say(`${conns.length} connections up; ${opts.rate}/s for ${opts.duration} s`);
  const runPhase = async (seconds: number) => {
    const start = performance.now();
    const end = start + seconds * 1000;
    let issued = 0;
    let rr = 0;
    let lastSweep = start;
    while (!stopRequested) {
      const now = performance.now();
      if (now >= end) break;
      const due = Math.floor(((now - start) / 1000) * opts.rate) - issued;
      for (let k = 0; k < due; k++) {
        let tries = 0;
        let c = conns[rr++ % conns.length];
        while (!c.open && tries++ < conns.length) c = conns[rr++ % conns.length];
        issued++;
        if (!c.open) {
          if (recording) stats.noConn++;
          continue;
        }
        c.queue(nextSeq++, now);
        if (recording) stats.sent++;
      }
      for (const c of conns) c.flush();
      if (now - lastSweep > 50) {
        lastSweep = now;
        sweepTimeouts(now);
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    return (performance.now() - start) / 1000;
  };
  if (opts.warmup > 0) {
    recording = false;
    await runPhase(opts.warmup);
    const until = performance.now() + opts.timeoutMs;
    while (pending.size > 0 && performance.now() < until) await sleep(5);
    sweepTimeouts(performance.now() + opts.timeoutMs + 1);
    recording = true;
  }
  const cpu0 = process.cpuUsage();
  const windowStart = performance.now();
  const sendS = await runPhase(opts.duration);
  const until = performance.now() + opts.timeoutMs;
  while (pending.size > 0 && performance.now() < until && !stopRequested) await sleep(5);
  sweepTimeouts(performance.now() + opts.timeoutMs + 1);
  const cpu = process.cpuUsage(cpu0);
  const windowS = (Math.max(lastAnswerAt, windowStart + sendS * 1000) - windowStart) / 1000;
  for (const c of conns) c.goodbye();
  await new Promise((r) => setTimeout(r, 100));
  return {
    target_rate: opts.rate,
    duration_s: opts.duration,
    send_s: round(sendS, 3),
    window_s: round(windowS, 3),
    rate: round(stats.ok / Math.max(windowS, 1e-9), 1),
    window_cpu_user_s: round(cpu.user / 1e6, 3),
    window_cpu_sys_s: round(cpu.system / 1e6, 3),
  };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

async function main(): Promise<number> {
  const started = performance.now();
  let extra: Record<string, unknown> = {};
  let error: string | undefined;
  try {
    extra = opts.mode === "idle" ? await idleMode() : await loadMode();
  } catch (e) {
    error = (e as Error).message;
    say(`error: ${error}`);
  }
  const lat = latencies.subarray(0, nLat).sort();
  const conn = Float64Array.from(connectTimes).sort();
  const cpu = process.cpuUsage();
  const failed = stats.non2xx + stats.timeouts + stats.connLost + stats.noConn +
    (opts.mode === "idle" ? stats.connectFailed : 0);
  const summary = {
    wsload: "summary",
    mode: opts.mode,
    url: `${opts.secure ? "wss" : "ws"}://${opts.host}:${opts.port}${opts.path}`,
    tls_client: opts.secure ? opts.tlsClient : undefined,
    connections: opts.connections,
    established: stats.established,
    connect_failed: stats.connectFailed,
    sent: stats.sent,
    ok: stats.ok + (opts.mode === "idle" ? stats.responded : 0),
    failed,
    non2xx: stats.non2xx,
    timeouts: stats.timeouts,
    conn_lost: stats.connLost,
    no_conn: stats.noConn,
    late: stats.late,
    unmatched: stats.unmatched,
    provisional: stats.provisional,
    pings: stats.pings,
    closed_by_peer: stats.closedByPeer,
    p50_us: percentile(lat, 50),
    p90_us: percentile(lat, 90),
    p99_us: percentile(lat, 99),
    p999_us: percentile(lat, 99.9),
    max_us: nLat > 0 ? Math.round(lat[nLat - 1]) : 0,
    connect_p50_us: percentile(conn, 50),
    connect_p99_us: percentile(conn, 99),
    ...extra,
    cpu_user_s: round(cpu.user / 1e6, 3),
    cpu_sys_s: round(cpu.system / 1e6, 3),
    wall_s: round((performance.now() - started) / 1000, 3),
    error,
  };
  console.log(JSON.stringify(summary));
  return error === undefined && failed === 0 && (opts.mode === "load" ? stats.ok > 0 : true)
    ? 0
    : 1;
}

Deno.exit(await main());
