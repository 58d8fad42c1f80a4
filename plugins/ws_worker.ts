/**
 * The `ws` transport plugin's worker side (./websocket/transport.ts over the tcp plugin's
 * sockets). Reader workers import this module, not ./ws.ts (the schema, zod: see
 * docs/decisions.md, "Memory at rest").
 * @module
 */
import { type WebSocketFlavour, webSocketWorker } from "./websocket/transport.ts";

/** What makes ws ws. */
export const flavour: WebSocketFlavour = {
  name: "ws",
  viaName: "WS",
  layeredOn: "tcp",
  secure: false,
  defaultPort: 80,
};

/** The ws plugin's `worker` hook. */
export const worker = webSocketWorker(flavour);
