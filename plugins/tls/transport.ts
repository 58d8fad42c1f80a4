/**
 * The tls stream transport in a reader worker: `node:tls` servers (SO_REUSEPORT, an SNI callback
 * that consults the current domain table, so a reload changes what new handshakes get without
 * touching listeners or open connections) and `node:tls` client connections (SNI = destination
 * host name, chain and host name verified after the handshake so that a failure says why).
 *
 * Sockets are node streams: reads are 'data' events, writes are buffered by the stream -- a
 * write the stream could not pass on at once marks the socket `congested` (the core then puts
 * the connection in async mode) and settles on 'drain', so it stays pending while the peer does
 * not read and `send_timeout` can fire. A read never waits on a write and vice versa.
 * @module
 */
import tls from "node:tls";
import type { Socket } from "node:net";
import { isIP } from "node:net";
import { X509Certificate } from "node:crypto";
import type { Logger } from "@logtape/logtape";
import type {
  ConnectOptions,
  SocketAddress,
  StreamListener,
  StreamSocket,
  StreamTransport,
} from "../../core/transport/types.ts";
import { oneLine } from "./certificates.ts";
import {
  ClientDomainTable,
  configuredListener,
  domainsForListener,
  formatListener,
  ListenerDomains,
} from "./domains.ts";
import type {
  ListenerId,
  PreparedClientDomain,
  PreparedServerDomain,
  TlsConfig,
  VerifyClient,
} from "./settings.ts";

/** How an SNI callback answers. */
type SniDone = (error: Error | null, context?: tls.SecureContext) => void;

/** A server domain with its secure context. */
interface ServerEntry extends PreparedServerDomain {
  options: tls.SecureContextOptions;
  context: tls.SecureContext;
  /** The cipher suites allowed; undefined: any the runtime negotiates. */
  allowedCiphers: Set<string> | undefined;
}

/** A client domain with its secure context. */
interface ClientEntry
  extends Pick<PreparedClientDomain, "name" | "verifyServer" | "verifyHostName"> {
  match: string[];
  context: tls.SecureContext;
  allowedCiphers: Set<string> | undefined;
}

/** `A:B` -> {A, B}; undefined stays undefined. */
function cipherSet(ciphers: string | undefined): Set<string> | undefined {
  return ciphers === undefined ? undefined : new Set(ciphers.split(":").map((c) => c.trim()));
}

/**
 * The runtime's TLS stack takes no cipher list (it negotiates its own AEAD suites), so a
 * domain's list is applied to what was negotiated: a suite not in it closes the connection.
 */
function cipherRefusal(
  socket: tls.TLSSocket,
  allowed: Set<string> | undefined,
): string | undefined {
  if (allowed === undefined) return undefined;
  const cipher = socket.getCipher();
  if (cipher !== null && (allowed.has(cipher.name) || allowed.has(cipher.standardName))) {
    return undefined;
  }
  return `cipher suite ${cipher?.name ?? "(unknown)"} is not in the domain's ciphers`;
}

/** The domain tables of one config: built whole before it is put in force. */
export class TlsState {
  readonly listeners: ListenerId[];
  readonly server: ServerEntry[];
  readonly client: ClientDomainTable<ClientEntry>;
  readonly handshakeTimeout: number;
  readonly warnings: string[];
  #byListener = new Map<string, ListenerDomains<ServerEntry> | undefined>();

  /** Builds every secure context; throws (naming the domain) when one cannot be made. */
  constructor(config: TlsConfig) {
    const prepared = config.prepared;
    if (prepared === undefined) throw new Error("tls: the config was not prepared");
    this.listeners = prepared.listeners;
    this.handshakeTimeout = config.handshake_timeout;
    this.warnings = prepared.warnings;
    this.server = prepared.server.map((d) => {
      const options: tls.SecureContextOptions = {
        cert: d.certificate,
        key: d.privateKey,
        minVersion: d.minVersion,
        ...(d.caList === undefined ? {} : { ca: d.caList }),
        ...(d.ciphers === undefined ? {} : { ciphers: d.ciphers }),
      };
      return {
        ...d,
        options,
        context: secureContext(`server domain ${d.name}`, options),
        allowedCiphers: cipherSet(d.ciphers),
      };
    });
    const client = prepared.client.map((d): ClientEntry => ({
      name: d.name,
      match: d.match,
      verifyServer: d.verifyServer,
      verifyHostName: d.verifyHostName,
      allowedCiphers: cipherSet(d.ciphers),
      context: secureContext(`client domain ${d.name}`, {
        minVersion: d.minVersion,
        ...(d.caList === undefined ? {} : { ca: d.caList }),
        ...(d.certificate === undefined ? {} : { cert: d.certificate, key: d.privateKey }),
        ...(d.ciphers === undefined ? {} : { ciphers: d.ciphers }),
      }),
    }));
    const fallback: ClientEntry = {
      name: "(default)",
      match: [],
      verifyServer: true,
      verifyHostName: true,
      allowedCiphers: undefined,
      context: secureContext("default client domain", { minVersion: "TLSv1.2" }),
    };
    this.client = new ClientDomainTable(client, fallback);
    for (const l of this.listeners) this.listenerDomains(l);
  }

  /** The domains of the listener bound at `address`; undefined when no domain covers it. */
  listenerDomains(address: ListenerId): ListenerDomains<ServerEntry> | undefined {
    const id = configuredListener(this.listeners, address);
    const key = formatListener(id);
    if (!this.#byListener.has(key)) {
      const domains = domainsForListener(this.server, id);
      this.#byListener.set(key, domains.length === 0 ? undefined : new ListenerDomains(domains));
    }
    return this.#byListener.get(key);
  }
}

function secureContext(what: string, options: tls.SecureContextOptions): tls.SecureContext {
  try {
    return tls.createSecureContext(options);
  } catch (error) {
    throw new Error(`${what}: ${(error as Error).message}`);
  }
}

/** The transport of one worker: the current state, its listeners, connect. */
export class TlsTransport implements StreamTransport {
  readonly name = "tls";
  readonly viaName = "TLS";
  readonly secure = true;
  readonly defaultPort = 5061;
  state: TlsState;
  readonly log: Logger;
  #listeners = new Set<TlsListener>();

  constructor(state: TlsState, log: Logger) {
    this.state = state;
    this.log = log;
  }

  /** Puts a new state in force: new handshakes use it, open connections keep theirs. */
  apply(state: TlsState): void {
    this.state = state;
    for (const listener of this.#listeners) listener.apply(state);
  }

  async listen(address: SocketAddress): Promise<StreamListener> {
    const listener = new TlsListener(this, address);
    await listener.bind(address);
    this.#listeners.add(listener);
    return listener;
  }

  /** Called by a listener when it closes. */
  forget(listener: TlsListener): void {
    this.#listeners.delete(listener);
  }

  connect(options: ConnectOptions): Promise<StreamSocket> {
    return connectTls(this, options);
  }
}

/** A tls listening socket. */
class TlsListener implements StreamListener {
  addr: SocketAddress = { hostname: "", port: 0 };
  #transport: TlsTransport;
  #server: tls.Server;
  #requested: ListenerId;
  #waiting: TlsSocket[] = [];
  #onSocket: ((socket: StreamSocket) => void) | undefined;
  #admit: ((ip: string) => boolean) | undefined;
  #handshakes = new Map<Socket, ReturnType<typeof setTimeout>>();
  #closed = false;
  /** The SNI callback: picks the domain of the name the client asked for. */
  #sniCallback = (name: string, done: SniDone) => {
    const domains = this.#domains();
    if (domains === undefined) return done(new Error("no TLS domain for this listener"));
    done(null, domains.select(name).context);
  };
  /** 'close' of an accepted socket still in its handshake (one function for all of them). */
  #rawClosed: (this: Socket) => void;

  constructor(transport: TlsTransport, address: SocketAddress) {
    this.#transport = transport;
    this.#requested = address;
    // deno-lint-ignore no-this-alias
    const listener = this;
    this.#rawClosed = function (this: Socket) {
      listener.#clearHandshakeTimer(this);
    };
    // Client certificate requests are also given to the constructor: set only afterwards, a
    // refusal in the handshake closes without the TLS alert that tells the client why.
    const modes = verifyModes(transport.state.listenerDomains(address));
    this.#server = tls.createServer({
      requestCert: modes.requestCert,
      rejectUnauthorized: modes.rejectUnauthorized,
      SNICallback: this.#sniCallback,
    });
    this.#server.on("connection", (raw: Socket) => {
      // A banned source is closed before its handshake costs anything.
      if (this.#admit?.(raw.remoteAddress ?? "") === false) return void raw.destroy();
      this.#startHandshakeTimer(raw);
    });
    this.#server.on("secureConnection", (socket: tls.TLSSocket) => this.#secured(socket));
    this.#server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
      this.#clearHandshakeTimer(socket);
      transport.log.debug("TLS handshake from {remote} failed: {error}", {
        remote: `${socket.remoteAddress}:${socket.remotePort}`,
        error: error.message,
      });
    });
    this.#server.on("error", (error: Error) => {
      transport.log.error("tls listener {address}: {error}", {
        address: formatListener(this.addr),
        error: error.message,
      });
    });
    this.apply(transport.state);
  }

  /** Binds (SO_REUSEPORT: every worker listens on the same address). */
  bind(address: SocketAddress): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.#server.once("error", onError);
      this.#server.listen(
        { host: address.hostname, port: address.port, reusePort: true, exclusive: true },
        () => {
          this.#server.off("error", onError);
          const bound = this.#server.address();
          if (bound === null || typeof bound === "string") {
            return reject(new Error("tls listener has no address"));
          }
          this.addr = { hostname: bound.address, port: bound.port };
          resolve();
        },
      );
    });
  }

  /** The default certificate (no SNI) and client certificate requests of the state. */
  apply(state: TlsState): void {
    const domains = state.listenerDomains(this.#requested);
    if (domains === undefined) return; // a listener of a reload not yet committed
    try {
      this.#server.setSecureContext(domains.defaultDomain.options);
    } catch (error) {
      // Cannot happen: the same options made a context when the state was built.
      this.#transport.log.error("tls listener {address}: default certificate not set: {error}", {
        address: formatListener(this.addr),
        error: (error as Error).message,
      });
    }
    const server = this.#server as unknown as {
      requestCert: boolean;
      rejectUnauthorized: boolean;
      _SNICallback: ((name: string, done: SniDone) => void) | undefined;
    };
    Object.assign(server, verifyModes(domains));
    // With one domain every name selects it, and the default context above is that domain's:
    // no SNI callback then. The runtime reads `_SNICallback` per accepted connection, and a
    // callback makes it build the connection's TLS config from the context's PEM at every
    // handshake and keep it while the connection lives (measured: +12 KB per idle
    // connection, docs/benchmarks/issue11/per_connection_breakdown.md).
    server._SNICallback = domains.domains.length > 1 ? this.#sniCallback : undefined;
  }

  start(onSocket: (socket: StreamSocket) => void, admit?: (ip: string) => boolean): void {
    this.#onSocket = onSocket;
    this.#admit = admit;
    for (const socket of this.#waiting.splice(0)) onSocket(socket);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#transport.forget(this);
    this.#server.close();
    for (const socket of this.#waiting.splice(0)) socket.close();
    for (const [raw, timer] of this.#handshakes) {
      clearTimeout(timer);
      raw.destroy();
    }
    this.#handshakes.clear();
  }

  #domains() {
    return this.#transport.state.listenerDomains(this.#requested);
  }

  #startHandshakeTimer(raw: Socket): void {
    const timer = setTimeout(() => {
      this.#handshakes.delete(raw);
      this.#transport.log.debug("TLS handshake from {remote} timed out", {
        remote: `${raw.remoteAddress}:${raw.remotePort}`,
      });
      raw.destroy();
    }, this.#transport.state.handshakeTimeout);
    this.#handshakes.set(raw, timer);
    raw.on("close", this.#rawClosed);
  }

  #clearHandshakeTimer(socket: Socket): void {
    // The TLS socket wraps the accepted one (`_parent`); either may be given.
    const raw = (socket as unknown as { _parent?: Socket })._parent ?? socket;
    const timer = this.#handshakes.get(raw);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.#handshakes.delete(raw);
    raw.off("close", this.#rawClosed);
  }

  #secured(socket: tls.TLSSocket): void {
    this.#clearHandshakeTimer(socket);
    socket.on("error", ignore); // reported by 'close' once wrapped; never an uncaught error
    const domain = this.#domains()?.select(serverName(socket));
    if (domain === undefined || this.#closed) return void socket.destroy();
    const refusal = clientCertificateRefusal(socket, domain.verifyClient) ??
      cipherRefusal(socket, domain.allowedCiphers);
    if (refusal !== undefined) {
      this.#transport.log.info("TLS client {remote} refused by domain {domain}: {why}", {
        remote: `${socket.remoteAddress}:${socket.remotePort}`,
        domain: domain.name,
        why: refusal,
      });
      return void socket.destroy();
    }
    const wrapped = new TlsSocket(socket, domain.name, serverName(socket));
    if (this.#onSocket === undefined) this.#waiting.push(wrapped);
    else this.#onSocket(wrapped);
  }
}

/**
 * The runtime asks for client certificates per server, not per SNI context: ask when any domain
 * of the listener wants them; refuse in the handshake only when all require them. The
 * per-domain policy is applied once the handshake is done (`clientCertificateRefusal`).
 */
function verifyModes(
  domains: ListenerDomains<ServerEntry> | undefined,
): { requestCert: boolean; rejectUnauthorized: boolean } {
  const modes = new Set<VerifyClient>(domains?.domains.map((d) => d.verifyClient) ?? []);
  return {
    requestCert: modes.has("optional") || modes.has("required"),
    rejectUnauthorized: modes.size === 1 && modes.has("required"),
  };
}

/** Why a client's certificate is not acceptable to a domain, or undefined when it is. */
function clientCertificateRefusal(socket: tls.TLSSocket, mode: VerifyClient): string | undefined {
  if (mode === "off") return undefined;
  const presented = socket.getPeerX509Certificate?.() !== undefined;
  if (!presented) return mode === "required" ? "no client certificate" : undefined;
  if (socket.authorized) return undefined;
  return `client certificate not trusted: ${socket.authorizationError}`;
}

/** One TLS connection. */
export class TlsSocket implements StreamSocket {
  readonly localAddr: SocketAddress;
  readonly remoteAddr: SocketAddress;
  congested = false;
  #socket: tls.TLSSocket;
  #domain: string;
  #closed = false;
  #closeError: Error | undefined;
  #onClose: ((error?: Error) => void) | undefined;
  /** Writes waiting for 'drain' (made on first use: most connections never congest). */
  #drainWaiters: { resolve: () => void; reject: (error: Error) => void }[] | undefined;
  /** What the control API shows: taken at the handshake (gone once the socket closes). */
  #sni: string | undefined;
  #version: string | undefined;
  #cipher: string | undefined;
  #peer: string | undefined;
  #peerVerified: boolean;

  /**
   * `sni`: the server name the client asked for (inbound) or that was sent (outbound);
   * `remote`: the destination as given (outbound), else the socket's peer address.
   */
  constructor(
    socket: tls.TLSSocket,
    domain: string,
    sni: string | undefined,
    remote?: SocketAddress,
  ) {
    this.#socket = socket;
    this.#domain = domain;
    socket.setNoDelay(true);
    this.localAddr = { hostname: bare(socket.localAddress), port: socket.localPort ?? 0 };
    this.remoteAddr = remote ??
      { hostname: bare(socket.remoteAddress), port: socket.remotePort ?? 0 };
    socket.on("error", (error: Error) => this.#closeError ??= error);
    socket.on("drain", () => {
      this.congested = false;
      const waiters = this.#drainWaiters;
      this.#drainWaiters = undefined;
      for (const w of waiters ?? []) w.resolve();
    });
    socket.on("close", () => this.#closedNow());
    // Taken now, while the handshake state is there (it is gone once the socket closes); the
    // record is built when asked for, the strings are shared by all connections.
    this.#sni = sni;
    this.#version = shared(socket.getProtocol() ?? undefined);
    this.#cipher = shared(socket.getCipher()?.name);
    this.#peer = peerSubject(socket);
    this.#peerVerified = socket.authorized;
  }

  start(onData: (chunk: Uint8Array) => void, onClose: (error?: Error) => void): void {
    this.#onClose = onClose;
    if (this.#closed) {
      this.#onClose = undefined;
      return onClose(this.#closeError);
    }
    this.#socket.on("data", (chunk: Uint8Array) => onData(chunk));
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#closed || this.#socket.destroyed) {
      return Promise.reject(new Error("TLS connection is closed"));
    }
    // Resolves at once when the stream took it under its high-water mark (like a kernel that
    // took the bytes); otherwise when the stream drains -- which never happens for a peer that
    // stopped reading, so send_timeout fires and close() rejects it.
    const taken = this.#socket.write(data);
    if (taken) return Promise.resolve(data.length);
    this.congested = true;
    return new Promise((resolve, reject) => {
      (this.#drainWaiters ??= []).push({ resolve: () => resolve(data.length), reject });
    });
  }

  details(): Record<string, string | number | boolean | undefined> {
    const peer = this.#peer;
    return {
      tls_version: this.#version,
      cipher: this.#cipher,
      sni: this.#sni,
      domain: this.#domain,
      peer_certificate: peer,
      // Only meaningful when the peer sent a certificate (a server that asked for none reports
      // its clients as "authorized").
      peer_verified: peer === undefined ? undefined : this.#peerVerified,
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#socket.destroy();
    this.#closedNow();
  }

  #closedNow(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.congested = false;
    const error = new Error("TLS connection closed");
    const waiters = this.#drainWaiters;
    this.#drainWaiters = undefined;
    for (const w of waiters ?? []) w.reject(error);
    const onClose = this.#onClose;
    this.#onClose = undefined;
    onClose?.(this.#closeError);
  }
}

function ignore(): void {}

/** The subject of the peer's certificate, if it sent one. */
function peerSubject(s: tls.TLSSocket): string | undefined {
  try {
    const cert = s.getPeerX509Certificate?.();
    return cert === undefined ? undefined : oneLine((cert as X509Certificate).subject);
  } catch {
    return undefined;
  }
}

/** Protocol and cipher names, one string for all connections (a few distinct values). */
const names = new Map<string, string>();

function shared(name: string | undefined): string | undefined {
  if (name === undefined) return undefined;
  const known = names.get(name);
  if (known !== undefined) return known;
  if (names.size < 64) names.set(name, name);
  return name;
}

/** Connects, handshakes and verifies; resolves once the connection can carry SIP. */
function connectTls(transport: TlsTransport, options: ConnectOptions): Promise<StreamSocket> {
  const { hostname, port, signal } = options;
  const destination = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  const domain = transport.state.client.select(hostname, port);
  const ip = isIP(hostname) !== 0;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(timeoutError(destination));
    // Verification happens below, after the handshake, so that a failure can say exactly why
    // (the runtime's own rejection would only say "socket hang up" or a bare code).
    const socket = tls.connect({
      host: hostname,
      port,
      secureContext: domain.context,
      // SNI only for host names (RFC 6066 §3); an IP destination is checked against IP SANs.
      ...(ip ? {} : { servername: hostname }),
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(error);
    };
    const onAbort = () => fail(timeoutError(destination));
    signal.addEventListener("abort", onAbort, { once: true });
    // `on`, not `once`: a second error event without a listener would be an uncaught error.
    const onError = (error: Error & { code?: string }) => {
      if (error.code === "ECONNREFUSED") {
        fail(new Deno.errors.ConnectionRefused(`connection refused by ${destination}`));
      } else {
        fail(new Error(`TLS connect to ${destination} failed: ${error.message}`));
      }
    };
    const onClose = () =>
      fail(new Error(`${destination} closed the connection during the TLS handshake`));
    socket.on("error", onError);
    socket.on("close", onClose);
    socket.once("secureConnect", () => {
      if (settled) return;
      const problem = serverCertificateProblem(socket, domain, hostname);
      if (problem !== undefined) return fail(new Error(`TLS ${destination}: ${problem}`));
      settled = true;
      signal.removeEventListener("abort", onAbort);
      // The socket's own listeners go in before the connect's come off: no moment without one.
      const connected = new TlsSocket(socket, domain.name, ip ? undefined : hostname, {
        hostname,
        port,
      });
      socket.off("error", onError);
      socket.off("close", onClose);
      resolve(connected);
    });
  });
}

/** Why the server's certificate is not acceptable to the client domain, or undefined. */
function serverCertificateProblem(
  socket: tls.TLSSocket,
  domain: ClientEntry,
  hostname: string,
): string | undefined {
  if (domain.verifyServer && !socket.authorized) {
    return `server certificate not trusted (client domain ${domain.name}): ${socket.authorizationError}`;
  }
  const cipher = cipherRefusal(socket, domain.allowedCiphers);
  if (cipher !== undefined) return `${cipher} (client domain ${domain.name})`;
  if (domain.verifyHostName) {
    const cert = socket.getPeerCertificate(true);
    if (cert === null || Object.keys(cert).length === 0) return "the server sent no certificate";
    const mismatch = tls.checkServerIdentity(hostname, cert);
    if (mismatch !== undefined) {
      return `certificate does not match host name ${hostname}: ${mismatch.message}`;
    }
  }
  return undefined;
}

function timeoutError(destination: string): Error {
  const error = new Error(`connect to ${destination} timed out (TCP connect or TLS handshake)`);
  error.name = "TimeoutError";
  return error;
}

/** A socket's address; undefined (a socket already closed) becomes "". */
function bare(address: string | undefined): string {
  return address ?? "";
}

/** The SNI name a client sent (the runtime's TLSSocket has it, its types do not). */
function serverName(socket: tls.TLSSocket): string | undefined {
  const name = (socket as unknown as { servername?: string | false | null }).servername;
  return typeof name === "string" && name !== "" ? name : undefined;
}
