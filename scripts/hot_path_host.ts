/**
 * The proxy host and source that the hot path runs against without sockets
 * (scripts/bench_hot_path.ts, tests/support/shape_probe.ts): one static route to
 * 127.0.0.1:5070 over TCP, sipedge at 127.0.0.1:5060, sends counted and dropped.
 * @module
 */
import type { MessageSource, ProxyHost } from "../core/proxy/proxy_host.ts";
import { parseDestination } from "../core/transport/destination.ts";

/** A host whose sends add their bytes to `sent.bytes`. */
export function hotPathHost(sent: { bytes: number }): ProxyHost {
  const destination = parseDestination("sip:127.0.0.1:5070;transport=tcp");
  return {
    routers: [{ route: () => ({ destination }) }],
    flows: { register: "outbound", record_route: true },
    checkFlowToken: () => ({ ok: false, why: "invalid" }),
    datagramMtu: () => undefined,
    isLocal: (h, p) => h === "127.0.0.1" && (p === 5060 || p === 0),
    advertised: () => ({ host: "127.0.0.1", port: 5060 }),
    viaName: () => "TCP",
    transportForVia: () => "tcp",
    sendTo: (_d, bytes) => void (sent.bytes += bytes.length),
    sendOnConnection: (_id, bytes) => void (sent.bytes += bytes.length),
    count: () => {},
  };
}

/** The client connection the requests come from (sipload's, as in scripts/hot_path_messages.ts). */
export const HOT_PATH_SOURCE: MessageSource = {
  connectionId: 256,
  transport: "tcp",
  hostname: "127.0.0.1",
  port: 40000,
  reply: () => true,
  flowToken: () => undefined,
};
