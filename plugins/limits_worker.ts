/**
 * The `limits` policy plugin's worker side: hands the validated settings to the core. Reader
 * workers import this module, not ./limits.ts (the schema, zod: see docs/decisions.md, "Memory
 * at rest").
 * @module
 */
import type { PluginWorker } from "../core/plugin/types.ts";
import type { LimitSettings } from "../core/policy/settings.ts";

/** The limits plugin's `worker` hook. */
export const worker: PluginWorker<LimitSettings> = (cfg) => ({ policy: { limits: cfg } });
