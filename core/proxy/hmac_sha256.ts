/**
 * HMAC-SHA-256 (RFC 2104, FIPS 180-4) for short messages with a fixed key, synchronous and
 * allocation-light: flow tokens are minted and checked on the message path, where WebCrypto
 * (asynchronous) cannot be used and node:crypto's `createHmac` costs about 8.6 µs a call here
 * (measured 2026-12-03). The key's inner and outer pads are hashed once, when the key is set;
 * a message then costs two compression rounds.
 * @module
 */

const K = new Int32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);
const INITIAL = new Int32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);
const BLOCK = 64;

/** An HMAC-SHA-256 with a fixed key, for messages of at most 55 bytes (one block). */
export class HmacSha256 {
  readonly #inner = new Int32Array(8);
  readonly #outer = new Int32Array(8);
  readonly #state = new Int32Array(8);
  readonly #w = new Int32Array(64);
  readonly #block = new Uint8Array(BLOCK);
  readonly #digest = new Uint8Array(32);

  constructor(key: Uint8Array) {
    let k = key;
    if (k.length > BLOCK) k = sha256(k);
    const pad = new Uint8Array(BLOCK);
    for (const [state, byte] of [[this.#inner, 0x36], [this.#outer, 0x5c]] as const) {
      pad.fill(byte);
      for (let i = 0; i < k.length; i++) pad[i] = k[i] ^ byte;
      state.set(INITIAL);
      compress(state, pad, this.#w);
    }
  }

  /** The MAC of `message` (<= 55 bytes), its first `length` bytes written to `out` at `at`. */
  sign(message: Uint8Array, out: Uint8Array, at: number, length = 32): void {
    if (message.length > BLOCK - 9) throw new RangeError("message longer than 55 bytes");
    const state = this.#state;
    const block = this.#block;
    // inner = H(K ^ ipad || message): one block after the pad.
    state.set(this.#inner);
    lastBlock(block, message, BLOCK + message.length);
    compress(state, block, this.#w);
    // outer = H(K ^ opad || inner)
    const innerDigest = this.#digest;
    writeState(state, innerDigest, 0, 32);
    state.set(this.#outer);
    lastBlock(block, innerDigest, BLOCK + 32);
    compress(state, block, this.#w);
    writeState(state, out, at, length);
  }
}

/** SHA-256 of any message (used for keys longer than a block). */
export function sha256(message: Uint8Array): Uint8Array {
  const state = new Int32Array(INITIAL);
  const w = new Int32Array(64);
  const padded = new Uint8Array(Math.ceil((message.length + 9) / BLOCK) * BLOCK);
  padded.set(message);
  padded[message.length] = 0x80;
  writeLength(padded, message.length);
  for (let at = 0; at < padded.length; at += BLOCK) {
    compress(state, padded.subarray(at, at + BLOCK), w);
  }
  const out = new Uint8Array(32);
  writeState(state, out, 0, 32);
  return out;
}

/** The final block of a hash whose total input is `total` bytes and ends with `message`. */
function lastBlock(block: Uint8Array, message: Uint8Array, total: number): void {
  block.fill(0);
  block.set(message);
  block[message.length] = 0x80;
  writeLength(block, total);
}

function writeLength(padded: Uint8Array, bytes: number): void {
  const bits = bytes * 8;
  const end = padded.length;
  padded[end - 5] = Math.floor(bits / 2 ** 32) & 0xff;
  padded[end - 4] = (bits >>> 24) & 0xff;
  padded[end - 3] = (bits >>> 16) & 0xff;
  padded[end - 2] = (bits >>> 8) & 0xff;
  padded[end - 1] = bits & 0xff;
}

function writeState(state: Int32Array, out: Uint8Array, at: number, length: number): void {
  for (let i = 0; i < length; i++) out[at + i] = (state[i >> 2] >>> (24 - 8 * (i & 3))) & 0xff;
}

function compress(state: Int32Array, block: Uint8Array, w: Int32Array): void {
  for (let i = 0; i < 16; i++) {
    const j = i * 4;
    w[i] = (block[j] << 24) | (block[j + 1] << 16) | (block[j + 2] << 8) | block[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15];
    const y = w[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
  let a = state[0], b = state[1], c = state[2], d = state[3];
  let e = state[4], f = state[5], g = state[6], h = state[7];
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (h + s1 + ch + K[i] + w[i]) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (s0 + maj) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0;
  state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0;
  state[7] = (state[7] + h) | 0;
}
