/**
 * One reader worker's engine: its listeners (SO_REUSEPORT: every worker listens on every
 * address and the kernel spreads connections), the connections it owns, and the glue from a
 * read frame to the proxy and from the proxy to a connection. Everything here runs on the
 * worker's thread; nothing is shared, so nothing needs locking.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ResolvedConfig } from "./config/load.ts";
import { loadPlugin } from "./plugin/registry.ts";
import type { Router, WorkerPlugin } from "./plugin/types.ts";
import { forwardRequest } from "./proxy/forward_request.ts";
import { forwardResponse } from "./proxy/forward_response.ts";
import type { MessageSource, ProxyCounter, ProxyHost } from "./proxy/proxy_host.ts";
import type { Frame } from "./sip/stream_framer.ts";
import { buildReply } from "./sip/reply.ts";
import { Connection, type FailHandler, type UnsentData } from "./transport/connection.ts";
import { type Destination, destinationKey } from "./transport/destination.ts";
import type {
  SocketAddress,
  StreamListener,
  StreamSocket,
  StreamTransport,
} from "./transport/types.ts";
import { Counters } from "./stats.ts";

const log = getLogger(["sipedge", "transport"]);

/** How long an outbound connect may take. Becomes a `timeouts` plugin setting (issue 3). */
export const CONNECT_TIMEOUT_MS = 10_000;
/** Ids are `sequence * MAX_WORKERS + workerId`: unique in the process, no coordination. */
const MAX_WORKERS = 256;
const PONG = new Uint8Array([13, 10]);

/** A listener as started: transport and bound address. */
export interface BoundListener {
  transport: string;
  hostname: string;
  port: number;
}

/** The engine of one reader worker. */
export class WorkerEngine implements ProxyHost {
  readonly workerId: number;
  readonly counters = new Counters();
  routers: Router[] = [];

  #config: ResolvedConfig;
  #plugins: WorkerPlugin[] = [];
  #transports = new Map<string, StreamTransport>();
  #viaToTransport = new Map<string, string>();
  #listeners: StreamListener[] = [];
  #advertised = new Map<string, { host: string; port: number }>();
  #local = new Set<string>();
  #localHostsAnyPort = new Set<string>();
  #connections = new Map<number, Connection>();
  #byKey = new Map<string, Connection>();
  #sources = new Map<number, MessageSource>();
  #sequence = 0;
  /** Messages already sent again after their connection closed under them. */
  #resent = new WeakSet<Uint8Array>();
  #sweep: ReturnType<typeof setInterval> | undefined;

  constructor(config: ResolvedConfig, workerId: number) {
    this.#config = config;
    this.workerId = workerId;
  }

  /** Loads plugins and starts listening. Returns the bound listeners. */
  async start(): Promise<BoundListener[]> {
    for (const p of this.#config.plugins) {
      const def = await loadPlugin({ name: p.name, moduleUrl: p.moduleUrl });
      const instance = await def.worker?.(p.config, {
        workerId: this.workerId,
        logger: getLogger(["sipedge", "plugin", p.name]),
      }) ?? {};
      this.#plugins.push(instance);
      if (instance.transport) {
        this.#transports.set(p.name, instance.transport);
        this.#viaToTransport.set(instance.transport.viaName.toUpperCase(), p.name);
      }
      if (instance.router) this.routers.push(instance.router);
    }
    const bound: BoundListener[] = [];
    for (const l of this.#config.listen) {
      const transport = this.#transports.get(l.transport)!;
      const listener = transport.listen({ hostname: l.hostname, port: l.port });
      this.#listeners.push(listener);
      const addr = listener.addr;
      bound.push({ transport: l.transport, hostname: addr.hostname, port: addr.port });
      const advertised = l.advertise === undefined
        ? { host: addr.hostname, port: addr.port }
        : { host: l.advertise.host, port: l.advertise.port || transport.defaultPort };
      if (!this.#advertised.has(l.transport)) this.#advertised.set(l.transport, advertised);
      this.#addLocal(addr.hostname, addr.port);
      this.#addLocal(advertised.host, advertised.port);
      listener.start((socket) => this.#accept(l.transport, transport, socket));
    }
    for (const alias of this.#config.sipedge.aliases) {
      const colon = alias.lastIndexOf(":");
      if (colon > alias.lastIndexOf("]")) this.#local.add(normalizeHost(alias));
      else this.#localHostsAnyPort.add(normalizeHost(alias));
    }
    this.#sweep = setInterval(() => this.#checkTimers(), 1000);
    return bound;
  }

  /** Stops accepting, waits up to `timeoutMs` for queued data to be written, closes all. */
  async stop(timeoutMs: number): Promise<void> {
    for (const l of this.#listeners) l.close();
    this.#listeners = [];
    clearInterval(this.#sweep);
    const drained = Promise.all([...this.#connections.values()].map((c) => c.drained()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([drained, new Promise((r) => timer = setTimeout(r, timeoutMs))]);
    clearTimeout(timer);
    for (const c of [...this.#connections.values()]) c.close("shutdown");
    for (const p of this.#plugins) await p.close?.();
  }

  /** Number of open connections. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  // --- ProxyHost ---------------------------------------------------------------------------

  isLocal(host: string, port: number, transport?: string): boolean {
    const h = normalizeHost(host);
    if (this.#localHostsAnyPort.has(h)) return true;
    const p = port || (transport?.toLowerCase() === "tls" ? 5061 : 5060);
    return this.#local.has(`${h}:${p}`);
  }

  advertised(transport: string): { host: string; port: number } | undefined {
    return this.#advertised.get(transport);
  }

  viaName(transport: string): string | undefined {
    return this.#transports.get(transport)?.viaName;
  }

  transportForVia(viaName: string): string | undefined {
    return this.#viaToTransport.get(viaName.toUpperCase());
  }

  sendTo(destination: Destination, bytes: Uint8Array, onFail?: FailHandler): void {
    const transport = this.#transports.get(destination.transport);
    if (transport === undefined) {
      onFail?.("connect_failed");
      return;
    }
    const port = destination.port || transport.defaultPort;
    const key = destinationKey(destination.transport, destination.host, port);
    const existing = this.#byKey.get(key);
    if (existing !== undefined && existing.send(bytes, onFail)) return;
    const connection = this.#newConnection(destination.transport, transport, "out", {
      hostname: destination.host,
      port,
    });
    this.#byKey.set(key, connection);
    connection.send(bytes, onFail);
    this.counters.inc("connections_opened");
    transport.connect({
      hostname: destination.host,
      port,
      signal: AbortSignal.timeout(CONNECT_TIMEOUT_MS),
    }).then(
      (socket) => {
        if (connection.state === "closed") socket.close();
        else connection.attach(socket);
      },
      (error: Error) => {
        this.counters.inc("connect_failed");
        log.warn("connect to {key} failed: {error}", { key, error: error.message });
        connection.connectFailed(`connect failed: ${error.message}`);
      },
    );
  }

  sendOnConnection(id: number, bytes: Uint8Array): boolean {
    const connection = this.#connections.get(id);
    return connection !== undefined && connection.send(bytes);
  }

  count(counter: ProxyCounter): void {
    this.counters.inc(counter);
  }

  // --- connections -------------------------------------------------------------------------

  #accept(name: string, transport: StreamTransport, socket: StreamSocket): void {
    this.counters.inc("connections_accepted");
    const connection = this.#newConnection(name, transport, "in", socket.remoteAddr);
    this.#byKey.set(
      destinationKey(name, socket.remoteAddr.hostname, socket.remoteAddr.port),
      connection,
    );
    connection.attach(socket);
  }

  #newConnection(
    name: string,
    transport: StreamTransport,
    direction: "in" | "out",
    remote: SocketAddress,
  ): Connection {
    const id = ++this.#sequence * MAX_WORKERS + this.workerId;
    const connection = new Connection({
      id,
      transport,
      direction,
      remote,
      maxMessageSize: this.#config.sip.max_message_size,
      hooks: {
        onFrame: (c, frame) => this.#onFrame(c, frame),
        onClose: (c, reason) => this.#onClose(name, c, reason),
        onUnsent: (c, unsent) => this.#resend(name, c, unsent),
      },
    });
    this.#connections.set(id, connection);
    this.#sources.set(id, {
      connectionId: id,
      transport: name,
      hostname: remote.hostname,
      port: remote.port,
      reply: (bytes) => connection.send(bytes),
    });
    return connection;
  }

  #onClose(name: string, connection: Connection, reason: string): void {
    this.counters.inc("connections_closed");
    this.#connections.delete(connection.id);
    this.#sources.delete(connection.id);
    const key = destinationKey(name, connection.remote.hostname, connection.remote.port);
    if (this.#byKey.get(key) === connection) this.#byKey.delete(key);
    log.debug("connection {id} to {host}:{port} closed: {reason}", {
      id: connection.id,
      host: connection.remote.hostname,
      port: connection.remote.port,
      reason,
    });
  }

  /**
   * Sends data that a closed outbound connection never delivered again, over a new connection;
   * once per message, so a peer that closes every connection at once cannot make us reconnect
   * forever.
   */
  #resend(name: string, connection: Connection, unsent: UnsentData): void {
    const key = destinationKey(name, connection.remote.hostname, connection.remote.port);
    if (this.#byKey.get(key) === connection) this.#byKey.delete(key);
    const destination = {
      transport: name,
      host: connection.remote.hostname,
      port: connection.remote.port,
    };
    unsent.chunks.forEach((bytes, i) => {
      if (this.#resent.has(bytes)) return unsent.handlers[i]?.("closed");
      this.#resent.add(bytes);
      this.sendTo(destination, bytes, unsent.handlers[i]);
    });
  }

  #onFrame(connection: Connection, frame: Frame): void {
    switch (frame.type) {
      case "message": {
        const source = this.#sources.get(connection.id)!;
        if (frame.head.isRequest) forwardRequest(this, source, frame);
        else forwardResponse(this, frame);
        return;
      }
      case "ping":
        this.counters.inc("keepalive_pings");
        connection.send(PONG);
        return;
      case "error": {
        this.counters.inc("framing_errors");
        const head = frame.head;
        log.info("framing error on connection {id} from {host}:{port}: {status} {reason}", {
          id: connection.id,
          host: connection.remote.hostname,
          port: connection.remote.port,
          status: frame.status,
          reason: frame.reason,
        });
        if (
          head !== undefined && head.isRequest && head.method !== "ACK" && head.headers.length > 0
        ) {
          this.counters.inc("local_replies");
          connection.send(buildReply(head, frame.status, frame.reason));
        }
        connection.closeAfterFlush();
        return;
      }
    }
  }

  #checkTimers(): void {
    const now = Date.now();
    const readTimeout = this.#config.sip.message_read_timeout;
    for (const connection of this.#connections.values()) {
      if (connection.partialSince !== 0 && now - connection.partialSince > readTimeout) {
        this.counters.inc("read_timeouts");
        connection.close("message read timeout");
      }
    }
  }

  #addLocal(host: string, port: number): void {
    const h = normalizeHost(host);
    if (h === "0.0.0.0" || h === "::") {
      for (const ip of interfaceAddresses(h === "::")) this.#local.add(`${ip}:${port}`);
    }
    this.#local.add(`${h}:${port}`);
  }
}

/** Lower case, no IPv6 brackets, no port. */
function normalizeHost(host: string): string {
  const h = host.toLowerCase();
  if (h.startsWith("[")) {
    const close = h.indexOf("]");
    return h.slice(1, close) + h.slice(close + 1);
  }
  return h;
}

function interfaceAddresses(includeV6: boolean): string[] {
  try {
    return Deno.networkInterfaces()
      .filter((i) => i.family === "IPv4" || includeV6)
      .map((i) => i.address.toLowerCase());
  } catch {
    return ["127.0.0.1", "::1"];
  }
}
