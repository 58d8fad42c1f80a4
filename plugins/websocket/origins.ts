/**
 * What the ws and wss plugins make of their `allowed_origins`: the list the handshake compares
 * (worker side) and the start-time warning about accepting any origin (supervisor side). No
 * zod here: reader workers import this module, the schema stays in ./settings.ts.
 * @module
 */
import type { ListenAddress } from "../../core/config/schema.ts";
import type { WebSocketSettings } from "./settings.ts";

/** Lower-cased origins, as the handshake compares them. */
export function normalizedOrigins(settings: WebSocketSettings): string[] {
  return settings.allowed_origins.map((o) => o.toLowerCase());
}

/** Warnings for a configuration: any origin accepted on a listener other than loopback. */
export function originWarnings(
  name: string,
  settings: WebSocketSettings,
  listeners: readonly ListenAddress[],
): string[] {
  if (settings.allowed_origins.length > 0) return [];
  return listeners.filter((l) => !isLoopback(l.hostname)).map((l) =>
    `${name} listener ${l.hostname}:${l.port} accepts WebSocket connections from any web ` +
    `origin: set [plugins.${name}] allowed_origins to the origins of your web app`
  );
}

function isLoopback(host: string): boolean {
  return host === "::1" || host === "localhost" || /^127\./.test(host);
}
