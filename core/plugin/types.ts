/**
 * The plugin API: what a plugin module exports and what sipedge calls. See docs/plugins.md.
 *
 * A plugin module's default export is a {@link PluginDefinition}. config.toml enables it with a
 * `[plugins.NAME]` table whose keys (other than `module`) are validated by the plugin's zod
 * schema in the supervisor, then built by `prepare` (supervisor, optional: files, certificates);
 * each reader worker then calls `worker(config, context)` once and uses what it returns. A
 * reload runs the same steps with the new config and swaps the result in every worker, through
 * `WorkerPlugin.reload` when the plugin has one, else by a new `worker()` instance.
 * @module
 */
import type { z } from "zod";
import type { Logger } from "@logtape/logtape";
import type { SipHead } from "../sip/head.ts";
import type { SipUri } from "../sip/uri.ts";
import type { Destination } from "../transport/destination.ts";
import type { Transport } from "../transport/types.ts";
import type { PolicySettings } from "../policy/settings.ts";
import type { FailureReason } from "../policy/failure.ts";
import type { ListenAddress } from "../config/schema.ts";

/** What kind of plugin this is. */
export type PluginKind = "transport" | "router" | "policy";

/** The default export of a plugin module. */
export interface PluginDefinition<C = unknown> {
  /** Name; by convention the key of its `[plugins.NAME]` table. */
  name: string;
  kind: PluginKind;
  /** One line for `--help` style listings and the docs. */
  description: string;
  /** Schema of the plugin's config table (with defaults); errors name the key. */
  config: z.ZodType<C>;
  /**
   * A transport that runs over another transport plugin's sockets (`wss` over `tls`, `ws` over
   * `tcp`): that plugin is enabled too (with defaults when built in), its `prepare` gets this
   * plugin's listeners as well (tls makes their certificates), and it is built first in every
   * worker, where {@link WorkerContext.transport} gives it.
   */
  layeredOn?: string;
  /**
   * Builds what workers need from the validated config, in the supervisor, at start, on
   * `--check-config` and on every reload (before anything is swapped): read files, check
   * certificates, generate keys. Returns the config the workers get (plain data: it is
   * structured-cloned to every worker). Throw {@link PluginConfigError} to reject the config
   * with the key at fault; any other error rejects it naming the plugin's table.
   */
  prepare?: (config: C, context: PrepareContext) => C | Promise<C>;
  /**
   * What the control API shows for this plugin (`GET /plugins/NAME`), from the prepared
   * config, in the supervisor. Plain data. Default: the prepared config.
   */
  inspect?: (config: C) => unknown;
  /**
   * Runs once in every reader worker, with the prepared config. Workers import a user plugin's
   * module with everything it imports (zod included); for a built-in plugin they import only
   * the module this function comes from (plugins/NAME_worker.ts, no zod).
   */
  worker?: PluginWorker<C>;
}

/** A plugin's `worker` hook: builds the plugin's part of one reader worker. */
export type PluginWorker<C = unknown> = (
  config: C,
  context: WorkerContext,
) => WorkerPlugin<C> | Promise<WorkerPlugin<C>>;

/** What `prepare` gets. */
export interface PrepareContext {
  /** The listeners of this transport (transport plugins; empty for others), as configured. */
  listeners: ListenAddress[];
  /** Folder of the config file: relative paths in the plugin's table are relative to it. */
  configDir: string;
  /** Whether this is a reload (false at start and for `--check-config`). */
  reloading: boolean;
  /** Logger with the plugin's name as category. */
  logger: Logger;
}

/** A config problem found by a plugin's `prepare`: `path` is the key under its table. */
export class PluginConfigError extends Error {
  /** Key path under `[plugins.NAME]`, e.g. `["domains", 0, "certificate"]`. */
  readonly path: (string | number)[];
  constructor(path: (string | number)[], message: string) {
    super(message);
    this.name = "PluginConfigError";
    this.path = path;
  }
}

/** What a plugin hands to the worker that loaded it. */
export interface WorkerPlugin<C = unknown> {
  /** A stream or datagram transport (transport plugins). */
  transport?: Transport;
  /** A request router (router plugins); routers are asked in config order. */
  router?: Router;
  /** Policy settings the core applies (policy plugins: timeouts, limits, blacklist). */
  policy?: PolicySettings;
  /**
   * Called for every failed send (connect refused or timed out, send timeout, queue full,
   * blacklisted destination, ...), after the core has reported it. A router can use it for
   * failover. Runs on the worker's thread; keep it cheap.
   */
  onSendFailure?: (event: SendFailureEvent) => void;
  /**
   * Reload, phase one: build the state for a new config (same plugin, changed table) without
   * applying it, and return the function that applies it. sipedge calls that function in every
   * worker once all of them have built theirs (it must not fail), or drops it when any failed --
   * so a reload applies everywhere or nowhere. Open connections must keep working. Without
   * `reload`, a changed plugin is replaced by a new `worker()` instance and the old one closed.
   */
  reload?(config: C): (() => void) | Promise<() => void>;
  /** Called when the worker stops, or when a reload removes or replaces this instance. */
  close?: () => void | Promise<void>;
}

/** A failed send, as plugins see it. */
export interface SendFailureEvent {
  /** `transport:host:port`. */
  destination: string;
  reason: FailureReason;
  /** The connection that failed, or undefined (blacklisted, limit reached before connecting). */
  connectionId: number | undefined;
  /** Bytes and messages that were queued and are lost. */
  bytesLost: number;
  messagesLost: number;
  /** Whether the destination was blacklisted because of it. */
  blacklisted: boolean;
}

/** What a worker gives plugins. */
export interface WorkerContext {
  /** 0-based index of this reader worker. */
  workerId: number;
  /** Logger with the plugin's name as category. */
  logger: Logger;
  /**
   * The transport of a plugin built before this one in this worker (the one a layered
   * transport runs over), or undefined.
   */
  transport(name: string): Transport | undefined;
}

/** A request being routed. Runs on the hot path: keep it synchronous and cheap. */
export interface RouteRequest {
  head: SipHead;
  method: string;
  /** Parsed Request-URI (undefined for non-SIP schemes such as tel:). */
  uri: SipUri | undefined;
  /** Where the request came from. */
  source: { transport: string; hostname: string; port: number };
}

/** A router's decision. */
export type RouteResult =
  | { destination: Destination; recordRoute?: boolean }
  | { reply: { status: number; reason: string; headers?: string[] } };

/** Chooses where a request goes; undefined passes it to the next router (then: Request-URI). */
export interface Router {
  route(request: RouteRequest): RouteResult | undefined;
}
