/**
 * The `udp` transport plugin: SIP over UDP (RFC 3261 §18), one socket per UDP address in reader
 * worker 0 (see ./udp_worker.ts, the transport that reader workers import; this module is the
 * definition the supervisor uses: the config schema).
 * @module
 */
import { z } from "zod";
import type { PluginDefinition } from "../core/plugin/types.ts";
import { worker } from "./udp_worker.ts";

const config = z.strictObject({
  mtu: z.int().min(576).max(65507).default(1300).describe(
    "A request larger than this (bytes) that would go to a UDP destination goes over TCP " +
      "instead when the tcp transport is enabled (RFC 3261 §18.1.1); else it is sent over UDP " +
      "and counted (`udp_over_mtu`).",
  ),
  max_datagram_size: z.int().min(1024).max(65535).default(65535).describe(
    "Receive buffer: the largest datagram read whole (a larger one is cut by the kernel and " +
      "dropped as malformed). Messages over `limits.max_message_size` are dropped too.",
  ),
});

/** The validated `[plugins.udp]` table. */
export type UdpConfig = z.infer<typeof config>;

/** The udp transport plugin. */
const plugin: PluginDefinition<UdpConfig> = {
  name: "udp",
  kind: "transport",
  description: "SIP over UDP (RFC 3261 §18), bridged to the stream transports.",
  config,
  worker,
};

export default plugin;
