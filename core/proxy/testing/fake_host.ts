/**
 * Test support: a {@link ProxyHost} and a {@link MessageSource} that record what the proxy
 * sends, and helpers to turn message text into what the framer would hand the proxy.
 * @module
 */
import type { Router } from "../../plugin/types.ts";
import type { Destination } from "../../transport/destination.ts";
import type { SipHead } from "../../sip/head.ts";
import { parseMessageHead } from "../../sip/parse_head.ts";
import { latin1Decode, latin1Encode } from "../../sip/latin1.ts";
import type { FailureReason } from "../../policy/failure.ts";
import { FlowTokens } from "../flow_token.ts";
import { answerSendFailure } from "../send_failure.ts";
import type {
  FlowCheck,
  FlowSettings,
  MessageSource,
  ProxyCounter,
  ProxyHost,
} from "../proxy_host.ts";

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
  /** A datagram transport's MTU (udp); undefined for stream transports. */
  mtu?: number;
}

/** A message given to `sendTo`. */
export interface SentMessage {
  destination: Destination;
  /** The bytes, as latin1 text. */
  text: string;
  bytes: Uint8Array;
}

/** The flow tokens of every fake host and source (instance 7, a fixed key). */
export const TEST_FLOW_TOKENS = new FlowTokens(7, [{ hex: "5a".repeat(32), validUntil: 0 }]);
/** The connection id of datagram listener 0 in tests (listener N: this + N). */
export const DATAGRAM_SOCKET_ID = 9000;
/** Transport slots of flow tokens in tests. */
const SLOTS = ["tcp", "tls", "udp", "ws", "wss"];

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
  readonly sentOnConnection: {
    id: number;
    text: string;
    accepted: boolean;
    fallback?: Destination;
  }[] = [];
  /** Connection ids `sendOnConnection` accepts. */
  readonly openConnections = new Set<number>();
  readonly counters = new Map<ProxyCounter, number>();
  flows: FlowSettings = { register: "outbound", record_route: true };
  /** Sources whose connection `sendOnConnection` writes to (their `replies`). */
  readonly sources = new Map<number, FakeSource>();

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

  datagramMtu(transport: string): number | undefined {
    return this.transports.find((t) => t.name === transport)?.mtu;
  }

  checkFlowToken(token: string): FlowCheck {
    const check = TEST_FLOW_TOKENS.check(token);
    if (!check.ok) return check;
    if (check.datagram !== undefined) {
      const { socket, hostname, port } = check.datagram;
      return {
        ok: true,
        connectionId: DATAGRAM_SOCKET_ID + socket,
        transport: "udp",
        address: { hostname, port },
      };
    }
    return { ok: true, connectionId: check.connectionId, transport: SLOTS[check.slot] };
  }

  sendTo(destination: Destination, bytes: Uint8Array): void {
    this.sent.push({ destination, text: latin1Decode(bytes), bytes: bytes.slice() });
  }

  sendOnConnection(id: number, bytes: Uint8Array, fallback?: Destination): void {
    const source = this.sources.get(id);
    if (source?.open) return void source.reply(bytes);
    const accepted = this.openConnections.has(id);
    this.sentOnConnection.push({ id, text: latin1Decode(bytes), accepted, fallback });
    if (accepted) return;
    if (fallback !== undefined) this.sendTo(fallback, bytes);
    else this.fail(bytes, "flow_failed");
  }

  /** Fails a message given to the host, as a worker would (the sender is answered). */
  fail(bytes: Uint8Array, reason: FailureReason): void {
    answerSendFailure(this, bytes, reason);
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
  /** Whether a flow token was made for this source. */
  flow = false;

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

  flowToken(create: boolean): string | undefined {
    if (this.transport === "udp") {
      const socket = this.connectionId - DATAGRAM_SOCKET_ID;
      return TEST_FLOW_TOKENS.mintDatagram(socket, this.hostname, this.port);
    }
    if (!this.flow && !create) return undefined;
    this.flow = true;
    return TEST_FLOW_TOKENS.mint(this.connectionId, SLOTS.indexOf(this.transport));
  }
}

/** A message as the framer hands it to the proxy: parsed head and the whole bytes. */
export function framed(text: string | Uint8Array): { head: SipHead; bytes: Uint8Array } {
  const bytes = typeof text === "string" ? latin1Encode(text) : text;
  return { head: parseMessageHead(bytes), bytes };
}
