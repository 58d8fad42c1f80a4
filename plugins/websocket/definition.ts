/**
 * The ws and wss plugin definitions (supervisor side): the settings schema (zod, ./settings.ts),
 * the origin warning at start, and the worker hook of plugins/ws_worker.ts or
 * plugins/wss_worker.ts (./transport.ts).
 * @module
 */
import type { z } from "zod";
import type { PluginDefinition, PluginWorker } from "../../core/plugin/types.ts";
import { originWarnings } from "./origins.ts";
import { type WebSocketSettings, webSocketSettingsSchema } from "./settings.ts";
import type { WebSocketFlavour } from "./transport.ts";

/** A ws/wss plugin definition around its worker hook. */
export function webSocketPlugin(
  flavour: WebSocketFlavour,
  description: string,
  worker: PluginWorker<WebSocketSettings>,
): PluginDefinition<WebSocketSettings> {
  return {
    name: flavour.name,
    kind: "transport",
    description,
    layeredOn: flavour.layeredOn,
    config: webSocketSettingsSchema as unknown as z.ZodType<WebSocketSettings>,
    prepare: (config, context) => {
      // The tls plugin's prepare gets these listeners too (layeredOn): certificates come
      // from there; here only the origin warning.
      const own = context.listeners.filter((l) => l.transport === flavour.name);
      for (const warning of originWarnings(flavour.name, config, own)) {
        if (!context.reloading) context.logger.warn(warning);
      }
      return config;
    },
    worker,
  };
}
