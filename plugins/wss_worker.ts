/**
 * The `wss` transport plugin's worker side (./websocket/transport.ts over the tls plugin's
 * sockets). Reader workers import this module, not ./wss.ts (the schema, zod: see
 * docs/decisions.md, "Memory at rest").
 * @module
 */
import { type WebSocketFlavour, webSocketWorker } from "./websocket/transport.ts";

/** What makes wss wss. */
export const flavour: WebSocketFlavour = {
  name: "wss",
  viaName: "WSS",
  layeredOn: "tls",
  secure: true,
  defaultPort: 443,
};

/** The wss plugin's `worker` hook. */
export const worker = webSocketWorker(flavour);
