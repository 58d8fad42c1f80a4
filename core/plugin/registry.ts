/**
 * Finds plugin modules: built-in plugins by name (literal imports, so `deno compile` embeds
 * them), user plugins by path. Supervisor and workers load plugins through this one module.
 *
 * A built-in plugin is two modules: its definition (`plugins/NAME.ts`: the zod schema,
 * `prepare`, `inspect`), which the supervisor loads, and its worker side
 * (`plugins/NAME_worker.ts`: the `worker` hook, no zod), which reader workers load, so that zod
 * and the schemas stay out of every worker isolate (docs/decisions.md, "Memory at rest"). A user
 * plugin is one module, loaded by both.
 * @module
 */
import type { PluginDefinition, PluginWorker } from "./types.ts";
import { describeError } from "./owners.ts";

type ModuleLoader = () => Promise<{ default: PluginDefinition<unknown> }>;
type WorkerModule = { worker: PluginWorker<unknown> };
type WorkerLoader = () => Promise<WorkerModule>;

/** Built-in plugins by name. */
export const BUILTIN_PLUGINS: Readonly<Record<string, ModuleLoader>> = {
  tcp: () => import("../../plugins/tcp.ts") as Promise<{ default: PluginDefinition<unknown> }>,
  tls: () => import("../../plugins/tls.ts") as Promise<{ default: PluginDefinition<unknown> }>,
  udp: () => import("../../plugins/udp.ts") as Promise<{ default: PluginDefinition<unknown> }>,
  ws: () => import("../../plugins/ws.ts") as Promise<{ default: PluginDefinition<unknown> }>,
  wss: () => import("../../plugins/wss.ts") as Promise<{ default: PluginDefinition<unknown> }>,
  static_router: () =>
    import("../../plugins/static_router.ts") as Promise<{ default: PluginDefinition<unknown> }>,
  timeouts: () =>
    import("../../plugins/timeouts.ts") as Promise<{ default: PluginDefinition<unknown> }>,
  limits: () =>
    import("../../plugins/limits.ts") as Promise<{ default: PluginDefinition<unknown> }>,
  blacklist: () =>
    import("../../plugins/blacklist.ts") as Promise<{ default: PluginDefinition<unknown> }>,
  flood_guard: () =>
    import("../../plugins/flood_guard.ts") as Promise<{ default: PluginDefinition<unknown> }>,
};

/**
 * The worker side of each built-in plugin, by name: the module whose `worker` is the same
 * function as its definition's `worker`. Reader workers load these, never the definitions.
 */
export const BUILTIN_WORKERS: Readonly<Record<string, WorkerLoader>> = {
  tcp: () => import("../../plugins/tcp_worker.ts") as Promise<WorkerModule>,
  tls: () => import("../../plugins/tls_worker.ts") as Promise<WorkerModule>,
  udp: () => import("../../plugins/udp_worker.ts") as Promise<WorkerModule>,
  ws: () => import("../../plugins/ws_worker.ts") as Promise<WorkerModule>,
  wss: () => import("../../plugins/wss_worker.ts") as Promise<WorkerModule>,
  static_router: () => import("../../plugins/static_router_worker.ts") as Promise<WorkerModule>,
  timeouts: () => import("../../plugins/timeouts_worker.ts") as Promise<WorkerModule>,
  limits: () => import("../../plugins/limits_worker.ts") as Promise<WorkerModule>,
  blacklist: () => import("../../plugins/blacklist_worker.ts") as Promise<WorkerModule>,
  flood_guard: () => import("../../plugins/flood_guard_worker.ts") as Promise<WorkerModule>,
};

/** Built-in policy plugins that are always enabled (defaults apply without a table). */
export const ALWAYS_ENABLED = ["timeouts", "limits"];

/** Where a plugin comes from: a built-in name, or a module URL (`file:///...`). */
export interface PluginSource {
  name: string;
  /** Module URL for user plugins; undefined for built-in plugins. */
  moduleUrl?: string;
  /**
   * Version of a user plugin's module file (its modification time). A new version is imported
   * afresh (the module URL gets `?v=VERSION`), so a reload picks up an edited plugin.
   */
  version?: string;
}

/** A user plugin module's version: its file's modification time, when it can be read. */
export async function moduleVersion(moduleUrl: string): Promise<string | undefined> {
  if (!moduleUrl.startsWith("file:")) return undefined;
  try {
    const mtime = (await Deno.stat(new URL(moduleUrl))).mtime;
    return mtime === null ? undefined : String(mtime.getTime());
  } catch {
    return undefined; // not readable (yet): the import reports it
  }
}

/**
 * The module a compiled binary lists its embedded user plugins in (name -> loader), written and
 * embedded by `deno task compile --plugin FILE` (scripts/compile.ts). Only a compiled binary
 * reads it: from source, user plugins are imported by path.
 */
export const EMBEDDED_PLUGINS_URL: string =
  new URL("../../dist/embedded_plugins.ts", import.meta.url).href;

let embeddedPlugins: Promise<Readonly<Record<string, ModuleLoader>>> | undefined;

/** The user plugins embedded in this binary (none when running from source). */
function embedded(): Promise<Readonly<Record<string, ModuleLoader>>> {
  return embeddedPlugins ??= Deno.build.standalone
    ? import(EMBEDDED_PLUGINS_URL).then((m) => m.default ?? {}, () => ({}))
    : Promise.resolve({});
}

/** Where plugins come from besides the built-in ones (tests set both). */
export interface LoadOptions {
  /** Whether this is a compiled binary (default `Deno.build.standalone`). */
  standalone?: boolean;
  /** User plugins embedded at build time (default: the binary's list). */
  embedded?: Readonly<Record<string, ModuleLoader>>;
}

/**
 * Imports a plugin module and checks that its default export is a plugin definition. In a
 * compiled binary, a user plugin is the one embedded under its name at build time (`module` is
 * not imported: the binary can only load what was embedded).
 */
export async function loadPlugin(
  source: PluginSource,
  options: LoadOptions = {},
): Promise<PluginDefinition<unknown>> {
  let mod: { default?: unknown };
  const standalone = options.standalone ?? Deno.build.standalone;
  const fromBuild = source.name in BUILTIN_PLUGINS
    ? undefined
    : (options.embedded ?? await embedded())[source.name];
  if (fromBuild !== undefined) {
    mod = await fromBuild();
  } else if (source.moduleUrl !== undefined && standalone) {
    const names = Object.keys(options.embedded ?? await embedded());
    throw new Error(
      `this sipedge binary has no plugin "${source.name}" embedded (embedded user plugins: ${
        names.join(", ") || "none"
      }): a compiled binary cannot import ${source.moduleUrl}; build it with ` +
        "`deno task compile --plugin FILE` (the table name must be the plugin's name) or run " +
        "sipedge from source (`deno task start`)",
    );
  } else if (source.moduleUrl === undefined) {
    const builtin = BUILTIN_PLUGINS[source.name];
    if (builtin === undefined) {
      throw new Error(
        `no built-in plugin named "${source.name}" (built-in: ${
          Object.keys(BUILTIN_PLUGINS).join(", ")
        }; set \`module\` for a user plugin)`,
      );
    }
    mod = await builtin();
  } else {
    const url = source.version === undefined
      ? source.moduleUrl
      : `${source.moduleUrl}?v=${source.version}`;
    try {
      mod = await import(url);
    } catch (error) {
      // A missing file, a syntax error, or the module threw while it was evaluated.
      throw new Error(`cannot import ${source.moduleUrl}: ${describeError(error)}`);
    }
  }
  const def = mod.default as Partial<PluginDefinition<unknown>> | undefined;
  if (
    def === undefined || typeof def !== "object" || typeof def.name !== "string" ||
    !["transport", "router", "policy"].includes(def.kind as string) ||
    typeof def.config?.safeParse !== "function"
  ) {
    throw new Error(
      `${source.moduleUrl ?? source.name}: the default export is not a plugin definition ` +
        "(needs name, kind and a zod config schema; see docs/plugins.md)",
    );
  }
  return def as PluginDefinition<unknown>;
}

/**
 * A plugin's `worker` hook, as a reader worker loads it: for a built-in plugin from its worker
 * module (no zod, no schema), for a user plugin from its definition ({@link loadPlugin}).
 */
export async function loadPluginWorker(
  source: PluginSource,
  options: LoadOptions = {},
): Promise<PluginWorker<unknown> | undefined> {
  const builtin = source.moduleUrl === undefined ? BUILTIN_WORKERS[source.name] : undefined;
  if (builtin !== undefined) return (await builtin()).worker;
  return (await loadPlugin(source, options)).worker;
}

/**
 * A plugin's operator-facing view (control API, reload reports): its definition's
 * `inspect(config)`, else its config. The definition is already imported (cached).
 */
export async function inspectPlugin(plugin: {
  name: string;
  moduleUrl?: string;
  version?: string;
  config: unknown;
}): Promise<unknown> {
  try {
    const def = await loadPlugin(plugin);
    return def.inspect === undefined ? plugin.config : def.inspect(plugin.config);
  } catch {
    return plugin.config;
  }
}
