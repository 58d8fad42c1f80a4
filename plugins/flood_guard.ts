/**
 * The `flood_guard` policy plugin: sources (IPv4 addresses, IPv6 prefixes) that send requests
 * faster than `rate` beyond a `burst` are banned for `ban`: their requests are dropped (never
 * forwarded, never answered), their open connections closed, their new connections closed at
 * accept (before any TLS handshake) and their UDP datagrams dropped. Counting is shared by all
 * workers (core/policy/source_table.ts); bans are kept by the supervisor and copied to every
 * worker (core/policy/ban_table.ts). This plugin is its settings table: without a
 * `[plugins.flood_guard]` table nothing is counted (bans an operator adds still apply).
 * @module
 */
import { z } from "zod";
import type { PluginDefinition } from "../core/plugin/types.ts";
import { worker } from "./flood_guard_worker.ts";
import type { FloodGuardSettings } from "../core/policy/settings.ts";
import { positiveDurationSchema } from "../core/config/schema.ts";
import { parseCidr } from "../core/policy/ip_prefix.ts";
import { ENTRY_BYTES, MAX_SOURCES, MIN_SOURCES } from "../core/policy/source_table.ts";

const trustedEntry = z.string().trim().superRefine((text, ctx) => {
  const range = parseCidr(text);
  if (typeof range === "string") ctx.addIssue({ code: "custom", message: range });
});

const config = z.strictObject({
  rate: z.number().gt(0).max(1_000_000).default(200).describe(
    "Requests per second a source may send, sustained (its token bucket's refill rate). A source is an IPv4 address or an IPv6 prefix (`ipv6_prefix`), counted over all workers, connections and transports. Decimals are allowed (0.5: one request every 2 s).",
  ),
  burst: z.number().min(1).max(10_000_000).default(400).describe(
    "Requests a source may send at once (the bucket's depth). A request that finds the bucket empty bans the source. At most 1000 × rate.",
  ),
  ban: positiveDurationSchema.default(60_000).describe(
    "How long a source over its bucket is banned: its requests are dropped unanswered, its connections closed, new ones closed at accept (before any TLS handshake), its UDP datagrams dropped.",
  ),
  trusted: z.array(trustedEntry).default([]).describe(
    "Addresses and CIDR ranges never limited (trunks, load balancers, monitoring): `192.0.2.10`, `198.51.100.0/24`, `2001:db8::/32`.",
  ),
  ipv6_prefix: z.int().min(1).max(128).default(64).describe(
    "IPv6 sources are counted and banned by this prefix (a /64 is usually one customer); IPv4 sources by address.",
  ),
  max_sources: z.int().min(MIN_SOURCES).max(MAX_SOURCES).default(65_536).describe(
    `Sources tracked at once, over all workers (bounds memory: ${ENTRY_BYTES} bytes each, the table rounded up to a power of two; when full, the least active unbanned source of a bucket makes room). The table is sized at start: a changed value applies at the next start.`,
  ),
  weights: z.record(z.string(), z.number().min(0))
    .default({}).describe(
      "Tokens one request of a method takes (others take 1), e.g. `{ REGISTER = 4, INVITE = 2 }`; 0 makes a method free (`{ ACK = 0 }`). At most `burst`.",
    ),
}).superRefine((c, ctx) => {
  if (c.burst / c.rate > 1000) {
    ctx.addIssue({ code: "custom", path: ["burst"], message: "at most 1000 × rate" });
  }
  for (const [method, weight] of Object.entries(c.weights)) {
    if (!/^[A-Z][A-Z-]*$/.test(method)) {
      ctx.addIssue({
        code: "custom",
        path: ["weights", method],
        message: `"${method}": a method name in capitals, like REGISTER`,
      });
    } else if (weight > c.burst) {
      ctx.addIssue({
        code: "custom",
        path: ["weights", method],
        message: `${weight} is more than burst (${c.burst}): no ${method} could ever pass`,
      });
    }
  }
});

/** The flood_guard plugin. */
const plugin: PluginDefinition<FloodGuardSettings> = {
  name: "flood_guard",
  kind: "policy",
  description: "Bans sources sending requests too fast (counted over all workers).",
  config: config as unknown as z.ZodType<FloodGuardSettings>,
  worker,
};

export default plugin;
