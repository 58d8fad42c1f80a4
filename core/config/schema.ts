/**
 * The core settings table: one zod schema per config.toml section. The same schemas validate
 * the file, fill in defaults, describe every key (docs/configuration.md is generated from the
 * descriptions by `deno task config-docs`) and give the runtime view of the config.
 * Plugin sections (`[plugins.NAME]`) are validated by each plugin's own schema.
 * @module
 */
import { z } from "zod";
import { parseSipUri } from "../sip/uri.ts";
import { parseHostPort } from "../sip/uri.ts";

const DURATION = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Longest duration: what JavaScript timers can wait (2^31 - 1 ms, about 24.8 days). */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** A duration string (`500ms`, `10s`, `2m`, `1h`) -> milliseconds (0 allowed). */
export const durationSchema = z.string().regex(DURATION, "a duration like 500ms, 10s or 2m")
  .transform((text) => {
    const m = DURATION.exec(text)!;
    return Math.round(Number(m[1]) * UNIT_MS[m[2]]);
  })
  .refine((ms) => ms <= MAX_DURATION_MS, "at most 24 days (596h)");

/** A duration that must be more than zero (a timeout of 0 would fail everything at once). */
export const positiveDurationSchema = durationSchema.refine(
  (ms) => ms > 0,
  "more than 0 (a duration like 500ms, 10s or 2m)",
);

/** A `sip:` or `sips:` URI. */
export const sipUriSchema = z.string().refine(
  (text) => parseSipUri(text.trim()) !== undefined,
  "a sip: or sips: URI like sip:10.0.0.5:5060;transport=tcp",
);

/** A listen address `TRANSPORT:HOST:PORT` (`tcp:127.0.0.1:5060`, `tcp:[::1]:5060`). */
export interface ListenAddress {
  transport: string;
  hostname: string;
  port: number;
}

/** Parses `TRANSPORT:HOST:PORT`; undefined when malformed. Port 0 picks a free port. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const m = /^([a-z][a-z0-9_]*):(.+):([0-9]{1,5})$/.exec(text);
  if (m === null) return undefined;
  const port = Number(m[3]);
  const host = parseHostPort(m[2]);
  if (host === undefined || host.port !== 0 || port > 65535) return undefined;
  return { transport: m[1], hostname: host.host.replace(/^\[(.*)\]$/, "$1"), port };
}

const listenAddressSchema = z.string().refine(
  (text) => parseListenAddress(text) !== undefined,
  "TRANSPORT:HOST:PORT like tcp:127.0.0.1:5060 or tcp:[::1]:5060",
);

/** `[sipedge]`: process-wide settings. */
export const sipedgeSection = z.strictObject({
  workers: z.int().min(0).max(256).default(0).describe(
    "Reader workers (threads that read, parse, route and send). 0 = one per CPU.",
  ),
  log_level: z.enum(["trace", "debug", "info", "warning", "error", "fatal"]).default("info")
    .describe("Lowest log level written."),
  log_format: z.enum(["text", "json"]).default("text").describe(
    "Log line format: `text` (one readable line) or `json` (one JSON object per line, for log " +
      "shippers: @timestamp, level, logger, message, properties).",
  ),
  aliases: z.array(z.string().refine((h) => parseHostPort(h) !== undefined, "host or host:port"))
    .default([]).describe(
      "Other names of this proxy (host or host:port): a Request-URI or Route naming one is ours.",
    ),
  shutdown_timeout: durationSchema.default(5000).describe(
    "On SIGTERM/SIGINT: how long to wait for queued data to be written before exiting.",
  ),
  worker_hang_timeout: durationSchema.refine((ms) => ms >= 1000, "at least 1s").default(5000)
    .describe(
      "A reader worker whose event loop makes no progress this long is replaced (its " +
        "connections are lost; new connections go to its replacement). Progress is marked and " +
        "checked every fifth of it (between 100 ms and 1 s), so a hang is seen within it plus " +
        "two such periods.",
    ),
  on_stuck_worker: z.enum(["exit", "keep"]).default("exit").describe(
    "When a hung worker's thread cannot be stopped (JavaScript that never yields: Deno cannot " +
      "interrupt it, and its listening sockets keep taking a share of new connections): " +
      "`exit` stops sipedge gracefully with exit status 70 so that the service manager " +
      "(systemd `Restart=on-failure`, a container restart policy) starts it afresh; `keep` " +
      "goes on with the replacement worker and reports it (`sipedge_workers_stuck`).",
  ),
});

/** `[control]`: the control API. */
export const controlSection = z.strictObject({
  address: z.string().refine(
    (a) => a === "" || (parseHostPort(a)?.port ?? 0) > 0 || /:0$/.test(a),
    "HOST:PORT like 127.0.0.1:8060, or empty to turn the control API off",
  ).default("").describe(
    "Where the control API (JSON over HTTP) listens; keep it on loopback. Empty: off.",
  ),
  token: z.string().default("").describe(
    "When set, control API requests need `Authorization: Bearer <token>`.",
  ),
});

/** `[flows]`: RFC 5626 edge proxy (Path and Record-Route with flow tokens). */
export const flowsSection = z.strictObject({
  register: z.enum(["outbound", "all", "off"]).default("outbound").describe(
    "Which REGISTERs get a Path with a flow token, so that requests for the client come back " +
      "over the connection it registered on: `outbound` (default) those that ask for RFC 5626 " +
      "outbound (Contact with `reg-id` and `+sip.instance` or `;ob`, or `Supported: outbound`); " +
      "`all` every REGISTER that came in on a connection (clients behind NAT that do not do " +
      "outbound); `off` none (Path-less: requests for clients go by their Contact address).",
  ),
  record_route: z.boolean().default(true).describe(
    "Dialog-forming requests (INVITE, SUBSCRIBE, REFER) from or to a flow get a Record-Route " +
      "with the flow token, so in-dialog requests from the far end come back over the flow.",
  ),
  key: z.string().refine(
    (k) => k === "" || k.length >= 16,
    "at least 16 characters, or empty for a random key drawn at start",
  ).default("").describe(
    "Key of the flow tokens' HMAC-SHA-256. Empty: a random key drawn at start (tokens then " +
      "die with the process: clients re-register after a restart). Set the same key on every " +
      "instance only if they must accept each other's tokens.",
  ),
  key_grace: durationSchema.default(3_600_000).describe(
    "After a reload changes `key`, how long tokens made with the previous key are still " +
      "accepted (registrations made before the change refresh within their expiry).",
  ),
});

/** One `[[listen]]` entry. */
export const listenEntry = z.strictObject({
  address: listenAddressSchema.describe("Where to listen: TRANSPORT:HOST:PORT."),
  advertise: z.string().refine((h) => parseHostPort(h) !== undefined, "host or host:port")
    .optional().describe("host[:port] put in Via and Record-Route instead of the bound address."),
});

/** A `[plugins.NAME]` table: `module` plus the plugin's own keys. */
export const pluginTable = z.looseObject({
  module: z.string().min(1).optional().describe(
    "Path of a user plugin module (relative to config.toml); built-in plugins need none.",
  ),
});

/** The whole file, before plugin sections are validated by their plugins. */
export const configFile = z.strictObject({
  sipedge: sipedgeSection.default(sipedgeSection.parse({})),
  control: controlSection.default(controlSection.parse({})),
  flows: flowsSection.default(flowsSection.parse({})),
  listen: z.array(listenEntry).min(1, "at least one [[listen]] entry"),
  plugins: z.record(z.string().regex(/^[a-z][a-z0-9_]*$/, "a plugin name"), pluginTable)
    .default({}),
});

/** The validated file. */
export type ConfigFile = z.output<typeof configFile>;
