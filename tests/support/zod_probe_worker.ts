/**
 * Test helper (tests/worker_graph_test.ts): a Web Worker that builds the plugins it is sent the
 * way a reader worker does (core/plugin/worker_plugins.ts), closes them, and reports whether
 * zod was loaded in its isolate — zod 4 sets `globalThis.__zod_globalConfig` when it loads —
 * then imports a plugin definition and reports again (the probe sees zod when it is there).
 * @module
 */
/// <reference lib="deno.worker" />
import type { ResolvedPlugin } from "../../core/config/load.ts";
import { buildWorkerPlugins, closeAll } from "../../core/plugin/worker_plugins.ts";

const zodLoaded = () => "__zod_globalConfig" in globalThis;

self.onmessage = async (event: MessageEvent<{ plugins: ResolvedPlugin[] }>) => {
  try {
    const build = await buildWorkerPlugins(event.data.plugins, [], 0);
    build.commit();
    await closeAll(build.plugins);
    const built = build.plugins.map((p) => p.name);
    const afterBuild = zodLoaded();
    await import("../../plugins/tcp.ts");
    self.postMessage({ built, afterBuild, afterDefinition: zodLoaded() });
  } catch (error) {
    self.postMessage({ error: (error as Error).stack ?? String(error) });
  }
  self.close();
};
