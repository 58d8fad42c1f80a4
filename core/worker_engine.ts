/**
 * One reader worker's engine: its plugins, its listeners (SO_REUSEPORT: every worker listens
 * on every address and the kernel spreads connections), and the glue from a frame read on a
 * connection to the proxy and from the proxy to a connection. Connections and their policies
 * are in the ConnectionManager. Everything here runs on the worker's thread.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ResolvedConfig } from "./config/load.ts";
import type { Router, SendFailureEvent } from "./plugin/types.ts";
import {
  buildWorkerPlugins,
  closeAll,
  type LoadedPlugin,
  type PluginBuild,
} from "./plugin/worker_plugins.ts";
import { failureListenerOf, tagPlugin } from "./plugin/owners.ts";
import type { BlacklistEntry } from "./policy/blacklist_table.ts";
import { heartbeatInterval, SharedCounters } from "./policy/shared_counters.ts";
import type { BanChange, BanEntry } from "./policy/ban_table.ts";
import { ALLOWED, FloodGuard } from "./policy/flood_guard.ts";
import { createSourceTableBuffer, MIN_SOURCES, SourceTable } from "./policy/source_table.ts";
import { forwardRequest, ownViaSentBy } from "./proxy/forward_request.ts";
import { findOwnVia, ownViaPrefix, withoutOwnVia } from "./proxy/own_via_response.ts";
import { forwardResponse } from "./proxy/forward_response.ts";
import { answerSendFailure } from "./proxy/send_failure.ts";
import { FlowTokens, randomKeyHex } from "./proxy/flow_token.ts";
import type {
  FlowCheck,
  FlowSettings,
  MessageSource,
  ProxyCounter,
  ProxyHost,
} from "./proxy/proxy_host.ts";
import { type Frame, isResponseAt } from "./sip/stream_framer.ts";
import { buildReply } from "./sip/reply.ts";
import type { Connection } from "./transport/connection.ts";
import { ConnectionDirectory, MAX_WORKERS, ownerOf } from "./transport/connection_directory.ts";
import { type Handoff, HandoffChannel } from "./transport/handoff.ts";
import {
  type BlacklistChange,
  type ConnectionInfo,
  ConnectionManager,
  type EffectivePolicy,
} from "./transport/connection_manager.ts";
import type { Destination } from "./transport/destination.ts";
import type { FailureReason } from "./policy/failure.ts";
import type { SipHead } from "./sip/head.ts";
import {
  type DatagramSocket,
  type DatagramTransport,
  isDatagram,
  type SocketAddress,
  type StreamListener,
  type StreamTransport,
  type Transport,
} from "./transport/types.ts";
import { frameDatagram, isKeepalive, stunBindingResponse } from "./transport/datagram.ts";
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
  /** The connection directory shared by all workers (default: this worker's own). */
  directory?: SharedArrayBuffer;
  /** Ports to the other workers, by worker id, for hand-offs (none with one worker). */
  handoffPorts?: Record<number, MessagePort>;
  /** The hand-off progress table (core/transport/handoff.ts), with `handoffPorts`. */
  handoffProgress?: SharedArrayBuffer;
  /** The flood guard's source table shared by all workers (default: this worker's own). */
  sources?: SharedArrayBuffer;
  /** Bans already in force (from the supervisor). */
  bans?: BanEntry[];
  /** Called when this worker bans a source (to tell the supervisor, which tells the others). */
  onFlooded?: (entry: BanEntry) => void;
}

/** A listener this worker runs (or, for a datagram listener worker 0 owns, knows of). */
interface ListenerEntry {
  /** `transport|host|port`: the host as configured, the port as bound. */
  key: string;
  name: string;
  /** The transport instance that opened it (a replaced transport reopens its listeners). */
  transport: Transport;
  /** The bound address (as configured, with its bound port, for another worker's socket). */
  addr: SocketAddress;
  /** A stream listener; or this worker's datagram socket (worker 0 binds them all). */
  stream?: StreamListener;
  socket?: DatagramSocket;
}

/**
 * The worker that binds every datagram (UDP) socket: Deno has no SO_REUSEPORT for UDP, so one
 * socket per address receives everything (plugins/udp.ts). Other workers hand it what they send.
 */
const DATAGRAM_OWNER = 0;
/**
 * Datagram listener N is named by connection id `(DATAGRAM_ID_BASE + N) * MAX_WORKERS + owner`
 * (the same in every worker; far above the ids connections get), so a response's Via `i=` and
 * a hand-off reach its socket like any connection.
 */
const DATAGRAM_ID_BASE = 2 ** 36;

function closeEntry(entry: ListenerEntry): void {
  entry.stream?.close();
  entry.socket?.close();
}

/** A reload built in this worker and not yet in force. */
interface PendingReload {
  config: ResolvedConfig;
  plugins: PluginBuild;
  derived: DerivedPlugins;
  listeners: ListenerEntry[];
  /** Listeners opened for this reload (closed if it is aborted). */
  opened: ListenerEntry[];
}

/** What the engine takes from its plugins. */
interface DerivedPlugins {
  transports: Map<string, StreamTransport>;
  datagrams: Map<string, DatagramTransport>;
  routers: Router[];
  policy: EffectivePolicy;
  failureListeners: ((event: SendFailureEvent) => void)[];
}

/** The engine of one reader worker. */
export class WorkerEngine implements ProxyHost {
  readonly workerId: number;
  readonly counters = new Counters();
  routers: Router[] = [];

  #options: WorkerEngineOptions;
  #config: ResolvedConfig;
  #plugins: LoadedPlugin[] = [];
  /** Enabled transports; the connection manager holds this same map (updated in place). */
  #transports = new Map<string, StreamTransport>();
  #datagrams = new Map<string, DatagramTransport>();
  /** Datagram listeners in config order (their index names them: ids, flow tokens). */
  #datagramListeners: ListenerEntry[] = [];
  #viaToTransport = new Map<string, string>();
  /** How our Via starts, for every Via name and address forwardRequest may write. */
  #ownVias: Uint8Array[] = [];
  /** The plugins' failure listeners; the connection manager holds this same array. */
  #failureListeners: ((event: SendFailureEvent) => void)[] = [];
  #listeners: ListenerEntry[] = [];
  #advertised = new Map<string, { host: string; port: number }>();
  #local = new Set<string>();
  #localHostsAnyPort = new Set<string>();
  #connections: ConnectionManager | undefined;
  /** The heartbeat and the connections' sweep (#setTicking). */
  #tick: ReturnType<typeof setTimeout> | undefined;
  /** When the pending tick is due. */
  #tickDue = 0;
  #sweepEvery = 1000;
  #beatEvery = 1000;
  #sweptAt = Date.now();
  #pending: PendingReload | undefined;
  #handoff: HandoffChannel | undefined;
  #shared: SharedCounters | undefined;
  #flowTokens: FlowTokens | undefined;
  #flood: FloodGuard;
  /** The instance and key used when the config carries no flow secrets (tests, one worker). */
  #ownSecrets = {
    instance: crypto.getRandomValues(new Uint32Array(1))[0],
    keys: [{ hex: randomKeyHex(), validUntil: 0 }],
  };

  constructor(options: WorkerEngineOptions) {
    this.#options = options;
    this.#config = options.config;
    this.workerId = options.workerId;
    this.#flood = new FloodGuard({
      table: new SourceTable(
        options.sources ?? createSourceTableBuffer(MIN_SOURCES),
        this.workerId,
      ),
      onBan: (entry) => {
        this.#closeBanned(entry);
        options.onFlooded?.(entry);
      },
    });
  }

  /** The connection manager (after start). */
  get connections(): ConnectionManager {
    return this.#connections!;
  }

  /** The config in force. */
  get config(): ResolvedConfig {
    return this.#config;
  }

  /** The `[flows]` settings in force. */
  get flows(): FlowSettings {
    return this.#config.flows;
  }

  /** Loads plugins and starts listening. Returns the bound listeners. */
  async start(): Promise<BoundListener[]> {
    const bound = await this.prepareReload(this.#config);
    this.commitReload();
    for (const entry of this.#options.blacklist ?? []) {
      this.#connections!.applyBlacklist({ op: "add", entry });
    }
    for (const entry of this.#options.bans ?? []) this.#flood.apply({ op: "add", entry });
    return bound;
  }

  /**
   * Reload, phase one: builds everything `config` needs -- plugin instances (kept, reloaded,
   * replaced or added), listeners (new ones bound, not yet accepting) -- without changing what
   * runs. Returns the listeners as they will be bound. Throws, having undone its work, when
   * anything fails.
   */
  async prepareReload(config: ResolvedConfig): Promise<BoundListener[]> {
    if (this.#pending !== undefined) await this.abortReload();
    const plugins = await buildWorkerPlugins(config.plugins, this.#plugins, this.workerId);
    const opened: ListenerEntry[] = [];
    try {
      const derived = derive(plugins.plugins);
      // Checked here: the commit must not fail.
      this.#connections?.checkTransports(derived.transports.keys());
      const listeners: ListenerEntry[] = [];
      for (const l of config.listen) {
        const transport = derived.transports.get(l.transport) ??
          derived.datagrams.get(l.transport);
        if (transport === undefined) throw new Error(`transport ${l.transport} is not enabled`);
        const key = `${l.transport}|${normalizeHost(l.hostname)}|${l.port}`;
        const owned = !isDatagram(transport) || this.workerId === DATAGRAM_OWNER;
        if (!owned) {
          // Worker 0 binds it; this worker knows its address (the port as worker 0 bound it).
          const addr = { hostname: l.hostname, port: l.port };
          listeners.push({ key, name: l.transport, transport, addr });
          continue;
        }
        const running = this.#listeners.find((e) =>
          e.key === key && e.transport === transport && !listeners.includes(e)
        );
        if (running !== undefined && l.port !== 0) {
          listeners.push(running);
          continue;
        }
        let entry: ListenerEntry;
        try {
          const address = { hostname: l.hostname, port: l.port };
          if (isDatagram(transport)) {
            const socket = await transport.bind(address);
            entry = { key, name: l.transport, transport, addr: socket.addr, socket };
          } else {
            const stream = await transport.listen(address);
            entry = { key, name: l.transport, transport, addr: stream.addr, stream };
          }
        } catch (error) {
          throw new Error(
            `cannot listen on ${l.transport}:${formatHost(l.hostname)}:${l.port}: ${
              (error as Error).message
            }`,
          );
        }
        entry.key = `${l.transport}|${normalizeHost(l.hostname)}|${entry.addr.port}`;
        opened.push(entry);
        listeners.push(entry);
      }
      this.#pending = { config, plugins, derived, listeners, opened };
      return listeners.map((e) => ({
        transport: e.name,
        hostname: e.addr.hostname,
        port: e.addr.port,
      }));
    } catch (error) {
      for (const e of opened) closeEntry(e);
      await plugins.abort();
      throw error;
    }
  }

  /**
   * Reload, phase two: puts the prepared build in force -- plugin swaps, transports, routers,
   * policies (open connections get them from their next check), listeners (new ones start
   * accepting, removed ones stop; their connections stay open), local addresses. Synchronous,
   * so no message is handled half way between two configs.
   */
  commitReload(): void {
    const pending = this.#pending;
    if (pending === undefined) throw new Error("no reload prepared");
    this.#pending = undefined;
    const { config, derived } = pending;
    pending.plugins.commit();
    this.#plugins = pending.plugins.plugins;
    this.#transports.clear();
    this.#datagrams.clear();
    this.#viaToTransport.clear();
    for (const [name, transport] of derived.transports) {
      this.#transports.set(name, transport);
      this.#viaToTransport.set(transport.viaName.toUpperCase(), name);
    }
    for (const [name, transport] of derived.datagrams) {
      this.#datagrams.set(name, transport);
      this.#viaToTransport.set(transport.viaName.toUpperCase(), name);
    }
    this.routers = derived.routers;
    this.#failureListeners.splice(0, Infinity, ...derived.failureListeners);
    const secrets = config.flowSecrets ?? this.#ownSecrets;
    this.#flowTokens = new FlowTokens(secrets.instance, secrets.keys);
    this.#flood.setSettings(derived.policy.flood_guard);
    if (this.#connections === undefined) {
      const { handoffPorts, handoffProgress } = this.#options;
      if (handoffPorts !== undefined && handoffProgress !== undefined) {
        this.#handoff = new HandoffChannel({
          workerId: this.workerId,
          progress: handoffProgress,
          ports: handoffPorts,
          onHandoff: (h) => this.#onHandoff(h),
          // Handed to a worker that died or hung before handling it: the sender hears 503.
          onLost: (h) => this.#failed(h.bytes, "closed"),
        });
      }
      this.#shared = new SharedCounters(this.#options.shared, this.workerId);
      this.#connections = new ConnectionManager({
        workerId: this.workerId,
        transports: this.#transports,
        shared: this.#shared,
        counters: this.counters,
        policy: derived.policy,
        onFrame: (c, frame) => this.#onFrame(c, frame),
        onBlacklisted: (entry) => this.#options.onBlacklisted?.(entry),
        failureListeners: this.#failureListeners,
        directory: this.#options.directory === undefined
          ? undefined
          : new ConnectionDirectory(this.#options.directory),
        handOff: (worker, handoff) => this.#handOff(worker, handoff),
        admit: (ip) => !this.#flood.isBanned(ip, Date.now(), true),
      });
    } else {
      this.#connections.transportsChanged();
      this.#connections.setPolicy(derived.policy);
    }

    for (const entry of this.#listeners) {
      if (!pending.listeners.includes(entry)) closeEntry(entry);
    }
    this.#listeners = pending.listeners;
    this.#datagramListeners = pending.listeners.filter((e) => isDatagram(e.transport));
    for (const entry of pending.opened) {
      const name = entry.name;
      entry.stream?.start(
        (socket) => this.#connections!.accept(name, socket),
        (ip) => {
          // Asked by transports that work before handing a socket over (TLS: the handshake).
          if (!this.#flood.isBanned(ip, Date.now(), true)) return true;
          this.counters.inc("flood_refused");
          return false;
        },
      );
      entry.socket?.start((data, from) => this.#onDatagram(entry, data, from));
    }

    this.#advertised.clear();
    this.#local.clear();
    this.#localHostsAnyPort.clear();
    config.listen.forEach((l, i) => {
      const { addr, transport } = pending.listeners[i];
      const advertised = l.advertise === undefined
        ? { host: addr.hostname, port: addr.port }
        : { host: l.advertise.host, port: l.advertise.port || transport.defaultPort };
      if (!this.#advertised.has(l.transport)) this.#advertised.set(l.transport, advertised);
      this.#addLocal(addr.hostname, addr.port);
      this.#addLocal(advertised.host, advertised.port);
    });
    this.#ownVias = ownViaPrefixes(
      [...this.#transports.values(), ...this.#datagrams.values()].map((t) => t.viaName),
      [...this.#advertised.values()],
    );
    for (const alias of config.sipedge.aliases) {
      const colon = alias.lastIndexOf(":");
      if (colon > alias.lastIndexOf("]")) this.#local.add(normalizeHost(alias));
      else this.#localHostsAnyPort.add(normalizeHost(alias));
    }
    this.#setTicking(sweepInterval(derived.policy), config.sipedge.worker_hang_timeout);
    this.#config = config;
  }

  /**
   * Sets the periods of the worker's one timer (#onTick): the heartbeat the supervisor watches
   * (and the hand-off bookkeeping) every {@link heartbeatInterval}, the connections' timeouts
   * every `sweepEvery` ms. One wake-up serves both when their periods meet (the defaults: 1 s
   * each), instead of a timer each.
   *
   * A reload must not restart the timer: reloads closer together than one period (a script, an
   * operator's loop) would then keep it from ever firing, and the supervisor would take the
   * worker for hung. The pending tick is kept and picks the new periods up; only a period
   * shorter than the wait left brings the tick forward.
   */
  #setTicking(sweepEvery: number, hangTimeoutMs: number): void {
    this.#sweepEvery = sweepEvery;
    this.#beatEvery = heartbeatInterval(hangTimeoutMs);
    const period = Math.min(this.#sweepEvery, this.#beatEvery);
    if (this.#tick !== undefined && this.#tickDue <= Date.now() + period) return;
    clearTimeout(this.#tick);
    this.#scheduleTick(period);
  }

  #scheduleTick(period: number): void {
    this.#tickDue = Date.now() + period;
    this.#tick = setTimeout(this.#onTick, period);
  }

  #onTick = (): void => {
    this.#shared!.beat();
    this.#handoff?.prune();
    const now = Date.now();
    const period = Math.min(this.#sweepEvery, this.#beatEvery);
    // Half a period of slack: a tick a millisecond early must not put a sweep off a period.
    if (now - this.#sweptAt >= this.#sweepEvery - period / 2) {
      this.#sweptAt = now;
      this.#connections!.sweep(now);
    }
    this.#scheduleTick(period);
  };

  /** Drops a prepared reload: what it opened or created is closed; nothing else changes. */
  async abortReload(): Promise<void> {
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending === undefined) return;
    for (const e of pending.opened) closeEntry(e);
    await pending.plugins.abort();
  }

  /** Stops accepting, waits up to `timeoutMs` for queued data to be written, closes all. */
  async stop(timeoutMs: number): Promise<void> {
    await this.abortReload();
    for (const l of this.#listeners) closeEntry(l);
    this.#listeners = [];
    clearTimeout(this.#tick);
    await this.#connections?.stop(timeoutMs);
    this.#handoff?.close();
    await closeAll(this.#plugins);
  }

  /** Number of open connections. */
  get connectionCount(): number {
    return this.#connections?.size ?? 0;
  }

  /** Connections for the control API. */
  listConnections(): ConnectionInfo[] {
    return this.#connections?.list() ?? [];
  }

  /** A peer worker went away (the supervisor replaces it): what it did not handle fails. */
  peerDown(worker: number): void {
    this.#handoff?.disconnect(worker);
  }

  /** A (replaced) peer worker is up: hand-offs to it go over `port`. */
  peerUp(worker: number, port: MessagePort): void {
    this.#handoff?.connect(worker, port);
  }

  /** Applies a blacklist change from the supervisor. */
  applyBlacklist(change: BlacklistChange): void {
    this.#connections?.applyBlacklist(change);
  }

  /** Applies a ban change from the supervisor: a new ban closes the source's connections. */
  applyBans(change: BanChange): void {
    this.#flood.apply(change);
    if (change.op === "add") this.#closeBanned(change.entry);
  }

  /** Closes this worker's connections (either direction) from a banned source group. */
  #closeBanned(entry: BanEntry): void {
    const closed = this.#connections?.closeFrom(
      (ip) => this.#flood.inGroup(entry.key, ip) && !this.#flood.isTrusted(ip),
      `source ${entry.key} banned (${entry.reason})`,
    ) ?? 0;
    if (closed > 0) this.counters.inc("flood_closed", closed);
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
    return (this.#transports.get(transport) ?? this.#datagrams.get(transport))?.viaName;
  }

  datagramMtu(transport: string): number | undefined {
    return this.#datagrams.get(transport)?.mtu;
  }

  transportForVia(viaName: string): string | undefined {
    return this.#viaToTransport.get(viaName.toUpperCase());
  }

  checkFlowToken(token: string): FlowCheck {
    const check = this.#flowTokens!.check(token);
    if (!check.ok) return check;
    if (check.datagram !== undefined) {
      const { socket, hostname, port } = check.datagram;
      const entry = this.#datagramListeners[socket];
      if (entry === undefined) return { ok: false, why: "invalid" };
      return {
        ok: true,
        connectionId: datagramId(socket),
        transport: entry.name,
        address: { hostname, port },
      };
    }
    const transport = this.#connections!.transportOfSlot(check.slot);
    // A slot never used in this process: not a token of ours, whatever its MAC says.
    if (transport === undefined) return { ok: false, why: "invalid" };
    return { ok: true, connectionId: check.connectionId, transport };
  }

  sendTo(destination: Destination, bytes: Uint8Array, local = false): void {
    this.#countOut(bytes, local);
    if (this.#datagrams.has(destination.transport)) {
      return this.#sendDatagramTo(destination, bytes);
    }
    this.#connections!.sendTo(destination, bytes, (reason) => this.#failed(bytes, reason));
  }

  sendOnConnection(id: number, bytes: Uint8Array, fallback?: Destination, local = false): void {
    this.#countOut(bytes, local);
    const owner = ownerOf(id);
    if (owner !== this.workerId && this.#handOff(owner, { connectionId: id, bytes, fallback })) {
      return;
    }
    this.#deliver({ connectionId: id, bytes, fallback });
  }

  count(counter: ProxyCounter): void {
    this.counters.inc(counter);
  }

  // --- hand-offs ---------------------------------------------------------------------------

  /** Hands a message to the worker that owns its connection; false when there is no channel. */
  #handOff(worker: number, handoff: Handoff): boolean {
    if (this.#handoff === undefined || !this.#handoff.reaches(worker)) return false;
    this.counters.inc("handoffs_out");
    this.#handoff.send(worker, handoff);
    return true;
  }

  /** A message another worker handed to this one. */
  #onHandoff(handoff: Handoff): void {
    this.counters.inc("handoffs_in");
    this.#deliver(handoff);
  }

  /**
   * Writes a message on a connection this worker owns, through its write path. When the
   * connection is gone (or is not the one a directory lookup expected), the message goes to
   * its fallback destination from here, else it fails as `flow_failed`.
   */
  #deliver({ connectionId, bytes, fallback, key }: Handoff): void {
    const fail = (reason: FailureReason) => this.#failed(bytes, reason);
    const socket = this.#datagramSocket(connectionId);
    if (socket !== undefined) {
      // A datagram socket: the message goes to the address the sender named (its Via, a flow).
      if (fallback === undefined) return fail("flow_failed");
      return this.#sendDatagram(socket, fallback, bytes);
    }
    if (this.#connections!.sendOn(connectionId, bytes, fail, key)) return;
    if (fallback === undefined) return fail("flow_failed");
    if (this.#datagrams.has(fallback.transport)) return this.#sendDatagramTo(fallback, bytes);
    this.#connections!.sendTo(fallback, bytes, fail, key !== undefined);
  }

  // --- datagrams (UDP) ---------------------------------------------------------------------

  /** This worker's socket for datagram listener id `id`, if it is one and this worker binds it. */
  #datagramSocket(id: number): ListenerEntry | undefined {
    if (id < DATAGRAM_ID_BASE * MAX_WORKERS) return undefined;
    const entry = this.#datagramListeners[Math.floor(id / MAX_WORKERS) - DATAGRAM_ID_BASE];
    return entry?.socket === undefined ? undefined : entry;
  }

  /**
   * Sends to a datagram destination from the first datagram listener of the destination's
   * address family (handed to worker 0, which binds the sockets, from any other worker).
   */
  #sendDatagramTo(destination: Destination, bytes: Uint8Array): void {
    const v6 = destination.host.includes(":");
    let index = this.#datagramListeners.findIndex((e) =>
      e.name === destination.transport && e.addr.hostname.includes(":") === v6
    );
    if (index < 0) {
      index = this.#datagramListeners.findIndex((e) => e.name === destination.transport);
    }
    if (index < 0) {
      // Enabled but no listener: nowhere to send from (and no address for the Via).
      return this.#failed(bytes, "connect_failed");
    }
    const id = datagramId(index);
    if (this.workerId !== DATAGRAM_OWNER) {
      if (this.#handOff(DATAGRAM_OWNER, { connectionId: id, bytes, fallback: destination })) return;
      return this.#failed(bytes, "closed");
    }
    this.#sendDatagram(this.#datagramListeners[index], destination, bytes);
  }

  /** Sends one datagram from `entry`'s socket; a send error is a send failure like any other. */
  #sendDatagram(entry: ListenerEntry, to: Destination, bytes: Uint8Array): void {
    const port = to.port || entry.transport.defaultPort;
    const failure = this.#connections!.checkDatagramSend(to.transport, to.host, port);
    if (failure !== undefined) return this.#failed(bytes, failure);
    entry.socket!.send(bytes, { hostname: to.host, port }).catch((error: Error) => {
      this.#connections!.reportDatagramFailure(
        to.transport,
        to.host,
        port,
        error instanceof Deno.errors.ConnectionRefused ? "connect_refused" : "connect_failed",
        error.message,
      );
      this.#failed(bytes, "connect_failed");
    });
  }

  /** One datagram read on `entry`'s socket: a SIP message, a keepalive or a STUN request. */
  #onDatagram(entry: ListenerEntry, data: Uint8Array, from: SocketAddress): void {
    const counters = this.counters;
    counters.inc("udp_datagrams_in");
    // A banned source gets nothing, not even a STUN answer.
    if (this.#flood.bans.size > 0 && this.#flood.isBanned(from.hostname)) {
      return counters.inc("flood_dropped");
    }
    if (isKeepalive(data)) return counters.inc("udp_keepalives"); // RFC 5626: no answer
    const stun = stunBindingResponse(data, from);
    if (stun !== undefined) {
      counters.inc("stun_answered");
      entry.socket!.send(stun, from).catch(() => {});
      return;
    }
    const message = frameDatagram(data, this.#connections!.policy.limits.max_message_size);
    if (message.type === "drop") {
      counters.inc("udp_dropped");
      log.debug("datagram from {host}:{port} dropped: {why}", {
        ...fromLog(from),
        why: message.why,
      });
      return;
    }
    const source = this.#datagramSource(entry, from);
    if (message.type === "reject") {
      // A readable request whose body is shorter than its Content-Length: 400, nothing forwarded.
      counters.inc("udp_dropped");
      if (message.head.method !== "ACK") source.reply(buildReply(message.head, 400, message.why));
      return;
    }
    if (
      message.head.isRequest &&
      this.#flood.check(from.hostname, message.head.method) !== ALLOWED
    ) return counters.inc("flood_dropped"); // never answered: no amplification
    counters.countIn(message.bytes);
    if (message.head.isRequest) forwardRequest(this, source, message);
    else this.#forwardResponse(message);
  }

  #datagramSource(entry: ListenerEntry, from: SocketAddress): MessageSource {
    const index = this.#datagramListeners.indexOf(entry);
    return {
      connectionId: datagramId(index),
      transport: entry.name,
      hostname: from.hostname,
      port: from.port,
      reply: (bytes) => {
        this.counters.countLocal(bytes);
        entry.socket!.send(bytes, from).catch(() => {});
        return true;
      },
      // A UDP flow is the client's address and our socket: nothing to keep, any datagram client
      // can be named by a token (Record-Route for NAT'd phones), unless flows are off.
      flowToken: (create) =>
        !create && this.flows.register === "off"
          ? undefined
          : this.#flowTokens!.mintDatagram(index, from.hostname, from.port),
    };
  }

  /**
   * Forwards a response: by its bytes when its top Via is ours as we wrote it and the connection
   * it names is open here (the common case: no parse), else by forwardResponse.
   */
  #forwardResponse(response: { head: SipHead; bytes: Uint8Array }): void {
    const cut = findOwnVia(response.bytes, this.#ownVias);
    if (cut !== undefined && this.#connections!.get(cut.connectionId) !== undefined) {
      const bytes = withoutOwnVia(response.bytes, cut);
      const fail = (reason: FailureReason) => this.#failed(bytes, reason);
      if (this.#connections!.sendOn(cut.connectionId, bytes, fail)) {
        this.counters.inc("responses_in");
        this.counters.countForwarded(bytes);
        this.counters.inc("responses_forwarded");
        return;
      }
      // Closed since: forwardResponse sends it where the next Via says.
    }
    forwardResponse(this, response);
  }

  /** Counts a message on its way out, where it was decided (not where a hand-off writes it). */
  #countOut(bytes: Uint8Array, local: boolean): void {
    if (local) this.counters.countLocal(bytes);
    else this.counters.countForwarded(bytes);
  }

  /** A message this worker was to send could not be: answered as {@link answerSendFailure}. */
  #failed(bytes: Uint8Array, reason: FailureReason): void {
    answerSendFailure(this, bytes, reason);
  }

  // --- frames ------------------------------------------------------------------------------

  /**
   * The source of a message read on a connection: made per request (an object without
   * closures, dropped once the request is handled), not kept per connection -- an idle
   * connection holds nothing for it.
   */
  #source(connection: Connection): MessageSource {
    const source = new StreamSource(connection, this.#connections!, this.counters, this.#mintFlow);
    // The last one is kept: it keeps the class's map alive (see core/keep_shape.ts); what it
    // holds (its connection) is held by the connection manager anyway while the connection is
    // open.
    this.#lastSource = source;
    return source;
  }

  /** The last request's source (see #source). */
  #lastSource: StreamSource | undefined;

  /** Mints the flow token of a connection (StreamSource). */
  #mintFlow = (connectionId: number, slot: number): string =>
    this.#flowTokens!.mint(connectionId, slot);

  #onFrame(connection: Connection, frame: Frame): void {
    switch (frame.type) {
      case "message":
        if (isResponseAt(frame.bytes, 0)) {
          // Not parsed unless it must be (StreamFramer parses a head on first use).
          this.counters.countIn(frame.bytes);
          return this.#forwardResponse(frame);
        }
        if (this.#flood.check(connection.remote.hostname, frame.head.method) !== ALLOWED) {
          // Dropped unanswered; the source is banned, so is its connection.
          this.counters.inc("flood_dropped");
          return connection.close("source banned");
        }
        this.counters.countIn(frame.bytes);
        forwardRequest(this, this.#source(connection), frame);
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
          const reply = buildReply(head, frame.status, frame.reason);
          this.counters.countLocal(reply);
          this.#connections!.reply(connection, reply);
        }
        // A stream is out of step after a framing error; a message transport is not.
        if (!frame.keepOpen) connection.closeAfterFlush();
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

/** The byte prefixes of our Via: every Via name with every advertised address. */
function ownViaPrefixes(
  viaNames: string[],
  addresses: { host: string; port: number }[],
): Uint8Array[] {
  const all = new Set<string>();
  for (const name of viaNames) for (const a of addresses) all.add(ownViaSentBy(name, a));
  return [...all].map(ownViaPrefix);
}

/** The connection id naming datagram listener `index` (its socket is in worker 0). */
function datagramId(index: number): number {
  return (DATAGRAM_ID_BASE + index) * MAX_WORKERS + DATAGRAM_OWNER;
}

function fromLog(from: SocketAddress): { host: string; port: number } {
  return { host: from.hostname, port: from.port };
}

/** Transports, routers, policies and failure listeners from the plugins, in config order. */
function derive(plugins: readonly LoadedPlugin[]): DerivedPlugins {
  const transports = new Map<string, StreamTransport>();
  const datagrams = new Map<string, DatagramTransport>();
  const routers: Router[] = [];
  const policy: Partial<EffectivePolicy> = { blacklist: undefined };
  const failureListeners: ((event: SendFailureEvent) => void)[] = [];
  for (const p of plugins) {
    const instance = p.instance;
    if (instance.transport !== undefined) {
      if (isDatagram(instance.transport)) datagrams.set(p.name, instance.transport);
      else transports.set(p.name, instance.transport);
    }
    if (instance.router) routers.push(tagPlugin(instance.router, p.name));
    if (instance.policy) Object.assign(policy, instance.policy);
    if (instance.onSendFailure) failureListeners.push(failureListenerOf(p.name, instance));
  }
  if (policy.timeouts === undefined || policy.limits === undefined) {
    throw new Error("the timeouts and limits policy plugins must be enabled");
  }
  return {
    transports,
    datagrams,
    routers,
    policy: policy as EffectivePolicy,
    failureListeners,
  };
}

function formatHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
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

/** The source of a request read on a stream connection (see `WorkerEngine.#source`). */
class StreamSource implements MessageSource {
  readonly connectionId: number;
  readonly transport: string;
  readonly hostname: string;
  readonly port: number;
  readonly flowsOnly: boolean;
  #connection: Connection;
  #manager: ConnectionManager;
  #counters: Counters;
  #mint: (connectionId: number, slot: number) => string;

  constructor(
    connection: Connection,
    manager: ConnectionManager,
    counters: Counters,
    mint: (connectionId: number, slot: number) => string,
  ) {
    this.connectionId = connection.id;
    this.transport = connection.transportName;
    this.hostname = connection.remote.hostname;
    this.port = connection.remote.port;
    this.flowsOnly = connection.transport.flowsOnly === true;
    this.#connection = connection;
    this.#manager = manager;
    this.#counters = counters;
    this.#mint = mint;
  }

  reply(bytes: Uint8Array): boolean {
    this.#counters.countLocal(bytes);
    return this.#manager.reply(this.#connection, bytes);
  }

  // Minted each time (about a microsecond): a token made before a key change must not outlive
  // the key's grace period in a cache.
  flowToken(create: boolean): string | undefined {
    const connection = this.#connection;
    if (!connection.flow && !create) return undefined;
    connection.flow = true;
    return this.#mint(connection.id, this.#manager.slotOf(connection.transportName)!);
  }
}
