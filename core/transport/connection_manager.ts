/**
 * The connections of one worker and the policies on them: reuse per destination, one connect
 * per destination at a time, connection limits, the timer sweep (connect, send, read, idle and
 * keepalive timeouts), queue-full handling, the destination blacklist (this worker's copy),
 * and failure reporting -- one log line per failure, counters, the senders' failure handlers
 * (which answer requests with 408/503) and the plugins' `onSendFailure` event.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { SendFailureEvent } from "../plugin/types.ts";
import { type BlacklistEntry, BlacklistTable } from "../policy/blacklist_table.ts";
import type { TableChange } from "../policy/expiring_table.ts";
import type { FailureReason } from "../policy/failure.ts";
import type {
  BlacklistSettings,
  FloodGuardSettings,
  LimitSettings,
  TimeoutSettings,
} from "../policy/settings.ts";
import { MAX_TRANSPORTS, type SharedCounters } from "../policy/shared_counters.ts";
import type { Counters } from "../stats.ts";
import type { Frame } from "../sip/stream_framer.ts";
import {
  Connection,
  type ConnectionHooks,
  type FailHandler,
  type LostData,
  type QueueLimits,
  type UnsentData,
} from "./connection.ts";
import { type Destination, destinationKey } from "./destination.ts";
import type { SocketAddress, StreamSocket, StreamTransport } from "./types.ts";
import {
  ConnectionDirectory,
  createDirectoryBuffer,
  MIN_DIRECTORY_ENTRIES,
  ownerOf,
} from "./connection_directory.ts";
import type { Handoff } from "./handoff.ts";

const log = getLogger(["sipedge", "transport"]);

/** Blacklist size cap when the blacklist plugin is off (entries then come from the control API). */
export const DEFAULT_BLACKLIST_ENTRIES = 10_000;

/**
 * Messages dropped on one connection (on_queue_full = "drop") are logged one line a second at
 * most: the first drop at once, the rest as one count per second (see {@link DropLog}).
 */
export const DROP_LOG_INTERVAL_MS = 1000;

/**
 * Drops on one connection not logged yet. A line per dropped message was 20-28 µs of a worker's
 * time each (logtape text line to the console, measured): an upstream that stops reading at
 * 10,000 tx/s made a quarter of a core of log lines, 10,000 a second, until its send timeout,
 * while the worker was already short of time. Every drop is still counted (`queue_full`) and
 * answered (the sender's 503); the log says how many.
 */
interface DropLog {
  destination: string;
  /** When the last line for this connection was written. */
  since: number;
  /** Drops since then. */
  count: number;
}

/** The policies in force (from the policy plugins). */
export interface EffectivePolicy {
  timeouts: TimeoutSettings;
  limits: LimitSettings;
  /** Undefined when the blacklist plugin is not enabled. */
  blacklist: BlacklistSettings | undefined;
  /** Undefined when the flood_guard plugin is not enabled. */
  flood_guard?: FloodGuardSettings;
}

/** A connection as the control API lists it. */
export interface ConnectionInfo {
  id: number;
  worker: number;
  transport: string;
  direction: "in" | "out";
  state: string;
  local: string;
  remote: string;
  asyncMode: boolean;
  queuedBytes: number;
  ageMs: number;
  idleMs: number;
  /** Transport details (TLS: version, cipher, sni, peer certificate subject). */
  details?: Record<string, string | number | boolean | undefined>;
  /** Whether the connection is a client's flow (RFC 5626: a Path or Record-Route names it). */
  flow: boolean;
}

/** Options for a {@link ConnectionManager}. */
export interface ConnectionManagerOptions {
  workerId: number;
  /** Enabled transports by plugin name, in config order (the order gives the shared slot). */
  transports: Map<string, StreamTransport>;
  shared: SharedCounters;
  counters: Counters;
  policy: EffectivePolicy;
  /** Every frame read on any connection. */
  onFrame(connection: Connection, frame: Frame): void;
  /** A destination was blacklisted here: tell the other workers. */
  onBlacklisted(entry: BlacklistEntry): void;
  /** Failure listeners (plugins' onSendFailure). */
  failureListeners: ((event: SendFailureEvent) => void)[];
  /** The directory shared by all workers (default: one of this manager's own, for tests). */
  directory?: ConnectionDirectory;
  /**
   * Hands a message to the worker that owns a client's connection found in the directory;
   * false when there is no channel to that worker (the message then goes out here).
   */
  handOff?(worker: number, handoff: Handoff): boolean;
  /** Whether a connection from this IP may be accepted (false: a banned source, closed at once). */
  admit?(ip: string): boolean;
}

/** One worker's connections. */
export class ConnectionManager {
  readonly blacklist: BlacklistTable;
  readonly directory: ConnectionDirectory;
  policy: EffectivePolicy;
  #options: ConnectionManagerOptions;
  #slots = new Map<string, number>();
  #connections = new Map<number, Connection>();
  #byKey = new Map<string, Connection>();
  /** Inbound connections that hold a per-IP reservation. */
  #countedIp = new Set<Connection>();
  /** Inbound connections published in the directory, and their entry. */
  #published = new Map<Connection, number>();
  /** Connections with recent drops, by id (see {@link DropLog}). */
  #drops = new Map<number, DropLog>();
  /** Messages already sent again after their connection closed under them. */
  #resent = new WeakSet<Uint8Array>();
  #stopping = false;
  /** The last destination sent to and its key (see #keyOf). */
  #lastKey = { transport: "", host: "", port: -1, key: "" };
  /** What every connection tells this manager (one object for all of them). */
  #hooks: ConnectionHooks;
  /** The queue limits in force, read by every connection on send. */
  #limits = (): QueueLimits => ({
    connWqMax: this.policy.limits.conn_wq_max,
    wqMax: this.policy.limits.wq_max,
  });

  constructor(options: ConnectionManagerOptions) {
    this.#options = options;
    this.#hooks = {
      onFrame: options.onFrame,
      onClose: (c, reason, failure, lost) => this.#closed(c, reason, failure, lost),
      onUnsent: (c, unsent) => this.#resend(c, unsent),
    };
    this.policy = options.policy;
    this.directory = options.directory ??
      new ConnectionDirectory(createDirectoryBuffer(MIN_DIRECTORY_ENTRIES));
    this.blacklist = new BlacklistTable(
      options.policy.blacklist?.max_entries ?? DEFAULT_BLACKLIST_ENTRIES,
    );
    this.transportsChanged();
  }

  /**
   * Gives transports added to the transports map (by a reload) their shared-counter slot. Slots
   * are never taken back: connections of a removed transport may still be open. Every worker
   * applies the same reloads in the same order, so a name has the same slot in all of them.
   */
  transportsChanged(): void {
    this.checkTransports(this.#options.transports.keys());
    for (const name of this.#options.transports.keys()) {
      if (!this.#slots.has(name)) this.#slots.set(name, this.#slots.size);
    }
  }

  /** The transport's shared slot (the same in every worker), or undefined when never enabled. */
  slotOf(name: string): number | undefined {
    return this.#slots.get(name);
  }

  /** The transport that has shared slot `slot`. */
  transportOfSlot(slot: number): string | undefined {
    for (const [name, s] of this.#slots) if (s === slot) return name;
    return undefined;
  }

  /** Throws when `names` would need more shared-counter slots than there are (check first). */
  checkTransports(names: Iterable<string>): void {
    const all = new Set([...this.#slots.keys(), ...names]);
    if (all.size > MAX_TRANSPORTS) {
      throw new Error(`at most ${MAX_TRANSPORTS} transports can be enabled over a run`);
    }
  }

  /**
   * Puts new policy settings in force (a reload): open connections get them from their next
   * check -- timeouts at the next sweep, queue limits at the next send, the message size limit
   * from the next message.
   */
  setPolicy(policy: EffectivePolicy): void {
    const size = policy.limits.max_message_size;
    if (size !== this.policy.limits.max_message_size) {
      for (const c of this.#connections.values()) c.maxMessageSize = size;
    }
    this.policy = policy;
    if (policy.blacklist !== undefined) this.blacklist.maxEntries = policy.blacklist.max_entries;
  }

  /** Open connections in this worker. */
  get size(): number {
    return this.#connections.size;
  }

  /** The open connection with this id, if this worker owns it. */
  get(id: number): Connection | undefined {
    return this.#connections.get(id);
  }

  /** Takes an accepted socket, unless a connection limit says no. */
  accept(name: string, socket: StreamSocket): void {
    const { limits } = this.policy;
    const ip = socket.remoteAddr.hostname;
    const slot = this.#slots.get(name)!;
    if (this.#options.admit?.(ip) === false) {
      // A banned source: closed before anything is read (no log line per connection).
      this.#options.counters.inc("flood_refused");
      return socket.close();
    }
    if (!this.#options.shared.reserveConnection(slot, limits.max_connections)) {
      return this.#refuse(socket, `max_connections (${limits.max_connections}) reached`);
    }
    if (!this.#options.shared.reserveFrom(ip, limits.max_connections_per_ip)) {
      this.#options.shared.releaseConnection(slot);
      return this.#refuse(socket, `max_connections_per_ip (${limits.max_connections_per_ip})`);
    }
    this.#options.counters.inc("connections_accepted");
    const connection = this.#create(name, "in", socket.remoteAddr);
    this.#countedIp.add(connection);
    const key = destinationKey(name, ip, socket.remoteAddr.port);
    this.#byKey.set(key, connection);
    // Other workers reach the client's connection through the directory.
    const entry = this.directory.publish(key, connection.id);
    if (entry >= 0) this.#published.set(connection, entry);
    else this.#options.counters.inc("directory_full");
    connection.attach(socket);
  }

  /**
   * Sends to a destination over a reused or new connection; failures go to `onFail`. A
   * destination that is a client's connection owned by another worker (found in the
   * directory) is handed to that worker, unless `direct` (the owner's own fallback: the
   * directory pointed at a connection it no longer has).
   */
  sendTo(destination: Destination, bytes: Uint8Array, onFail?: FailHandler, direct = false): void {
    const transport = this.#options.transports.get(destination.transport);
    if (transport === undefined) {
      this.#options.counters.inc("connect_failed");
      const key = `${destination.transport}:${destination.host}:${destination.port}`;
      return this.#failMessage(key, "connect_failed", onFail);
    }
    const port = destination.port || transport.defaultPort;
    const key = this.#keyOf(destination, port);
    if (this.blacklist.size > 0 && this.blacklist.get(key, Date.now()) !== undefined) {
      this.#options.counters.inc("blacklisted_sends");
      return this.#failMessage(key, "blacklisted", onFail);
    }
    const existing = this.#byKey.get(key);
    if (existing !== undefined) {
      const result = existing.send(bytes, onFail);
      if (result === "queued") return;
      if (result === "queue_full") return this.#queueFull(existing, key, onFail);
    } else if (!direct && this.#options.handOff !== undefined) {
      const id = this.directory.lookup(key);
      const owner = id === undefined ? this.#options.workerId : ownerOf(id);
      if (
        owner !== this.#options.workerId &&
        this.#options.handOff(owner, { connectionId: id!, bytes, fallback: destination, key })
      ) return;
    }
    this.#connect(destination.transport, transport, destination.host, port, key, bytes, onFail);
  }

  /**
   * The destination's key: the last one when the destination is the same as last time (a
   * configured route, a busy peer). Comparing three fields is cheaper than a new key string,
   * which every map lookup hashes again (a runtime call per message).
   */
  #keyOf(destination: Destination, port: number): string {
    const last = this.#lastKey;
    if (
      last.port === port && last.host === destination.host &&
      last.transport === destination.transport
    ) return last.key;
    const key = destinationKey(destination.transport, destination.host, port);
    this.#lastKey = { transport: destination.transport, host: destination.host, port, key };
    return key;
  }

  /**
   * Whether a datagram may be sent to this destination now: undefined, or why not (it is
   * blacklisted). Datagrams do not queue, so queue limits do not apply; the blacklist does.
   */
  checkDatagramSend(transport: string, host: string, port: number): FailureReason | undefined {
    if (this.blacklist.size === 0) return undefined;
    const key = destinationKey(transport, host, port);
    if (this.blacklist.get(key, Date.now()) === undefined) return undefined;
    this.#options.counters.inc("blacklisted_sends");
    this.#emit(messageFailure(key, "blacklisted"));
    return "blacklisted";
  }

  /**
   * A datagram could not be sent (the kernel reported an error: unreachable, refused): reported
   * like any send failure -- a log line, counters, the blacklist by policy, `onSendFailure`.
   */
  reportDatagramFailure(
    transport: string,
    host: string,
    port: number,
    reason: FailureReason,
    detail: string,
  ): void {
    const key = destinationKey(transport, host, port);
    this.#options.counters.inc(COUNTER[reason]);
    const blacklisted = this.#blacklist(key, reason);
    log.warn("send failure {reason} to {destination}: {detail}; blacklisted: {blacklisted}", {
      reason,
      destination: key,
      detail,
      blacklisted,
    });
    this.#emit({ ...messageFailure(key, reason), blacklisted });
  }

  /**
   * Sends on a connection by id; false when this worker has no such open connection (or,
   * with `key`, its destination key is not `key`). Failures go to `onFail`.
   */
  sendOn(id: number, bytes: Uint8Array, onFail?: FailHandler, key?: string): boolean {
    const connection = this.#connections.get(id);
    if (connection === undefined || (key !== undefined && keyOf(connection) !== key)) {
      return false;
    }
    const result = connection.send(bytes, onFail);
    if (result === "queue_full") {
      this.#queueFull(connection, keyOf(connection), onFail);
      return true; // reported as a failure; not a reason to try another path
    }
    return result === "queued";
  }

  /** Sends on a connection by id: a reply to what it sent (failures are only reported). */
  reply(connection: Connection, bytes: Uint8Array): boolean {
    const result = connection.send(bytes);
    if (result === "queue_full") this.#queueFull(connection, keyOf(connection), undefined);
    return result === "queued";
  }

  /** Applies the timeouts; called by the worker's timer. */
  sweep(now: number): void {
    if (this.#drops.size > 0) this.#logDrops(now);
    const t = this.policy.timeouts;
    for (const c of this.#connections.values()) {
      if (c.state === "closed") continue;
      if (c.state === "open" && c.writePending && now - c.progressAt > t.send_timeout) {
        this.#fail(c, "send_timeout", `no write progress for ${t.send_timeout} ms`);
      } else if (c.state === "connecting" && now - c.createdAt > t.connect_timeout + 1000) {
        // Safety net: the transport should have honoured the connect's abort signal.
        this.#fail(c, "connect_timeout", `not connected after ${t.connect_timeout} ms`);
      } else if (c.partialSince !== 0 && now - c.partialSince > t.message_read_timeout) {
        this.#options.counters.inc("read_timeouts");
        c.close("message read timeout");
      } else if (
        c.state === "open" && !c.writePending && now - c.lastActivity > t.idle_timeout
      ) {
        this.#options.counters.inc("idle_closed");
        c.close("idle timeout");
      } else if (c.state === "open") {
        // A transport's own keepalive (WebSocket pings, both directions), else RFC 5626 pings
        // on outbound connections.
        const own = c.transport.keepalive;
        if (own !== undefined) {
          if (own.interval > 0) this.#keepalive(c, now, own.interval, own.timeout);
        } else if (c.direction === "out" && t.keepalive_interval > 0) {
          this.#keepalive(c, now, t.keepalive_interval, t.keepalive_timeout);
        }
      }
    }
    if (this.blacklist.size > 0) this.blacklist.purge(now);
  }

  /** Closes every connection whose remote address `match`es (a banned source); returns how many. */
  closeFrom(match: (ip: string) => boolean, reason: string): number {
    let closed = 0;
    for (const c of [...this.#connections.values()]) {
      if (c.state === "closed" || !match(c.remote.hostname)) continue;
      c.close(reason);
      closed++;
    }
    return closed;
  }

  /** Applies a blacklist change made elsewhere (another worker, the control API). */
  applyBlacklist(change: BlacklistChange): void {
    this.blacklist.apply(change);
  }

  /** Connections for the control API. */
  list(now = Date.now()): ConnectionInfo[] {
    return [...this.#connections.values()].map((c) => ({
      id: c.id,
      worker: this.#options.workerId,
      transport: c.transportName,
      direction: c.direction,
      state: c.state,
      local: c.local ? formatAddress(c.local) : "",
      remote: formatAddress(c.remote),
      asyncMode: c.asyncMode,
      queuedBytes: c.queuedBytes,
      ageMs: now - c.createdAt,
      idleMs: now - c.lastActivity,
      details: c.details(),
      flow: c.flow,
    }));
  }

  /**
   * Connections by `"transport direction state"` (e.g. `"tcp out connecting"`), for /metrics:
   * one pass over the table, no object per connection.
   */
  countByState(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const c of this.#connections.values()) {
      const key = `${c.transportName} ${c.direction} ${c.state}`;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  }

  /** Waits up to `timeoutMs` for every queue to drain, then closes every connection. */
  async stop(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    const drained = Promise.all([...this.#connections.values()].map((c) => c.drained()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([drained, new Promise((r) => timer = setTimeout(r, timeoutMs))]);
    clearTimeout(timer);
    for (const c of [...this.#connections.values()]) c.close("shutdown");
  }

  // --- internals ---------------------------------------------------------------------------

  #connect(
    name: string,
    transport: StreamTransport,
    host: string,
    port: number,
    key: string,
    bytes: Uint8Array,
    onFail: FailHandler | undefined,
  ): void {
    if (this.#stopping) return void onFail?.("closed");
    const slot = this.#slots.get(name)!;
    const { shared, counters } = this.#options;
    if (!shared.reserveQueued(bytes.length, this.policy.limits.wq_max)) {
      // wq_max is full: no connection is opened for data that could not wait in it.
      counters.inc("queue_full");
      return this.#failMessage(key, "queue_full", onFail);
    }
    shared.releaseQueued(bytes.length); // reserved again by send() below
    if (!shared.reserveConnection(slot, this.policy.limits.max_connections)) {
      counters.inc("connection_limit");
      return this.#failMessage(key, "connection_limit", onFail);
    }
    const connection = this.#create(name, "out", { hostname: host, port });
    this.#options.counters.inc("connections_opened");
    if (connection.send(bytes, onFail) !== "queued") {
      // Another worker took the last of wq_max since the check above.
      counters.inc("queue_full");
      connection.close("nothing to send: wq_max reached");
      return this.#failMessage(key, "queue_full", onFail);
    }
    this.#byKey.set(key, connection);
    transport.connect({
      hostname: host,
      port,
      signal: AbortSignal.timeout(this.policy.timeouts.connect_timeout),
    }).then(
      (socket) => {
        if (connection.state === "closed") socket.close();
        else connection.attach(socket);
      },
      (error: Error) => {
        const reason: FailureReason = error instanceof Deno.errors.ConnectionRefused
          ? "connect_refused"
          : error.name === "TimeoutError"
          ? "connect_timeout"
          : "connect_failed";
        this.#fail(connection, reason, error.message);
      },
    );
  }

  #create(name: string, direction: "in" | "out", remote: SocketAddress): Connection {
    const { workerId, transports, shared } = this.#options;
    const id = this.directory.nextId(workerId);
    const connection = new Connection({
      id,
      transportName: name,
      transport: transports.get(name)!,
      direction,
      remote,
      maxMessageSize: this.policy.limits.max_message_size,
      shared,
      limits: this.#limits,
      hooks: this.#hooks,
    });
    this.#connections.set(id, connection);
    return connection;
  }

  #closed(connection: Connection, reason: string, failure: FailureReason, lost: LostData) {
    const { counters, shared } = this.#options;
    counters.inc("connections_closed");
    this.#connections.delete(connection.id);
    const drops = this.#drops.get(connection.id);
    if (drops !== undefined) {
      this.#drops.delete(connection.id);
      logDropped(connection.id, drops, Date.now());
    }
    shared.releaseConnection(this.#slots.get(connection.transportName)!);
    if (this.#countedIp.delete(connection)) shared.releaseFrom(connection.remote.hostname);
    const entry = this.#published.get(connection);
    if (entry !== undefined) {
      this.#published.delete(connection);
      this.directory.unpublish(entry, connection.id);
    }
    const key = keyOf(connection);
    if (this.#byKey.get(key) === connection) this.#byKey.delete(key);
    if (failure === "closed" && lost.messages > 0) {
      counters.countFailure("closed");
      log.info("connection {id} to {destination} closed ({reason}): {bytes} bytes lost", {
        id: connection.id,
        destination: key,
        reason,
        bytes: lost.bytes,
        messages: lost.messages,
      });
    } else {
      log.debug("connection {id} to {destination} closed: {reason}", {
        id: connection.id,
        destination: key,
        reason,
      });
    }
  }

  /** Closes a connection because of a failure, reports it and blacklists per policy. */
  #fail(connection: Connection, reason: FailureReason, detail: string, refused = 0): void {
    const key = keyOf(connection);
    this.#options.counters.inc(COUNTER[reason]);
    const blacklisted = this.#blacklist(key, reason);
    // Drop it from the reuse table first: failure handlers may send to the same destination.
    if (this.#byKey.get(key) === connection) this.#byKey.delete(key);
    const lost = connection.fail(`${reason}: ${detail}`, reason);
    lost.messages += refused; // the message that could not even be queued
    log.warn(
      "send failure {reason} to {destination} on connection {id}: {detail}; {bytes} bytes ({messages} messages) lost; blacklisted: {blacklisted}",
      {
        reason,
        destination: key,
        id: connection.id,
        detail,
        bytes: lost.bytes,
        messages: lost.messages,
        blacklisted,
      },
    );
    this.#emit({
      destination: key,
      reason,
      connectionId: connection.id,
      bytesLost: lost.bytes,
      messagesLost: lost.messages,
      blacklisted,
    });
  }

  /** A message could not be queued: over a queue limit. */
  #queueFull(connection: Connection, key: string, onFail: FailHandler | undefined): void {
    onFail?.("queue_full");
    if (this.policy.limits.on_queue_full === "close") {
      this.#fail(connection, "queue_full", "write queue limit reached", 1);
    } else {
      this.#options.counters.inc("queue_full");
      const drops = this.#drops.get(connection.id);
      if (drops !== undefined) {
        drops.count++;
      } else {
        log.warn("send failure queue_full to {destination} on connection {id}: message dropped", {
          destination: key,
          id: connection.id,
        });
        this.#drops.set(connection.id, { destination: key, since: Date.now(), count: 0 });
      }
      this.#emit({
        destination: key,
        reason: "queue_full",
        connectionId: connection.id,
        bytesLost: 0,
        messagesLost: 1,
        blacklisted: false,
      });
    }
  }

  /**
   * Writes the drops counted on each connection over the last interval as one line, and forgets
   * a connection with none (its next drop is logged at once again).
   */
  #logDrops(now: number): void {
    for (const [id, drops] of this.#drops) {
      if (now - drops.since < DROP_LOG_INTERVAL_MS) continue;
      if (drops.count === 0) {
        this.#drops.delete(id);
        continue;
      }
      logDropped(id, drops, now);
      drops.since = now;
      drops.count = 0;
    }
  }

  /** One message failed without a connection failing (blacklisted, connection limit). */
  #failMessage(key: string, reason: FailureReason, onFail: FailHandler | undefined): void {
    onFail?.(reason);
    log.debug("send to {destination} failed at once: {reason}", { destination: key, reason });
    this.#emit(messageFailure(key, reason));
  }

  #blacklist(key: string, reason: FailureReason): boolean {
    const settings = this.policy.blacklist;
    if (settings === undefined || !(settings.reasons as string[]).includes(reason)) return false;
    const now = Date.now();
    const entry: BlacklistEntry = { key, reason, addedAt: now, expiresAt: now + settings.expire };
    this.blacklist.maxEntries = settings.max_entries;
    this.blacklist.add(entry);
    this.#options.onBlacklisted(entry);
    return true;
  }

  #keepalive(c: Connection, now: number, interval: number, timeout: number): void {
    if (c.pingSentAt === 0) {
      if (now - c.lastRead > interval && !c.writePending) c.ping();
      return;
    }
    if (now - c.pingSentAt <= timeout) return;
    if (c.wroteSinceRead) {
      // We have been sending and the peer has said nothing, not even to a ping: the stall the
      // kernel hides (it keeps taking data for a peer that no longer ACKs).
      this.#fail(
        c,
        "keepalive_timeout",
        `no answer to a keepalive ping in ${timeout} ms`,
      );
    } else {
      // Idle and unanswered: the peer may not do RFC 5626; nothing was lost, just close.
      this.#options.counters.inc("keepalive_closed");
      c.close("keepalive ping unanswered on an idle connection");
    }
  }

  /**
   * Sends data that a closed outbound connection never delivered again, over a new connection;
   * once per message, so a peer that closes every connection at once cannot make us reconnect
   * forever.
   */
  #resend(connection: Connection, unsent: UnsentData): void {
    const key = keyOf(connection);
    if (this.#byKey.get(key) === connection) this.#byKey.delete(key);
    const destination = {
      transport: connection.transportName,
      host: connection.remote.hostname,
      port: connection.remote.port,
    };
    unsent.chunks.forEach((bytes, i) => {
      if (this.#resent.has(bytes) || this.#stopping) return unsent.handlers[i]?.("closed");
      this.#resent.add(bytes);
      this.sendTo(destination, bytes, unsent.handlers[i]);
    });
  }

  #refuse(socket: StreamSocket, why: string): void {
    this.#options.counters.inc("connections_refused");
    log.warn("connection from {remote} refused: {why}", {
      remote: formatAddress(socket.remoteAddr),
      why,
    });
    socket.close();
  }

  #emit(event: SendFailureEvent): void {
    this.#options.counters.countFailure(event.reason);
    for (const listener of this.#options.failureListeners) {
      try {
        listener(event);
      } catch (error) {
        log.error("onSendFailure hook failed: {error}", { error: (error as Error).message });
      }
    }
  }
}

/** A blacklist change to apply to a worker's copy. */
export type BlacklistChange = TableChange<BlacklistEntry>;

const COUNTER = {
  connect_refused: "connect_failed",
  connect_timeout: "connect_failed",
  connect_failed: "connect_failed",
  send_timeout: "send_timeouts",
  queue_full: "queue_full",
  keepalive_timeout: "keepalive_timeouts",
  blacklisted: "blacklisted_sends",
  connection_limit: "connection_limit",
  closed: "connections_closed",
  flow_failed: "flow_failed",
} as const;

/** One message failed, no connection involved. */
function messageFailure(key: string, reason: FailureReason): SendFailureEvent {
  return {
    destination: key,
    reason,
    connectionId: undefined,
    bytesLost: 0,
    messagesLost: 1,
    blacklisted: false,
  };
}

function keyOf(c: Connection): string {
  return destinationKey(c.transportName, c.remote.hostname, c.remote.port);
}

function formatAddress(a: SocketAddress): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

/** The line for drops counted on connection `id` and not logged yet (none when there are none). */
function logDropped(id: number, drops: DropLog, now: number): void {
  if (drops.count === 0) return;
  log.warn(
    "send failure queue_full to {destination} on connection {id}: {count} more messages dropped in the last {ms} ms",
    { destination: drops.destination, id, count: drops.count, ms: now - drops.since },
  );
}
