/**
 * RFC 5626 flow tokens (§5.2): the user part of the Path and Record-Route URIs sipedge adds
 * for a client's flow, so that a request coming back (from the registrar, or in a dialog) is
 * delivered over the connection the client opened, from whichever worker it arrives in.
 *
 * A token is 24 bytes in base64url (32 characters): a version byte, the instance (a random
 * number drawn at start: a token minted by another sipedge process never names a connection
 * of this one), the transport's slot (the same in every worker: the Via of a request sent
 * over the flow names its transport), the connection id (which names its worker and is never
 * reused, see connection_directory.ts), and an HMAC-SHA-256 over those, cut to 88 bits. Keys come from
 * the `[flows]` settings; after a key change the previous key is accepted until its grace
 * period ends, so that registrations made before a reload keep working until they refresh.
 * @module
 */
import { HmacSha256 } from "./hmac_sha256.ts";

const VERSION = 1;
const BODY = 13; // version (1), instance (4), transport slot (1), connection id (7)
const MAC = 11;
const SIZE = BODY + MAC;
/** Length of a token in characters (base64url, no padding). */
export const TOKEN_LENGTH = (SIZE / 3) * 4;

/** A key and until when it is accepted (`validUntil` 0: the current key, no end). */
export interface FlowKey {
  /** Key bytes as hex. */
  hex: string;
  validUntil: number;
}

/** What a token says, once checked. */
export type FlowTokenCheck =
  | { ok: true; connectionId: number; slot: number }
  /** Not made with any key in force (forged, altered, or from before a key's grace ended). */
  | { ok: false; why: "invalid" }
  /** Valid, but minted by another sipedge process (its flows are not here). */
  | { ok: false; why: "other_instance" };

/** Mints and checks flow tokens with the keys in force. */
export class FlowTokens {
  readonly instance: number;
  readonly #keys: { mac: HmacSha256; validUntil: number }[];
  readonly #body = new Uint8Array(BODY);
  readonly #token = new Uint8Array(SIZE);
  readonly #expected = new Uint8Array(MAC);

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
    writeBody(token, this.instance, slot, connectionId);
    this.#keys[0].mac.sign(token.subarray(0, BODY), token, BODY, MAC);
    return encode(token);
  }

  /** Checks a token (`now` for the previous key's grace period). */
  check(text: string, now = Date.now()): FlowTokenCheck {
    const token = this.#token;
    if (!looksLikeFlowToken(text) || !decode(text, token) || token[0] !== VERSION) {
      return { ok: false, why: "invalid" };
    }
    const body = token.subarray(0, BODY);
    const expected = this.#expected;
    const valid = this.#keys.some((k) => {
      if (k.validUntil !== 0 && now > k.validUntil) return false;
      k.mac.sign(body, expected, 0, MAC);
      let diff = 0;
      for (let i = 0; i < MAC; i++) diff |= expected[i] ^ token[BODY + i];
      return diff === 0;
    });
    if (!valid) return { ok: false, why: "invalid" };
    const instance = ((token[1] << 24) | (token[2] << 16) | (token[3] << 8) | token[4]) >>> 0;
    if (instance !== this.instance) return { ok: false, why: "other_instance" };
    let id = 0;
    for (let i = 6; i < BODY; i++) id = id * 256 + token[i];
    return { ok: true, connectionId: id, slot: token[5] };
  }
}

/** Whether `text` has a token's shape (a Route user part that is worth checking). */
export function looksLikeFlowToken(text: string): boolean {
  return text.length === TOKEN_LENGTH && BASE64URL_TOKEN.test(text);
}

/** A new random key, as hex (when the config gives none). */
export function randomKeyHex(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

/** A key given in config (any text of 16 or more characters) as hex. */
export function configKeyHex(text: string): string {
  return toHex(new TextEncoder().encode(text));
}

function writeBody(out: Uint8Array, instance: number, slot: number, id: number): void {
  out[0] = VERSION;
  out[1] = instance >>> 24;
  out[2] = (instance >>> 16) & 0xff;
  out[3] = (instance >>> 8) & 0xff;
  out[4] = instance & 0xff;
  out[5] = slot;
  let rest = id;
  for (let i = BODY - 1; i >= 6; i--) {
    out[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
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
