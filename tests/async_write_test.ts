/**
 * The async write path and its policies, end to end (DESIGN.md §3, the timeouts, limits and
 * blacklist plugins, the control API): sipedge runs as a real process with short timer
 * settings, between test clients and upstreams on 127.0.0.1 that misbehave on purpose — a
 * peer that accepts and never reads, a listener whose backlog is full (SYNs black-holed), a
 * refused port, an upstream that stops answering while its kernel still takes data.
 *
 * Every test starts its own sipedge and closes every process and socket it opened.
 *
 * @module
 */
import type { ConnectionInfo } from "../core/transport/connection_manager.ts";
import assert from "node:assert/strict";
import { freePort, type SipedgeProcess, startSipedge } from "./support/sipedge_process.ts";
import {
  buildRequest,
  buildResponse,
  type BuiltRequest,
  concatBytes,
  SipMessage,
  TestUac,
  TestUas,
  waitUntil,
} from "./support/sip_peer.ts";
import { StreamFramer } from "../core/sip/stream_framer.ts";

// --- sipedge with a config text and its control API ------------------------------------------

/** A blacklist entry as GET /blacklist lists it. */
interface BlacklistEntryJson {
  key: string;
  reason: string;
  addedAt: number;
  expiresAt: number;
}

/** A connection as GET /connections lists it (the JSON of the core's type). */
type ConnectionJson = ConnectionInfo;

/** GET /counters. */
interface CountersJson {
  counters: Record<string, number>;
  gauges: { connections: number; queued_bytes: number; blacklist_entries: number };
}

/** A control API answer. */
interface ApiReply {
  status: number;
  // deno-lint-ignore no-explicit-any
  json: any;
}

interface EdgeOptions {
  /** Reader workers (default 1: which worker owns a connection does not matter then). */
  workers?: number;
  /** `[plugins.timeouts]`, over {@linkcode TIMEOUT_DEFAULTS}. */
  timeouts?: Record<string, string>;
  /** `[plugins.limits]`. */
  limits?: Record<string, string | number>;
  /** `[plugins.blacklist]` (default `expire = "5s"`); false: not enabled. */
  blacklist?: Record<string, string | number> | false;
  /** `static_router.default_route`. */
  defaultRoute?: string;
  /** `static_router.routes` by Request-URI domain. */
  routes?: { domain: string; destination: string }[];
  /** `[control] token`. */
  token?: string;
}

/** Short timers; keepalive pings off unless a test turns them on. */
const TIMEOUT_DEFAULTS: Record<string, string> = {
  send_timeout: "1s",
  connect_timeout: "500ms",
  keepalive_interval: "0s",
  keepalive_timeout: "500ms",
};

/** A running sipedge with its SIP port and control API. */
interface Edge extends AsyncDisposable {
  process: SipedgeProcess;
  /** The SIP (TCP) port. */
  port: number;
  /** `http://127.0.0.1:PORT` of the control API. */
  url: string;
  /** A control API request; `token` undefined: the configured one, null: no header. */
  api(
    method: string,
    path: string,
    options?: { body?: string; token?: string | null; authorization?: string },
  ): Promise<ApiReply>;
  counters(): Promise<CountersJson>;
  blacklist(): Promise<BlacklistEntryJson[]>;
  connections(): Promise<ConnectionJson[]>;
  /** Runs `body`; a failure gets sipedge's output appended to its message. */
  check(body: () => Promise<void>): Promise<void>;
}

function tomlValue(value: string | number): string {
  return typeof value === "number" ? String(value) : JSON.stringify(value);
}

function tomlTable(name: string, values: Record<string, string | number>): string[] {
  return [`[${name}]`, ...Object.entries(values).map(([k, v]) => `${k} = ${tomlValue(v)}`), ""];
}

/** Builds the config text for `options` on SIP port `port`. */
function edgeConfig(port: number, options: EdgeOptions): string {
  const lines = [
    // Queued data for peers that never read would hold every stop for the default 5 s.
    ...tomlTable("sipedge", { workers: options.workers ?? 1, shutdown_timeout: "200ms" }),
    ...tomlTable("control", {
      address: "127.0.0.1:0",
      ...(options.token === undefined ? {} : { token: options.token }),
    }),
    "[[listen]]",
    `address = "tcp:127.0.0.1:${port}"`,
    "",
    ...tomlTable(
      "plugins.static_router",
      options.defaultRoute === undefined ? {} : { default_route: options.defaultRoute },
    ),
  ];
  for (const route of options.routes ?? []) {
    lines.push("[[plugins.static_router.routes]]");
    lines.push(`domain = ${tomlValue(route.domain)}`);
    lines.push(`destination = ${tomlValue(route.destination)}`, "");
  }
  lines.push(...tomlTable("plugins.timeouts", { ...TIMEOUT_DEFAULTS, ...options.timeouts }));
  lines.push(...tomlTable("plugins.limits", options.limits ?? {}));
  if (options.blacklist !== false) {
    lines.push(...tomlTable("plugins.blacklist", options.blacklist ?? { expire: "5s" }));
  }
  return lines.join("\n");
}

/** Starts sipedge with `options` on a free port, control API on a free port. */
async function startEdge(options: EdgeOptions = {}): Promise<Edge> {
  const port = freePort();
  const config = edgeConfig(port, options);
  const process = await startSipedge({ config });
  const match = /sipedge control API: (http:\/\/127\.0\.0\.1:\d+)/.exec(process.output());
  if (match === null) {
    await process.stop();
    throw new Error(`no control API line in the output:\n${process.output()}`);
  }
  assert.deepEqual(process.listening, [`tcp:127.0.0.1:${port}`]);
  const url = match[1];
  const api: Edge["api"] = async (method, path, o = {}) => {
    const headers: Record<string, string> = {};
    const token = o.token === undefined ? options.token : o.token;
    if (o.authorization !== undefined) headers.authorization = o.authorization;
    else if (token !== undefined && token !== null) headers.authorization = `Bearer ${token}`;
    if (o.body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${url}${path}`, { method, headers, body: o.body });
    const text = await response.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, json };
  };
  const get = async (path: string) => {
    const reply = await api("GET", path);
    assert.equal(reply.status, 200, `GET ${path}: ${JSON.stringify(reply.json)}`);
    return reply.json;
  };
  const edge: Edge = {
    process,
    port,
    url,
    api,
    counters: () => get("/counters"),
    blacklist: async () => (await get("/blacklist")).entries,
    connections: async () => (await get("/connections")).connections,
    check: async (body) => {
      try {
        await body();
      } catch (error) {
        if (error instanceof Error) {
          error.message += `\n--- sipedge config ---\n${config}\n--- sipedge output ---\n${
            tail(process.output(), 20_000)
          }`;
        }
        throw error;
      }
    },
    [Symbol.asyncDispose]: async () => void await process.stop(),
  };
  return edge;
}

function tail(text: string, chars: number): string {
  return text.length <= chars ? text : `[...]\n${text.slice(text.length - chars)}`;
}

// --- SIP helpers -----------------------------------------------------------------------------

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A MESSAGE with a `size`-byte body to `uri`. */
function bigMessage(uri = "sip:bob@example.com", size = 50_000): BuiltRequest {
  return buildRequest({
    method: "MESSAGE",
    uri,
    headers: ["Content-Type: text/plain"],
    body: new Uint8Array(size).fill(0x61),
  });
}

/** Asserts `m` is sipedge's `status` answer with `Reason: SIP;cause=status;text="text"`. */
function assertFailure(m: SipMessage | undefined, status: 408 | 503, text: string): void {
  assert.ok(m !== undefined, `expected ${status} (${text}), got no response`);
  assert.equal(m.status, status, `expected ${status} (${text}), got ${m.startLine}: ${m.text}`);
  assert.equal(m.header("reason"), `SIP;cause=${status};text="${text}"`, m.text);
  assert.equal(m.header("server"), "sipedge");
}

/** Reads messages until none arrives for `quietMs` (or the connection closes). */
async function drainMessages(uac: TestUac, quietMs: number): Promise<SipMessage[]> {
  const out: SipMessage[] = [];
  while (true) {
    let frame;
    try {
      frame = await uac.next(quietMs);
    } catch {
      return out;
    }
    if (frame.type === "closed") return out;
    if (frame.type === "message") out.push(frame.message);
  }
}

/** Messages by Call-ID; a Call-ID answered twice is an error. */
function byCallId(messages: SipMessage[]): Map<string, SipMessage> {
  const map = new Map<string, SipMessage>();
  for (const m of messages) {
    assert.ok(!map.has(m.callId), `two responses for ${m.callId}: ${m.startLine}`);
    map.set(m.callId, m);
  }
  return map;
}

/** Sends `request` and returns the next message and how long it took (ms). */
async function exchange(
  uac: TestUac,
  request: BuiltRequest,
  timeoutMs = 3000,
): Promise<{ message: SipMessage; ms: number }> {
  const started = performance.now();
  await uac.send(request.bytes);
  const message = await uac.nextMessage(timeoutMs);
  assert.equal(message.callId, request.callId, `answer to another request: ${message.startLine}`);
  return { message, ms: performance.now() - started };
}

/**
 * Sends `make(i)` one at a time until something comes back (a failure: the upstream answers
 * nothing), then `extra` more; at most `cap`. Returns what was sent, in order.
 */
async function sendUntilAnswered(
  uac: TestUac,
  make: (i: number) => BuiltRequest,
  cap: number,
  extra: number,
): Promise<BuiltRequest[]> {
  const sent: BuiltRequest[] = [];
  let left = -1;
  for (let i = 0; i < cap && left !== 0; i++) {
    const request = make(i);
    await uac.send(request.bytes);
    sent.push(request);
    if (left > 0) left--;
    else if (left < 0 && uac.receivedLength > 0) left = extra;
  }
  return sent;
}

/** The log lines `send failure REASON to DESTINATION …` (values may be quoted). */
function failureLines(output: string, reason: string, destination: string): string[] {
  const escaped = destination.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const pattern = new RegExp(`send failure "?${reason}"? to "?${escaped}"?[ :;]`);
  return output.split("\n").filter((line) => pattern.test(line));
}

/**
 * The drops that queue_full lines account for: one per "message dropped" line, N per "N more
 * messages dropped" line.
 */
function droppedInLog(lines: string[]): number {
  let dropped = 0;
  for (const line of lines) {
    const more = / (\d+) more messages dropped /.exec(line);
    if (more !== null) dropped += Number(more[1]);
    else if (line.includes("message dropped")) dropped++;
  }
  return dropped;
}

/** The outbound connections to 127.0.0.1:`port` (one at most is expected). */
function outboundTo(connections: ConnectionJson[], port: number): ConnectionJson[] {
  return connections.filter((c) => c.direction === "out" && c.remote === `127.0.0.1:${port}`);
}

/**
 * Sends one small request through `uac` to the default route (upstream on `port`) and waits
 * until sipedge's connection to it is open and idle — so that what follows is not sent in the
 * same turn as the connect (data queued while connecting is not limited by conn_wq_max).
 */
async function openIdleConnection(edge: Edge, uac: TestUac, port: number): Promise<number> {
  await uac.send(buildRequest({ method: "MESSAGE" }).bytes);
  const connection = await pollUntil(
    async () => {
      const [c] = outboundTo(await edge.connections(), port);
      return c?.state === "open" && !c.asyncMode && c.queuedBytes === 0 ? c : undefined;
    },
    2000,
    "an open, idle connection to the upstream",
  );
  return connection.id;
}

/** Polls `check` (async) every 20 ms until it returns a value other than undefined. */
async function pollUntil<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await delay(20);
  }
}

// --- peers that misbehave --------------------------------------------------------------------

/**
 * A listener whose accept queue is full: `tcpBacklog: 1`, never accepting, with connections
 * opened to it until one does not complete — from then on the kernel drops SYNs to it, so a
 * connect stays pending (checked here: throws if this machine answers them).
 */
class BlackHole implements Disposable {
  readonly port: number;
  #listener: Deno.TcpListener;
  #fillers: Deno.TcpConn[] = [];

  private constructor() {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0, tcpBacklog: 1 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
  }

  static async open(): Promise<BlackHole> {
    const hole = new BlackHole();
    for (let i = 0; i < 8; i++) {
      try {
        hole.#fillers.push(
          await Deno.connect({
            hostname: "127.0.0.1",
            port: hole.port,
            signal: AbortSignal.timeout(300),
          }),
        );
      } catch (error) {
        if ((error as Error).name === "TimeoutError") return hole; // SYNs are dropped now
        hole[Symbol.dispose]();
        throw error;
      }
    }
    hole[Symbol.dispose]();
    throw new Error("a listener with a full backlog still completes connects on this machine");
  }

  get uri(): string {
    return `sip:127.0.0.1:${this.port};transport=tcp`;
  }

  [Symbol.dispose](): void {
    for (const c of this.#fillers) closeQuietly(c);
    closeQuietly(this.#listener);
  }
}

function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // already closed
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += await conn.write(data.subarray(offset));
}

/** How a {@linkcode ScriptedUpstream} behaves on each connection. */
interface UpstreamOptions {
  /** `all`: answer every request with 200; `first`: only the first one on a connection. */
  answer: "all" | "first";
  /** Answer a CRLFCRLF ping with CRLF (RFC 5626 pong). */
  pong: boolean;
  /** Stop reading (the socket stays open, the kernel keeps taking data) after a ping. */
  stopReadingAfterPing?: boolean;
}

interface UpstreamConnection {
  conn: Deno.TcpConn;
  /** Pings (CRLFCRLF) read. */
  pings: number;
  requests: SipMessage[];
  /** False once the peer (sipedge) closed it, as far as read. */
  open: boolean;
  /** True once it stopped reading on purpose. */
  stopped: boolean;
  writes: Promise<void>;
}

/** An upstream on 127.0.0.1 that reads raw bytes (framed with sipedge's framer) and answers. */
class ScriptedUpstream implements AsyncDisposable {
  readonly port: number;
  readonly connections: UpstreamConnection[] = [];
  #listener: Deno.TcpListener;
  #options: UpstreamOptions;
  #tasks = new Set<Promise<void>>();
  #closed = false;

  constructor(options: UpstreamOptions) {
    this.#options = options;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#track(this.#accept());
  }

  get uri(): string {
    return `sip:127.0.0.1:${this.port};transport=tcp`;
  }

  get pings(): number {
    return this.connections.reduce((n, c) => n + c.pings, 0);
  }

  get requests(): SipMessage[] {
    return this.connections.flatMap((c) => c.requests);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#closed = true;
    closeQuietly(this.#listener);
    for (const c of this.connections) closeQuietly(c.conn);
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  #track(task: Promise<void>): void {
    const settled: Promise<void> = task.catch(() => {}).finally(() => this.#tasks.delete(settled));
    this.#tasks.add(settled);
  }

  async #accept(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return;
      }
      conn.setNoDelay(true);
      const c: UpstreamConnection = {
        conn,
        pings: 0,
        requests: [],
        open: true,
        stopped: false,
        writes: Promise.resolve(),
      };
      this.connections.push(c);
      this.#track(this.#read(c));
    }
  }

  #write(c: UpstreamConnection, bytes: Uint8Array): void {
    c.writes = c.writes.then(() => writeAll(c.conn, bytes)).catch(() => {});
  }

  async #read(c: UpstreamConnection): Promise<void> {
    const framer = new StreamFramer({ maxMessageSize: 1 << 24 });
    const buffer = new Uint8Array(65536);
    try {
      while (!c.stopped) {
        const n = await c.conn.read(buffer);
        if (n === null) break;
        framer.feed(buffer.subarray(0, n), (frame) => {
          if (frame.type === "ping") {
            c.pings++;
            if (this.#options.pong) this.#write(c, new Uint8Array([13, 10]));
            if (this.#options.stopReadingAfterPing) c.stopped = true;
          } else if (frame.type === "message" && frame.head.isRequest) {
            const m = new SipMessage(frame.bytes.slice(), frame.head, frame.bodyStart);
            c.requests.push(m);
            const answer = this.#options.answer === "all" || c.requests.length === 1;
            if (answer && m.method !== "ACK") this.#write(c, buildResponse(m, 200));
          }
        });
      }
    } catch {
      // closed
    }
    if (c.stopped) return; // left open, unread, until disposed
    c.open = false;
    await c.writes;
    closeQuietly(c.conn);
  }
}

// --- 1. a peer that accepts and never reads --------------------------------------------------

Deno.test("async write: never-reading peer, on_queue_full=drop: queue full per message, then send timeout", async () => {
  const CONN_WQ_MAX = 65536;
  await using uas = TestUas.listen({ read: false });
  await using edge = await startEdge({
    defaultRoute: uas.uri,
    limits: { conn_wq_max: CONN_WQ_MAX, on_queue_full: "drop" },
    blacklist: { expire: "5s" },
  });
  await edge.check(async () => {
    await using uac = await TestUac.connect(edge.port);
    const connectionId = await openIdleConnection(edge, uac, uas.port);
    const sent = await sendUntilAnswered(uac, () => bigMessage(), 400, 3);
    const sentAt = Date.now();

    // Stalled, not failed yet: the connection stays, in async mode, its queue bounded.
    const before = outboundTo(await edge.connections(), uas.port);
    assert.equal(before.length, 1, JSON.stringify(before));
    assert.equal(before[0].id, connectionId, "drop: the same connection");
    assert.equal(before[0].state, "open");
    assert.equal(before[0].asyncMode, true);
    const requestSize = sent[0].bytes.length + 200; // forwarded: plus our Via
    assert.ok(
      before[0].queuedBytes > 0 && before[0].queuedBytes <= 2 * CONN_WQ_MAX + requestSize,
      `queuedBytes ${before[0].queuedBytes}`,
    );
    assert.equal((await edge.counters()).counters.send_timeouts, 0, "no send timeout yet");

    // send_timeout (1 s without progress): the connection closes and is reported.
    await pollUntil(
      async () => (await edge.counters()).counters.send_timeouts === 1 || undefined,
      5000,
      "send_timeouts = 1",
    );
    assert.ok(Date.now() - sentAt >= 500, "the send timeout came too early");
    const responses = byCallId(await drainMessages(uac, 500));

    // Every request is answered, in order: what the kernel took (the peer never answered it),
    // the write in flight and the data queued behind it (408 send timeout), then everything
    // over conn_wq_max (503).
    const kinds = sent.map((r) => {
      const m = responses.get(r.callId);
      return m === undefined ? "none" : m.status === 408 ? "408" : "503";
    });
    const firstRefused = kinds.indexOf("503");
    const summary = `sent ${sent.length}: ${kinds.join(",")}`;
    assert.ok(firstRefused >= 2, `taken + in flight + queued get 408: ${summary}`);
    assert.ok(kinds.slice(0, firstRefused).every((k) => k === "408"), summary);
    assert.ok(kinds.slice(firstRefused).every((k) => k === "503"), summary);
    for (const r of sent.slice(0, firstRefused)) {
      assertFailure(responses.get(r.callId), 408, "send timeout");
    }
    for (const r of sent.slice(firstRefused)) {
      assertFailure(responses.get(r.callId), 503, "queue full");
    }

    // …and the MESSAGE that opened the connection: the peer never answered it either.
    const timedOut = firstRefused + 1;
    const refused = sent.length - firstRefused;
    const { counters, gauges } = await edge.counters();
    assert.equal(counters.queue_full, refused);
    assert.equal(counters.send_failed, timedOut + refused);
    assert.equal(counters.connections_opened, 1, "drop: the connection stayed until the timeout");
    assert.equal(gauges.queued_bytes, 0);
    assert.equal(outboundTo(await edge.connections(), uas.port).length, 0, "closed");

    const key = `tcp:127.0.0.1:${uas.port}`;
    const entries = await edge.blacklist();
    assert.equal(entries.length, 1, JSON.stringify(entries));
    assert.equal(entries[0].key, key);
    assert.equal(entries[0].reason, "send_timeout");
    assert.equal(entries[0].expiresAt - entries[0].addedAt, 5000);

    const lines = failureLines(edge.process.output(), "send_timeout", key);
    assert.equal(lines.length, 1, `one log line:\n${lines.join("\n")}`);
    assert.match(lines[0], new RegExp(`\\(${timedOut} messages\\) lost; blacklisted: true`));
    // Logged one line a second at most (the first drop, then counts), accounting for each.
    assert.equal(droppedInLog(failureLines(edge.process.output(), "queue_full", key)), refused);

    // The next request fails at once: no connect.
    const next = await exchange(uac, bigMessage(), 1000);
    assertFailure(next.message, 503, "destination blacklisted");
    assert.ok(next.ms < 500, `${next.ms} ms`);
    assert.equal(uas.connectionCount, 1);
    assert.equal((await edge.counters()).counters.blacklisted_sends, 1);
  });
});

Deno.test("async write: never-reading peer, on_queue_full=close: the connection closes and is blacklisted", async () => {
  await using uas = TestUas.listen({ read: false });
  await using edge = await startEdge({
    defaultRoute: uas.uri,
    limits: { conn_wq_max: 65536, on_queue_full: "close" },
    timeouts: { send_timeout: "10s" },
    blacklist: { expire: "5s" },
  });
  await edge.check(async () => {
    await using uac = await TestUac.connect(edge.port);
    await openIdleConnection(edge, uac, uas.port);
    const sent = await sendUntilAnswered(uac, () => bigMessage(), 400, 3);
    const responses = byCallId(await drainMessages(uac, 500));

    // What the kernel took (never answered by the peer), the refused message, the write in
    // flight and what was queued: 503 queue full; every later one: 503 destination blacklisted.
    const kinds = sent.map((r) => {
      const m = responses.get(r.callId);
      return m === undefined ? "none" : m.header("reason")?.match(/text="(.*)"/)?.[1] ?? "?";
    });
    const summary = `sent ${sent.length}: ${kinds.join(",")}`;
    const firstFull = kinds.indexOf("queue full");
    const firstBlacklisted = kinds.indexOf("destination blacklisted");
    assert.equal(firstFull, 0, `every request is answered: ${summary}`);
    assert.ok(firstBlacklisted - firstFull >= 3, `refused + in flight + queued: ${summary}`);
    for (const r of sent.slice(firstFull, firstBlacklisted)) {
      assertFailure(responses.get(r.callId), 503, "queue full");
    }
    for (const r of sent.slice(firstBlacklisted)) {
      assertFailure(responses.get(r.callId), 503, "destination blacklisted");
    }

    // Closed at once (send_timeout is 10 s), blacklisted with reason queue_full.
    assert.equal(outboundTo(await edge.connections(), uas.port).length, 0);
    const key = `tcp:127.0.0.1:${uas.port}`;
    const entries = await edge.blacklist();
    assert.deepEqual(entries.map((e) => [e.key, e.reason]), [[key, "queue_full"]]);
    const { counters, gauges } = await edge.counters();
    assert.equal(counters.queue_full, 1);
    assert.equal(counters.send_timeouts, 0);
    assert.equal(counters.blacklisted_sends, sent.length - firstBlacklisted);
    // …plus the MESSAGE that opened the connection: the peer never answered it either.
    assert.equal(counters.send_failed, sent.length - firstFull + 1);
    assert.equal(gauges.queued_bytes, 0);
    const lines = failureLines(edge.process.output(), "queue_full", key);
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(
      lines[0],
      new RegExp(`\\(${firstBlacklisted - firstFull + 1} messages\\) lost; blacklisted: true`),
    );

    const next = await exchange(uac, buildRequest({ method: "MESSAGE" }), 1000);
    assertFailure(next.message, 503, "destination blacklisted");
    assert.ok(next.ms < 500, `${next.ms} ms`);
    assert.equal(uas.connectionCount, 1);
  });
});

// --- 2. a listener whose backlog is full: connect timeout ------------------------------------

Deno.test("async write: connect timeout: queued requests get 408, blacklist entry expires", async () => {
  using hole = await BlackHole.open();
  await using edge = await startEdge({
    defaultRoute: hole.uri,
    timeouts: { connect_timeout: "500ms" },
    blacklist: { expire: "2s" },
  });
  await edge.check(async () => {
    await using uac = await TestUac.connect(edge.port);
    const started = performance.now();
    const first = [1, 2, 3].map(() => buildRequest({ method: "MESSAGE" }));
    await uac.send(concatBytes(...first.map((r) => r.bytes)));
    await delay(150);
    const later = buildRequest({ method: "INVITE" });
    await uac.send(later.bytes); // queued behind the same connect
    const replies = byCallId(await uac.nextMessages(4, 3000));
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 450, `answered after ${elapsed} ms, before connect_timeout`);
    for (const r of [...first, later]) assertFailure(replies.get(r.callId), 408, "connect timeout");

    const key = `tcp:127.0.0.1:${hole.port}`;
    const entries = await edge.blacklist();
    assert.deepEqual(entries.map((e) => [e.key, e.reason]), [[key, "connect_timeout"]]);
    assert.equal(entries[0].expiresAt - entries[0].addedAt, 2000);
    let { counters } = await edge.counters();
    assert.equal(counters.connections_opened, 1);
    assert.equal(counters.connect_failed, 1);
    assert.equal(counters.send_failed, 4);
    const lines = failureLines(edge.process.output(), "connect_timeout", key);
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], /\(4 messages\) lost; blacklisted: true/);

    // Blacklisted: at once, no connect.
    const blocked = await exchange(uac, buildRequest({ method: "MESSAGE" }), 1000);
    assertFailure(blocked.message, 503, "destination blacklisted");
    assert.ok(blocked.ms < 300, `${blocked.ms} ms`);
    assert.equal((await edge.counters()).counters.connections_opened, 1);

    // After `expire` the entry is gone and a request tries to connect again.
    await pollUntil(
      async () => (await edge.blacklist()).length === 0 || undefined,
      4000,
      "the entry to expire",
    );
    assert.ok(Date.now() - entries[0].addedAt >= 1900, "expired too early");
    assert.equal((await edge.counters()).gauges.blacklist_entries, 0);
    const again = await exchange(uac, buildRequest({ method: "MESSAGE" }), 3000);
    assertFailure(again.message, 408, "connect timeout");
    assert.ok(again.ms >= 450, `${again.ms} ms: no connect attempt?`);
    ({ counters } = await edge.counters());
    assert.equal(counters.connections_opened, 2);
    assert.equal(counters.connect_failed, 2);
    assert.equal(counters.blacklisted_sends, 1);
  });
});

// --- 3. a refused port; the blacklist in the control API -------------------------------------

Deno.test("async write: connect refused → 503 and blacklisted; control API deletes, adds, clears entries", async () => {
  const deadPort = freePort(); // nobody listens there
  await using uas = TestUas.listen();
  await using edge = await startEdge({
    workers: 2,
    defaultRoute: `sip:127.0.0.1:${deadPort};transport=tcp`,
    routes: [{ domain: "live.test", destination: uas.uri }],
    blacklist: { expire: "30s" },
  });
  await edge.check(async () => {
    // Clients on both workers, so that entries must reach every worker's copy.
    const clients: TestUac[] = [];
    try {
      for (let i = 0; i < 16; i++) {
        clients.push(await TestUac.connect(edge.port));
        if (i < 3) continue;
        const inbound = await pollUntil(
          async () => {
            const list = (await edge.connections()).filter((c) => c.direction === "in");
            return list.length === clients.length ? list : undefined;
          },
          2000,
          "the clients to be listed",
        );
        if (new Set(inbound.map((c) => c.worker)).size === 2) break;
      }
      const workers = new Set(
        (await edge.connections()).filter((c) => c.direction === "in").map((c) => c.worker),
      );
      assert.equal(workers.size, 2, "clients on both workers");
      const key = `tcp:127.0.0.1:${deadPort}`;
      const everyClient = async (uri: string, check: (m: SipMessage, ms: number) => void) => {
        for (const uac of clients) {
          const { message, ms } = await exchange(uac, buildRequest({ method: "MESSAGE", uri }));
          check(message, ms);
        }
      };
      const refusedOnce = async () => {
        const { message, ms } = await exchange(clients[0], buildRequest({ method: "MESSAGE" }));
        assertFailure(message, 503, "connect refused");
        assert.ok(ms < 500, `${ms} ms`);
        await pollUntil(
          async () => {
            const entries = await edge.blacklist();
            return entries.length === 1 ? entries : undefined;
          },
          2000,
          "the entry",
        );
        await delay(50); // the supervisor copies it to the other worker
        const entries = await edge.blacklist();
        assert.deepEqual(entries.map((e) => [e.key, e.reason]), [[key, "connect_refused"]]);
      };

      await refusedOnce();
      await everyClient("sip:bob@example.com", (m, ms) => {
        assertFailure(m, 503, "destination blacklisted");
        assert.ok(ms < 500, `${ms} ms`);
      });
      let { counters } = await edge.counters();
      assert.equal(counters.connect_failed, 1);
      assert.equal(counters.connections_opened, 1);
      assert.equal(counters.blacklisted_sends, clients.length);
      assert.equal(failureLines(edge.process.output(), "connect_refused", key).length, 1);

      // DELETE one entry (URL-encoded): the next request connects again (and is refused).
      let reply = await edge.api("DELETE", `/blacklist/${encodeURIComponent(key)}`);
      assert.equal(reply.status, 200, JSON.stringify(reply.json));
      assert.deepEqual(reply.json, { deleted: true, key });
      assert.deepEqual(await edge.blacklist(), []);
      await delay(50);
      await refusedOnce();
      ({ counters } = await edge.counters());
      assert.equal(counters.connect_failed, 2);
      // Not encoded works too; a second delete finds nothing.
      reply = await edge.api("DELETE", `/blacklist/${key}`);
      assert.equal(reply.status, 200, JSON.stringify(reply.json));
      reply = await edge.api("DELETE", `/blacklist/${key}`);
      assert.equal(reply.status, 404, JSON.stringify(reply.json));
      assert.deepEqual(reply.json, { deleted: false, key });

      // POST an admin entry for a live upstream: every request to it fails at once.
      await everyClient("sip:bob@live.test", (m) => assert.equal(m.status, 200, m.text));
      const liveKey = `tcp:127.0.0.1:${uas.port}`;
      const posted = Date.now();
      reply = await edge.api("POST", "/blacklist", {
        body: JSON.stringify({ destination: liveKey, expire: "5s" }),
      });
      assert.equal(reply.status, 201, JSON.stringify(reply.json));
      assert.equal(reply.json.added.key, liveKey);
      assert.equal(reply.json.added.reason, "admin");
      assert.equal(reply.json.added.expiresAt - reply.json.added.addedAt, 5000);
      assert.ok(Math.abs(reply.json.added.addedAt - posted) < 1000);
      const entries = await edge.blacklist();
      assert.deepEqual(entries.map((e) => [e.key, e.reason]), [[liveKey, "admin"]]);
      await delay(50);
      const seen = uas.requests.length;
      await everyClient("sip:bob@live.test", (m, ms) => {
        assertFailure(m, 503, "destination blacklisted");
        assert.ok(ms < 500, `${ms} ms`);
      });
      assert.equal(uas.requests.length, seen, "nothing reached the blacklisted upstream");

      // A sip: URI names the same key.
      reply = await edge.api("POST", "/blacklist", {
        body: JSON.stringify({ destination: `sip:127.0.0.1:${deadPort};transport=tcp` }),
      });
      assert.equal(reply.status, 201, JSON.stringify(reply.json));
      assert.equal(reply.json.added.key, key);
      assert.equal(reply.json.added.expiresAt - reply.json.added.addedAt, 30_000, "default");
      assert.equal((await edge.blacklist()).length, 2);
      assert.equal((await edge.counters()).gauges.blacklist_entries, 2);

      // DELETE /blacklist clears everything, in every worker.
      reply = await edge.api("DELETE", "/blacklist");
      assert.equal(reply.status, 200);
      assert.deepEqual(reply.json, { cleared: true });
      assert.deepEqual(await edge.blacklist(), []);
      await delay(50);
      await everyClient("sip:bob@live.test", (m) => assert.equal(m.status, 200, m.text));
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

// --- 4. proper locking: the shared wq_max and connection counters ----------------------------

Deno.test("async write: 2 workers, 24 clients, 3 never-reading peers: wq_max holds, counters return to zero", async () => {
  const PEERS = 3;
  const CLIENTS = 24;
  const WORKERS = 2;
  const WQ_MAX = 300_000;
  const PER_IP = 30;
  const peers = Array.from({ length: PEERS }, () => TestUas.listen({ read: false }));
  const clients: TestUac[] = [];
  try {
    await using edge = await startEdge({
      workers: WORKERS,
      routes: peers.map((p, i) => ({ domain: `peer${i}.test`, destination: p.uri })),
      limits: {
        wq_max: WQ_MAX,
        conn_wq_max: 16 << 20,
        on_queue_full: "drop",
        max_connections_per_ip: PER_IP,
      },
      timeouts: { send_timeout: "30s" },
      blacklist: false,
    });
    await edge.check(async () => {
      for (let i = 0; i < CLIENTS; i++) clients.push(await TestUac.connect(edge.port));
      const inbound = await pollUntil(
        async () => {
          const list = (await edge.connections()).filter((c) => c.direction === "in");
          return list.length === CLIENTS ? list : undefined;
        },
        3000,
        "every client listed",
      );
      assert.equal(new Set(inbound.map((c) => c.worker)).size, WORKERS, "clients on both workers");

      // Watch the shared gauge while everything runs.
      let running = true;
      let maxQueued = 0;
      let samples = 0;
      const watcher = (async () => {
        while (running) {
          const { gauges } = await edge.counters();
          maxQueued = Math.max(maxQueued, gauges.queued_bytes);
          samples++;
          await delay(5);
        }
      })();

      // Every client writes to every peer, all at once, round after round, until every
      // outbound connection is stalled and sends have been refused for a while.
      let maxRequest = 0;
      let rounds = 0;
      let extra = -1;
      try {
        for (; rounds < 200 && extra !== 0; rounds++) {
          await Promise.all(clients.map((uac, c) => {
            const request = bigMessage(`sip:bob@peer${(c + rounds) % PEERS}.test`, 20_000);
            maxRequest = Math.max(maxRequest, request.bytes.length);
            return uac.send(request.bytes);
          }));
          if (extra > 0) extra--;
          else if (extra < 0 && rounds % 5 === 4) {
            const out = (await edge.connections()).filter((c) => c.direction === "out");
            if (out.length === WORKERS * PEERS && out.every((c) => c.asyncMode)) extra = 10;
          }
        }
        await delay(200);
      } finally {
        running = false;
        await watcher;
      }
      const { counters, gauges } = await edge.counters();
      assert.ok(extra === 0, `not every outbound connection stalled after ${rounds} rounds`);
      assert.ok(counters.queue_full > 0, "sends were refused");
      assert.ok(samples > 10, `${samples} samples`);
      // What connection.ts guarantees (and README says): a send while a write is pending (or
      // while connecting) is refused unless the shared total stays ≤ wq_max (add-then-check
      // with Atomics, exact across workers). A send to a connection with no write pending is counted but never
      // refused: everything sent to it in the event-loop turn in which its writer starts,
      // until that batch is handed to the socket; after that the connection stays in async
      // mode until its queue is empty. So the total is at most wq_max plus, per connection, one
      // turn's sends. In one turn a worker reads at most one 16 kB chunk per client, which
      // completes at most one of these 20 kB requests: at most one request per client to an
      // outbound connection of the client's worker, and one reply per client (no timeout
      // fires here, so no failure answers many requests at once).
      const bound = WQ_MAX + PEERS * CLIENTS * (maxRequest + 300) + CLIENTS * 1000;
      assert.ok(
        maxQueued <= bound,
        `queued_bytes reached ${maxQueued} (wq_max ${WQ_MAX}, bound ${bound})`,
      );
      assert.ok(gauges.queued_bytes <= bound);
      assert.ok(maxQueued >= WQ_MAX / 2, `the queues never filled: max ${maxQueued}`);

      // Close every peer and every client: every gauge returns to zero.
      for (const p of peers) await p.close();
      await Promise.all(clients.splice(0).map((c) => c.close()));
      const settled = await pollUntil(
        async () => {
          const s = await edge.counters();
          return s.gauges.connections === 0 && s.gauges.queued_bytes === 0 ? s : undefined;
        },
        10_000,
        "connections and queued bytes back to 0",
      );
      assert.deepEqual(settled.gauges, {
        connections: 0,
        queued_bytes: 0,
        blacklist_entries: 0,
        bans: 0,
      });
      assert.deepEqual(await edge.connections(), []);
      // (connections_accepted + connections_opened = connections_closed would hold too, but a
      // connect refused for wq_max counts a close without an open: see the wq_max test below.)

      // The per-IP count is back to zero too: exactly max_connections_per_ip are let in again.
      for (let i = 0; i < PER_IP; i++) clients.push(await TestUac.connect(edge.port));
      await Promise.all(clients.map(async (uac) => {
        const { message } = await exchange(
          uac,
          buildRequest({ uri: `sip:127.0.0.1:${edge.port}` }),
        );
        assert.equal(message.status, 200, message.text);
      }));
      const refused = await TestUac.connect(edge.port);
      clients.push(refused);
      await refused.waitClosed(2000);
      assert.equal(
        (await edge.counters()).counters.connections_refused,
        settled.counters.connections_refused + 1,
      );
    });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    for (const p of peers) await p.close();
  }
});

// --- 5. keepalive liveness on connections sipedge opened -------------------------------------

Deno.test("async write: keepalive: an upstream that stops reading after a ping fails with keepalive_timeout", async () => {
  await using up = new ScriptedUpstream({
    answer: "first",
    pong: false,
    stopReadingAfterPing: true,
  });
  await using edge = await startEdge({
    defaultRoute: up.uri,
    timeouts: {
      keepalive_interval: "500ms",
      keepalive_timeout: "1500ms",
      send_timeout: "10s",
    },
    limits: { conn_wq_max: 4 << 20, on_queue_full: "drop" },
    blacklist: { expire: "5s" },
  });
  await edge.check(async () => {
    await using uac = await TestUac.connect(edge.port);
    const first = await exchange(uac, buildRequest({ method: "MESSAGE" }));
    assert.equal(first.message.status, 200);
    // A request it reads but does not answer: data sent since the peer last spoke.
    const unanswered = buildRequest({ method: "MESSAGE" });
    await uac.send(unanswered.bytes);
    await waitUntil(() => up.requests.length === 2 || undefined, 2000, "the second request");

    // keepalive_interval with nothing read: a CRLFCRLF ping; the upstream then stops reading.
    await waitUntil(() => up.pings > 0 || undefined, 3000, "a ping at the upstream");
    assert.equal(up.pings, 1);
    const pingSeen = Date.now();

    // Fill its kernel buffer so that requests wait in sipedge when the ping times out.
    const flood: BuiltRequest[] = [];
    for (let i = 0; i < 200; i++) {
      flood.push(bigMessage());
      await uac.send(flood[i].bytes);
      if (i % 4 === 3) {
        const out = outboundTo(await edge.connections(), up.port);
        if (out.length === 1 && out[0].queuedBytes > 0) break;
      }
    }
    const out = outboundTo(await edge.connections(), up.port);
    assert.ok(out.length === 1 && out[0].queuedBytes > 0, "requests wait in sipedge");
    assert.ok(Date.now() - pingSeen < 1300, "the flood took too long for this test");

    // No pong within keepalive_timeout: keepalive_timeout failure; what waited gets 408.
    await pollUntil(
      async () => (await edge.counters()).counters.keepalive_timeouts === 1 || undefined,
      4000,
      "keepalive_timeouts = 1",
    );
    // Every request the upstream never answered gets 408: what waited in sipedge, what the
    // kernel took, and the one it read without answering.
    const responses = byCallId(await drainMessages(uac, 500));
    for (const m of responses.values()) assertFailure(m, 408, "keepalive timeout");
    const waited = [unanswered, ...flood];
    assert.deepEqual(
      waited.filter((r) => !responses.has(r.callId)).map((r) => r.callId),
      [],
      "every request the upstream did not answer is answered by sipedge",
    );
    assert.equal(responses.size, waited.length, "and nothing else");
    const answered = waited.length;

    const key = `tcp:127.0.0.1:${up.port}`;
    const { counters } = await edge.counters();
    assert.equal(counters.keepalive_closed, 0);
    assert.equal(counters.send_timeouts, 0);
    const entries = await edge.blacklist();
    assert.deepEqual(entries.map((e) => [e.key, e.reason]), [[key, "keepalive_timeout"]]);
    const lines = failureLines(edge.process.output(), "keepalive_timeout", key);
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], new RegExp(`\\(${answered} messages\\) lost; blacklisted: true`));
    assert.equal(outboundTo(await edge.connections(), up.port).length, 0);

    const next = await exchange(uac, buildRequest({ method: "MESSAGE" }), 1000);
    assertFailure(next.message, 503, "destination blacklisted");
    assert.equal(up.connections.length, 1);
  });
});

Deno.test("async write: keepalive: an idle upstream that ignores pings is closed, one that pongs is kept", async () => {
  await using silent = new ScriptedUpstream({ answer: "all", pong: false });
  await using ponging = new ScriptedUpstream({ answer: "all", pong: true });
  await using edge = await startEdge({
    routes: [
      { domain: "silent.test", destination: silent.uri },
      { domain: "pong.test", destination: ponging.uri },
    ],
    timeouts: { keepalive_interval: "500ms", keepalive_timeout: "500ms" },
    blacklist: { expire: "5s" },
  });
  await edge.check(async () => {
    await using uac = await TestUac.connect(edge.port);
    for (const uri of ["sip:bob@silent.test", "sip:bob@pong.test"]) {
      const { message } = await exchange(uac, buildRequest({ uri }));
      assert.equal(message.status, 200, message.text);
    }
    const [kept] = outboundTo(await edge.connections(), ponging.port);
    assert.ok(kept !== undefined);

    // Idle with pings unanswered: just closed — not a failure, not blacklisted.
    await waitUntil(
      () => silent.connections[0].open ? undefined : true,
      3000,
      "sipedge to close the silent upstream's connection",
    );
    assert.ok(silent.connections[0].pings >= 1, "pinged before closing");
    await delay(1700); // a few more intervals for the ponging upstream
    const { counters } = await edge.counters();
    assert.ok(counters.keepalive_closed >= 1, JSON.stringify(counters));
    assert.equal(counters.keepalive_timeouts, 0);
    assert.equal(counters.connect_failed, 0);
    assert.deepEqual(await edge.blacklist(), []);
    assert.equal(
      failureLines(edge.process.output(), "keepalive_timeout", `tcp:127.0.0.1:${silent.port}`)
        .length,
      0,
    );

    // Answered pings keep the connection: same id, pinged every interval.
    const after = outboundTo(await edge.connections(), ponging.port);
    assert.deepEqual(after.map((c) => c.id), [kept.id]);
    assert.ok(ponging.pings >= 3, `${ponging.pings} pings`);
    assert.equal(ponging.connections.length, 1);
    assert.ok(ponging.connections[0].open);

    // Both still serve: the silent one over a new connection, the other over the same.
    for (const uri of ["sip:bob@silent.test", "sip:bob@pong.test"]) {
      const { message } = await exchange(uac, buildRequest({ uri }));
      assert.equal(message.status, 200, message.text);
    }
    assert.ok(silent.connections.length >= 2);
    assert.equal(ponging.connections.length, 1);
  });
});

// --- 6. healthy clients keep being served ----------------------------------------------------

Deno.test("async write: a healthy client is served with low latency while peers fail", async () => {
  await using healthy = TestUas.listen();
  await using slow = TestUas.listen({ read: false });
  using hole = await BlackHole.open();
  const deadPort = freePort();
  await using edge = await startEdge({
    defaultRoute: healthy.uri,
    routes: [
      { domain: "slow.test", destination: slow.uri },
      { domain: "hole.test", destination: hole.uri },
      { domain: "dead.test", destination: `sip:127.0.0.1:${deadPort};transport=tcp` },
    ],
    limits: { conn_wq_max: 65536 },
    blacklist: { expire: "500ms" },
  });
  await edge.check(async () => {
    await using uac = await TestUac.connect(edge.port);

    // The slow peer's kernel buffer fills, its queue overflows, it is blacklisted, expires,
    // again; the black hole times out, the dead port refuses — all the while. A load client
    // whose connection sipedge closes reconnects (see the burst tests below for why it may).
    let running = true;
    let failures = 0;
    let reconnects = 0;
    const loop = async (body: (client: TestUac) => Promise<void>) => {
      let client = await TestUac.connect(edge.port);
      try {
        while (running) {
          try {
            await body(client);
          } catch {
            await client.close();
            reconnects++;
            client = await TestUac.connect(edge.port);
          }
          if (client.receivedLength > 0) failures++;
        }
      } finally {
        await client.close();
      }
    };
    let probes = 0;
    const load = Promise.all([
      // ~50 MB/s of 50 kB requests: the slow peer cycles through kernel-full, queue full,
      // blacklisted, expired many times a second, without making this a CPU-starvation test.
      loop(async (flooder) => {
        for (let i = 0; i < 10; i++) await flooder.send(bigMessage("sip:bob@slow.test").bytes);
        await delay(10);
      }),
      loop(async (prober) => {
        const uri = probes++ % 2 === 0 ? "sip:bob@hole.test" : "sip:bob@dead.test";
        await prober.send(buildRequest({ method: "MESSAGE", uri }).bytes);
        await delay(20);
      }),
    ]);
    const latencies: number[] = [];
    try {
      await waitUntil(() => failures > 0 || undefined, 10_000, "the slow peer to fail");
      for (let i = 0; i < 200; i++) {
        const { message, ms } = await exchange(uac, buildRequest({ method: "MESSAGE" }), 3000);
        assert.equal(message.status, 200, `request ${i}: ${message.text}`);
        latencies.push(ms);
        await delay(10); // ~2.5 s in all: several fail / blacklist / expire cycles
      }
    } finally {
      running = false;
      await load;
    }
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.floor(latencies.length * 0.99) - 1];
    assert.ok(p99 < 500, `p99 ${p99.toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms`);
    assert.equal(healthy.requests.length, 200);
    const { counters } = await edge.counters();
    assert.ok(counters.queue_full >= 2, JSON.stringify(counters));
    assert.ok(counters.connect_failed >= 4, JSON.stringify(counters));
    assert.ok(counters.blacklisted_sends > 0, JSON.stringify(counters));
    assert.deepEqual(
      outboundTo(await edge.connections(), healthy.port).length,
      1,
      "one connection to the healthy upstream throughout",
    );
    assert.equal(healthy.connectionCount, 1, `load clients reconnected ${reconnects} times`);
  });
});

// Shows a sipedge bug (reported to the lead): with the default limits (conn_wq_max 32768,
// on_queue_full "close"), requests that many clients send at the same moment to one healthy,
// reading upstream are refused with queue_full, its connection is closed and the healthy
// upstream blacklisted. Every send of one event-loop turn goes into one direct write, however
// large (here the reads of all 40 clients complete in one turn: ~490 requests, ~670 kB); the
// kernel does not take that at once, so the write is pending for a moment and the next
// requests queue behind it, where conn_wq_max refuses them. The requests in that write still
// reach the upstream, but its 200s come back on the closed connection: no answer at all.
Deno.test("async write: a burst from 40 clients to a healthy upstream is forwarded, nothing refused", async () => {
  const CLIENTS = 40;
  const EACH = 20;
  await using uas = TestUas.listen();
  await using edge = await startEdge({
    defaultRoute: uas.uri,
    timeouts: { send_timeout: "10s" },
    blacklist: { expire: "30s" },
  });
  await edge.check(async () => {
    const clients: TestUac[] = [];
    try {
      for (let i = 0; i < CLIENTS; i++) clients.push(await TestUac.connect(edge.port));
      const warm = await exchange(clients[0], buildRequest({ method: "MESSAGE" }));
      assert.equal(warm.message.status, 200);

      // Every client writes its requests at once (pipelined), all clients at the same time.
      const sent = clients.map(() =>
        Array.from(
          { length: EACH },
          () => buildRequest({ method: "MESSAGE", body: "x".repeat(1000) }),
        )
      );
      await Promise.all(clients.map((c, i) => c.send(concatBytes(...sent[i].map((r) => r.bytes)))));
      const replies = await Promise.all(clients.map((c) => drainMessages(c, 1500)));
      const outcome: Record<string, number> = {};
      clients.forEach((_, i) => {
        const got = byCallId(replies[i]);
        for (const r of sent[i]) {
          const m = got.get(r.callId);
          const kind = m === undefined ? "no answer" : `${m.status} ${m.header("reason") ?? ""}`;
          outcome[kind.trim()] = (outcome[kind.trim()] ?? 0) + 1;
        }
      });
      const { counters } = await edge.counters();
      const blacklist = (await edge.blacklist()).map((e) => `${e.key} (${e.reason})`);
      assert.deepEqual(
        outcome,
        { "200": CLIENTS * EACH },
        `upstream got ${uas.requests.length - 1} of ${CLIENTS * EACH}; queue_full ` +
          `${counters.queue_full}; blacklist: ${blacklist.join(", ") || "empty"}`,
      );
      assert.deepEqual(blacklist, []);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

// --- wq_max held by a slow peer must not fail healthy connections -----------------------------

/**
 * Floods `slow.test` (a never-reading peer) with 20 kB requests until sipedge's queues hold at
 * least `atLeast` bytes (polled after each send), or until a send is refused when `untilRefused`.
 */
async function fillQueues(
  edge: Edge,
  flooder: TestUac,
  options: { atLeast: number; untilRefused?: boolean },
): Promise<number> {
  let queued = 0;
  for (let i = 0; i < 600; i++) {
    await flooder.send(bigMessage("sip:bob@slow.test", 20_000).bytes);
    if (options.untilRefused) {
      if (flooder.receivedLength > 0) return (await edge.counters()).gauges.queued_bytes;
      continue;
    }
    // Until the kernel buffer is full, a look every third request (60 kB) is enough.
    if (queued === 0 && i % 3 !== 2) continue;
    queued = (await edge.counters()).gauges.queued_bytes;
    if (queued >= options.atLeast) return queued;
  }
  // The sends can all land in sipedge's own receive buffer (the kernel grows it up to tcp_rmem's
  // maximum) before it has read far enough to refuse one: give it time to catch up.
  for (let i = 0; options.untilRefused && i < 100; i++) {
    if (flooder.receivedLength > 0) return (await edge.counters()).gauges.queued_bytes;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("the queues did not fill");
}

// While a never-reading peer holds most of wq_max, a batch of requests to a healthy upstream
// over its idle connection is not refused (the limits apply behind a write the kernel has not
// taken) — and so the healthy upstream is not closed and blacklisted by on_queue_full "close".
Deno.test("async write: a slow peer holding wq_max does not get a healthy upstream's batch refused", async () => {
  const WQ_MAX = 200_000;
  await using healthy = TestUas.listen();
  await using slow = TestUas.listen({ read: false });
  await using edge = await startEdge({
    defaultRoute: healthy.uri,
    routes: [{ domain: "slow.test", destination: slow.uri }],
    limits: { wq_max: WQ_MAX, conn_wq_max: 16 << 20, on_queue_full: "close" },
    timeouts: { send_timeout: "10s" },
    blacklist: { expire: "30s" },
  });
  await edge.check(async () => {
    await using uac = await TestUac.connect(edge.port);
    const warm = await exchange(uac, buildRequest({ method: "MESSAGE" }));
    assert.equal(warm.message.status, 200);

    // The slow peer's kernel buffer is full and sipedge holds 120-200 kB for it: no refusal.
    await using flooder = await TestUac.connect(edge.port);
    const queued = await fillQueues(edge, flooder, { atLeast: WQ_MAX - 80_000 });
    assert.equal(flooder.receivedLength, 0, "nothing refused yet");

    // Five 40 kB requests in one write to the healthy upstream, over its idle connection.
    const batch = [1, 2, 3, 4, 5].map(() => bigMessage("sip:bob@example.com", 40_000));
    await uac.send(concatBytes(...batch.map((r) => r.bytes)));
    const replies = byCallId(await drainMessages(uac, 1000));
    const got = batch.map((r) => {
      const m = replies.get(r.callId);
      return m === undefined ? "none" : `${m.status} ${m.header("reason") ?? ""}`.trim();
    });
    const healthyKey = `tcp:127.0.0.1:${healthy.port}`;
    const blacklisted = (await edge.blacklist()).map((e) => `${e.key} (${e.reason})`);
    assert.deepEqual(
      got,
      batch.map(() => "200"),
      `pipelined requests to a healthy upstream while ${queued} bytes are queued for a slow ` +
        `peer (wq_max ${WQ_MAX}); blacklist: ${blacklisted.join(", ") || "empty"}`,
    );
    assert.ok(!blacklisted.some((e) => e.startsWith(healthyKey)), blacklisted.join(", "));
  });
});

// A request that needs a new connection while wq_max is full is answered 503 queue full (not
// dropped in silence), and no connection is opened for it. Shows a sipedge bug (reported to the
// lead): the connection object made for it and closed at once is counted in connections_closed
// but not in connections_opened, so the counters no longer balance.
Deno.test("async write: a request that opens a connection while wq_max is full is answered", async () => {
  await using other = TestUas.listen();
  await using slow = TestUas.listen({ read: false });
  await using edge = await startEdge({
    routes: [
      { domain: "slow.test", destination: slow.uri },
      { domain: "other.test", destination: other.uri },
    ],
    limits: { wq_max: 200_000, conn_wq_max: 16 << 20, on_queue_full: "drop" },
    timeouts: { send_timeout: "10s" },
  });
  await edge.check(async () => {
    await using flooder = await TestUac.connect(edge.port);
    await fillQueues(edge, flooder, { atLeast: 0, untilRefused: true });
    const before = await edge.counters();

    await using uac = await TestUac.connect(edge.port);
    const fresh = bigMessage("sip:bob@other.test", 30_000);
    await uac.send(fresh.bytes);
    const replies = await drainMessages(uac, 1500);
    const after = await edge.counters();
    assert.equal(
      replies.map((m) => m.callId).join(),
      fresh.callId,
      `no answer to a request for a new connection (queued ${before.gauges.queued_bytes}; ` +
        `queue_full ${before.counters.queue_full} → ${after.counters.queue_full}, send_failed ` +
        `${before.counters.send_failed} → ${after.counters.send_failed}; the upstream got ` +
        `${other.requests.length} requests)`,
    );
    if (replies[0].status !== 200) assertFailure(replies[0], 503, "queue full");
    const opened = after.counters.connections_opened - before.counters.connections_opened;
    const closed = after.counters.connections_closed - before.counters.connections_closed;
    assert.equal(
      closed,
      replies[0].status === 200 ? 0 : opened,
      `connections_opened +${opened}, connections_closed +${closed}, connections ` +
        `${before.gauges.connections} → ${after.gauges.connections}`,
    );
  });
});

// --- 7. control API --------------------------------------------------------------------------

Deno.test("control API: bearer token, /status, /connections, 404 and 400", async () => {
  const TOKEN = "s3cret-token";
  await using uas = TestUas.listen();
  await using edge = await startEdge({ workers: 2, defaultRoute: uas.uri, token: TOKEN });
  await edge.check(async () => {
    for (const path of ["/status", "/connections", "/counters", "/blacklist"]) {
      for (
        const options of [
          { token: null },
          { token: "wrong" },
          { authorization: `Basic ${btoa(`user:${TOKEN}`)}` },
          { authorization: TOKEN },
          { authorization: `bearer ${TOKEN}x` },
        ]
      ) {
        const reply = await edge.api("GET", path, options);
        assert.equal(reply.status, 401, `${path} ${JSON.stringify(options)}`);
        assert.ok(typeof reply.json.error === "string");
      }
      assert.equal((await edge.api("GET", path)).status, 200, path);
    }
    const denied = await edge.api("DELETE", "/blacklist", { token: "wrong" });
    assert.equal(denied.status, 401);
    const deniedPost = await edge.api("POST", "/blacklist", {
      token: null,
      body: JSON.stringify({ destination: "tcp:127.0.0.1:5999" }),
    });
    assert.equal(deniedPost.status, 401);
    assert.deepEqual(await edge.blacklist(), [], "a refused POST changed nothing");

    const status = (await edge.api("GET", "/status")).json;
    assert.equal(status.version, "0.1.0");
    assert.equal(status.workers.configured, 2);
    assert.equal(status.workers.up, 2);
    assert.deepEqual(status.listeners, [{
      transport: "tcp",
      hostname: "127.0.0.1",
      port: edge.port,
    }]);
    assert.ok(Number.isInteger(status.uptime_ms) && status.uptime_ms >= 0);
    assert.equal(status.connections, 0);
    assert.equal(status.queued_bytes, 0);
    assert.equal(status.blacklist_entries, 0);

    await using uac = await TestUac.connect(edge.port);
    const { message } = await exchange(uac, buildRequest({ method: "MESSAGE" }));
    assert.equal(message.status, 200);
    const connections = await edge.connections();
    assert.equal(connections.length, 2, JSON.stringify(connections));
    const inbound = connections.find((c) => c.direction === "in")!;
    const outbound = connections.find((c) => c.direction === "out")!;
    for (const c of [inbound, outbound]) {
      assert.deepEqual(Object.keys(c).sort(), [
        "ageMs",
        "asyncMode",
        "direction",
        "flow",
        "id",
        "idleMs",
        "local",
        "queuedBytes",
        "remote",
        "state",
        "transport",
        "worker",
      ]);
      assert.ok(Number.isInteger(c.id));
      assert.ok(c.worker === 0 || c.worker === 1);
      assert.equal(c.transport, "tcp");
      assert.equal(c.state, "open");
      assert.equal(c.asyncMode, false);
      assert.equal(c.queuedBytes, 0);
      assert.ok(c.ageMs >= 0 && c.ageMs < 10_000 && c.idleMs >= 0 && c.idleMs <= c.ageMs + 5);
    }
    assert.equal(inbound.remote, `127.0.0.1:${uac.localPort}`);
    assert.equal(inbound.local, `127.0.0.1:${edge.port}`);
    assert.equal(outbound.remote, `127.0.0.1:${uas.port}`);
    assert.match(outbound.local, /^127\.0\.0\.1:\d+$/);
    assert.equal(inbound.worker, outbound.worker, "the request went out from its worker");
    assert.notEqual(inbound.id, outbound.id);
    const again = (await edge.api("GET", "/status")).json;
    assert.equal(again.connections, 2);
    assert.ok(again.uptime_ms >= status.uptime_ms);

    // Unknown routes and methods: 404.
    for (
      const [method, path] of [
        ["GET", "/"],
        ["GET", "/nope"],
        ["POST", "/status"],
        ["PUT", "/blacklist"],
        ["GET", "/blacklist/tcp:127.0.0.1:5060"],
        ["DELETE", "/connections"],
      ]
    ) {
      const reply = await edge.api(method, path);
      assert.equal(reply.status, 404, `${method} ${path}: ${JSON.stringify(reply.json)}`);
    }

    // Bad bodies and keys: 400, nothing added.
    for (
      const body of [
        "not json",
        "",
        "{}",
        "[]",
        '"tcp:127.0.0.1:5060"',
        "42",
        JSON.stringify({ destination: 5060 }),
        JSON.stringify({ destination: "nonsense" }),
        JSON.stringify({ destination: "tcp:127.0.0.1" }),
        JSON.stringify({ destination: "tcp:127.0.0.1:0" }),
        JSON.stringify({ destination: "http://127.0.0.1:5060" }),
        JSON.stringify({ destination: "tcp:127.0.0.1:5060", expire: "soon" }),
        JSON.stringify({ destination: "tcp:127.0.0.1:5060", expire: 5 }),
        JSON.stringify({ destination: "tcp:127.0.0.1:5060", expire: "-5s" }),
      ]
    ) {
      const reply = await edge.api("POST", "/blacklist", { body });
      assert.equal(
        reply.status,
        400,
        `POST ${body}: ${reply.status} ${JSON.stringify(reply.json)}`,
      );
      assert.ok(typeof reply.json.error === "string", JSON.stringify(reply.json));
    }
    for (const key of ["garbage", "tcp:127.0.0.1", "tcp%3A"]) {
      const reply = await edge.api("DELETE", `/blacklist/${key}`);
      assert.equal(reply.status, 400, `DELETE ${key}: ${JSON.stringify(reply.json)}`);
    }
    assert.deepEqual(await edge.blacklist(), []);
  });
});

// Shows sipedge bugs (reported to the lead): POST /blacklist with the JSON body `null`, and
// DELETE /blacklist/ with a malformed percent-encoding, answer 500 instead of 400.
Deno.test("control API: a null body and a malformed key are client errors (400), not 500", async () => {
  await using edge = await startEdge({});
  await edge.check(async () => {
    const post = await edge.api("POST", "/blacklist", { body: "null" });
    const del = await edge.api("DELETE", "/blacklist/%E0%A4%A");
    assert.deepEqual(
      [post.status, del.status],
      [400, 400],
      `POST null: ${JSON.stringify(post.json)}; DELETE %E0%A4%A: ${JSON.stringify(del.json)}`,
    );
  });
});

// --- 8. connection limits --------------------------------------------------------------------

Deno.test("limits: max_connections_per_ip = 3: the 4th connection is closed at once", async () => {
  await using edge = await startEdge({ workers: 2, limits: { max_connections_per_ip: 3 } });
  await edge.check(async () => {
    const clients: TestUac[] = [];
    try {
      const options = () => buildRequest({ uri: `sip:127.0.0.1:${edge.port}` });
      for (let i = 0; i < 3; i++) {
        clients.push(await TestUac.connect(edge.port));
        assert.equal((await exchange(clients[i], options())).message.status, 200);
      }
      const fourth = await TestUac.connect(edge.port);
      clients.push(fourth);
      assert.deepEqual(await fourth.waitClosed(2000), [], "closed without a word");
      let { counters, gauges } = await edge.counters();
      assert.equal(counters.connections_refused, 1);
      assert.equal(counters.connections_accepted, 3);
      assert.equal(gauges.connections, 3);
      assert.match(
        edge.process.output(),
        /connection from "?127\.0\.0\.1:\d+"? refused: "?max_connections_per_ip \(3\)/,
      );
      // The others are untouched.
      for (const uac of clients.slice(0, 3)) {
        assert.equal((await exchange(uac, options())).message.status, 200);
      }

      // Closing one lets a new one in (from either worker: the count is shared).
      await clients[0].close();
      await pollUntil(
        async () => (await edge.counters()).gauges.connections === 2 || undefined,
        2000,
        "2 connections",
      );
      const fifth = await TestUac.connect(edge.port);
      clients.push(fifth);
      assert.equal((await exchange(fifth, options())).message.status, 200);
      const sixth = await TestUac.connect(edge.port);
      clients.push(sixth);
      await sixth.waitClosed(2000);
      ({ counters, gauges } = await edge.counters());
      assert.equal(counters.connections_refused, 2);
      assert.equal(gauges.connections, 3);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

Deno.test("limits: max_connections counts inbound and outbound connections", async () => {
  await using uas = TestUas.listen();
  await using edge = await startEdge({
    workers: 2,
    defaultRoute: uas.uri,
    limits: { max_connections: 2 },
  });
  await edge.check(async () => {
    const clients: TestUac[] = [];
    try {
      for (let i = 0; i < 2; i++) clients.push(await TestUac.connect(edge.port));
      await pollUntil(
        async () => (await edge.counters()).gauges.connections === 2 || undefined,
        2000,
        "2 connections",
      );
      const third = await TestUac.connect(edge.port);
      clients.push(third);
      await third.waitClosed(2000);
      assert.equal((await edge.counters()).counters.connections_refused, 1);

      // Two inbound connections: no room for an outbound one.
      const { message } = await exchange(clients[0], buildRequest({ method: "MESSAGE" }));
      assertFailure(message, 503, "connection limit");
      assert.equal(uas.connectionCount, 0);
      assert.equal((await edge.counters()).counters.connection_limit, 1);
      assert.deepEqual(await edge.blacklist(), [], "a local limit does not blacklist");

      // One client leaves: the request goes out.
      await clients[1].close();
      await pollUntil(
        async () => (await edge.counters()).gauges.connections === 1 || undefined,
        2000,
        "1 connection",
      );
      const ok = await exchange(clients[0], buildRequest({ method: "MESSAGE" }));
      assert.equal(ok.message.status, 200, ok.message.text);
      assert.equal((await edge.counters()).gauges.connections, 2);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});
