/**
 * The `tls` transport plugin's worker side: node:tls listeners and connects
 * (./tls/transport.ts); `reload` builds the new domain tables and returns the swap. Reader
 * workers import this module, not ./tls.ts (the schema, zod, and the supervisor's `prepare`:
 * see docs/decisions.md, "Memory at rest").
 * @module
 */
import type { PluginWorker } from "../core/plugin/types.ts";
import type { TlsConfig } from "./tls/settings.ts";
import { TlsState, TlsTransport } from "./tls/transport.ts";

/** The tls plugin's `worker` hook. */
export const worker: PluginWorker<TlsConfig> = (config, context) => {
  const transport = new TlsTransport(new TlsState(config), context.logger);
  if (context.workerId === 0) {
    for (const warning of transport.state.warnings) context.logger.warn(warning);
  }
  return {
    transport,
    reload: (next) => {
      const state = new TlsState(next);
      return () => transport.apply(state);
    },
  };
};
