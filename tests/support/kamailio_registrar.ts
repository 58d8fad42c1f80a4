/**
 * Runs Kamailio 5.6 as a registrar and home proxy behind an RFC 5626 (outbound) edge proxy:
 * the role sipedge's edge-proxy tests need on the far side. A REGISTER the edge forwards
 * carries the edge's `Path: <sip:TOKEN@EDGE;transport=tcp;lr;ob>`; `save("location")` stores
 * that Path with the contact (usrloc in memory only). A later initial request for the user
 * is looked up (`lookup("location")`): the Request-URI becomes the registered contact and the
 * stored Path becomes a `Route` header (and the next hop), so the request goes back through
 * the edge — over the flow the token names. The registrar record-routes, so in-dialog
 * requests come through it too (`loose_route()`).
 *
 * ```ts
 * await using registrar = await startKamailioRegistrar({ port: freePort() });
 * // send REGISTERs and INVITEs to registrar.uri
 * ```
 *
 * @module
 */

import {
  KAMAILIO_MODULES,
  type KamailioProcess,
  type KamailioTlsOptions,
  kamailioTlsParts,
  runKamailio,
} from "./kamailio_process.ts";
import { findOnPath } from "./sipp.ts";

/** Options for {@linkcode startKamailioRegistrar}. */
export interface StartKamailioRegistrarOptions {
  /** The TCP port to listen on, on 127.0.0.1. */
  port: number;
  /**
   * Listen for SIP over TLS too (on 127.0.0.1, with this certificate and key), and use TLS
   * for `transport=tls` next hops — e.g. a Path pointing at a TLS listener of the edge.
   */
  tls?: KamailioTlsOptions;
  /** Processes for each of UDP receivers and TCP workers (default 2). */
  children?: number;
  /**
   * The domain served (default `127.0.0.1`): initial requests (REGISTER included) whose
   * Request-URI host is anything else are answered `404 Not Our Domain`. Users are stored
   * without their domain (usrloc `use_domain` 0), so `alice@DOMAIN` is just `alice`.
   */
  domain?: string;
  /**
   * The registrar's `outbound_mode` (default 1). None needs the outbound module (that one is
   * for edge proxies). As measured with Kamailio 5.6.3, for a REGISTER with a `reg-id` and
   * `+sip.instance` contact: 0 — accepted whatever `Supported` says or whether the Path has
   * `;ob` (reg-id and instance still stored and echoed); only `Require: outbound` is refused
   * (420). 1 — as 0, but `Require: outbound` is accepted, the 200 to a REGISTER with
   * `Supported: outbound` carries `Supported: outbound` and `Require: outbound`, and one with
   * `Supported: outbound` that came through a proxy (two or more Vias) is refused with
   * `439 First Hop Lacks Outbound Support` unless the top Path URI has `;ob`. 2 — as 1, and
   * a REGISTER without `Supported: outbound` is refused (421).
   */
  outboundMode?: 0 | 1 | 2;
  /** Kamailio's `debug` level (default 2: info, which includes the per-request log lines). */
  debug?: number;
}

/** A running registrar, as returned by {@linkcode startKamailioRegistrar}. */
export interface KamailioRegistrar extends KamailioProcess {
  /** The TCP port. */
  readonly port: number;
  /** The TLS port, when listening for TLS. */
  readonly tlsPort?: number;
  /** The domain served. */
  readonly domain: string;
  /** `sip:127.0.0.1:PORT;transport=tcp`: where to send requests. */
  readonly uri: string;
}

/** Modules the registrar configuration loads (TLS adds tls.so). */
export const REGISTRAR_MODULES: readonly string[] = [
  "tm",
  "sl",
  "rr",
  "pv",
  "maxfwd",
  "textops",
  "siputils",
  "xlog",
  "usrloc",
  "registrar",
];

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Whether Kamailio and every module {@linkcode startKamailioRegistrar} loads are installed
 * (plus tls.so when `tls`): tests use `ignore: !kamailioRegistrarAvailable()`.
 *
 * @param tls also require the tls module
 * @returns true when the registrar can run here
 */
export function kamailioRegistrarAvailable(tls = false): boolean {
  const binary = findOnPath("kamailio") ??
    (isFile("/usr/sbin/kamailio") ? "/usr/sbin/kamailio" : undefined);
  if (binary === undefined) return false;
  const modules = tls ? [...REGISTRAR_MODULES, "tls"] : REGISTRAR_MODULES;
  return modules.every((m) => isFile(`${KAMAILIO_MODULES}${m}.so`));
}

/** Escapes a value for a double-quoted Kamailio script string. */
function quoted(value: string): string {
  if (/["\\\r\n]/.test(value)) throw new Error(`unsupported character in ${JSON.stringify(value)}`);
  return `"${value}"`;
}

/**
 * Builds the registrar's kamailio.cfg.
 *
 * @param options ports, TLS, process count, domain, outbound mode, log level
 * @param dir the folder the config (and tls.cfg) are written to
 * @returns the configuration text
 */
export function kamailioRegistrarConfig(
  options: StartKamailioRegistrarOptions,
  dir = ".",
): string {
  const children = options.children ?? 2;
  const domain = options.domain ?? "127.0.0.1";
  const { globals: tls, modules: tlsModule } = kamailioTlsParts(options.tls, dir);
  const modules = REGISTRAR_MODULES.map((m) => `loadmodule "${m}.so"\n`).join("");
  return `#!KAMAILIO
debug=${options.debug ?? 2}
log_stderror=yes
fork=yes
children=${children}
tcp_children=${children}
disable_tcp=no
auto_aliases=no
listen=tcp:127.0.0.1:${options.port}
${tls}mpath="${KAMAILIO_MODULES}"
${tlsModule}${modules}
# Location table in memory only.
modparam("usrloc", "db_mode", 0)
# RFC 3327: store the Path header fields with the contact; lookup() turns them into Route
# header fields and the next hop. path_mode 0: stored even without "Supported: path", never
# echoed in the 200. path_use_received 0: no ";received" NAT hint from the Path URI.
modparam("registrar", "use_path", 1)
modparam("registrar", "path_mode", 0)
modparam("registrar", "path_use_received", 0)
# RFC 5626 in the registrar (no outbound module needed: that one is for edge proxies).
modparam("registrar", "outbound_mode", ${options.outboundMode ?? 1})

request_route {
  xlog("L_INFO", "registrar: $rm $ru from $proto:$si:$sp (Call-ID $ci)\\n");
  if (!mf_process_maxfwd_header("10")) {
    sl_send_reply("483", "Too Many Hops");
    exit;
  }
  if (has_totag()) {
    # In dialog: follow the Record-Route set.
    if (loose_route()) {
      xlog("L_INFO", "registrar: in-dialog $rm to $ru via $du\\n");
      route(RELAY);
    }
    if (is_method("ACK")) {
      # ACK for a negative reply of ours.
      if (t_check_trans()) t_relay();
      exit;
    }
    sl_send_reply("404", "Not Here");
    exit;
  }
  if (is_method("CANCEL")) {
    if (t_check_trans()) route(RELAY);
    exit;
  }
  if (is_method("ACK")) exit;
  # Retransmissions of a transaction in progress are absorbed here.
  t_check_trans();
  if ($rd != ${quoted(domain)}) {
    sl_send_reply("404", "Not Our Domain");
    exit;
  }
  if (is_method("REGISTER")) {
    # save() replies itself (200 with the contacts, or the error).
    save("location");
    xlog("L_INFO", "registrar: saved $tu (Path: $hdr(Path))\\n");
    exit;
  }
  if ($rU == $null) {
    sl_send_reply("484", "Address Incomplete");
    exit;
  }
  # No preloaded routes on initial requests.
  remove_hf("Route");
  record_route();
  if (!lookup("location")) {
    $var(rc) = $rc;
    xlog("L_INFO", "registrar: $ru not found ($var(rc))\\n");
    switch ($var(rc)) {
      case -2:
        sl_send_reply("405", "Method Not Allowed");
        exit;
      default:
        sl_send_reply("404", "Not Found");
        exit;
    }
  }
  xlog("L_INFO", "registrar: $rm to $ru via $du\\n");
  route(RELAY);
}

route[RELAY] {
  if (!t_relay()) {
    xlog("L_ERR", "registrar: t_relay() failed for $rm $ru\\n");
    sl_reply_error();
  }
  exit;
}
`;
}

/**
 * Starts Kamailio as a registrar behind an edge proxy (see the module doc) and waits until it
 * listens (TCP, and TLS when asked).
 *
 * @param options ports, TLS, process count, domain, outbound mode, log level
 * @returns the running registrar
 */
export async function startKamailioRegistrar(
  options: StartKamailioRegistrarOptions,
): Promise<KamailioRegistrar> {
  const process = await runKamailio({
    config: (dir) => kamailioRegistrarConfig(options, dir),
    tls: options.tls,
    ports: [
      { port: options.port, name: "kamailio registrar" },
      ...(options.tls === undefined
        ? []
        : [{ port: options.tls.port, name: "kamailio registrar (tls)" }]),
    ],
  });
  return {
    pid: process.pid,
    output: () => process.output(),
    stop: () => process.stop(),
    [Symbol.asyncDispose]: () => process[Symbol.asyncDispose](),
    port: options.port,
    tlsPort: options.tls?.port,
    domain: options.domain ?? "127.0.0.1",
    uri: `sip:127.0.0.1:${options.port};transport=tcp`,
  };
}
