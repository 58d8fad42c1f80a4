/**
 * The `[plugins.tls]` table (zod: validation, defaults, the docs table) and the prepared
 * config the supervisor hands to workers: PEM text instead of file names, generated
 * certificates for listeners without one, certificate facts for the control API.
 * @module
 */
import { z } from "zod";
import { positiveDurationSchema } from "../../core/config/schema.ts";

const TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"] as const;

/**
 * The cipher suites the runtime's TLS stack (rustls) negotiates, by their OpenSSL names (the
 * names connections report). All are AEAD with forward secrecy.
 */
export const SUPPORTED_CIPHERS: readonly string[] = [
  "TLS_AES_256_GCM_SHA384",
  "TLS_AES_128_GCM_SHA256",
  "TLS_CHACHA20_POLY1305_SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-RSA-CHACHA20-POLY1305",
];

const ciphersSchema = z.string().min(1).refine(
  (text) => text.split(":").every((name) => SUPPORTED_CIPHERS.includes(name.trim())),
  `colon-separated cipher suites out of ${SUPPORTED_CIPHERS.join(", ")}`,
).optional().describe(
  "Allowed cipher suites, colon-separated OpenSSL names (TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256). The runtime's TLS stack offers only AEAD suites and takes no list, so a connection that negotiated a suite not listed is closed right after its handshake. Absent: every suite the runtime offers.",
);

/** A minimum TLS version. */
export type TlsVersion = (typeof TLS_VERSIONS)[number];

/** Client certificate verification on a server domain. */
export type VerifyClient = "off" | "optional" | "required";

/** A file path (optional ones are described on the optional wrapper: the docs read it there). */
const path = (what: string) => z.string().min(1, "a file path").describe(what);
const optionalPath = (what: string) => z.string().min(1, "a file path").optional().describe(what);

/** `[[plugins.tls.server_domains]]`: certificates sipedge presents to TLS clients. */
export const serverDomainSchema = z.strictObject({
  name: z.string().min(1).describe("Name of the domain (logs, control API)."),
  listener: z.string().regex(/^(\*|\[[0-9a-fA-F:.]+\]:[0-9]{1,5}|[^:\[\]]+:[0-9]{1,5})$/, {
    message: 'HOST:PORT of a tls [[listen]] entry ("[::1]:5061" for IPv6), or "*"',
  }).default("*").describe(
    'The tls listener (HOST:PORT as in its [[listen]] address) this domain serves, or "*" for every tls listener.',
  ),
  server_names: z.array(
    z.string().regex(
      /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/,
      'a host name like "sip.example.com" or a wildcard like "*.example.com"',
    ),
  ).default([]).describe(
    'SNI names this domain answers ("sip.example.com", "*.example.com" for one label). Empty: the default domain of its listener(s), for clients without SNI or with a name no domain has; without one, the first domain of the listener is the default.',
  ),
  certificate: path(
    "Certificate chain (PEM; the server certificate first). Relative to config.toml.",
  ),
  private_key: path("Private key of the certificate (PEM, unencrypted)."),
  ca_list: optionalPath(
    "CA certificates (PEM) that client certificates must chain to (needed when verify_client is not off).",
  ),
  verify_client: z.enum(["off", "optional", "required"]).default("off").describe(
    "Client certificates: off (not asked for), optional (asked for; one that is sent must verify), required (a client without a valid one is refused).",
  ),
  min_version: z.enum(TLS_VERSIONS).default("TLSv1.2").describe("Lowest TLS version accepted."),
  ciphers: ciphersSchema,
});

/** `[[plugins.tls.client_domains]]`: how sipedge connects to TLS servers. */
export const clientDomainSchema = z.strictObject({
  name: z.string().min(1).describe("Name of the domain (logs, control API)."),
  match: z.array(
    z.string().regex(
      /^(\*|(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?|[0-9a-fA-F:.]+|\[[0-9a-fA-F:.]+\]:[0-9]{1,5})$/,
      'a host name, "*.example.com", an address, HOST:PORT ("[::1]:5061" for IPv6) or "*"',
    ),
  ).default([]).describe(
    'Destinations this domain is for: host name or address ("sip.example.com", "10.0.0.5"), with a port ("10.0.0.5:5061"), "*.example.com", or "*". Empty or "*": the default for destinations no other domain matches.',
  ),
  ca_list: optionalPath(
    "CA certificates (PEM) the server certificate must chain to. Default: the system's CAs.",
  ),
  verify_server: z.boolean().default(true).describe(
    "Verify the server's certificate chain. false accepts any certificate (testing only).",
  ),
  verify_host_name: z.boolean().default(true).describe(
    "Check that the certificate names the destination host (RFC 5922: host name in subjectAltName, IP address for IP destinations). false is the explicit opt-out for peers whose certificate does not name them.",
  ),
  certificate: optionalPath("Client certificate chain (PEM) for mutual TLS; needs private_key."),
  private_key: optionalPath("Private key of the client certificate (PEM, unencrypted)."),
  min_version: z.enum(TLS_VERSIONS).default("TLSv1.2").describe("Lowest TLS version accepted."),
  ciphers: ciphersSchema,
});

/** The `[plugins.tls]` table as written. */
export const tlsSettingsSchema = z.strictObject({
  server_domains: z.array(serverDomainSchema).default([]).describe(
    "Certificates sipedge presents, chosen by listener and SNI name. A tls listener no domain covers gets a generated self-signed certificate (logged as a warning).",
  ),
  client_domains: z.array(clientDomainSchema).default([]).describe(
    "TLS settings for connections sipedge opens, chosen by destination. Without a default domain: system CAs, host name verification on.",
  ),
  handshake_timeout: positiveDurationSchema.default(10_000).describe(
    "Inbound: a client that has not completed the TLS handshake by then is disconnected.",
  ),
});

/** The validated table. */
export type TlsSettings = z.output<typeof tlsSettingsSchema>;

/** Facts about a certificate, for logs and the control API. */
export interface CertificateInfo {
  subject: string;
  issuer: string;
  /** subjectAltName entries, e.g. `DNS:sip.example.com`, `IP Address:10.0.0.5`. */
  sans: string[];
  notBefore: string;
  notAfter: string;
  /** SHA-256 fingerprint, colon-separated hex. */
  fingerprint: string;
}

/** A listener address (bare host, no IPv6 brackets). */
export interface ListenerId {
  hostname: string;
  port: number;
}

/** A server domain with its material loaded. */
export interface PreparedServerDomain {
  name: string;
  /** undefined: every tls listener. */
  listener: ListenerId | undefined;
  /** Lower case, without a trailing dot. */
  serverNames: string[];
  certificate: string;
  privateKey: string;
  caList: string | undefined;
  verifyClient: VerifyClient;
  minVersion: TlsVersion;
  ciphers: string | undefined;
  /** A self-signed certificate generated for a listener no domain covers. */
  generated: boolean;
  info: CertificateInfo;
}

/** A client domain with its material loaded. */
export interface PreparedClientDomain {
  name: string;
  /** Lower case patterns; empty: the default domain. */
  match: string[];
  caList: string | undefined;
  verifyServer: boolean;
  verifyHostName: boolean;
  certificate: string | undefined;
  privateKey: string | undefined;
  minVersion: TlsVersion;
  ciphers: string | undefined;
  info: CertificateInfo | undefined;
}

/** What `prepare` adds: everything workers need, as plain data. */
export interface PreparedTls {
  /** The tls listeners as configured (port 0 possible). */
  listeners: ListenerId[];
  server: PreparedServerDomain[];
  client: PreparedClientDomain[];
  /** Things to log once (generated certificates, domains for listeners not in use, ...). */
  warnings: string[];
}

/** The plugin's config: the table, plus what `prepare` built from it. */
export type TlsConfig = TlsSettings & { prepared?: PreparedTls };
