/**
 * The `limits` policy plugin: write-queue limits per connection and for the whole process,
 * connection limits, and the largest message. The core enforces them (the process-wide ones
 * with shared counters, exact across workers); this plugin is their settings table. Always
 * enabled (defaults apply without a `[plugins.limits]` table).
 * @module
 */
import { z } from "zod";
import type { PluginDefinition } from "../core/plugin/types.ts";
import { worker } from "./limits_worker.ts";
import type { LimitSettings } from "../core/policy/settings.ts";

const config = z.strictObject({
  conn_wq_max: z.int().min(1024).max(1 << 30).default(256 * 1024).describe(
    "Bytes that may wait in sipedge's queue for one connection: behind a write the kernel has not completed, or for a connect. A message alone always goes.",
  ),
  wq_max: z.int().min(1024).max(1 << 30).default(10 * 1024 * 1024).describe(
    "Bytes that may wait in sipedge's queues over all connections of all workers (direct writes on their way to the kernel are counted in the gauge but never refused).",
  ),
  on_queue_full: z.enum(["drop", "close"]).default("drop").describe(
    "Over a queue limit the send fails and is reported (503). `drop` (default) fails only that message: a burst on a busy upstream connection must not cost the connection, and a peer that really stopped reading is closed and blacklisted by send_timeout. `close` (Kamailio's behaviour) also closes the connection and blacklists the destination at once.",
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
  worker,
};

export default plugin;
