/**
 * Which TLS domain applies: server domains by listener and SNI name (exact name, then
 * `*.example.com` wildcard, then the listener's default), client domains by destination
 * (`host:port`, then host, then wildcard, then the default). Plain lookup tables built once per
 * config: a handshake costs a few map lookups.
 * @module
 */
import type { ListenerId } from "./settings.ts";

/** Formats a listener as in a listen address: `127.0.0.1:5061`, `[::1]:5061`. */
export function formatListener(l: ListenerId): string {
  return l.hostname.includes(":") ? `[${l.hostname}]:${l.port}` : `${l.hostname}:${l.port}`;
}

/** Lower case, no IPv6 brackets, no trailing dot. */
export function normalizeHost(host: string): string {
  return host.replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "").toLowerCase();
}

/** Whether two listener addresses are the same (hosts normalized). */
export function sameListener(a: ListenerId, b: ListenerId): boolean {
  return a.port === b.port && normalizeHost(a.hostname) === normalizeHost(b.hostname);
}

/**
 * The configured listener a bound address belongs to: the same address, or -- for a listener
 * configured with port 0, which workers then bind on the port the first one got -- the same
 * host with port 0. Falls back to the address itself.
 */
export function configuredListener(listeners: ListenerId[], address: ListenerId): ListenerId {
  return listeners.find((l) => sameListener(l, address)) ??
    listeners.find((l) => l.port === 0 && sameListener(l, { ...address, port: 0 })) ??
    address;
}

/** What a server domain needs for selection. */
export interface ServerDomainLike {
  /** undefined: every listener. */
  listener: ListenerId | undefined;
  /** Lower case; `*.example.com` for wildcards. */
  serverNames: string[];
}

/** The domains of one listener, ready for SNI lookups. */
export class ListenerDomains<D extends ServerDomainLike> {
  /** The domains that apply, listener-specific ones first, then config order. */
  readonly domains: readonly D[];
  /** For clients without SNI or with a name no domain has. */
  readonly defaultDomain: D;
  #exact = new Map<string, D>();
  #wildcard = new Map<string, D>();

  constructor(domains: D[]) {
    if (domains.length === 0) throw new Error("a listener needs at least one domain");
    this.domains = domains;
    for (const d of domains) {
      for (const name of d.serverNames) {
        const table = name.startsWith("*.") ? this.#wildcard : this.#exact;
        const key = name.startsWith("*.") ? name.slice(2) : name;
        if (!table.has(key)) table.set(key, d);
      }
    }
    this.defaultDomain = domains.find((d) => d.serverNames.length === 0) ?? domains[0];
  }

  /** The domain for an SNI name (undefined or empty: no SNI). */
  select(serverName: string | undefined | null | false): D {
    if (!serverName) return this.defaultDomain;
    const name = normalizeHost(serverName);
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf(".");
    if (dot > 0) {
      const wildcard = this.#wildcard.get(name.slice(dot + 1));
      if (wildcard !== undefined) return wildcard;
    }
    return this.defaultDomain;
  }
}

/**
 * The domains that apply to a listener: those naming it, then those for every listener
 * (`listener` undefined), each group in config order. Empty when none does.
 */
export function domainsForListener<D extends ServerDomainLike>(
  domains: readonly D[],
  listener: ListenerId,
): D[] {
  return [
    ...domains.filter((d) => d.listener !== undefined && sameListener(d.listener, listener)),
    ...domains.filter((d) => d.listener === undefined),
  ];
}

/** What a client domain needs for selection. */
export interface ClientDomainLike {
  /** Lower case patterns; empty (or containing "*"): the default. */
  match: string[];
}

/** Client domains by destination. */
export class ClientDomainTable<D extends ClientDomainLike> {
  #hostPort = new Map<string, D>();
  #host = new Map<string, D>();
  #wildcard = new Map<string, D>();
  #default: D;

  /** `fallback` applies when no domain matches and none is the default. */
  constructor(domains: readonly D[], fallback: D) {
    let defaultDomain: D | undefined;
    for (const d of domains) {
      if (d.match.length === 0) defaultDomain ??= d;
      for (const pattern of d.match) {
        const p = parseMatch(pattern);
        if (p.kind === "default") defaultDomain ??= d;
        else if (p.kind === "wildcard") setFirst(this.#wildcard, p.suffix, d);
        else if (p.port === undefined) setFirst(this.#host, p.host, d);
        else setFirst(this.#hostPort, `${p.host}|${p.port}`, d);
      }
    }
    this.#default = defaultDomain ?? fallback;
  }

  /** The domain for a destination. */
  select(hostname: string, port: number): D {
    const host = normalizeHost(hostname);
    const found = this.#hostPort.get(`${host}|${port}`) ?? this.#host.get(host);
    if (found !== undefined) return found;
    const dot = host.indexOf(".");
    if (dot > 0) {
      const wildcard = this.#wildcard.get(host.slice(dot + 1));
      if (wildcard !== undefined) return wildcard;
    }
    return this.#default;
  }
}

type MatchPattern =
  | { kind: "default" }
  | { kind: "wildcard"; suffix: string }
  | { kind: "host"; host: string; port: number | undefined };

/** `*`, `*.example.com`, `host`, `host:port`, `10.0.0.5`, `[::1]:5061`, `::1`. */
export function parseMatch(pattern: string): MatchPattern {
  const p = pattern.trim().toLowerCase();
  if (p === "*") return { kind: "default" };
  if (p.startsWith("*.")) return { kind: "wildcard", suffix: normalizeHost(p.slice(2)) };
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(p);
  if (bracketed !== null) {
    return {
      kind: "host",
      host: bracketed[1],
      port: bracketed[2] === undefined ? undefined : Number(bracketed[2]),
    };
  }
  const colons = p.split(":").length - 1;
  if (colons === 1) {
    const [host, port] = p.split(":");
    return { kind: "host", host: normalizeHost(host), port: Number(port) };
  }
  return { kind: "host", host: normalizeHost(p), port: undefined };
}

function setFirst<D>(map: Map<string, D>, key: string, value: D): void {
  if (!map.has(key)) map.set(key, value);
}
