/**
 * Where a message goes: transport, host and port, taken from a SIP URI (RFC 3263 §4.1 without
 * NAPTR/SRV: the `transport` parameter, else `tls` for sips:, else `tcp` -- sipedge carries no
 * UDP, so the RFC's UDP default becomes TCP). Host names are resolved by the system resolver
 * (A/AAAA, /etc/hosts) when connecting.
 * @module
 */
import { bareHost, parseSipUri, type SipUri } from "../sip/uri.ts";

/** A next hop. */
export interface Destination {
  /** Transport plugin name: `tcp`, `tls`. */
  transport: string;
  /** Host name or IP (no IPv6 brackets). */
  host: string;
  /** Port; 0 means the transport's default (5060 / 5061). */
  port: number;
}

/** The destination a URI names; `maddr` wins over the host part (RFC 3261 §19.1.1). */
export function destinationOf(uri: SipUri): Destination {
  const param = uri.params.get("transport")?.toLowerCase();
  const transport = param ?? (uri.scheme === "sips" ? "tls" : "tcp");
  const host = uri.params.get("maddr") ?? uri.host;
  return { transport, host: bareHost(host.toLowerCase()), port: uri.port };
}

/** Parses a destination URI (config values, `--forward`); throws a readable error. */
export function parseDestination(text: string): Destination {
  const uri = parseSipUri(text.trim());
  if (uri === undefined) throw new Error(`not a sip: or sips: URI: ${JSON.stringify(text)}`);
  return destinationOf(uri);
}

/** `tcp:127.0.0.1:5070` -- the key connections are reused by. */
export function destinationKey(transport: string, host: string, port: number): string {
  return `${transport}:${host}:${port}`;
}
