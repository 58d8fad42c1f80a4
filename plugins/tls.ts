/**
 * The `tls` transport plugin: SIP over TLS (RFC 3261 §26, RFC 5630) with the same write path,
 * timeouts, limits and blacklist as tcp (they are in the core), per-domain certificates chosen
 * by listener and SNI name, client domains chosen by destination with host name verification
 * (RFC 5922), and live reload of domains and certificates.
 *
 * - `prepare` (supervisor): reads and checks every file, generates self-signed certificates for
 *   listeners without one (./tls/prepare.ts).
 * - `worker` (./tls_worker.ts, what reader workers import: no zod): node:tls listeners and
 *   connects (./tls/transport.ts); `reload` builds the new domain tables and returns the swap.
 * - `inspect`: the domains with their certificates' subject, SANs, expiry and fingerprint.
 * @module
 */
import type { z } from "zod";
import type { PluginDefinition } from "../core/plugin/types.ts";
import { formatListener } from "./tls/domains.ts";
import { prepareTls } from "./tls/prepare.ts";
import { type TlsConfig, tlsSettingsSchema } from "./tls/settings.ts";
import { worker } from "./tls_worker.ts";

/** The tls plugin. */
const plugin: PluginDefinition<TlsConfig> = {
  name: "tls",
  kind: "transport",
  description: "SIP over TLS (RFC 3261 §26, RFC 5630) with SNI domains and live reload.",
  // The prepared part is added by `prepare`; a user cannot set it (the table is strict).
  config: tlsSettingsSchema as unknown as z.ZodType<TlsConfig>,
  prepare: (config, context) => prepareTls(config, context),
  inspect: (config) => inspectTls(config),
  worker,
};

/** What the control API shows: domains and certificate facts, never keys. */
export function inspectTls(config: TlsConfig): unknown {
  const prepared = config.prepared;
  return {
    handshake_timeout_ms: config.handshake_timeout,
    server_domains: (prepared?.server ?? []).map((d) => ({
      name: d.name,
      listener: d.listener === undefined ? "*" : formatListener(d.listener),
      server_names: d.serverNames,
      generated: d.generated,
      verify_client: d.verifyClient,
      min_version: d.minVersion,
      certificate: {
        subject: d.info.subject,
        issuer: d.info.issuer,
        sans: d.info.sans,
        not_before: d.info.notBefore,
        not_after: d.info.notAfter,
        fingerprint_sha256: d.info.fingerprint,
      },
    })),
    client_domains: (prepared?.client ?? []).map((d) => ({
      name: d.name,
      match: d.match.length === 0 ? ["*"] : d.match,
      verify_server: d.verifyServer,
      verify_host_name: d.verifyHostName,
      ca_list: d.caList === undefined ? "system" : "configured",
      min_version: d.minVersion,
      certificate: d.info === undefined ? undefined : {
        subject: d.info.subject,
        sans: d.info.sans,
        not_after: d.info.notAfter,
        fingerprint_sha256: d.info.fingerprint,
      },
    })),
  };
}

export default plugin;
