/**
 * The `limits` policy plugin: write-queue limits per connection and for the whole process,
 * connection limits, and the largest message. The core enforces them (the process-wide ones
 * with shared counters, exact across workers); this plugin is their settings table. Always
 * enabled (defaults apply without a `[plugins.limits]` table).
 * @module
 */
import { z } from "zod";
import type { PluginDefinition } from "../core/plugin/types.ts";
import type { LimitSettings } from "../core/policy/settings.ts";

const config = z.strictObject({
  conn_wq_max: z.int().min(1024).max(1 << 30).default(32 * 1024).describe(
    "Bytes that may wait in sipedge's queue for one connection (beyond what the kernel took).",
  ),
  wq_max: z.int().min(1024).max(1 << 30).default(10 * 1024 * 1024).describe(
    "Bytes that may wait in sipedge's queues over all connections of all workers.",
  ),
  on_queue_full: z.enum(["close", "drop"]).default("close").describe(
    "Over a queue limit the send fails and is reported. `close` (default, as Kamailio and the seed design do) also closes the connection and blacklists the destination: a peer whose kernel buffer and our queue are both full has stopped reading. `drop` fails only the message.",
  ),
  max_connections: z.int().min(1).max(1_000_000).default(2048).describe(
    "Open connections per transport (inbound and outbound, all workers).",
  ),
  max_connections_per_ip: z.int().min(1).max(1_000_000).default(1024).describe(
    "Inbound connections from one source IP address (all workers).",
  ),
  max_message_size: z.int().min(1024).max(16 * 1024 * 1024).default(65535).describe(
    "Largest message (head + body) in bytes; a larger one gets 513 and the connection closes.",
  ),
});

/** The limits plugin. */
const plugin: PluginDefinition<LimitSettings> = {
  name: "limits",
  kind: "policy",
  description: "Write-queue, connection and message-size limits (always enabled).",
  config,
  worker: (cfg) => ({ policy: { limits: cfg } }),
};

export default plugin;
