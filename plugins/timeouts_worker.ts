/**
 * The `timeouts` policy plugin's worker side: hands the validated settings to the core. Reader
 * workers import this module, not ./timeouts.ts (the schema, zod: see docs/decisions.md, "Memory
 * at rest").
 * @module
 */
import type { PluginWorker } from "../core/plugin/types.ts";
import type { TimeoutSettings } from "../core/policy/settings.ts";

/** The timeouts plugin's `worker` hook. */
export const worker: PluginWorker<TimeoutSettings> = (cfg) => ({ policy: { timeouts: cfg } });
