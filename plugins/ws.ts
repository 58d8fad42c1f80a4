/**
 * The `ws` transport plugin: SIP over WebSocket (RFC 7118) on plain TCP, for browser
 * softphones on a trusted network or behind a TLS-terminating load balancer. See
 * ./websocket/transport.ts (the worker side: ./ws_worker.ts); wss is the same over tls.
 * @module
 */
import { webSocketPlugin } from "./websocket/definition.ts";
import { flavour, worker } from "./ws_worker.ts";

/** The ws plugin. */
export default webSocketPlugin(flavour, "SIP over WebSocket (RFC 7118) over TCP.", worker);
