/**
 * The `timeouts` policy plugin: how long a connection may take to connect, to make write
 * progress, to finish a message, to stay idle, and the SIP-level liveness check (RFC 5626
 * CRLF keepalive) on connections sipedge opened. The core applies them; this plugin is their
 * settings table. Always enabled (defaults apply without a `[plugins.timeouts]` table).
 * @module
 */
import { z } from "zod";
import type { PluginDefinition } from "../core/plugin/types.ts";
import { worker } from "./timeouts_worker.ts";
import { durationSchema, positiveDurationSchema } from "../core/config/schema.ts";
import type { TimeoutSettings } from "../core/policy/settings.ts";

const config = z.strictObject({
  connect_timeout: positiveDurationSchema.default(10_000).describe(
    "An outbound connect (TCP handshake, and TLS handshake where there is one) must finish in this time; else: close, report, blacklist.",
  ),
  send_timeout: positiveDurationSchema.default(10_000).describe(
    "While data is queued, a write must make progress within this time; else: close, report, blacklist.",
  ),
  idle_timeout: positiveDurationSchema.default(120_000).describe(
    "A connection with no byte read or written for this long is closed (Kamailio's tcp_connection_lifetime).",
  ),
  message_read_timeout: positiveDurationSchema.default(20_000).describe(
    "A message must be read completely within this time once it has started (slowloris guard).",
  ),
  keepalive_interval: durationSchema.default(30_000).describe(
    "On connections sipedge opened: after this long with nothing read, send a CRLF keepalive ping (RFC 5626). `0s` turns liveness checks off.",
  ),
  keepalive_timeout: positiveDurationSchema.default(10_000).describe(
    "A ping must be answered (pong or any byte) within this time. If data was sent since the peer last spoke, it is a send timeout (close, report, blacklist); an idle connection is just closed.",
  ),
});

/** The timeouts plugin. */
const plugin: PluginDefinition<TimeoutSettings> = {
  name: "timeouts",
  kind: "policy",
  description: "Connect, send, read, idle and keepalive timeouts (always enabled).",
  config,
  worker,
};

export default plugin;
