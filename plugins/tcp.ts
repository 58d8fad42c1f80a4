/**
 * The `tcp` transport plugin: SIP over TCP. This module is the definition the supervisor uses
 * (the config schema); the transport itself, which reader workers import, is ./tcp_worker.ts.
 * @module
 */
import { z } from "zod";
import type { PluginDefinition } from "../core/plugin/types.ts";
import { worker } from "./tcp_worker.ts";

const config = z.strictObject({
  read_buffer_size: z.int().min(1024).max(1048576).default(16384).describe(
    "Bytes a busy connection reads at most at once. Connections read into a small buffer " +
      "(`idle_read_buffer_size`) and switch to this size when a read fills it.",
  ),
  idle_read_buffer_size: z.int().min(512).max(1048576).default(2048).describe(
    "Bytes a quiet connection reads at most at once: what an idle connection keeps committed " +
      "for its pending read. A connection goes back to it after 16 reads that fit.",
  ),
});

/** The validated `[plugins.tcp]` table. */
export type TcpConfig = z.infer<typeof config>;

/** The tcp transport plugin. */
const plugin: PluginDefinition<TcpConfig> = {
  name: "tcp",
  kind: "transport",
  description: "SIP over TCP (RFC 3261 §18).",
  config,
  worker,
};

export default plugin;
