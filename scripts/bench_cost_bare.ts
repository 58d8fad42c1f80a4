/**
 * The bare runtime, for scripts/bench_cost.sh: what Deno alone costs, the floor under sipedge's
 * figures.
 *
 * The idle step's floor for memory per idle connection: a server that answers every SIP request
 * itself (200 OK, Via/From/To/Call-ID/CSeq copied) and keeps nothing else per connection, so that
 * its memory per connection is the runtime's socket alone.
 *
 * - `--mode tcp`: `Deno.listen`, one pending `conn.read()` into a `--buf`-byte buffer per
 *   connection (what plugins/tcp.ts does while a connection is idle, with its 2 KB buffer).
 * - `--mode tls`: a `node:tls` server, `data` events (what plugins/tls does).
 *
 * The cpu step's floor for CPU per transaction: a relay proxy that parses nothing.
 *
 * - `--mode relay`: `--workers N` Web Workers (this same file, told its role by a message; the
 *   main thread only starts them and stays idle, as sipedge's supervisor does), each with a
 *   `Deno.listen` SO_REUSEPORT listener on `--port`. Per accepted client connection, one
 *   `Deno.connect` connection to `--upstream`, and bytes pumped both ways: `conn.read()` into a
 *   16 KiB buffer, `conn.write()` until all is written, TCP_NODELAY on both; when either side
 *   closes or fails, both are closed. With `--tls-port`, each worker also has a `node:tls` server
 *   on that port (SO_REUSEPORT like sipedge's plugins/tls; `data` events → upstream writes in
 *   order, upstream reads → `socket.write`), its upstream plain TCP as sipedge's is; with
 *   `--tls-impl native`, a `Deno.listenTls` listener instead (the runtime's own TLS, no node
 *   streams, pumped like a TCP connection: what TLS would cost if sipedge could use it; the
 *   accepted sockets keep Nagle on, because a `Deno.TlsConn` has no `setNoDelay`). That is the
 *   transport work a TCP proxy must do per message — one read and one write each way — and
 *   nothing else. It is a valid proxy for the benchmark only because its UAS (`sipload uas`)
 *   answers on the connection the request came on, so the answer comes back through the relay.
 *
 * The rest step's floor for memory at rest: the runtime in sipedge's shape, doing nothing.
 *
 * - `--mode rest`: the main thread starts `--workers N` Web Workers (module workers from this same
 *   file, as in the relay mode) that do nothing but keep a 250 ms `setInterval` (sipedge's reader
 *   workers keep a heartbeat like that); the main thread keeps a 250 ms `setInterval` too (as
 *   sipedge's supervisor keeps timers) and a SIGUSR2 listener (sipedge listens for SIGTERM, SIGINT
 *   and SIGHUP): on SIGUSR2 it prints `HEAPS W0/W1/… MAIN`, each isolate's JS heap in use in MiB
 *   (`Deno.memoryUsage().heapUsed`, as sipedge's /metrics). No sockets, and no module loaded
 *   beyond this file: `node:tls` is imported only by the modes that use it, when they run.
 *
 * Usage: deno run -A scripts/bench_cost_bare.ts --mode tcp|tls --port PORT [--buf 2048]
 * [--cert FILE --key FILE] (tls), or --mode relay --port PORT --upstream HOST:PORT [--workers 2]
 * [--tls-port PORT --cert FILE --key FILE [--tls-impl node|native]], or --mode rest [--workers 2].
 * Prints `LISTENING` once it accepts connections (relay: once every worker listens); rest: `READY`
 * once every worker has reported in.
 * @module
 */
// Types only (erased): the modes that need node:tls import it when they run, so that the rest
// mode's isolates load nothing but this file.
import type * as tls from "node:tls";

function option(name: string, fallback?: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  const value = at >= 0 ? Deno.args[at + 1] : fallback;
  if (value === undefined) throw new Error(`--${name} is required`);
  return value;
}

/** True in a worker (a worker sees the process's Deno.args too, and reads only its role). */
const inWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
  "undefined";
const mode = option("mode", "tcp");
const bufferSize = Number(option("buf", "2048"));
const encoder = new TextEncoder();
const decoder = new TextDecoder("latin1");
const KEEP = /^(via|v|from|f|to|t|call-id|i|cseq):/i;

/** Answers the complete requests at the start of `text`; returns the answers and the rest. */
function answer(text: string): { out: string; rest: string } {
  let out = "";
  let at = 0;
  while (true) {
    const end = text.indexOf("\r\n\r\n", at);
    if (end < 0) break;
    const lines = text.slice(at, end).split("\r\n");
    if (lines[0].startsWith("SIP/2.0")) { // a response: nothing to answer
      at = end + 4;
      continue;
    }
    const keep = lines.filter((line) => KEEP.test(line));
    out += `SIP/2.0 200 OK\r\n${keep.join("\r\n")}\r\nContent-Length: 0\r\n\r\n`;
    at = end + 4;
  }
  return { out, rest: text.slice(at) };
}

async function serveTcp(conn: Deno.TcpConn): Promise<void> {
  const buffer = new Uint8Array(bufferSize);
  let pending = "";
  try {
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      const { out, rest } = answer(pending + decoder.decode(buffer.subarray(0, n)));
      pending = rest;
      if (out !== "") {
        const bytes = encoder.encode(out);
        for (let sent = 0; sent < bytes.length;) sent += await conn.write(bytes.subarray(sent));
      }
    }
  } catch {
    // reset by the peer
  }
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** The relay's TLS listener: `node:tls` (what plugins/tls uses) or the runtime's own. */
function tlsImpl(value: string): "node" | "native" {
  if (value === "node" || value === "native") return value;
  throw new Error(`--tls-impl ${value}: expected node or native`);
}

/** What the main thread of `--mode relay` tells each worker. */
interface RelayRole {
  role: "relay";
  index: number;
  port: number;
  upstream: { hostname: string; port: number };
  tls?: { port: number; cert: string; key: string; impl: "node" | "native" };
}

const RELAY_BUFFER = 16 * 1024;

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let sent = 0; sent < bytes.length;) sent += await conn.write(bytes.subarray(sent));
}

/** Copies `from` to `to` until `from` ends or either fails. */
async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(RELAY_BUFFER);
  try {
    while (true) {
      const n = await from.read(buffer);
      if (n === null) return;
      await writeAll(to, buffer.subarray(0, n));
    }
  } catch {
    // reset, or closed by the other direction
  }
}

/** Relays a TCP connection, or a `Deno.listenTls` one (which cannot turn Nagle off). */
async function relayConn(
  client: Deno.TcpConn | Deno.TlsConn,
  upstream: RelayRole["upstream"],
): Promise<void> {
  let server: Deno.TcpConn;
  try {
    server = await Deno.connect({ hostname: upstream.hostname, port: upstream.port });
  } catch {
    return closeQuietly(client);
  }
  if ("setNoDelay" in client) client.setNoDelay(true);
  server.setNoDelay(true);
  // Either direction ending closes both, which ends the other direction's pending read.
  const done = () => {
    closeQuietly(client);
    closeQuietly(server);
  };
  pump(client, server).then(done);
  pump(server, client).then(done);
}

function relayTls(socket: tls.TLSSocket, upstream: RelayRole["upstream"]): void {
  socket.setNoDelay(true);
  let server: Deno.TcpConn | undefined;
  let closed = false;
  let queue: Uint8Array[] = []; // client bytes that came before the upstream connection
  let writing = Promise.resolve();
  const close = () => {
    if (closed) return;
    closed = true;
    if (server !== undefined) closeQuietly(server);
    socket.destroy();
  };
  const forward = (bytes: Uint8Array) => {
    const to = server!;
    writing = writing.then(() => closed ? undefined : writeAll(to, bytes)).catch(close);
  };
  socket.on("data", (data: Uint8Array) => {
    if (server === undefined) queue.push(data);
    else forward(data);
  });
  socket.on("error", close);
  socket.on("close", close);
  Deno.connect({ hostname: upstream.hostname, port: upstream.port }).then(async (conn) => {
    server = conn;
    if (closed) return closeQuietly(conn);
    conn.setNoDelay(true);
    for (const data of queue) forward(data);
    queue = [];
    const buffer = new Uint8Array(RELAY_BUFFER);
    try {
      while (true) {
        const n = await conn.read(buffer);
        if (n === null) break;
        socket.write(buffer.slice(0, n)); // a copy: the buffer is read into again at once
      }
    } catch {
      // reset, or closed by the client side
    }
    close();
  }, close);
}

/** One relay worker: its listeners, then serves until the process ends. */
async function relayWorker(role: RelayRole): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: role.port, reusePort: true });
  if (role.tls?.impl === "native") {
    const tlsListener = Deno.listenTls({
      hostname: "127.0.0.1",
      port: role.tls.port,
      reusePort: true,
      cert: role.tls.cert,
      key: role.tls.key,
    });
    (async () => {
      for await (const conn of tlsListener) relayConn(conn, role.upstream);
    })();
  } else if (role.tls !== undefined) {
    const { createServer } = await import("node:tls");
    const server = createServer({ cert: role.tls.cert, key: role.tls.key });
    server.on("secureConnection", (socket: tls.TLSSocket) => relayTls(socket, role.upstream));
    server.on("tlsClientError", () => {});
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      // SO_REUSEPORT, as sipedge's plugins/tls binds it: every worker listens on the port.
      server.listen(
        { host: "127.0.0.1", port: role.tls!.port, reusePort: true, exclusive: true },
        () => resolve(),
      );
    });
  }
  (self as unknown as Worker).postMessage("listening");
  for await (const conn of listener) relayConn(conn, role.upstream);
}

/** What the main thread of `--mode rest` tells each worker. */
interface RestRole {
  role: "rest";
  index: number;
}

/** The main thread's question to a rest worker: its JS heap in use. */
const HEAP = "heap";

/** Interval of the rest mode's timers, ms: sipedge's worker heartbeat and supervisor timer. */
const REST_TIMER_MS = 250;

/** One rest worker: a 250 ms timer that does nothing, and answers to HEAP. */
function restWorker(): void {
  const scope = self as unknown as Worker;
  let beats = 0;
  setInterval(() => beats++, REST_TIMER_MS);
  scope.onmessage = (event: MessageEvent) => {
    if (event.data === HEAP) scope.postMessage({ heap: Deno.memoryUsage().heapUsed });
  };
  scope.postMessage("ready");
}

/** `--mode rest` on the main thread: starts the workers, then keeps a timer. */
function restMain(): void {
  const workers = Number(option("workers", "2"));
  const started: Worker[] = [];
  let ready = 0;
  let heaps: (number | undefined)[] = [];
  const mib = (bytes: number) => (bytes / 1048576).toFixed(1);
  for (let index = 0; index < workers; index++) {
    const worker = new Worker(import.meta.url, { type: "module" });
    started.push(worker);
    worker.onmessage = (event: MessageEvent<"ready" | { heap: number }>) => {
      if (event.data === "ready") {
        if (++ready === workers) console.log("READY");
        return;
      }
      heaps[index] = event.data.heap;
      if (heaps.filter((h) => h !== undefined).length === workers) {
        console.log(
          `HEAPS ${heaps.map((h) => mib(h!)).join("/")} ${mib(Deno.memoryUsage().heapUsed)}`,
        );
        heaps = [];
      }
    };
    worker.onerror = (event) => {
      console.error(`rest worker ${index}: ${event.message}`);
      Deno.exit(1);
    };
    worker.postMessage({ role: "rest", index } satisfies RestRole);
  }
  let beats = 0;
  setInterval(() => beats++, REST_TIMER_MS);
  Deno.addSignalListener("SIGUSR2", () => {
    heaps = [];
    for (const worker of started) worker.postMessage(HEAP);
  });
}

if (inWorker) {
  (self as unknown as Worker).onmessage = (event: MessageEvent<RelayRole | RestRole>) => {
    const role = event.data;
    if (role.role === "rest") return restWorker();
    relayWorker(role).catch((error) => {
      console.error(`relay worker ${role.index}: ${error}`);
      Deno.exit(1);
    });
  };
} else if (mode === "rest") {
  restMain();
} else if (mode === "tcp") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(option("port")) });
  console.log("LISTENING");
  for await (const conn of listener) serveTcp(conn);
} else if (mode === "tls") {
  const { createServer } = await import("node:tls");
  const port = Number(option("port"));
  const server = createServer({
    cert: Deno.readTextFileSync(option("cert")),
    key: Deno.readTextFileSync(option("key")),
  }, (socket) => {
    let pending = "";
    socket.on("data", (data: Uint8Array) => {
      const { out, rest } = answer(pending + decoder.decode(data));
      pending = rest;
      if (out !== "") socket.write(out, "latin1");
    });
    socket.on("error", () => {});
  });
  server.listen(port, "127.0.0.1", () => console.log("LISTENING"));
} else if (mode === "relay") {
  const [hostname, upstreamPort] = option("upstream").split(/:(?=[0-9]+$)/);
  const tlsPort = Deno.args.includes("--tls-port") ? Number(option("tls-port")) : undefined;
  const workers = Number(option("workers", "2"));
  const role: Omit<RelayRole, "index"> = {
    role: "relay",
    port: Number(option("port")),
    upstream: { hostname, port: Number(upstreamPort) },
    tls: tlsPort === undefined ? undefined : {
      port: tlsPort,
      cert: Deno.readTextFileSync(option("cert")),
      key: Deno.readTextFileSync(option("key")),
      impl: tlsImpl(option("tls-impl", "node")),
    },
  };
  let listening = 0;
  for (let index = 0; index < workers; index++) {
    const worker = new Worker(import.meta.url, { type: "module" });
    worker.onmessage = () => {
      if (++listening === workers) console.log("LISTENING");
    };
    worker.onerror = (event) => {
      console.error(`relay worker ${index}: ${event.message}`);
      Deno.exit(1);
    };
    worker.postMessage({ ...role, index } satisfies RelayRole);
  }
} else {
  throw new Error(`--mode ${mode}: expected tcp, tls, relay or rest`);
}
