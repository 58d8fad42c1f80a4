/**
 * The `wss` transport plugin: SIP over secure WebSocket (RFC 7118), what browser softphones
 * (JsSIP, SIP.js) use. It runs over the tls plugin's sockets: certificates come from
 * `[plugins.tls]` server domains (by listener and SNI name, reloaded live; a generated
 * self-signed one when no domain covers the listener). See ./websocket/transport.ts (the worker
 * side: ./wss_worker.ts).
 * @module
 */
import { webSocketPlugin } from "./websocket/definition.ts";
import { flavour, worker } from "./wss_worker.ts";

/** The wss plugin. */
export default webSocketPlugin(
  flavour,
  "SIP over secure WebSocket (RFC 7118) over TLS, certificates from [plugins.tls].",
  worker,
);
