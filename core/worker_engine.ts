/**
 * One reader worker's engine: its plugins, its listeners (SO_REUSEPORT: every worker listens
 * on every address and the kernel spreads connections), and the glue from a frame read on a
 * connection to the proxy and from the proxy to a connection. Connections and their policies
 * are in the ConnectionManager. Everything here runs on the worker's thread.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ResolvedConfig } from "./config/load.ts";
import { loadPlugin } from "./plugin/registry.ts";
import type { Router, SendFailureEvent, WorkerPlugin } from "./plugin/types.ts";
import type { BlacklistEntry } from "./policy/blacklist_table.ts";
import { SharedCounters } from "./policy/shared_counters.ts";
import { forwardRequest } from "./proxy/forward_request.ts";
import { forwardResponse } from "./proxy/forward_response.ts";
import type { MessageSource, ProxyCounter, ProxyHost } from "./proxy/proxy_host.ts";
import type { Frame } from "./sip/stream_framer.ts";
import { buildReply } from "./sip/reply.ts";
import type { Connection, FailHandler } from "./transport/connection.ts";
import {
  type BlacklistChange,
  type ConnectionInfo,
  ConnectionManager,
  type EffectivePolicy,
} from "./transport/connection_manager.ts";
import type { Destination } from "./transport/destination.ts";
import type { StreamListener, StreamTransport } from "./transport/types.ts";
import { Counters } from "./stats.ts";

const log = getLogger(["sipedge", "transport"]);
const PONG = new Uint8Array([13, 10]);

/** A listener as started: transport and bound address. */
export interface BoundListener {
  transport: string;
  hostname: string;
  port: number;
}

/** Options for a {@link WorkerEngine}. */
export interface WorkerEngineOptions {
  config: ResolvedConfig;
  workerId: number;
  /** The supervisor's shared counters buffer. */
  shared: SharedArrayBuffer;
  /** Blacklist entries already in force (from the supervisor). */
  blacklist?: BlacklistEntry[];
  /** Called when this worker blacklists a destination (to tell the others). */
  onBlacklisted?: (entry: BlacklistEntry) => void;
}

/** The engine of one reader worker. */
export class WorkerEngine implements ProxyHost {
  readonly workerId: number;
  readonly counters = new Counters();
  routers: Router[] = [];

  #options: WorkerEngineOptions;
  #config: ResolvedConfig;
  #plugins: WorkerPlugin[] = [];
  #transports = new Map<string, StreamTransport>();
  #viaToTransport = new Map<string, string>();
  #listeners: StreamListener[] = [];
  #advertised = new Map<string, { host: string; port: number }>();
  #local = new Set<string>();
  #localHostsAnyPort = new Set<string>();
  #connections: ConnectionManager | undefined;
  #sources = new WeakMap<Connection, MessageSource>();
  #sweep: ReturnType<typeof setInterval> | undefined;

  constructor(options: WorkerEngineOptions) {
    this.#options = options;
    this.#config = options.config;
    this.workerId = options.workerId;
  }

  /** The connection manager (after start). */
  get connections(): ConnectionManager {
    return this.#connections!;
  }

  /** Loads plugins and starts listening. Returns the bound listeners. */
  async start(): Promise<BoundListener[]> {
    const policy: Partial<EffectivePolicy> = { blacklist: undefined };
    const failureListeners: ((event: SendFailureEvent) => void)[] = [];
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
      if (instance.policy) Object.assign(policy, instance.policy);
      if (instance.onSendFailure) failureListeners.push(instance.onSendFailure);
    }
    if (policy.timeouts === undefined || policy.limits === undefined) {
      throw new Error("the timeouts and limits policy plugins must be enabled");
    }
    this.#connections = new ConnectionManager({
      workerId: this.workerId,
      transports: this.#transports,
      shared: new SharedCounters(this.#options.shared),
      counters: this.counters,
      policy: policy as EffectivePolicy,
      onFrame: (c, frame) => this.#onFrame(c, frame),
      onBlacklisted: (entry) => this.#options.onBlacklisted?.(entry),
      failureListeners,
    });
    for (const entry of this.#options.blacklist ?? []) {
      this.#connections.applyBlacklist({ op: "add", entry });
    }
    const bound: BoundListener[] = [];
    for (const l of this.#config.listen) {
      const transport = this.#transports.get(l.transport)!;
      const listener = await transport.listen({ hostname: l.hostname, port: l.port });
      this.#listeners.push(listener);
      const addr = listener.addr;
      bound.push({ transport: l.transport, hostname: addr.hostname, port: addr.port });
      const advertised = l.advertise === undefined
        ? { host: addr.hostname, port: addr.port }
        : { host: l.advertise.host, port: l.advertise.port || transport.defaultPort };
      if (!this.#advertised.has(l.transport)) this.#advertised.set(l.transport, advertised);
      this.#addLocal(addr.hostname, addr.port);
      this.#addLocal(advertised.host, advertised.port);
      const name = l.transport;
      listener.start((socket) => this.#connections!.accept(name, socket));
    }
    for (const alias of this.#config.sipedge.aliases) {
      const colon = alias.lastIndexOf(":");
      if (colon > alias.lastIndexOf("]")) this.#local.add(normalizeHost(alias));
      else this.#localHostsAnyPort.add(normalizeHost(alias));
    }
    this.#sweep = setInterval(() => this.#connections!.sweep(Date.now()), sweepInterval(policy));
    return bound;
  }

  /** Stops accepting, waits up to `timeoutMs` for queued data to be written, closes all. */
  async stop(timeoutMs: number): Promise<void> {
    for (const l of this.#listeners) l.close();
    this.#listeners = [];
    clearInterval(this.#sweep);
    await this.#connections?.stop(timeoutMs);
    for (const p of this.#plugins) await p.close?.();
  }

  /** Number of open connections. */
  get connectionCount(): number {
    return this.#connections?.size ?? 0;
  }

  /** Connections for the control API. */
  listConnections(): ConnectionInfo[] {
    return this.#connections?.list() ?? [];
  }

  /** Applies a blacklist change from the supervisor. */
  applyBlacklist(change: BlacklistChange): void {
    this.#connections?.applyBlacklist(change);
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
    this.#connections!.sendTo(destination, bytes, onFail);
  }

  sendOnConnection(id: number, bytes: Uint8Array): boolean {
    return this.#connections!.sendOn(id, bytes);
  }

  count(counter: ProxyCounter): void {
    this.counters.inc(counter);
  }

  // --- frames ------------------------------------------------------------------------------

  #source(connection: Connection): MessageSource {
    let source = this.#sources.get(connection);
    if (source === undefined) {
      const manager = this.#connections!;
      source = {
        connectionId: connection.id,
        transport: connection.transportName,
        hostname: connection.remote.hostname,
        port: connection.remote.port,
        reply: (bytes) => manager.reply(connection, bytes),
      };
      this.#sources.set(connection, source);
    }
    return source;
  }

  #onFrame(connection: Connection, frame: Frame): void {
    switch (frame.type) {
      case "message":
        if (frame.head.isRequest) forwardRequest(this, this.#source(connection), frame);
        else forwardResponse(this, frame);
        return;
      case "ping":
        this.counters.inc("keepalive_pings");
        this.#connections!.reply(connection, PONG);
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
        if (head?.isRequest && head.method !== "ACK" && head.headers.length > 0) {
          this.counters.inc("local_replies");
          this.#connections!.reply(connection, buildReply(head, frame.status, frame.reason));
        }
        connection.closeAfterFlush();
        return;
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

/** Timer sweep period: a quarter of the shortest timeout, between 50 ms and 1 s. */
function sweepInterval(policy: Partial<EffectivePolicy>): number {
  const t = policy.timeouts!;
  const shortest = Math.min(
    t.send_timeout,
    t.idle_timeout,
    t.message_read_timeout,
    ...(t.keepalive_interval > 0 ? [t.keepalive_interval, t.keepalive_timeout] : []),
  );
  return Math.max(50, Math.min(1000, Math.floor(shortest / 4)));
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
