/**
 * The `ws` transport plugin: SIP over WebSocket (RFC 7118) on plain TCP, for browser
 * softphones on a trusted network or behind a TLS-terminating load balancer. See
 * ./websocket/transport.ts; wss is the same over tls.
 * @module
 */
import { webSocketPlugin } from "./websocket/transport.ts";

/** The ws plugin. */
export default webSocketPlugin({
  name: "ws",
  viaName: "WS",
  layeredOn: "tcp",
  secure: false,
  defaultPort: 80,
  description: "SIP over WebSocket (RFC 7118) over TCP.",
});
