/**
 * Loads config.toml: parse (smol-toml) -> validate the core sections -> load every enabled
 * plugin and validate its section with the plugin's schema -> apply command-line overrides ->
 * a {@link ResolvedConfig} that can be sent to workers as is. Every problem is collected and
 * reported at once as `FILE:LINE: KEY: what was expected`; nothing starts half-configured.
 * @module
 */
import { parse as parseToml, TomlError } from "smol-toml";
import type { z } from "zod";
import { configFile, type ListenAddress, parseListenAddress } from "./schema.ts";
import { locateKey } from "./locate.ts";
import { ALWAYS_ENABLED, BUILTIN_PLUGINS, loadPlugin, moduleVersion } from "../plugin/registry.ts";
import { PluginConfigError, type PluginDefinition, type PluginKind } from "../plugin/types.ts";
import { getLogger } from "@logtape/logtape";
import { parseHostPort } from "../sip/uri.ts";
import type { FlowKey } from "../proxy/flow_token.ts";

/** A config that failed validation; `errors` has one line per problem. */
export class ConfigError extends Error {
  readonly errors: string[];
  constructor(errors: string[]) {
    super(errors.join("\n"));
    this.name = "ConfigError";
    this.errors = errors;
  }
}

/** Command-line settings that replace what config.toml says. */
export interface ConfigOverrides {
  /** `--listen` addresses: replace every `[[listen]]` entry. */
  listen?: string[];
  /** `--forward URI`: every request to this upstream (static_router default route). */
  forward?: string;
  /** `--workers N`. */
  workers?: number;
  /** `--control HOST:PORT` (or "" for off). */
  control?: string;
}

/** Flow token keys and the instance they name (see core/proxy/flow_token.ts). */
export interface FlowSecrets {
  instance: number;
  keys: FlowKey[];
}

/** A listener, resolved. */
export interface ResolvedListen extends ListenAddress {
  /** host and port to put in Via / Record-Route, when not the bound address. */
  advertise?: { host: string; port: number };
}

/** An enabled plugin, resolved. */
export interface ResolvedPlugin {
  name: string;
  kind: PluginKind;
  /** Module URL for user plugins; undefined for built-in ones. */
  moduleUrl?: string;
  /** The user plugin module's version (file modification time): a reload re-imports a new one. */
  version?: string;
  /** The plugin's validated config (defaults filled in). */
  config: unknown;
  /** The transport plugin this one runs over (wss: tls), built before it in every worker. */
  layeredOn?: string;
}

/** The validated config; plain data (structured-cloneable) so it can go to workers. */
export interface ResolvedConfig {
  /** The file it came from, or `(built-in defaults)`. */
  source: string;
  sipedge: z.output<typeof configFile>["sipedge"];
  control: z.output<typeof configFile>["control"];
  flows: z.output<typeof configFile>["flows"];
  /**
   * The flow token keys in force and this process's instance number: drawn and kept by the
   * supervisor (a random key when `flows.key` is empty; the previous key during its grace
   * period), absent in a config that has not been through it.
   */
  flowSecrets?: FlowSecrets;
  listen: ResolvedListen[];
  /** In config order; transports first. */
  plugins: ResolvedPlugin[];
}

/** What is used when there is no config file: tcp on 127.0.0.1:5060, route by Request-URI. */
export const DEFAULT_CONFIG_TOML = `[[listen]]
address = "tcp:127.0.0.1:5060"

[plugins.tcp]

[plugins.static_router]
`;

/**
 * Loads and validates a config file (or, with `path` undefined, the built-in defaults).
 * Throws {@link ConfigError} listing every problem.
 */
export async function loadConfig(
  path: string | undefined,
  overrides: ConfigOverrides = {},
  options: ResolveOptions = {},
): Promise<ResolvedConfig> {
  let text = DEFAULT_CONFIG_TOML;
  const source = path ?? "(built-in defaults)";
  if (path !== undefined) {
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      throw new ConfigError([`${path}: cannot read: ${(error as Error).message}`]);
    }
  }
  return await resolveConfig(text, source, overrides, path, options);
}

/** How a config is being resolved. */
export interface ResolveOptions {
  /** A reload of the running config (plugins' `prepare` may keep what did not change). */
  reloading?: boolean;
}

/** Validates config text; `source` names it in errors, `path` resolves plugin modules. */
export async function resolveConfig(
  text: string,
  source: string,
  overrides: ConfigOverrides = {},
  path?: string,
  options: ResolveOptions = {},
): Promise<ResolvedConfig> {
  let raw: Record<string, unknown>;
  try {
    raw = parseToml(text) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof TomlError) {
      const firstLine = error.message.split("\n")[0];
      throw new ConfigError([`${source}:${error.line}:${error.column}: TOML syntax: ${firstLine}`]);
    }
    throw error;
  }
  const errors: string[] = [];
  const where = (keyPath: (string | number)[]) => {
    const line = locateKey(text, keyPath);
    return line === undefined ? source : `${source}:${line}`;
  };
  const report = (keyPath: (string | number)[], message: string) => {
    errors.push(`${where(keyPath)}: ${formatPath(keyPath) || "(top level)"}: ${message}`);
  };
  const collect = (issues: z.core.$ZodIssue[], prefix: (string | number)[]) => {
    for (const issue of issues) {
      const keyPath = [...prefix, ...issue.path.map((p) => p as string | number)];
      if (issue.code === "unrecognized_keys") {
        for (const key of issue.keys) report([...keyPath, key], "unknown key");
      } else {
        report(keyPath, describeIssue(issue));
      }
    }
  };

  applyOverrides(raw, overrides);
  const parsed = configFile.safeParse(raw);
  if (!parsed.success) collect(parsed.error.issues, []);
  // Plugin tables and listen addresses are checked even when other sections are invalid, so
  // that one run shows every error.
  const pluginTables = parsed.success ? parsed.data.plugins : validTables(raw.plugins);
  const listen: ResolvedListen[] = [];
  const rawListen = Array.isArray(raw.listen) ? raw.listen as Record<string, unknown>[] : [];
  for (const entry of rawListen) {
    const address = typeof entry?.address === "string"
      ? parseListenAddress(entry.address)
      : undefined;
    const advertise = typeof entry?.advertise === "string"
      ? parseHostPort(entry.advertise)
      : undefined;
    listen.push(
      address === undefined ? INVALID_LISTEN : advertise ? { ...address, advertise } : address,
    );
  }

  // Built-in transports named by a listener, and the timeouts and limits policies, are
  // enabled even without a [plugins.X] table.
  for (const name of [...listen.map((l) => l.transport), ...ALWAYS_ENABLED]) {
    if (!(name in pluginTables) && name in BUILTIN_PLUGINS) pluginTables[name] = {};
  }

  /** Plugins whose table or module has errors (already reported: no follow-on errors). */
  const failed = new Set<string>();
  const baseUrl = path === undefined ? new URL(`file://${Deno.cwd()}/`) : toFileUrl(path);
  // Load and validate every plugin first: a transport layered on another (wss on tls) enables
  // it, and the base's `prepare` needs the layered transport's listeners too.
  const validated: (ResolvedPlugin & { def: PluginDefinition<unknown> })[] = [];
  const queue = Object.keys(pluginTables);
  for (let i = 0; i < queue.length; i++) {
    const name = queue[i];
    const { module, ...settings } = pluginTables[name];
    const moduleUrl = module === undefined ? undefined : new URL(module, baseUrl).href;
    const version = moduleUrl === undefined ? undefined : await moduleVersion(moduleUrl);
    let def;
    try {
      def = await loadPlugin({ name, moduleUrl, version });
    } catch (error) {
      report(["plugins", name, ...(module ? ["module"] : [])], (error as Error).message);
      failed.add(name);
      continue;
    }
    const base = def.layeredOn;
    if (base !== undefined && !(base in pluginTables)) {
      if (base in BUILTIN_PLUGINS) {
        pluginTables[base] = {};
        queue.push(base);
      } else {
        report(
          ["plugins", name],
          `needs the ${base} transport plugin: add a [plugins.${base}] table`,
        );
        failed.add(name);
        continue;
      }
    }
    const result = def.config.safeParse(settings);
    if (!result.success) {
      collect(result.error.issues, ["plugins", name]);
      failed.add(name);
      continue;
    }
    validated.push({ name, kind: def.kind, moduleUrl, version, config: result.data, def });
  }

  const plugins: ResolvedPlugin[] = [];
  for (const { def, ...plugin } of validated) {
    const name = plugin.name;
    // A transport's listeners, and those of the transports layered on it.
    const served = new Set([
      name,
      ...validated.filter((v) => v.def.layeredOn === name).map((v) => v.name),
    ]);
    if (def.prepare !== undefined) {
      try {
        plugin.config = await def.prepare(plugin.config, {
          listeners: listen.filter((l) => served.has(l.transport)),
          configDir: new URL(".", baseUrl).pathname,
          reloading: options.reloading ?? false,
          logger: getLogger(["sipedge", "plugin", name]),
        });
      } catch (error) {
        const keyPath = error instanceof PluginConfigError ? error.path : [];
        report(["plugins", name, ...keyPath], (error as Error).message);
        failed.add(name);
        continue;
      }
    }
    if (def.layeredOn !== undefined && failed.has(def.layeredOn)) {
      failed.add(name);
      continue;
    }
    plugins.push({
      ...plugin,
      ...(def.layeredOn === undefined ? {} : { layeredOn: def.layeredOn }),
    });
  }
  // Transports first, a layered transport after the one it runs over (workers build them in
  // this order), then routers and policies.
  const rank = (p: ResolvedPlugin) =>
    p.kind !== "transport" ? 2 : p.layeredOn === undefined ? 0 : 1;
  plugins.sort((a, b) => rank(a) - rank(b));

  const transports = new Set(plugins.filter((p) => p.kind === "transport").map((p) => p.name));
  listen.forEach((l, i) => {
    if (l !== INVALID_LISTEN && !transports.has(l.transport) && !failed.has(l.transport)) {
      report(
        ["listen", i, "address"],
        `transport "${l.transport}" is not enabled (add a [plugins.${l.transport}] table)`,
      );
    }
  });
  if (errors.length > 0 || !parsed.success) throw new ConfigError(sortByLine(errors, source));
  const file = parsed.data;
  if (overrides.workers !== undefined) file.sipedge.workers = overrides.workers;
  if (overrides.control !== undefined) file.control.address = overrides.control;
  const { sipedge, control, flows } = file;
  return { source, sipedge, control, flows, listen, plugins };
}

/** Orders `source:LINE: ...` messages by line (messages without a line first). */
function sortByLine(errors: string[], source: string): string[] {
  const line = (e: string) => Number(/^:(\d+):/.exec(e.slice(source.length))?.[1] ?? 0);
  return errors.map((e, i) => ({ e, i })).sort((a, b) => line(a.e) - line(b.e) || a.i - b.i)
    .map(({ e }) => e);
}

/** Stands for a listen entry whose address is invalid (already reported by the schema). */
const INVALID_LISTEN: ResolvedListen = { transport: "", hostname: "", port: 0 };

/** The `[plugins.X]` tables that are tables, when the file as a whole did not validate. */
function validTables(value: unknown): Record<string, { module?: string }> {
  const out: Record<string, { module?: string }> = {};
  if (typeof value !== "object" || value === null) return out;
  for (const [name, table] of Object.entries(value)) {
    if (typeof table === "object" && table !== null && !Array.isArray(table)) {
      const { module } = table as { module?: unknown };
      if (module === undefined || typeof module === "string") out[name] = table;
    }
  }
  return out;
}

/** Command-line values are checked by the CLI before they get here. */
function applyOverrides(raw: Record<string, unknown>, overrides: ConfigOverrides): void {
  if (overrides.listen !== undefined && overrides.listen.length > 0) {
    raw.listen = overrides.listen.map((address) => ({ address }));
  }
  if (overrides.forward !== undefined) {
    const plugins = (raw.plugins ??= {}) as Record<string, Record<string, unknown>>;
    const current = plugins.static_router ?? {};
    plugins.static_router = { ...current, default_route: overrides.forward, routes: [] };
  }
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type") {
    return issue.message.endsWith("received undefined")
      ? `missing (expected ${issue.expected})`
      : issue.message.replace(/^Invalid input: /, "");
  }
  return issue.message.replace(/^Invalid option: /, "");
}

function formatPath(path: (string | number)[]): string {
  return path.map((p, i) => typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`).join("");
}

function toFileUrl(path: string): URL {
  return new URL(path.startsWith("/") ? `file://${path}` : `file://${Deno.cwd()}/${path}`);
}
