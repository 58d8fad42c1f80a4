/**
 * The `flood_guard` policy plugin's worker side: hands the validated settings to the core. Reader
 * workers import this module, not ./flood_guard.ts (the schema, zod: see docs/decisions.md, "Memory
 * at rest").
 * @module
 */
import type { PluginWorker } from "../core/plugin/types.ts";
import type { FloodGuardSettings } from "../core/policy/settings.ts";

/** The flood_guard plugin's `worker` hook. */
export const worker: PluginWorker<FloodGuardSettings> = (cfg) => ({ policy: { flood_guard: cfg } });
