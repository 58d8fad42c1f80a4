/**
 * The settings table of the `ws` and `wss` plugins (the same keys for both; each has its own
 * table, so ws and wss may differ). The supervisor validates with it; reader workers only
 * import its type (what they do with origins is in ./origins.ts, without zod).
 * @module
 */
import { z } from "zod";
import { durationSchema, positiveDurationSchema } from "../../core/config/schema.ts";

/** The `[plugins.ws]` / `[plugins.wss]` table. */
export const webSocketSettingsSchema = z.strictObject({
  paths: z.array(z.string().regex(/^\/[^\s?#]*$/, "a path like /ws")).default([]).describe(
    'Request paths accepted for the WebSocket upgrade (e.g. ["/ws"]); other paths get 404. Empty: any path.',
  ),
  allowed_origins: z.array(
    z.string().regex(/^[a-z][a-z0-9+.-]*:\/\/[^\s/]+$/i, "an origin like https://app.example.com"),
  ).default([]).describe(
    "Origin header values a browser may connect from (scheme://host[:port], as the browser sends it); others get 403. A client that sends no Origin (not a browser) is accepted. Empty: any origin (a warning is logged when a listener is not on loopback).",
  ),
  handshake_timeout: positiveDurationSchema.default(5_000).describe(
    "The HTTP upgrade (and, for wss, the TLS handshake before it: see [plugins.tls] handshake_timeout) must be done in this time; else the connection is closed.",
  ),
  ping_interval: durationSchema.default(30_000).describe(
    "After this long with nothing read on a connection (either direction), send a WebSocket ping. `0s`: no pings.",
  ),
  ping_timeout: positiveDurationSchema.default(10_000).describe(
    "A ping must be answered (pong or any frame) within this time; else the connection fails like a keepalive timeout.",
  ),
  connect_path: z.string().regex(/^\/[^\s#]*$/, "a path like /ws").default("/").describe(
    "Request path sipedge asks for when it connects to a WebSocket server (sip:...;transport=ws destinations).",
  ),
});

/** The validated table. */
export type WebSocketSettings = z.infer<typeof webSocketSettingsSchema>;
