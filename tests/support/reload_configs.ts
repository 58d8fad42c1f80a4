/**
 * Two valid configs that differ in every reloadable plugin table (routing, timeouts, limits,
 * blacklist), and an invalid one: what the reload-under-load test and benchmark switch between.
 *
 * @module
 */

/** Which config: `a`, `b`, or `invalid` (`conn_wq_max` is a string). */
export type ReloadVariant = "a" | "b" | "invalid";

/** Where the config makes sipedge listen, and how. */
export interface ReloadConfigOptions {
  /** SIP over TCP on 127.0.0.1. */
  sipPort: number;
  /** Control API on 127.0.0.1. */
  controlPort: number;
  workers?: number;
  logLevel?: string;
}

/** The config.toml text of `variant`. */
export function reloadConfig(variant: ReloadVariant, options: ReloadConfigOptions): string {
  const b = variant === "b";
  return `[sipedge]
workers = ${options.workers ?? 2}
log_level = "${options.logLevel ?? "info"}"

[control]
address = "127.0.0.1:${options.controlPort}"

[[listen]]
address = "tcp:127.0.0.1:${options.sipPort}"

[plugins.static_router]
record_route = ${b}

[plugins.timeouts]
send_timeout = "${b ? "8s" : "10s"}"
idle_timeout = "${b ? "90s" : "120s"}"
keepalive_interval = "${b ? "20s" : "30s"}"

[plugins.limits]
conn_wq_max = ${variant === "invalid" ? '"lots"' : b ? 524288 : 262144}
wq_max = ${b ? 20971520 : 10485760}

[plugins.blacklist]
expire = "${b ? "30s" : "60s"}"
`;
}
