/**
 * Self-signed certificates for TLS listeners that have none configured (local use, like Caddy's
 * local certificates): an ECDSA P-256 key and an X.509 v3 certificate written as DER by hand and
 * signed with node:crypto, so that no dependency and no network is needed.
 *
 * The certificate is an end-entity certificate (CA:FALSE) for server and client authentication
 * whose subject alternative names are the listener's address, `localhost`, 127.0.0.1 and ::1.
 * @module
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, sign } from "node:crypto";

/** A generated certificate and its key, as PEM. */
export interface GeneratedCertificate {
  /** The certificate (PEM). */
  certificate: string;
  /** The PKCS#8 private key (PEM). */
  privateKey: string;
}

/** What to put in a generated certificate. */
export interface SelfSignedOptions {
  /** Subject common name. */
  commonName: string;
  /** DNS names for the subjectAltName extension. */
  dnsNames?: string[];
  /** IP addresses (v4 or v6) for the subjectAltName extension. */
  ipAddresses?: string[];
  /** Validity in days from now (default 365). */
  days?: number;
  /** Start of validity (default: one hour ago, against clock skew). */
  notBefore?: Date;
}

/** Generates a self-signed ECDSA P-256 certificate. */
export function generateSelfSigned(options: SelfSignedOptions): GeneratedCertificate {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const spki = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
  const notBefore = options.notBefore ?? new Date(Date.now() - 3_600_000);
  const notAfter = new Date(notBefore.getTime() + (options.days ?? 365) * 86_400_000);
  const name = seq(
    set(seq(oid("2.5.4.10"), utf8("sipedge"))),
    set(seq(oid("2.5.4.3"), utf8(options.commonName))),
  );
  const ecdsaWithSha256 = seq(oid("1.2.840.10045.4.3.2"));
  const serial = randomBytes(16);
  serial[0] &= 0x7f; // positive
  serial[0] |= 0x40; // and no leading zero byte to strip
  const altNames = [
    ...(options.dnsNames ?? []).map((n) => tlv(0x82, ascii(n))),
    ...(options.ipAddresses ?? []).map((ip) => tlv(0x87, ipBytes(ip))),
  ];
  const extensions = [
    extension("2.5.29.19", true, seq()), // basicConstraints: not a CA
    extension("2.5.29.15", true, tlv(0x03, new Uint8Array([0x07, 0x80]))), // keyUsage: digitalSignature
    extension("2.5.29.37", false, seq(oid("1.3.6.1.5.5.7.3.1"), oid("1.3.6.1.5.5.7.3.2"))),
  ];
  if (altNames.length > 0) extensions.push(extension("2.5.29.17", false, seq(...altNames)));
  const tbs = seq(
    tlv(0xa0, integer(new Uint8Array([2]))), // version v3
    integer(new Uint8Array(serial)),
    ecdsaWithSha256,
    name,
    seq(time(notBefore), time(notAfter)),
    name,
    spki,
    tlv(0xa3, seq(...extensions)),
  );
  const signature = sign("sha256", tbs, { key: privateKey, dsaEncoding: "der" });
  const der = seq(tbs, ecdsaWithSha256, bitString(new Uint8Array(signature)));
  const keyPem = createPrivateKey(privateKey.export({ type: "pkcs8", format: "pem" }))
    .export({ type: "pkcs8", format: "pem" }) as string;
  return { certificate: pem("CERTIFICATE", der), privateKey: keyPem };
}

// --- DER -------------------------------------------------------------------------------------

function tlv(tag: number, ...contents: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const c of contents) length += c.length;
  let header: number[];
  if (length < 0x80) header = [tag, length];
  else if (length < 0x100) header = [tag, 0x81, length];
  else if (length < 0x10000) header = [tag, 0x82, length >> 8, length & 0xff];
  else header = [tag, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff];
  const out = new Uint8Array(header.length + length);
  out.set(header);
  let at = header.length;
  for (const c of contents) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const seq = (...items: Uint8Array[]) => tlv(0x30, ...items);
const set = (...items: Uint8Array[]) => tlv(0x31, ...items);
const utf8 = (text: string) => tlv(0x0c, new TextEncoder().encode(text));
const bitString = (bytes: Uint8Array) => tlv(0x03, new Uint8Array([0]), bytes);

function integer(bytes: Uint8Array): Uint8Array {
  return tlv(0x02, bytes[0] & 0x80 ? new Uint8Array([0, ...bytes]) : bytes);
}

function oid(dotted: string): Uint8Array {
  const parts = dotted.split(".").map(Number);
  const out = [40 * parts[0] + parts[1]];
  for (const part of parts.slice(2)) {
    const base128: number[] = [part & 0x7f];
    for (let v = Math.floor(part / 128); v > 0; v = Math.floor(v / 128)) {
      base128.unshift((v & 0x7f) | 0x80);
    }
    out.push(...base128);
  }
  return tlv(0x06, new Uint8Array(out));
}

function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical
    ? seq(oid(id), tlv(0x01, new Uint8Array([0xff])), tlv(0x04, value))
    : seq(oid(id), tlv(0x04, value));
}

/** UTCTime before 2050, GeneralizedTime from then on (RFC 5280 §4.1.2.5). */
function time(date: Date): Uint8Array {
  const iso = date.toISOString(); // 2026-11-27T06:34:33.000Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "") + "Z"; // 20261127063433Z
  return date.getUTCFullYear() < 2050
    ? tlv(0x17, ascii(digits.slice(2)))
    : tlv(0x18, ascii(digits));
}

function ascii(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function ipBytes(ip: string): Uint8Array {
  if (!ip.includes(":")) return new Uint8Array(ip.split(".").map(Number));
  const [head, tail] = ip.split("::");
  const groups = (s: string | undefined) => s ? s.split(":").map((g) => parseInt(g, 16)) : [];
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

function pem(label: string, der: Uint8Array): string {
  let binary = "";
  for (const b of der) binary += String.fromCharCode(b);
  const base64 = btoa(binary).replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${base64}-----END ${label}-----\n`;
}
