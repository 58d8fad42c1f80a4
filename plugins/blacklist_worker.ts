/**
 * The `blacklist` policy plugin's worker side: hands the validated settings to the core. Reader
 * workers import this module, not ./blacklist.ts (the schema, zod: see docs/decisions.md, "Memory
 * at rest").
 * @module
 */
import type { PluginWorker } from "../core/plugin/types.ts";
import type { BlacklistSettings } from "../core/policy/settings.ts";

/** The blacklist plugin's `worker` hook. */
export const worker: PluginWorker<BlacklistSettings> = (cfg) => ({ policy: { blacklist: cfg } });
