/**
 * The `blacklist` policy plugin: destinations that failed (connect refused or timed out, send
 * timeout, queue overflow) are blocked for a while, so that sends to them fail at once
 * instead of queueing behind a dead peer. The table is kept by the supervisor and copied to
 * every worker; this plugin is its settings table. Without a `[plugins.blacklist]` table
 * nothing is blacklisted.
 * @module
 */
import { z } from "zod";
import type { PluginDefinition } from "../core/plugin/types.ts";
import { worker } from "./blacklist_worker.ts";
import type { BlacklistSettings } from "../core/policy/settings.ts";
import { BLACKLIST_REASONS } from "../core/policy/failure.ts";
import { positiveDurationSchema } from "../core/config/schema.ts";

const config = z.strictObject({
  expire: positiveDurationSchema.default(60_000).describe(
    "How long an entry blocks its destination.",
  ),
  max_entries: z.int().min(1).max(1_000_000).default(10_000).describe(
    "Size cap; when full, the entry closest to expiry makes room.",
  ),
  reasons: z.array(z.enum(BLACKLIST_REASONS)).default([...BLACKLIST_REASONS]).describe(
    `Failures that blacklist: ${BLACKLIST_REASONS.join(", ")}.`,
  ),
});

/** The blacklist plugin. */
const plugin: PluginDefinition<BlacklistSettings> = {
  name: "blacklist",
  kind: "policy",
  description: "Blocks failed destinations for a while; sends to them fail at once.",
  config,
  worker,
};

export default plugin;
