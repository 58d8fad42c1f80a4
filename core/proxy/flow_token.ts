/**
 * RFC 5626 flow tokens (§5.2): the user part of the Path and Record-Route URIs sipedge adds
 * for a client's flow, so that a request coming back (from the registrar, or in a dialog) is
 * delivered over the connection the client opened, from whichever worker it arrives in.
 *
 * A token is 24 bytes in base64url (32 characters): a version byte, the instance (a random
 * number drawn at start: a token minted by another sipedge process never names a connection
 * of this one), then for a stream flow the transport's slot (the same in every worker: the Via
 * of a request sent over the flow names its transport) and the connection id (which names its
 * worker and is never reused, see connection_directory.ts); for a datagram (UDP) flow, the
 * socket it came in on and the client's address (36 bytes, 48 characters, for IPv6). An
 * HMAC-SHA-256 over those, cut to 88 or 96 bits, ends it. Keys come from
 * the `[flows]` settings; after a key change the previous key is accepted until its grace
 * period ends, so that registrations made before a reload keep working until they refresh.
 * @module
 */
import { HmacSha256 } from "./hmac_sha256.ts";

/** A stream flow: the connection. */
const STREAM = 1;
/** A datagram flow (UDP): the client's IPv4 or IPv6 address and port, and our socket. */
const DATAGRAM_V4 = 2;
const DATAGRAM_V6 = 3;
/** version (1), instance (4), then: slot (1) + connection id (7); or socket (1) + port (2) + IP. */
const BODY = { [STREAM]: 13, [DATAGRAM_V4]: 12, [DATAGRAM_V6]: 24 } as Record<number, number>;
const MAC = { [STREAM]: 11, [DATAGRAM_V4]: 12, [DATAGRAM_V6]: 12 } as Record<number, number>;
/** Token lengths in characters (base64url, no padding): 24 bytes, or 36 for IPv6 flows. */
export const TOKEN_LENGTH = 32;
const TOKEN_LENGTH_V6 = 48;

/** A key and until when it is accepted (`validUntil` 0: the current key, no end). */
export interface FlowKey {
  /** Key bytes as hex. */
  hex: string;
  validUntil: number;
}

/** What a token says, once checked. */
export type FlowTokenCheck =
  /** A stream flow: connection `connectionId` of transport slot `slot`. */
  | { ok: true; connectionId: number; slot: number; datagram?: undefined }
  /** A datagram flow: the client's address, reached from datagram listener `socket`. */
  | { ok: true; datagram: { socket: number; hostname: string; port: number } }
  /** Not made with any key in force (forged, altered, or from before a key's grace ended). */
  | { ok: false; why: "invalid" }
  /** Valid, but minted by another sipedge process (its flows are not here). */
  | { ok: false; why: "other_instance" };

/** Mints and checks flow tokens with the keys in force. */
export class FlowTokens {
  readonly instance: number;
  readonly #keys: { mac: HmacSha256; validUntil: number }[];
  readonly #token = new Uint8Array(36);
  readonly #expected = new Uint8Array(12);

  /** `keys[0]` signs; every key is accepted while valid. */
  constructor(instance: number, keys: readonly FlowKey[]) {
    if (keys.length === 0) throw new Error("no flow token key");
    this.instance = instance >>> 0;
    this.#keys = keys.map((k) => ({
      mac: new HmacSha256(fromHex(k.hex)),
      validUntil: k.validUntil,
    }));
  }

  /** The token naming connection `connectionId` (of transport slot `slot`) of this instance. */
  mint(connectionId: number, slot: number): string {
    const token = this.#token;
    writeHead(token, STREAM, this.instance);
    token[5] = slot;
    let rest = connectionId;
    for (let i = BODY[STREAM] - 1; i >= 6; i--) {
      token[i] = rest % 256;
      rest = Math.floor(rest / 256);
    }
    return this.#sign(STREAM);
  }

  /**
   * The token naming the datagram flow of the client at `hostname` (an IP) and `port`, reached
   * from datagram listener `socket` (RFC 5626: a UDP flow is the client's address and the
   * socket it used).
   */
  mintDatagram(socket: number, hostname: string, port: number): string {
    const ip = parseIp(hostname);
    if (ip === undefined) throw new Error(`not an IP address: ${hostname}`);
    const version = ip.length === 4 ? DATAGRAM_V4 : DATAGRAM_V6;
    const token = this.#token;
    writeHead(token, version, this.instance);
    token[5] = socket;
    token[6] = port >> 8;
    token[7] = port & 0xff;
    token.set(ip, 8);
    return this.#sign(version);
  }

  /** Checks a token (`now` for the previous key's grace period). */
  check(text: string, now = Date.now()): FlowTokenCheck {
    const token = this.#token;
    if (!looksLikeFlowToken(text) || !decode(text, token)) return { ok: false, why: "invalid" };
    const version = token[0];
    const body = BODY[version];
    const macLength = MAC[version];
    if (body === undefined || (body + macLength) * 4 / 3 !== text.length) {
      return { ok: false, why: "invalid" };
    }
    const signed = token.subarray(0, body);
    const expected = this.#expected;
    const valid = this.#keys.some((k) => {
      if (k.validUntil !== 0 && now > k.validUntil) return false;
      k.mac.sign(signed, expected, 0, macLength);
      let diff = 0;
      for (let i = 0; i < macLength; i++) diff |= expected[i] ^ token[body + i];
      return diff === 0;
    });
    if (!valid) return { ok: false, why: "invalid" };
    const instance = ((token[1] << 24) | (token[2] << 16) | (token[3] << 8) | token[4]) >>> 0;
    if (instance !== this.instance) return { ok: false, why: "other_instance" };
    if (version === STREAM) {
      let id = 0;
      for (let i = 6; i < body; i++) id = id * 256 + token[i];
      return { ok: true, connectionId: id, slot: token[5] };
    }
    return {
      ok: true,
      datagram: {
        socket: token[5],
        port: (token[6] << 8) | token[7],
        hostname: formatIp(token.subarray(8, body)),
      },
    };
  }

  #sign(version: number): string {
    const token = this.#token;
    const body = BODY[version];
    const mac = MAC[version];
    this.#keys[0].mac.sign(token.subarray(0, body), token, body, mac);
    return encode(token.subarray(0, body + mac));
  }
}

function writeHead(out: Uint8Array, version: number, instance: number): void {
  out[0] = version;
  out[1] = instance >>> 24;
  out[2] = (instance >>> 16) & 0xff;
  out[3] = (instance >>> 8) & 0xff;
  out[4] = instance & 0xff;
}

/** IPv4 (4 bytes) or IPv6 (16 bytes) address bytes; undefined for anything else. */
function parseIp(text: string): Uint8Array | undefined {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4 !== null) {
    const bytes = v4.slice(1).map(Number);
    return bytes.every((b) => b <= 255) ? new Uint8Array(bytes) : undefined;
  }
  if (!text.includes(":")) return undefined;
  // An IPv4-mapped or -compatible tail (::ffff:192.0.2.1): its last 32 bits in dotted form.
  const dotted = /^(.*:)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/.exec(text);
  if (dotted !== null) {
    const v4 = parseIp(dotted[2]);
    if (v4 === undefined) return undefined;
    const hex = (i: number) => ((v4[i] << 8) | v4[i + 1]).toString(16);
    return parseIp(`${dotted[1]}${hex(0)}:${hex(2)}`);
  }
  const [head, tail, extra] = text.toLowerCase().split("::");
  if (extra !== undefined) return undefined;
  const groups = (part: string | undefined) => part ? part.split(":") : [];
  const left = groups(head);
  const right = groups(tail);
  const missing = 8 - left.length - right.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return undefined;
  const all = [...left, ...Array(tail === undefined ? 0 : missing).fill("0"), ...right];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-f]{1,4}$/.test(all[i])) return undefined;
    const n = parseInt(all[i], 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  }
  return out;
}

function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}

/** Whether `text` has a token's shape (a Route user part that is worth checking). */
export function looksLikeFlowToken(text: string): boolean {
  return (text.length === TOKEN_LENGTH || text.length === TOKEN_LENGTH_V6) &&
    BASE64URL_TOKEN.test(text);
}

/** A new random key, as hex (when the config gives none). */
export function randomKeyHex(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

/** A key given in config (any text of 16 or more characters) as hex. */
export function configKeyHex(text: string): string {
  return toHex(new TextEncoder().encode(text));
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const BASE64URL_TOKEN = /^[A-Za-z0-9_-]+$/;
const VALUES = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUES[ALPHABET.charCodeAt(i)] = i;

function encode(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += ALPHABET[n >>> 18] + ALPHABET[(n >>> 12) & 63] + ALPHABET[(n >>> 6) & 63] +
      ALPHABET[n & 63];
  }
  return out;
}

function decode(text: string, out: Uint8Array): boolean {
  for (let i = 0, o = 0; i < text.length; i += 4, o += 3) {
    let n = 0;
    for (let j = 0; j < 4; j++) {
      const c = text.charCodeAt(i + j);
      const v = c < 128 ? VALUES[c] : -1;
      if (v < 0) return false;
      n = (n << 6) | v;
    }
    out[o] = n >>> 16;
    out[o + 1] = (n >>> 8) & 0xff;
    out[o + 2] = n & 0xff;
  }
  return true;
}

function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}
