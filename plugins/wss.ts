/**
 * The `wss` transport plugin: SIP over secure WebSocket (RFC 7118), what browser softphones
 * (JsSIP, SIP.js) use. It runs over the tls plugin's sockets: certificates come from
 * `[plugins.tls]` server domains (by listener and SNI name, reloaded live; a generated
 * self-signed one when no domain covers the listener). See ./websocket/transport.ts.
 * @module
 */
import { webSocketPlugin } from "./websocket/transport.ts";

/** The wss plugin. */
export default webSocketPlugin({
  name: "wss",
  viaName: "WSS",
  layeredOn: "tls",
  secure: true,
  defaultPort: 443,
  description: "SIP over secure WebSocket (RFC 7118) over TLS, certificates from [plugins.tls].",
});
