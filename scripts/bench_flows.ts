/**
 * RFC 5626 flows under load: memory per registered flow, delivery over flows, and the cost of
 * crossing workers. Runs a tiny registrar, starts sipedge (`--workers 2`) in front of it, has N
 * TCP clients REGISTER through sipedge with an outbound Contact (sipedge adds a Path with a flow
 * token), then a "core" sends MESSAGEs routed by those Path URIs, open loop, and measures
 * latency, losses and sipedge's CPU. Prints a markdown section for BENCHMARKS.md.
 *
 *   deno run -A scripts/bench_flows.ts [--clients 10000] [--rate 1000] [--duration 60]
 *     [--cross-rate 2000] [--cross-duration 20] [--warmup 3] [--sipedge-root DIR]
 *
 * `--sipedge-root`: run DIR/main.ts instead of this repository's (e.g. a `git archive` export of
 * a commit, to measure it while the working tree changes).
 *
 * Parts:
 * 1. sipedge's RSS at rest, then after N clients registered: RSS per registered flow.
 * 2. Delivery: 4 core connections, MESSAGE at `--rate`/s for `--duration` s, each to a random
 *    registered client (Request-URI = its contact, Route = its Path URI); each client answers
 *    200. Latency send → 200 back (matched by Call-ID), delivered, lost (no final answer 5 s
 *    after the run), other statuses; sipedge CPU s per 1,000 transactions.
 * 3. Crossing vs not: one core connection owned by worker 0, one by worker 1 (control API
 *    `GET /connections`); MESSAGEs only to clients owned by worker 0, alternately over the
 *    worker-0 connection (nothing crosses) and over the worker-1 connection (every request and
 *    every response is handed between workers), A B A B.
 *
 * Only 127.0.0.1. Every loop is bounded in count and time; sipedge is stopped at the end (its
 * output is kept in a log file whose path is printed). The clients are capped by the open-file
 * hard limit (sipedge and this process each hold one socket per client).
 * @module
 */

const REPO_ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const enc = new TextEncoder();
const dec = new TextDecoder("latin1");
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const log = (msg: string) =>
  console.error(`${new Date().toISOString().slice(11, 19)} bench_flows: ${msg}`);

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  clients: number;
  rate: number;
  duration: number;
  crossRate: number;
  crossDuration: number;
  warmup: number;
  /** Folder whose main.ts is run as sipedge (default: this repository). */
  sipedgeRoot: string;
}

function parseOptions(args: string[]): Options {
  const o: Options = {
    clients: 10000,
    rate: 1000,
    duration: 60,
    crossRate: 2000,
    crossDuration: 20,
    warmup: 3,
    sipedgeRoot: REPO_ROOT,
  };
  const keys: Record<string, Exclude<keyof Options, "sipedgeRoot">> = {
    "--clients": "clients",
    "--rate": "rate",
    "--duration": "duration",
    "--cross-rate": "crossRate",
    "--cross-duration": "crossDuration",
    "--warmup": "warmup",
  };
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].split("=", 2);
    if (flag === "--sipedge-root") {
      o.sipedgeRoot = inline ?? args[++i];
      continue;
    }
    const key = keys[flag];
    if (key === undefined) throw new Error(`unknown option ${args[i]}`);
    const value = Number(inline ?? args[++i]);
    if (!Number.isFinite(value) || value < 0) throw new Error(`bad value for ${flag}`);
    o[key] = value;
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// /proc helpers

function openFileLimits(): { soft: number; hard: number } {
  const line = Deno.readTextFileSync("/proc/self/limits").split("\n").find((l) =>
    l.startsWith("Max open files")
  )!;
  const [soft, hard] = line.slice("Max open files".length).trim().split(/\s+/);
  const n = (s: string) => (s === "unlimited" ? 1 << 30 : Number(s));
  return { soft: n(soft), hard: n(hard) };
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) : NaN;
}

let CLK_TCK = 100;

/** utime + stime of a process (all its threads), in seconds. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

async function commandOutput(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output();
    return new TextDecoder().decode(out.stdout).trim();
  } catch {
    return "";
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

// ---------------------------------------------------------------------------------------------
// SIP over TCP: framing, header access, serialised writes

/** Queues writes on a connection so that they never interleave; coalesces under backlog. */
class Writer {
  private queue: Uint8Array[] = [];
  private busy = false;
  failed = false;
  constructor(private readonly conn: Deno.Conn) {}

  send(bytes: Uint8Array): void {
    if (this.failed) return;
    this.queue.push(bytes);
    if (!this.busy) this.flush();
  }

  private async flush(): Promise<void> {
    this.busy = true;
    try {
      while (this.queue.length > 0) {
        let data: Uint8Array;
        if (this.queue.length === 1) data = this.queue[0];
        else {
          let size = 0;
          for (const b of this.queue) size += b.length;
          data = new Uint8Array(size);
          let off = 0;
          for (const b of this.queue) {
            data.set(b, off);
            off += b.length;
          }
        }
        this.queue = [];
        for (let off = 0; off < data.length;) off += await this.conn.write(data.subarray(off));
      }
    } catch {
      this.failed = true;
      this.queue = [];
    } finally {
      this.busy = false;
    }
  }
}

const CONTENT_LENGTH = /\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)/i;

/**
 * Reads SIP messages from `conn` until it closes, calling `onMessage(head, body)` for each
 * (head without the blank line). CRLF keepalives between messages are skipped; a double CRLF
 * ping calls `onPing`.
 */
async function readMessages(
  conn: Deno.Conn,
  bufferSize: number,
  onMessage: (head: string, body: string) => void,
  onPing?: () => void,
): Promise<void> {
  const buf = new Uint8Array(bufferSize);
  let pending = "";
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buf);
    } catch {
      return;
    }
    if (n === null) return;
    pending += dec.decode(buf.subarray(0, n));
    for (;;) {
      let start = 0;
      while (pending.charCodeAt(start) === 13 && pending.charCodeAt(start + 1) === 10) start += 2;
      if (start >= 4 && onPing) onPing();
      const end = pending.indexOf("\r\n\r\n", start);
      if (end < 0) {
        pending = start === 0 ? pending : pending.slice(start);
        break;
      }
      const head = pending.slice(start, end);
      const m = CONTENT_LENGTH.exec(head);
      const total = end + 4 + (m ? Number(m[1]) : 0);
      if (pending.length < total) {
        pending = start === 0 ? pending : pending.slice(start);
        break;
      }
      onMessage(head, pending.slice(end + 4, total));
      pending = pending.slice(total);
    }
  }
}

/** The Via, From, To, Call-ID and CSeq lines of a request head, in order (compact forms too). */
function responseHeaders(head: string, toTag: string): string {
  let out = "";
  let pos = head.indexOf("\r\n");
  while (pos >= 0) {
    const next = head.indexOf("\r\n", pos + 2);
    const line = next < 0 ? head.slice(pos + 2) : head.slice(pos + 2, next);
    pos = next;
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (
      name === "via" || name === "v" || name === "from" || name === "f" || name === "call-id" ||
      name === "i" || name === "cseq"
    ) {
      out += line + "\r\n";
    } else if (name === "to" || name === "t") {
      out += (line.includes(";tag=") ? line : line + ";tag=" + toTag) + "\r\n";
    }
  }
  return out;
}

/** The value of the first header `long` (or its compact form `short`) of a head. */
function headerValue(head: string, long: string, short: string): string | undefined {
  let pos = head.indexOf("\r\n");
  while (pos >= 0) {
    const next = head.indexOf("\r\n", pos + 2);
    const line = next < 0 ? head.slice(pos + 2) : head.slice(pos + 2, next);
    pos = next;
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (name === long || name === short) return line.slice(colon + 1).trim();
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Registrar

interface Binding {
  path: string;
  contact: string;
}

/** Answers every REGISTER 200 and records each AOR user's Path URI and Contact URI. */
function startRegistrar(): {
  port: number;
  bindings: Map<string, Binding>;
  registers: { count: number; withoutPath: number };
  close: () => void;
} {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const bindings = new Map<string, Binding>();
  const registers = { count: 0, withoutPath: 0 };
  const conns: Deno.Conn[] = [];
  (async () => {
    for (let i = 0; i < 1000; i++) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      conns.push(conn);
      const writer = new Writer(conn);
      readMessages(conn, 65536, (head) => {
        if (head.startsWith("SIP/2.0")) return;
        const method = head.slice(0, head.indexOf(" "));
        if (method === "ACK") return;
        if (method === "REGISTER") {
          registers.count++;
          const to = headerValue(head, "to", "t") ?? "";
          const user = /sip:([^@;>]+)@/.exec(to)?.[1] ?? "";
          const path = /<([^>]+)>/.exec(headerValue(head, "path", "") ?? "")?.[1];
          const contact = /<([^>]+)>/.exec(headerValue(head, "contact", "m") ?? "")?.[1] ?? "";
          if (path === undefined) registers.withoutPath++;
          else bindings.set(user, { path, contact });
        }
        writer.send(enc.encode(
          "SIP/2.0 200 OK\r\n" + responseHeaders(head, "reg") + "Content-Length: 0\r\n\r\n",
        ));
      }, () => writer.send(enc.encode("\r\n")));
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    bindings,
    registers,
    close: () => {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// sipedge

interface Sipedge {
  pid: number;
  logPath: string;
  status: Promise<Deno.CommandStatus>;
  stop: () => Promise<Deno.CommandStatus>;
}

async function startSipedge(config: string, dir: string, root: string): Promise<Sipedge> {
  const configPath = `${dir}/config.toml`;
  const logPath = `${dir}/sipedge.log`;
  await Deno.writeTextFile(configPath, config);
  // Through bash only to raise the open-file limit to the hard limit; exec keeps the pid.
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      'ulimit -n "$(ulimit -Hn)" && exec "$@"',
      "bash",
      Deno.execPath(),
      "run",
      "--unstable-net",
      "-A",
      "main.ts",
      "--config",
      configPath,
    ],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const file = await Deno.open(logPath, { write: true, create: true, truncate: true });
  let readyResolve: () => void;
  const ready = new Promise<void>((r) => readyResolve = r);
  let seen = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const d = new TextDecoder();
    for await (const chunk of stream) {
      await file.write(chunk);
      if (seen.length < 100_000) {
        seen += d.decode(chunk, { stream: true });
        if (seen.includes("sipedge ready")) readyResolve();
      }
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]).catch(() => {});
  const status = child.status.then(async (s) => {
    await pumps;
    file.close();
    return s;
  });
  let exited = false;
  status.then(() => exited = true);
  const stop = async () => {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 10_000);
      await status;
      clearTimeout(t);
    }
    return await status;
  };
  const outcome = await Promise.race([
    ready.then(() => "ready"),
    status.then(() => "exited"),
    sleep(20_000).then(() => "timeout"),
  ]);
  if (outcome !== "ready") {
    await stop();
    throw new Error(`sipedge ${outcome} before ready; output:\n${seen}`);
  }
  return { pid: child.pid, logPath, status, stop };
}

// ---------------------------------------------------------------------------------------------
// Clients

interface Client {
  idx: number;
  user: string;
  conn: Deno.Conn;
  localPort: number;
  writer: Writer;
  registered: boolean;
  onRegistered?: () => void;
  /** Prefix of a MESSAGE to this client up to the Via value. */
  msgStart: string;
  /** From after the Via value's branch to the Call-ID value. */
  msgMiddle: string;
  worker: number;
  requests: number;
}

const clientStats = { requests: 0, otherResponses: 0, closed: 0 };

function startClient(idx: number, conn: Deno.Conn): Client {
  const localPort = (conn.localAddr as Deno.NetAddr).port;
  const client: Client = {
    idx,
    user: `u${idx}`,
    conn,
    localPort,
    writer: new Writer(conn),
    registered: false,
    msgStart: "",
    msgMiddle: "",
    worker: -1,
    requests: 0,
  };
  const tag = `c${idx}`;
  readMessages(conn, 4096, (head) => {
    if (head.startsWith("SIP/2.0 ")) {
      if (head.startsWith("SIP/2.0 200") && !client.registered) {
        client.registered = true;
        client.onRegistered?.();
      } else if (!head.startsWith("SIP/2.0 1")) clientStats.otherResponses++;
      return;
    }
    if (head.startsWith("ACK ")) return;
    client.requests++;
    clientStats.requests++;
    client.writer.send(enc.encode(
      "SIP/2.0 200 OK\r\n" + responseHeaders(head, tag) + "Content-Length: 0\r\n\r\n",
    ));
  }).finally(() => clientStats.closed++);
  return client;
}

function registerRequest(c: Client): Uint8Array {
  const uuid = `00000000-0000-4000-8000-${c.idx.toString(16).padStart(12, "0")}`;
  return enc.encode(
    `REGISTER sip:127.0.0.1 SIP/2.0\r\n` +
      `Via: SIP/2.0/TCP 127.0.0.1:${c.localPort};branch=z9hG4bKreg${c.idx};rport\r\n` +
      `Max-Forwards: 70\r\n` +
      `From: <sip:${c.user}@127.0.0.1>;tag=r${c.idx}\r\n` +
      `To: <sip:${c.user}@127.0.0.1>\r\n` +
      `Call-ID: reg-${c.idx}@bench\r\n` +
      `CSeq: 1 REGISTER\r\n` +
      `Contact: <sip:${c.user}@192.0.2.1:5060;transport=tcp;ob>;reg-id=1;` +
      `+sip.instance="<urn:uuid:${uuid}>";expires=3600\r\n` +
      `Supported: outbound, path\r\n` +
      `Content-Length: 0\r\n\r\n`,
  );
}

/** Connects and registers `count` clients, `concurrency` at a time. */
async function openClients(
  port: number,
  count: number,
  concurrency: number,
  deadline: number,
): Promise<{ clients: Client[]; connectErrors: number; registerTimeouts: number }> {
  const clients: Client[] = [];
  let next = 0;
  let connectErrors = 0;
  let registerTimeouts = 0;
  const slot = async () => {
    while (next < count && Date.now() < deadline) {
      const idx = next++;
      let conn: Deno.Conn;
      try {
        conn = await Deno.connect({ hostname: "127.0.0.1", port });
      } catch {
        connectErrors++;
        continue;
      }
      const c = startClient(idx, conn);
      clients.push(c);
      const done = new Promise<boolean>((resolve) => {
        c.onRegistered = () => resolve(true);
        setTimeout(() => resolve(false), 10_000);
      });
      c.writer.send(registerRequest(c));
      if (!(await done)) registerTimeouts++;
    }
  };
  let lastLog = Date.now();
  const progress = setInterval(() => {
    if (Date.now() - lastLog >= 5000) {
      lastLog = Date.now();
      log(`${clients.filter((c) => c.registered).length}/${count} registered`);
    }
  }, 1000);
  await Promise.all(Array.from({ length: concurrency }, slot));
  clearInterval(progress);
  return { clients, connectErrors, registerTimeouts };
}

// ---------------------------------------------------------------------------------------------
// Core: sends MESSAGEs, matches 200s by Call-ID

/** One measured run: per-sequence send times and answers. */
class Phase {
  readonly sent: Float64Array;
  readonly latencyUs: Float64Array;
  readonly answered: Uint8Array;
  count = 0;
  delivered = 0;
  duplicates = 0;
  readonly other = new Map<number, number>();
  cpu = 0;
  /** CPU of this load tool over the phase (seconds). */
  toolCpu = 0;
  /** Pacing-loop gaps over 10 ms in this tool (its event loop stalled), and the longest (ms). */
  stalls = 0;
  maxGapMs = 0;
  wallS = 0;
  sendS = 0;
  constructor(readonly id: number, readonly label: string, readonly total: number) {
    this.sent = new Float64Array(total);
    this.latencyUs = new Float64Array(total);
    this.answered = new Uint8Array(total);
  }
  get answeredCount(): number {
    let n = this.delivered;
    for (const v of this.other.values()) n += v;
    return n;
  }
  get lost(): number {
    return this.count - this.answeredCount;
  }
  percentile(p: number): number {
    const l = this.latencyUs.slice(0, this.delivered).sort();
    if (l.length === 0) return NaN;
    return l[Math.min(l.length - 1, Math.floor((p / 100) * l.length))];
  }
}

const phases: Phase[] = [];
const coreStats = { unmatched: 0, requests: 0 };

interface CoreConn {
  conn: Deno.Conn;
  writer: Writer;
  localPort: number;
  via: string;
  worker: number;
}

const CALL_ID = /\r\n(?:call-id|i)[ \t]*:[ \t]*([^\r]*)/i;

function onCoreMessage(head: string): void {
  if (!head.startsWith("SIP/2.0 ")) {
    coreStats.requests++;
    return;
  }
  const status = Number(head.slice(8, 11));
  if (status < 200) return;
  const now = performance.now();
  // Call-ID: "<phase>.<seq>@b"
  let at = head.indexOf("\r\nCall-ID: ");
  let callId: string;
  if (at >= 0) {
    at += 11;
    const end = head.indexOf("\r\n", at);
    callId = end < 0 ? head.slice(at) : head.slice(at, end);
  } else callId = CALL_ID.exec(head)?.[1] ?? "";
  const dot = callId.indexOf(".");
  const phase = phases[Number(callId.slice(0, dot))];
  const seq = Number(callId.slice(dot + 1, callId.indexOf("@")));
  if (phase === undefined || !(seq >= 0 && seq < phase.count)) {
    coreStats.unmatched++;
    return;
  }
  if (phase.answered[seq] !== 0) {
    phase.duplicates++;
    return;
  }
  phase.answered[seq] = 1;
  if (status === 200) {
    phase.latencyUs[phase.delivered++] = (now - phase.sent[seq]) * 1000;
  } else phase.other.set(status, (phase.other.get(status) ?? 0) + 1);
}

async function openCore(port: number): Promise<CoreConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const localPort = (conn.localAddr as Deno.NetAddr).port;
  readMessages(conn, 65536, onCoreMessage);
  return {
    conn,
    writer: new Writer(conn),
    localPort,
    via: `SIP/2.0/TCP 127.0.0.1:${localPort};rport;branch=z9hG4bK`,
    worker: -1,
  };
}

function prepareTemplates(clients: Client[], bindings: Map<string, Binding>): Client[] {
  const ready: Client[] = [];
  for (const c of clients) {
    const b = bindings.get(c.user);
    if (!c.registered || b === undefined) continue;
    c.msgStart = `MESSAGE ${b.contact} SIP/2.0\r\nVia: `;
    c.msgMiddle = `\r\nRoute: <${b.path}>\r\nMax-Forwards: 70\r\n` +
      `From: <sip:core@127.0.0.1>;tag=core\r\nTo: <sip:${c.user}@127.0.0.1>\r\nCall-ID: `;
    ready.push(c);
  }
  return ready;
}

const MSG_END = "@b\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n" +
  "Content-Length: 5\r\n\r\nhello";

/**
 * Sends `rate`/s MESSAGEs for `seconds`, open loop (paced on a ~1 ms timer), round-robin over
 * `cores`, each to a random client of `targets`; then waits until every one is answered or 5 s
 * have passed. sipedge's CPU is sampled around it.
 */
async function runPhase(
  label: string,
  cores: CoreConn[],
  targets: Client[],
  rate: number,
  seconds: number,
  pid: number,
): Promise<Phase> {
  const total = Math.max(1, Math.round(rate * seconds));
  const phase = new Phase(phases.length, label, total);
  phases.push(phase);
  const prefix = `${phase.id}.`;
  const cpu0 = cpuSeconds(pid);
  const tool0 = cpuSeconds(Deno.pid);
  const t0 = performance.now();
  const hardStop = t0 + seconds * 1000 * 2 + 10_000;
  let i = 0;
  while (i < total) {
    const now = performance.now();
    if (now > hardStop) break;
    const due = Math.min(total, Math.floor(((now - t0) * rate) / 1000) + 1);
    while (i < due) {
      const c = targets[(Math.random() * targets.length) | 0];
      const core = cores[i % cores.length];
      const text = c.msgStart + core.via + prefix + i + c.msgMiddle + prefix + i + MSG_END;
      phase.sent[i] = performance.now();
      phase.count = ++i;
      core.writer.send(enc.encode(text));
    }
    const before = performance.now();
    await sleep(1);
    const gap = performance.now() - before;
    if (gap > 10) phase.stalls++;
    if (gap > phase.maxGapMs) phase.maxGapMs = gap;
  }
  phase.sendS = (performance.now() - t0) / 1000;
  const waitUntil = performance.now() + 5000;
  while (phase.answeredCount < phase.count && performance.now() < waitUntil) await sleep(5);
  phase.wallS = (performance.now() - t0) / 1000;
  phase.cpu = cpuSeconds(pid) - cpu0;
  phase.toolCpu = cpuSeconds(Deno.pid) - tool0;
  return phase;
}

// ---------------------------------------------------------------------------------------------
// Control API

interface Listed {
  id: number;
  worker: number;
  direction: "in" | "out";
  remote: string;
  flow: boolean;
}

async function listConnections(control: string): Promise<Listed[]> {
  const r = await fetch(`${control}/connections`);
  return (await r.json()).connections;
}

/** sipedge's RSS and JavaScript heaps in use (workers and supervisor, from GET /metrics). */
interface MemorySample {
  label: string;
  rssKb: number;
  heapsMiB: number[];
}

async function sampleMemory(label: string, control: string, pid: number): Promise<MemorySample> {
  const rss = rssKb(pid);
  const text = await (await fetch(`${control}/metrics`)).text();
  const heaps: number[] = [];
  for (const m of text.matchAll(/^sipedge_worker_heap_used_bytes\{worker="(\d+)"\} (\S+)$/gm)) {
    heaps[Number(m[1])] = Number(m[2]) / 2 ** 20;
  }
  const sup = /^sipedge_process_heap_used_bytes (\S+)$/m.exec(text);
  heaps.push(sup ? Number(sup[1]) / 2 ** 20 : NaN);
  return { label, rssKb: rss, heapsMiB: heaps };
}

async function counters(control: string): Promise<Record<string, number>> {
  const r = await fetch(`${control}/counters`);
  const body = await r.json();
  return body.counters ?? body;
}

/** The worker owning the inbound connection from 127.0.0.1:`port` (polls up to 3 s). */
async function ownerOf(control: string, port: number): Promise<number> {
  const remote = `127.0.0.1:${port}`;
  for (const deadline = Date.now() + 3000; Date.now() < deadline;) {
    const c = (await listConnections(control)).find((c) =>
      c.direction === "in" && c.remote === remote
    );
    if (c !== undefined) return c.worker;
    await sleep(20);
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Report

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "—";

function others(p: Phase): string {
  if (p.other.size === 0) return "—";
  return [...p.other.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}: ${v}`).join(
    ", ",
  );
}

/** The load tool's CPU over the phase, in % of one core. */
function toolPct(p: Phase): number {
  return (p.toolCpu / p.wallS) * 100;
}

function stallText(p: Phase): string {
  return `${fmt(p.stalls)} (${fmt(p.maxGapMs)} ms)`;
}

function cpuPer1000(p: Phase): number {
  return (p.cpu / Math.max(1, p.delivered)) * 1000;
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const opts = parseOptions(Deno.args);
  const limits = openFileLimits();
  const needed = opts.clients + 200;
  if (limits.soft < needed && limits.hard > limits.soft && !Deno.env.get("BENCH_FLOWS_REEXEC")) {
    // Re-run under a raised soft limit (this process holds one socket per client).
    log(`raising the open-file limit ${limits.soft} → ${limits.hard}`);
    const child = new Deno.Command("bash", {
      args: [
        "-c",
        'ulimit -n "$(ulimit -Hn)" && exec "$@"',
        "bash",
        Deno.execPath(),
        "run",
        "-A",
        new URL(import.meta.url).pathname,
        ...Deno.args,
      ],
      env: { BENCH_FLOWS_REEXEC: "1" },
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    return (await child.status).code;
  }
  const cap = Math.min(limits.soft, limits.hard) - 500;
  const requested = opts.clients;
  if (opts.clients > cap) {
    log(`--clients ${opts.clients} over the open-file limit ${limits.soft}; capped at ${cap}`);
    opts.clients = cap;
  }
  CLK_TCK = Number(await commandOutput("getconf", ["CLK_TCK"])) || 100;
  const date = await commandOutput("date", ["-u"]);
  const lscpu = await commandOutput("lscpu", []);
  const model = /Model name:\s*(.*)/.exec(lscpu)?.[1] ?? "unknown";
  const cpus = /^CPU\(s\):\s*(\d+)/m.exec(lscpu)?.[1] ?? String(navigator.hardwareConcurrency);
  const head = (await commandOutput("git", ["-C", REPO_ROOT, "rev-parse", "--short", "HEAD"])) ||
    "?";
  const dirty = (await commandOutput("git", [
    "-C",
    opts.sipedgeRoot,
    "status",
    "--porcelain",
    "--untracked-files=no",
  ])) !== "";
  const load0 = Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");

  const dir = await Deno.makeTempDir({ prefix: "bench_flows_" });
  const registrar = startRegistrar();
  const sipPort = freePort();
  const controlPort = freePort();
  const control = `http://127.0.0.1:${controlPort}`;
  const config = `[sipedge]
workers = 2
log_level = "warning"
shutdown_timeout = "1s"

[control]
address = "127.0.0.1:${controlPort}"

[[listen]]
address = "tcp:127.0.0.1:${sipPort}"

[plugins.static_router]
[[plugins.static_router.routes]]
methods = ["REGISTER"]
destination = "sip:127.0.0.1:${registrar.port};transport=tcp"

[plugins.limits]
max_connections = 30000
max_connections_per_ip = 30000

[plugins.timeouts]
idle_timeout = "10m"
`;
  log(`starting sipedge (tcp:127.0.0.1:${sipPort}, control ${control}, work dir ${dir})`);
  const edge = await startSipedge(config, dir, opts.sipedgeRoot);
  const clients: Client[] = [];
  const cores: CoreConn[] = [];
  try {
    await sleep(1500);
    const rssRest = rssKb(edge.pid);
    const memory: MemorySample[] = [await sampleMemory("at rest", control, edge.pid)];
    log(`sipedge pid ${edge.pid}, RSS at rest ${rssRest} kB; opening ${opts.clients} clients`);

    // Part 1: register N clients.
    const regT0 = performance.now();
    const opened = await openClients(
      sipPort,
      opts.clients,
      200,
      Date.now() + 60_000 + opts.clients * 20,
    );
    clients.push(...opened.clients);
    const regS = (performance.now() - regT0) / 1000;
    const registered = clients.filter((c) => c.registered).length;
    log(
      `${registered} registered in ${regS.toFixed(1)} s (connect errors ${opened.connectErrors},` +
        ` register timeouts ${opened.registerTimeouts}, REGISTERs at registrar ` +
        `${registrar.registers.count}, without Path ${registrar.registers.withoutPath})`,
    );
    await sleep(2000);
    const rssAfter = rssKb(edge.pid);
    memory.push(await sampleMemory(`${fmt(registered)} registered`, control, edge.pid));
    const targets = prepareTemplates(clients, registrar.bindings);
    if (targets.length === 0) throw new Error("no client registered with a Path");

    // Part 2: delivery.
    for (let i = 0; i < 4; i++) cores.push(await openCore(sipPort));
    for (const c of cores) c.worker = await ownerOf(control, c.localPort);
    if (opts.warmup > 0) {
      log(`warm-up ${opts.warmup} s at ${opts.rate}/s`);
      await runPhase("warm-up", cores, targets, opts.rate, opts.warmup, edge.pid);
    }
    log(`delivery: ${opts.rate}/s for ${opts.duration} s`);
    const delivery = await runPhase(
      "delivery",
      cores,
      targets,
      opts.rate,
      opts.duration,
      edge.pid,
    );
    log(`delivery: ${delivery.delivered}/${delivery.count} delivered, ${delivery.lost} lost`);
    memory.push(await sampleMemory("after delivery run", control, edge.pid));

    // Part 3: crossing vs not.
    const listed = await listConnections(control);
    const byRemote = new Map<string, number>();
    for (const l of listed) if (l.direction === "in") byRemote.set(l.remote, l.worker);
    for (const c of clients) c.worker = byRemote.get(`127.0.0.1:${c.localPort}`) ?? -1;
    const flowsListed = listed.filter((l) => l.flow).length;
    const w0 = targets.filter((c) => c.worker === 0);
    const w1count = targets.filter((c) => c.worker === 1).length;
    let core0 = cores.find((c) => c.worker === 0);
    let core1 = cores.find((c) => c.worker === 1);
    const extra: CoreConn[] = [];
    for (let i = 0; i < 40 && (core0 === undefined || core1 === undefined); i++) {
      const c = await openCore(sipPort);
      c.worker = await ownerOf(control, c.localPort);
      extra.push(c);
      if (c.worker === 0 && core0 === undefined) core0 = c;
      else if (c.worker === 1 && core1 === undefined) core1 = c;
    }
    cores.push(...extra);
    if (core0 === undefined || core1 === undefined || w0.length === 0) {
      throw new Error("could not place a core connection in each worker");
    }
    const cross: Phase[] = [];
    if (opts.warmup > 0) {
      await runPhase("warm-up same", [core0], w0, opts.crossRate, opts.warmup, edge.pid);
      await runPhase("warm-up cross", [core1], w0, opts.crossRate, opts.warmup, edge.pid);
    }
    const counters0 = await counters(control);
    for (let round = 0; round < 2; round++) {
      for (const crossing of [false, true]) {
        const label = crossing ? "every request crosses" : "same worker";
        log(`${label} (round ${round + 1}): ${opts.crossRate}/s for ${opts.crossDuration} s`);
        const p = await runPhase(
          label,
          [crossing ? core1 : core0],
          w0,
          opts.crossRate,
          opts.crossDuration,
          edge.pid,
        );
        log(
          `  ${p.delivered}/${p.count} delivered, ${p.lost} lost, cpu ${p.cpu.toFixed(2)} s, ` +
            `tool loop gaps > 10 ms: ${p.stalls} (max ${p.maxGapMs.toFixed(1)} ms)`,
        );
        cross.push(p);
        memory.push(await sampleMemory(`after ${label} (round ${round + 1})`, control, edge.pid));
      }
    }
    const countersEnd = await counters(control);
    const rssEnd = rssKb(edge.pid);

    // Report.
    const allPhases = phases;
    const totalLost = allPhases.reduce((s, p) => s + p.lost, 0);
    const out: string[] = [];
    const perFlow = ((rssAfter - rssRest) * 1.024) / Math.max(1, registered);
    const cmd = `deno run -A scripts/bench_flows.ts --clients ${requested} --rate ${opts.rate} ` +
      `--duration ${opts.duration} --cross-rate ${opts.crossRate} --cross-duration ` +
      `${opts.crossDuration}` +
      (opts.sipedgeRoot === REPO_ROOT ? "" : ` --sipedge-root ${opts.sipedgeRoot}`);
    out.push("## Flows (RFC 5626): memory per flow, delivery over flows, crossing workers");
    out.push("");
    const tree = opts.sipedgeRoot === REPO_ROOT
      ? `HEAD ${head}${dirty ? " plus uncommitted changes" : ""}`
      : `sipedge run from ${opts.sipedgeRoot}; this repository at HEAD ${head}`;
    out.push(`- Date: ${date} (${tree}), load average before the run ${load0}.`);
    out.push(
      `- Command: \`${cmd}\`${
        opts.clients < requested
          ? ` (clients capped at ${opts.clients} by the open-file limit ${limits.soft})`
          : ""
      }.`,
    );
    out.push(
      `- Machine: ${model}, ${cpus} CPUs; Deno ${Deno.version.deno}. sipedge \`workers = 2\`, ` +
        `log_level warning; the load tool (one Deno process: registrar, ${opts.clients} ` +
        `clients, core) shares the two cores.`,
    );
    out.push(
      `- What it does: ${opts.clients} TCP clients each REGISTER once through sipedge with an ` +
        `outbound Contact (\`;ob\`, \`reg-id\`, \`+sip.instance\`, \`Supported: outbound, path\`); ` +
        `the registrar (in the tool) answers 200 and records the Path sipedge added. The "core" ` +
        `then sends MESSAGEs open loop with \`Route: <Path URI>\` and Request-URI = the contact; ` +
        `each client answers 200. Sends are paced on a ~1 ms timer; requests due in the same ` +
        `tick on one connection may share a TCP write. ` +
        `Latency: send → 200 back at the core, matched by Call-ID. ` +
        `"Lost": no final answer 5 s after the last send. CPU: sipedge's utime+stime ` +
        `(/proc/PID/stat, all threads) from the first send until every answer was in, over ` +
        `the 200s delivered. An unmeasured ${opts.warmup} s warm-up precedes each part.`,
    );
    out.push("");
    out.push("### Memory per registered flow");
    out.push("");
    out.push(
      "| clients registered | RSS at rest | RSS after | RSS per flow | flows listed | registration time |",
    );
    out.push("| ---: | ---: | ---: | ---: | ---: | ---: |");
    out.push(
      `| ${fmt(registered)} / ${fmt(opts.clients)} | ${fmt(rssRest / 1024, 1)} MiB | ` +
        `${fmt(rssAfter / 1024, 1)} MiB | ${fmt(perFlow, 1)} KB | ` +
        `${fmt(flowsListed)} | ${regS.toFixed(1)} s |`,
    );
    out.push("");
    out.push(
      `RSS per flow = (after − at rest) / registered; "after" read 2 s after the last 200 ` +
        `(each connection has had its REGISTER and 200 through sipedge). KB = 1,000 bytes.`,
    );
    out.push("");
    out.push("sipedge's memory through the run (JS heaps in use from `GET /metrics`):");
    out.push("");
    out.push("| when | RSS MiB | heap worker 0 MiB | heap worker 1 MiB | heap supervisor MiB |");
    out.push("| --- | ---: | ---: | ---: | ---: |");
    for (const m of memory) {
      out.push(
        `| ${m.label} | ${fmt(m.rssKb / 1024, 1)} | ${fmt(m.heapsMiB[0], 1)} | ` +
          `${fmt(m.heapsMiB[1], 1)} | ${fmt(m.heapsMiB[2], 1)} |`,
      );
    }
    out.push("");
    out.push("### Delivery over flows");
    out.push("");
    const coreOwners = cores.slice(0, 4).map((c) => c.worker).join(", ");
    out.push(
      `${fmt(opts.rate)} MESSAGE/s for ${opts.duration} s over 4 core connections (owned by ` +
        `workers ${coreOwners}), each to a random one of ${fmt(targets.length)} clients ` +
        `(${fmt(w0.length)} owned by worker 0, ${fmt(w1count)} by worker 1), so about half ` +
        `the requests cross workers.`,
    );
    out.push("");
    out.push(
      "| sent | delivered (200) | lost | other statuses | p50 µs | p99 µs | sipedge CPU s / 1k tx | load tool CPU % | tool loop stalls > 10 ms (longest) |",
    );
    out.push("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    out.push(
      `| ${fmt(delivery.count)} | ${fmt(delivery.delivered)} | ${fmt(delivery.lost)} | ` +
        `${others(delivery)} | ${fmt(delivery.percentile(50))} | ${
          fmt(delivery.percentile(99))
        } | ` +
        `${fmt(cpuPer1000(delivery), 4)} | ${fmt(toolPct(delivery))} | ${stallText(delivery)} |`,
    );
    out.push("");
    out.push("### Crossing workers vs not");
    out.push("");
    out.push(
      `${fmt(opts.crossRate)} MESSAGE/s for ${opts.crossDuration} s per phase, all to the ` +
        `${fmt(w0.length)} clients owned by worker 0; "same worker" sends on a core connection ` +
        `owned by worker 0, "every request crosses" on one owned by worker 1 (request and ` +
        `response each handed between workers). Phases alternate A B A B.`,
    );
    out.push("");
    out.push(
      "| phase | sent | delivered | lost | other | p50 µs | p99 µs | sipedge CPU s / 1k tx | load tool CPU % | tool loop stalls > 10 ms (longest) |",
    );
    out.push("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for (const p of cross) {
      out.push(
        `| ${p.label} | ${fmt(p.count)} | ${fmt(p.delivered)} | ${fmt(p.lost)} | ${others(p)} | ` +
          `${fmt(p.percentile(50))} | ${fmt(p.percentile(99))} | ${fmt(cpuPer1000(p), 4)} | ` +
          `${fmt(toolPct(p))} | ${stallText(p)} |`,
      );
    }
    const sum = (crossing: boolean) => {
      const ps = cross.filter((p) => p.label.startsWith("every") === crossing);
      const cpu = ps.reduce((s, p) => s + p.cpu, 0);
      const delivered = ps.reduce((s, p) => s + p.delivered, 0);
      const med = (q: number) =>
        ps.map((p) => p.percentile(q)).reduce((a, b) => a + b, 0) / ps.length;
      return { per1000: (cpu / Math.max(1, delivered)) * 1000, p50: med(50), p99: med(99) };
    };
    const same = sum(false);
    const crossed = sum(true);
    out.push(
      `| **ratio crossing / same** (both rounds) | | | | | ${fmt(crossed.p50 / same.p50, 2)} | ` +
        `${fmt(crossed.p99 / same.p99, 2)} | ${fmt(crossed.per1000 / same.per1000, 2)} | | |`,
    );
    out.push("");
    const hOut = (countersEnd.handoffs_out ?? NaN) - (counters0.handoffs_out ?? NaN);
    const hIn = (countersEnd.handoffs_in ?? NaN) - (counters0.handoffs_in ?? NaN);
    const crossDelivered = cross.filter((p) => p.label.startsWith("every")).reduce(
      (s, p) => s + p.delivered,
      0,
    );
    out.push(
      `Counters at the end (GET /counters, whole run): handoffs_out ${
        fmt(countersEnd.handoffs_out)
      }, ` +
        `handoffs_in ${fmt(countersEnd.handoffs_in)}; during the four phases: out ${fmt(hOut)}, ` +
        `in ${fmt(hIn)} (${fmt(crossDelivered)} crossing transactions delivered × 2 = ` +
        `${fmt(crossDelivered * 2)}). sipedge RSS at the end: ${fmt(rssEnd / 1024, 1)} MiB.`,
    );
    out.push("");
    out.push(
      `Lost over all runs (warm-ups included): ${fmt(totalLost)}; duplicate answers: ` +
        `${fmt(allPhases.reduce((s, p) => s + p.duplicates, 0))}; unmatched answers at the ` +
        `core: ${fmt(coreStats.unmatched)}; requests received by clients: ` +
        `${fmt(clientStats.requests)} (sent: ${fmt(allPhases.reduce((s, p) => s + p.count, 0))}).`,
    );
    out.push("");
    const p99s = cross.map((p) => p.percentile(99));
    const stallsTotal = cross.reduce((n, p) => n + p.stalls, 0);
    out.push(
      `Interpretation: each registered flow (an idle TCP connection with its flow) cost ` +
        `${fmt(perFlow, 1)} KB of sipedge RSS. Handing a transaction between workers (request ` +
        `and response) cost ${fmt(crossed.per1000 / same.per1000, 2)} × the CPU of the ` +
        `same-worker path (${fmt(same.per1000, 4)} → ${fmt(crossed.per1000, 4)} s / 1k tx) and ` +
        `moved p50 from ${fmt(same.p50)} to ${fmt(crossed.p50)} µs at ${fmt(opts.crossRate)}/s. ` +
        `p99 ranged ${fmt(Math.min(...p99s))}–${fmt(Math.max(...p99s))} µs over the four ` +
        `phases; this tool's own event loop stalled over 10 ms ${fmt(stallsTotal)} times in ` +
        `them (longest ${fmt(Math.max(...cross.map((p) => p.maxGapMs)))} ms), so the p99 ` +
        `figures include the tool's pauses.`,
    );
    const sectionPath = "/tmp/bench_flows_section.md";
    await Deno.writeTextFile(sectionPath, out.join("\n") + "\n");
    // deno fmt wraps the prose at 100 columns and aligns the tables, as in BENCHMARKS.md.
    await commandOutput(Deno.execPath(), ["fmt", "--quiet", "--line-width=100", sectionPath]);
    console.log(await Deno.readTextFile(sectionPath));
    log(`section saved to /tmp/bench_flows_section.md`);
    log(
      `load-tool stats: client other responses ${clientStats.otherResponses}, clients closed ` +
        `${clientStats.closed}, requests at core ${coreStats.requests}`,
    );
    return totalLost === 0 ? 0 : 2;
  } finally {
    for (const c of cores) {
      try {
        c.conn.close();
      } catch { /* closed */ }
    }
    for (const c of clients) {
      try {
        c.conn.close();
      } catch { /* closed */ }
    }
    registrar.close();
    const st = await edge.stop();
    const text = await Deno.readTextFile(edge.logPath);
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    const bad = lines.filter((l) => /warn|error|fatal|panic|uncaught/i.test(l));
    log(
      `sipedge exited code ${st.code}${st.signal ? ` signal ${st.signal}` : ""}; log ` +
        `${edge.logPath}: ${lines.length} lines, ${bad.length} warning/error lines`,
    );
    for (const l of bad.slice(0, 20)) log(`  sipedge: ${l}`);
  }
}

if (import.meta.main) {
  Deno.exit(await main());
}
