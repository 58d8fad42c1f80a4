/**
 * Test support for SIP over UDP with external peers (SIPp, Kamailio): ports free for both TCP
 * and UDP, waiting until a process has bound a UDP port (from /proc/net/udp, nothing is sent),
 * and a UDP peer on 127.0.0.1 that records what it receives.
 *
 * @module
 */
import { isTcpListening } from "./sipp.ts";
import { latin1, SipMessage } from "./sip_peer.ts";

/**
 * A port on 127.0.0.1 that was free a moment ago for both TCP and UDP (SIPp binds `-p` with the
 * transport it runs, Kamailio binds a listener on both when asked). Up to 50 tries.
 *
 * @returns the port number
 */
export function freeTcpUdpPort(): number {
  for (let i = 0; i < 50; i++) {
    const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
    const port = (tcp.addr as Deno.NetAddr).port;
    try {
      const udp = Deno.listenDatagram({ hostname: "127.0.0.1", port, transport: "udp" });
      udp.close();
      return port;
    } catch {
      // Taken for UDP: try another.
    } finally {
      tcp.close();
    }
  }
  throw new Error("no port free for both TCP and UDP");
}

/**
 * Whether a UDP socket is bound to 127.0.0.1:`port` or 0.0.0.0:`port` (Linux /proc/net/udp).
 *
 * @param port the UDP port
 * @returns true or false; `undefined` when /proc/net/udp cannot be read
 */
export function isUdpBound(port: number): boolean | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  let table: string;
  try {
    table = Deno.readTextFileSync("/proc/net/udp");
  } catch {
    return undefined;
  }
  for (const line of table.split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 2) continue;
    const [ip, p] = fields[1].split(":");
    if (p === hexPort && (ip === "0100007F" || ip === "00000000")) return true;
  }
  return false;
}

/**
 * Waits until a UDP socket is bound to 127.0.0.1:`port` (polling /proc/net/udp every 20 ms).
 *
 * @param port the UDP port
 * @param timeoutMs how long to wait
 * @param what a name for the error message
 * @param signal stops the wait early (the promise then rejects with the signal's reason)
 */
export async function waitForUdpBound(
  port: number,
  timeoutMs = 10_000,
  what = "process",
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const bound = isUdpBound(port);
    if (bound === undefined) {
      // No /proc: give the process a moment, there is nothing to poll.
      await new Promise((resolve) => setTimeout(resolve, 500));
      return;
    }
    if (bound) return;
    signal?.throwIfAborted();
    if (Date.now() > deadline) {
      throw new Error(`${what} has not bound udp 127.0.0.1:${port} after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Waits until `port` is bound for `transport` ("udp" or "tcp"). */
export async function waitForBound(
  transport: "udp" | "tcp",
  port: number,
  timeoutMs = 10_000,
  what = "process",
): Promise<void> {
  if (transport === "udp") return await waitForUdpBound(port, timeoutMs, what);
  const deadline = Date.now() + timeoutMs;
  while (!(isTcpListening(port) ?? true)) {
    if (Date.now() > deadline) {
      throw new Error(`${what} does not listen on tcp 127.0.0.1:${port} after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A datagram a {@linkcode UdpPeer} received. */
export interface ReceivedDatagram {
  data: Uint8Array;
  from: Deno.NetAddr;
  /** `Date.now()` when it was read. */
  at: number;
}

/**
 * A UDP peer on 127.0.0.1 (a phone or a UAS): records every datagram, or hands each to
 * `onDatagram` when one is given (it may answer with {@linkcode UdpPeer.send}).
 */
export class UdpPeer implements AsyncDisposable {
  readonly socket: Deno.DatagramConn;
  readonly port: number;
  /** Every datagram received so far, in order (kept when `onDatagram` is given too). */
  readonly log: ReceivedDatagram[] = [];
  #queue: ReceivedDatagram[] = [];
  #reading: Promise<void>;
  #closed = false;

  constructor(onDatagram?: (d: ReceivedDatagram, peer: UdpPeer) => void | Promise<void>) {
    const socket = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    this.socket = socket;
    this.port = (socket.addr as Deno.NetAddr).port;
    this.#reading = (async () => {
      try {
        for await (const [data, from] of socket) {
          const d = { data, from: from as Deno.NetAddr, at: Date.now() };
          this.log.push(d);
          if (onDatagram === undefined) this.#queue.push(d);
          else await onDatagram(d, this);
        }
      } catch {
        // closed
      }
    })();
  }

  /** Sends one datagram to 127.0.0.1:`port`. */
  async send(data: Uint8Array | string, port: number): Promise<void> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    await this.socket.send(bytes, { transport: "udp", hostname: "127.0.0.1", port });
  }

  /** The next datagram not handed to `onDatagram`, within `timeoutMs`. */
  async next(timeoutMs = 3000): Promise<ReceivedDatagram> {
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
      const d = this.#queue.shift();
      if (d !== undefined) return d;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    throw new Error(`no datagram on udp 127.0.0.1:${this.port} within ${timeoutMs} ms`);
  }

  /** The next datagram as a SIP message. */
  async nextMessage(timeoutMs = 3000): Promise<{ message: SipMessage; from: Deno.NetAddr }> {
    const { data, from } = await this.next(timeoutMs);
    try {
      return { message: SipMessage.parse(data), from };
    } catch (error) {
      throw new Error(`not a SIP message (${(error as Error).message}):\n${latin1(data)}`);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.close();
    await this.#reading;
  }
}
