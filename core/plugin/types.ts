/**
 * The plugin API: what a plugin module exports and what sipedge calls. See docs/plugins.md.
 *
 * A plugin module's default export is a {@link PluginDefinition}. config.toml enables it with a
 * `[plugins.NAME]` table whose keys (other than `module`) are validated by the plugin's zod
 * schema in the supervisor; each reader worker then calls `worker(config, context)` once and
 * uses what it returns.
 * @module
 */
import type { z } from "zod";
import type { Logger } from "@logtape/logtape";
import type { SipHead } from "../sip/head.ts";
import type { SipUri } from "../sip/uri.ts";
import type { Destination } from "../transport/destination.ts";
import type { StreamTransport } from "../transport/types.ts";
import type { PolicySettings } from "../policy/settings.ts";
import type { FailureReason } from "../policy/failure.ts";

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
  /** Runs once in every reader worker, with the validated config. */
  worker?: (config: C, context: WorkerContext) => WorkerPlugin | Promise<WorkerPlugin>;
}

/** What a plugin hands to the worker that loaded it. */
export interface WorkerPlugin {
  /** A stream transport (transport plugins). */
  transport?: StreamTransport;
  /** A request router (router plugins); routers are asked in config order. */
  router?: Router;
  /** Policy settings the core applies (policy plugins: timeouts, limits, blacklist). */
  policy?: PolicySettings;
  /**
   * Called for every failed send (connect refused or timed out, send timeout, queue full,
   * blacklisted destination, …), after the core has reported it. A router can use it for
   * failover. Runs on the worker's thread; keep it cheap.
   */
  onSendFailure?: (event: SendFailureEvent) => void;
  /** Called when the worker stops. */
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
