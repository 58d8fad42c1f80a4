/**
 * Test support: a {@link ProxyHost} and a {@link MessageSource} that record what the proxy
 * sends, and helpers to turn message text into what the framer would hand the proxy.
 * @module
 */
import type { Router } from "../../plugin/types.ts";
import type { Destination } from "../../transport/destination.ts";
import type { FailHandler } from "../../transport/connection.ts";
import type { SipHead } from "../../sip/head.ts";
import { parseHead } from "../../sip/parse_head.ts";
import { latin1Decode, latin1Encode } from "../../sip/latin1.ts";
import type { MessageSource, ProxyCounter, ProxyHost } from "../proxy_host.ts";

/** Our address in tests. */
export const OUR_HOST = "192.0.2.10";
export const OUR_PORT = 5060;
export const OUR_TLS_PORT = 5061;

/** One enabled transport of the fake host. */
export interface FakeTransport {
  name: string;
  via: string;
  host: string;
  port: number;
  defaultPort: number;
  /** false: enabled for sending, but sipedge has no listener of it (no address to advertise). */
  listening?: boolean;
}

/** A message given to `sendTo`. */
export interface SentMessage {
  destination: Destination;
  /** The bytes, as latin1 text. */
  text: string;
  bytes: Uint8Array;
  onFail?: FailHandler;
}

/** Options of {@link FakeHost}. */
export interface FakeHostOptions {
  routers?: Router[];
  /** Enabled transports; default tcp on OUR_HOST:OUR_PORT and tls on OUR_HOST:OUR_TLS_PORT. */
  transports?: FakeTransport[];
  /** Other names of the proxy (any port). */
  aliases?: string[];
}

const DEFAULT_TRANSPORTS: FakeTransport[] = [
  { name: "tcp", via: "TCP", host: OUR_HOST, port: OUR_PORT, defaultPort: 5060 },
  { name: "tls", via: "TLS", host: OUR_HOST, port: OUR_TLS_PORT, defaultPort: 5061 },
];

function normalizeHost(host: string): string {
  const h = host.toLowerCase();
  return h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h;
}

/** A recording {@link ProxyHost}. */
export class FakeHost implements ProxyHost {
  readonly routers: Router[];
  readonly transports: FakeTransport[];
  readonly aliases: string[];
  /** Everything given to `sendTo`, in order. */
  readonly sent: SentMessage[] = [];
  /** Everything given to `sendOnConnection`, in order (accepted or not). */
  readonly sentOnConnection: { id: number; text: string; accepted: boolean }[] = [];
  /** Connection ids `sendOnConnection` accepts. */
  readonly openConnections = new Set<number>();
  readonly counters = new Map<ProxyCounter, number>();

  constructor(options: FakeHostOptions = {}) {
    this.routers = options.routers ?? [];
    this.transports = options.transports ?? DEFAULT_TRANSPORTS;
    this.aliases = (options.aliases ?? []).map(normalizeHost);
  }

  isLocal(host: string, port: number, transport?: string): boolean {
    const h = normalizeHost(host);
    if (this.aliases.includes(h)) return true;
    const p = port || (transport === "tls" ? 5061 : 5060);
    return this.transports.some((t) => normalizeHost(t.host) === h && t.port === p);
  }

  advertised(transport: string): { host: string; port: number } | undefined {
    const t = this.transports.find((t) => t.name === transport);
    return t && t.listening !== false ? { host: t.host, port: t.port } : undefined;
  }

  viaName(transport: string): string | undefined {
    return this.transports.find((t) => t.name === transport)?.via;
  }

  transportForVia(viaName: string): string | undefined {
    return this.transports.find((t) => t.via === viaName.toUpperCase())?.name;
  }

  sendTo(destination: Destination, bytes: Uint8Array, onFail?: FailHandler): void {
    this.sent.push({ destination, text: latin1Decode(bytes), bytes: bytes.slice(), onFail });
  }

  sendOnConnection(id: number, bytes: Uint8Array): boolean {
    const accepted = this.openConnections.has(id);
    this.sentOnConnection.push({ id, text: latin1Decode(bytes), accepted });
    return accepted;
  }

  count(counter: ProxyCounter): void {
    this.counters.set(counter, (this.counters.get(counter) ?? 0) + 1);
  }

  /** The value of a counter (0 when never incremented). */
  counter(counter: ProxyCounter): number {
    return this.counters.get(counter) ?? 0;
  }
}

/** A recording {@link MessageSource}. */
export class FakeSource implements MessageSource {
  connectionId: number;
  transport: string;
  hostname: string;
  port: number;
  /** Replies sent back, as latin1 text. */
  readonly replies: string[] = [];
  /** What `reply` returns. */
  open = true;

  constructor(
    options: Partial<Pick<FakeSource, "connectionId" | "transport" | "hostname" | "port">> = {},
  ) {
    this.connectionId = options.connectionId ?? 42;
    this.transport = options.transport ?? "tcp";
    this.hostname = options.hostname ?? "198.51.100.7";
    this.port = options.port ?? 5070;
  }

  reply(bytes: Uint8Array): boolean {
    this.replies.push(latin1Decode(bytes));
    return this.open;
  }
}

/** A message as the framer hands it to the proxy: parsed head and the whole bytes. */
export function framed(text: string | Uint8Array): { head: SipHead; bytes: Uint8Array } {
  const bytes = typeof text === "string" ? latin1Encode(text) : text;
  const all = latin1Decode(bytes);
  const crlf = all.indexOf("\r\n\r\n");
  const lf = all.indexOf("\n\n");
  const headEnd = crlf >= 0 && (lf < 0 || crlf + 2 <= lf) ? crlf + 4 : lf + 2;
  if (headEnd < 2) throw new Error("no end of head in test message");
  return { head: parseHead(all.slice(0, headEnd)), bytes };
}
