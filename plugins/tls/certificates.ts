/**
 * Loading and checking certificate material before it is used: PEM files read, chains and CA
 * lists parsed, the key matched to the certificate, validity dates checked. Every function
 * throws an error whose message names the file and says what is wrong, so that a config or
 * reload error reads `...certificate: certificate /etc/sip/a.pem expired on ...`.
 * @module
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import type { CertificateInfo } from "./settings.ts";

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** A file path resolved against the config folder (absolute paths stay as they are). */
export function resolvePath(path: string, configDir: string): string {
  if (path.startsWith("/")) return path;
  return `${configDir.replace(/\/?$/, "/")}${path}`;
}

/** Reads a PEM file; the error says which file and why. */
export async function readPem(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
}

/** Parses every certificate in PEM text (a chain or a CA list); at least one. */
export function parseCertificates(pem: string, path: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new Error(`${path}: no PEM certificate in it`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw new Error(`${path}: certificate ${i + 1} is not valid: ${(error as Error).message}`);
    }
  });
}

/** Parses an unencrypted private key (PKCS#8, PKCS#1 or SEC1 PEM). */
export function parsePrivateKey(pem: string, path: string): KeyObject {
  if (/ENCRYPTED/.test(pem)) {
    throw new Error(`${path}: the private key is encrypted (a passphrase is not supported)`);
  }
  try {
    return createPrivateKey(pem);
  } catch (error) {
    throw new Error(`${path}: not a private key: ${(error as Error).message}`);
  }
}

/** Throws when `now` is outside the certificate's validity. */
export function checkValidity(cert: X509Certificate, path: string, now = new Date()): void {
  if (cert.validToDate.getTime() < now.getTime()) {
    throw new Error(
      `certificate ${path} (${oneLine(cert.subject)}) expired on ${cert.validToDate.toISOString()}`,
    );
  }
  if (cert.validFromDate.getTime() > now.getTime()) {
    throw new Error(
      `certificate ${path} (${
        oneLine(cert.subject)
      }) is not valid before ${cert.validFromDate.toISOString()}`,
    );
  }
}

/** A problem with a key pair; `part` says which file is at fault. */
export class KeyPairError extends Error {
  readonly part: "certificate" | "private_key";
  constructor(part: "certificate" | "private_key", message: string) {
    super(message);
    this.name = "KeyPairError";
    this.part = part;
  }
}

/**
 * Loads a certificate chain and its key and checks them: parseable, the key belongs to the
 * first certificate, the first certificate valid now. Returns the PEM texts and the facts.
 * Throws {@link KeyPairError}.
 */
export async function loadKeyPair(
  certPath: string,
  keyPath: string,
  now = new Date(),
): Promise<{ certificate: string; privateKey: string; info: CertificateInfo }> {
  const part = async <T>(which: KeyPairError["part"], run: () => T | Promise<T>) => {
    try {
      return await run();
    } catch (error) {
      throw new KeyPairError(which, (error as Error).message);
    }
  };
  const certificate = await part("certificate", () => readPem(certPath));
  const chain = await part("certificate", () => parseCertificates(certificate, certPath));
  await part("certificate", () => checkValidity(chain[0], certPath, now));
  const privateKey = await part("private_key", () => readPem(keyPath));
  const key = await part("private_key", () => parsePrivateKey(privateKey, keyPath));
  if (!chain[0].checkPrivateKey(key)) {
    throw new KeyPairError(
      "private_key",
      `private key ${keyPath} does not match certificate ${certPath}`,
    );
  }
  return { certificate, privateKey, info: certificateInfo(chain[0]) };
}

/** Loads a CA list: at least one certificate, none expired. */
export async function loadCaList(path: string, now = new Date()): Promise<string> {
  const pem = await readPem(path);
  for (const cert of parseCertificates(pem, path)) checkValidity(cert, path, now);
  return pem;
}

/** Facts about a certificate for logs and the control API. */
export function certificateInfo(cert: X509Certificate): CertificateInfo {
  return {
    subject: oneLine(cert.subject),
    issuer: oneLine(cert.issuer),
    sans: cert.subjectAltName === undefined ? [] : cert.subjectAltName.split(", "),
    notBefore: cert.validFromDate.toISOString(),
    notAfter: cert.validToDate.toISOString(),
    fingerprint: cert.fingerprint256,
  };
}

/** Facts about the first certificate of PEM text. */
export function pemInfo(pem: string): CertificateInfo {
  return certificateInfo(parseCertificates(pem, "(certificate)")[0]);
}

/** `C=DE\nO=Example\nCN=sip` -> `C=DE, O=Example, CN=sip`. */
export function oneLine(name: string): string {
  return name.split("\n").filter((part) => part !== "").join(", ");
}
