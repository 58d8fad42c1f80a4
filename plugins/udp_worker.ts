/**
 * The `udp` transport plugin's worker side: SIP over UDP (RFC 3261 §18) with
 * `Deno.listenDatagram`.
 *
 * One socket per UDP address in the whole process, in reader worker 0, which receives every
 * datagram; the other workers hand what they send over UDP to it (core/transport/handoff.ts).
 * Measured here (Deno 2.9.6): Deno's UDP sockets have no SO_REUSEPORT -- `Deno.listenDatagram`
 * offers only `reuseAddress`, and node:dgram's `reusePort` behaves the same -- and a second socket
 * bound to the same address with `reuseAddress` takes every datagram (100 of 100 to one socket
 * of two, in two workers), so binding the port in every worker would not spread the load; it
 * would silently starve all sockets but one. See docs/decisions.md.
 *
 * Reader workers import this module, not ./udp.ts (the schema, zod: see docs/decisions.md,
 * "Memory at rest").
 * @module
 */
import type { PluginWorker } from "../core/plugin/types.ts";
import type { DatagramSocket, DatagramTransport, SocketAddress } from "../core/transport/types.ts";
import type { UdpConfig } from "./udp.ts";

class UdpSocket implements DatagramSocket {
  readonly addr: SocketAddress;
  #conn: Deno.DatagramConn;
  #settings: UdpConfig;
  #closed = false;

  constructor(address: SocketAddress, settings: UdpConfig) {
    this.#conn = Deno.listenDatagram({
      hostname: address.hostname,
      port: address.port,
      transport: "udp",
    });
    this.#settings = settings;
    const addr = this.#conn.addr as Deno.NetAddr;
    this.addr = { hostname: addr.hostname, port: addr.port };
  }

  start(onDatagram: (data: Uint8Array, from: SocketAddress) => void): void {
    (async () => {
      const buffer = new Uint8Array(this.#settings.max_datagram_size);
      while (!this.#closed) {
        let received: [Uint8Array, Deno.Addr];
        try {
          received = await this.#conn.receive(buffer);
        } catch {
          if (this.#closed) return;
          // An error reported for an earlier send (ICMP): receiving goes on.
          continue;
        }
        const from = received[1] as Deno.NetAddr;
        try {
          onDatagram(received[0], { hostname: from.hostname, port: from.port });
        } catch (error) {
          // One datagram's failure must not stop the socket: reported as uncaught (the worker
          // logs and counts it), receiving goes on.
          queueMicrotask(() => {
            throw error;
          });
        }
      }
    })();
  }

  async send(data: Uint8Array, to: SocketAddress): Promise<void> {
    await this.#conn.send(data, { transport: "udp", hostname: to.hostname, port: to.port });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

function udpTransport(settings: UdpConfig): DatagramTransport {
  return {
    datagram: true,
    name: "udp",
    viaName: "UDP",
    secure: false,
    defaultPort: 5060,
    get mtu() {
      return settings.mtu;
    },
    bind: (address) => new UdpSocket(address, settings),
  };
}

/** The udp plugin's `worker` hook. */
export const worker: PluginWorker<UdpConfig> = (cfg) => {
  const settings = { ...cfg };
  return {
    transport: udpTransport(settings),
    reload: (next) => () => Object.assign(settings, next),
  };
};
