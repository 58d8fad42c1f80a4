/**
 * A reader worker's plugin instances, and how a reload rebuilds them in two phases: `build`
 * makes every instance the new config needs without touching the running ones (a plugin whose
 * table is unchanged is kept, a changed one is reloaded through its `reload` hook or replaced
 * by a new `worker()` instance, a new one is created), and returns a {@link PluginBuild} that is
 * either committed (hooks' swaps applied, dropped instances closed) or aborted (new instances
 * closed), so a reload applies in every worker or in none.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ResolvedPlugin } from "../config/load.ts";
import { loadPluginWorker } from "./registry.ts";
import type { PluginKind, WorkerPlugin } from "./types.ts";

const log = getLogger(["sipedge", "plugin"]);

/** One plugin as a worker runs it. */
export interface LoadedPlugin {
  name: string;
  kind: PluginKind;
  moduleUrl: string | undefined;
  version: string | undefined;
  /** The prepared config it runs with (compared as JSON to find changes). */
  configJson: string;
  instance: WorkerPlugin;
}

/** What a reload does to one plugin. */
export type PluginChange = "kept" | "reloaded" | "replaced" | "added";

/** New plugin instances, built and not yet in force. */
export interface PluginBuild {
  /** Every plugin of the new config, in its order. */
  plugins: LoadedPlugin[];
  /** What happens to each plugin by name (removed ones are absent from `plugins`). */
  changes: Map<string, PluginChange | "removed">;
  /** Applies the reload hooks' swaps and closes the instances that are gone. Never throws. */
  commit(): void;
  /** Closes the instances made for this build; the running ones stay as they were. */
  abort(): Promise<void>;
}

/** Builds the plugins of `configs`, reusing `previous` (the running ones) where possible. */
export async function buildWorkerPlugins(
  configs: ResolvedPlugin[],
  previous: readonly LoadedPlugin[],
  workerId: number,
): Promise<PluginBuild> {
  const running = new Map(previous.map((p) => [p.name, p]));
  const plugins: LoadedPlugin[] = [];
  const changes = new Map<string, PluginChange | "removed">();
  const created: LoadedPlugin[] = [];
  const swaps: (() => void)[] = [];
  try {
    for (const resolved of configs) {
      const configJson = JSON.stringify(resolved.config);
      const old = running.get(resolved.name);
      const sameCode = old !== undefined && old.moduleUrl === resolved.moduleUrl &&
        old.version === resolved.version;
      if (sameCode && old.configJson === configJson) {
        plugins.push(old);
        changes.set(resolved.name, "kept");
        continue;
      }
      if (sameCode && old.instance.reload !== undefined) {
        swaps.push(
          await callHook(resolved.name, "reload", () => old.instance.reload!(resolved.config)),
        );
        plugins.push({ ...old, configJson });
        changes.set(resolved.name, "reloaded");
        continue;
      }
      // Built-in plugins: their worker module (no zod); user plugins: their definition.
      const worker = await loadPluginWorker({
        name: resolved.name,
        moduleUrl: resolved.moduleUrl,
        version: resolved.version,
      });
      const instance = await callHook(
        resolved.name,
        "worker",
        async () =>
          await worker?.(resolved.config, {
            workerId,
            logger: getLogger(["sipedge", "plugin", resolved.name]),
            transport: (name) => plugins.find((p) => p.name === name)?.instance.transport,
          }) ?? {},
      );
      const loaded: LoadedPlugin = {
        name: resolved.name,
        kind: resolved.kind,
        moduleUrl: resolved.moduleUrl,
        version: resolved.version,
        configJson,
        instance,
      };
      created.push(loaded);
      plugins.push(loaded);
      changes.set(resolved.name, old === undefined ? "added" : "replaced");
    }
  } catch (error) {
    await closeAll(created);
    throw error;
  }
  for (const name of running.keys()) if (!changes.has(name)) changes.set(name, "removed");
  return {
    plugins,
    changes,
    commit: () => {
      for (const swap of swaps) {
        try {
          swap();
        } catch (error) {
          // The hook broke its contract; the plugin keeps whatever state it is in.
          log.error("plugin reload swap failed: {error}", { error: (error as Error).message });
        }
      }
      const dropped = previous.filter((p) => {
        const change = changes.get(p.name);
        return change === "removed" || change === "replaced";
      });
      void closeAll(dropped);
    },
    abort: () => closeAll(created),
  };
}

/** Closes plugin instances; a failing `close` is logged, not thrown. */
export async function closeAll(plugins: readonly LoadedPlugin[]): Promise<void> {
  for (const p of plugins) {
    try {
      await p.instance.close?.();
    } catch (error) {
      log.error("plugin {name}: close() threw: {error}", {
        name: p.name,
        error: (error as Error).message,
      });
    }
  }
}

/** Runs a plugin hook; an exception becomes an error that names the plugin and the hook. */
async function callHook<T>(name: string, hook: string, run: () => T | Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw new Error(`plugin ${name}: ${hook}() threw: ${(error as Error).message}`);
  }
}
