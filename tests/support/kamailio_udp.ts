/**
 * Kamailio 5.6 as a stateless forward proxy listening on UDP (and TCP on the same port, which
 * {@linkcode runKamailio} waits for: Kamailio binds every listener before it forks, so once
 * the TCP port listens the UDP receivers are bound too). Companion of kamailio_process.ts,
 * whose generated config listens on TCP only.
 *
 * @module
 */
import { KAMAILIO_MODULES, type KamailioProcess, runKamailio } from "./kamailio_process.ts";
import { findOnPath } from "./sipp.ts";

/** Options for {@linkcode startKamailioUdp}. */
export interface StartKamailioUdpOptions {
  /** The port to listen on, on 127.0.0.1, for UDP and TCP. */
  port: number;
  /** The destination for every request, e.g. `sip:127.0.0.1:5070;transport=udp`. */
  forward: string;
  /** UDP receiver processes (`children`) and TCP workers (default 2, as sipedge's workers). */
  children?: number;
}

/** The Kamailio binary, or undefined when it is not installed. */
export function findKamailio(): string | undefined {
  const found = findOnPath("kamailio");
  if (found !== undefined) return found;
  try {
    return Deno.statSync("/usr/sbin/kamailio").isFile ? "/usr/sbin/kamailio" : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A stateless-forwarding kamailio.cfg listening on `udp:` and `tcp:127.0.0.1:PORT`.
 *
 * @param options port, destination and process count
 * @returns the configuration text
 */
export function kamailioUdpConfig(options: StartKamailioUdpOptions): string {
  const children = options.children ?? 2;
  return `#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=${children}
tcp_children=${children}
disable_tcp=no
auto_aliases=no
listen=udp:127.0.0.1:${options.port}
listen=tcp:127.0.0.1:${options.port}
mpath="${KAMAILIO_MODULES}"
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
request_route {
  if (!mf_process_maxfwd_header("10")) {
    sl_send_reply("483", "Too Many Hops");
    exit;
  }
  $du = "${options.forward}";
  forward();
  exit;
}
`;
}

/**
 * Starts Kamailio with {@linkcode kamailioUdpConfig} and waits until it listens.
 *
 * @param options port, destination and process count
 * @returns the running Kamailio
 */
export function startKamailioUdp(options: StartKamailioUdpOptions): Promise<KamailioProcess> {
  return runKamailio({
    config: () => kamailioUdpConfig(options),
    ports: [{ port: options.port, name: "kamailio" }],
  });
}
