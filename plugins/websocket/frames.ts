/**
 * WebSocket framing (RFC 6455 §5): the incremental reader of one connection's frames and the
 * encoders of the frames sipedge sends. SIP over WebSocket (RFC 7118 §5.1) puts one SIP
 * message in one WebSocket message (text or binary), so the reader hands out whole messages.
 *
 * The reader copies each data frame's payload (unmasked) into the message's own buffer, sized
 * from the frame header, so a read buffer can be reused at once and an idle connection holds
 * no buffer at all.
 * @module
 */

/** Opcodes (RFC 6455 §5.2). */
export const OPCODE = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

/** Close status codes (RFC 6455 §7.4.1). */
export const CLOSE = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  unsupportedData: 1003,
  tooBig: 1009,
} as const;

/** What the reader found, in order. `data` is valid only during the callback. */
export type ReadEvent =
  /** A whole data message (text or binary), unmasked. */
  | { type: "message"; data: Uint8Array; text: boolean }
  | { type: "ping"; data: Uint8Array }
  | { type: "pong" }
  /** The peer's close frame: `code` is 1005 when it gave none. */
  | { type: "close"; code: number; reason: string }
  /** The stream broke the protocol: close with `code` (1002, 1009). Nothing follows. */
  | { type: "error"; code: number; why: string };

/** Options for a {@link FrameReader}. */
export interface FrameReaderOptions {
  /** Frames from clients are masked, from servers not (RFC 6455 §5.1); the other is an error. */
  expectMasked: boolean;
  /** Largest message; a larger one is an error with 1009. Read on every frame (reloadable). */
  maxMessageSize: () => number;
}

const MAX_CONTROL_PAYLOAD = 125;

/** Incremental frame reader; one per connection. */
export class FrameReader {
  #options: FrameReaderOptions;
  /** Header bytes of the frame being read (at most 14). */
  #header = new Uint8Array(14);
  #headerLength = 0;
  /** Payload bytes of the current frame still to come (-1: reading a header). */
  #remaining = -1;
  #opcode = 0;
  #fin = false;
  #mask = new Uint8Array(4);
  #masked = false;
  /** Bytes of the current frame's payload read so far (for the mask offset). */
  #payloadRead = 0;
  /** The data message being assembled (undefined between messages). */
  #message: Uint8Array | undefined;
  #messageLength = 0;
  #messageText = false;
  /** A control frame's payload being read. */
  #control: Uint8Array | undefined;
  #failed = false;

  constructor(options: FrameReaderOptions) {
    this.#options = options;
  }

  /** Whether a message or frame is partly read (for the message read timeout). */
  get partial(): boolean {
    return this.#headerLength > 0 || this.#remaining >= 0 || this.#message !== undefined;
  }

  /** Reads `chunk`; calls `on` for each event. After an error, ignores everything. */
  feed(chunk: Uint8Array, on: (event: ReadEvent) => void): void {
    let at = 0;
    while (at < chunk.length && !this.#failed) {
      if (this.#remaining < 0) {
        at = this.#readHeader(chunk, at, on);
        if (this.#remaining === 0 && !this.#failed) this.#frameDone(on);
        continue;
      }
      const n = Math.min(this.#remaining, chunk.length - at);
      const target = this.#control ?? this.#message!;
      const offset = this.#control === undefined ? this.#messageLength : this.#payloadRead;
      this.#copy(chunk, at, n, target, offset);
      if (this.#control === undefined) this.#messageLength += n;
      this.#payloadRead += n;
      this.#remaining -= n;
      at += n;
      if (this.#remaining === 0) this.#frameDone(on);
    }
  }

  /** Copies (unmasking) `n` payload bytes. */
  #copy(from: Uint8Array, at: number, n: number, to: Uint8Array, offset: number): void {
    if (!this.#masked) {
      to.set(from.subarray(at, at + n), offset);
      return;
    }
    const mask = this.#mask;
    let m = this.#payloadRead & 3;
    for (let i = 0; i < n; i++) {
      to[offset + i] = from[at + i] ^ mask[m];
      m = (m + 1) & 3;
    }
  }

  /** Reads header bytes from `at`; returns the new position. Sets #remaining when complete. */
  #readHeader(chunk: Uint8Array, at: number, on: (event: ReadEvent) => void): number {
    const h = this.#header;
    while (at < chunk.length && this.#headerLength < 2) h[this.#headerLength++] = chunk[at++];
    if (this.#headerLength < 2) return at;
    const len7 = h[1] & 0x7f;
    const masked = (h[1] & 0x80) !== 0;
    const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    while (at < chunk.length && this.#headerLength < need) h[this.#headerLength++] = chunk[at++];
    if (this.#headerLength < need) return at;
    this.#headerLength = 0;

    const fin = (h[0] & 0x80) !== 0;
    const opcode = h[0] & 0x0f;
    if ((h[0] & 0x70) !== 0) return this.#fail(on, CLOSE.protocolError, "reserved bits set", at);
    if (masked !== this.#options.expectMasked) {
      const why = masked ? "a masked frame from the server" : "an unmasked frame from the client";
      return this.#fail(on, CLOSE.protocolError, why, at);
    }
    let length = len7;
    let p = 2;
    if (len7 === 126) {
      length = (h[2] << 8) | h[3];
      p = 4;
    } else if (len7 === 127) {
      // 2^53 is far beyond any limit: the high bytes only need to be zero for a sane length.
      const high = (h[2] << 24 | h[3] << 16 | h[4] << 8 | h[5]) >>> 0;
      const low = (h[6] << 24 | h[7] << 16 | h[8] << 8 | h[9]) >>> 0;
      length = high * 2 ** 32 + low;
      p = 10;
    }
    if (masked) this.#mask.set(h.subarray(p, p + 4));
    this.#masked = masked;
    this.#payloadRead = 0;

    if (opcode >= 0x8) {
      if (opcode !== OPCODE.close && opcode !== OPCODE.ping && opcode !== OPCODE.pong) {
        return this.#fail(on, CLOSE.protocolError, `unknown control opcode ${opcode}`, at);
      }
      if (!fin || length > MAX_CONTROL_PAYLOAD) {
        return this.#fail(on, CLOSE.protocolError, "fragmented or oversized control frame", at);
      }
      this.#control = new Uint8Array(length);
    } else {
      if (opcode === OPCODE.continuation) {
        if (this.#message === undefined) {
          return this.#fail(on, CLOSE.protocolError, "continuation without a message", at);
        }
      } else if (opcode === OPCODE.text || opcode === OPCODE.binary) {
        if (this.#message !== undefined) {
          return this.#fail(on, CLOSE.protocolError, "new message inside a fragmented one", at);
        }
        this.#messageText = opcode === OPCODE.text;
        this.#messageLength = 0;
      } else {
        return this.#fail(on, CLOSE.protocolError, `unknown data opcode ${opcode}`, at);
      }
      const total = this.#messageLength + length;
      if (total > this.#options.maxMessageSize()) {
        return this.#fail(on, CLOSE.tooBig, `message of ${total} bytes or more is too big`, at);
      }
      this.#grow(total);
    }
    this.#opcode = opcode;
    this.#fin = fin;
    this.#remaining = length;
    return at;
  }

  /** Makes the message buffer hold `total` bytes (one exact allocation for a one-frame message). */
  #grow(total: number): void {
    const current = this.#message;
    if (current !== undefined && current.length >= total) return;
    const next = new Uint8Array(
      current === undefined ? total : Math.max(total, current.length * 2),
    );
    if (current !== undefined) next.set(current.subarray(0, this.#messageLength));
    this.#message = next;
  }

  #frameDone(on: (event: ReadEvent) => void): void {
    this.#remaining = -1;
    const control = this.#control;
    if (control !== undefined) {
      this.#control = undefined;
      if (this.#opcode === OPCODE.ping) on({ type: "ping", data: control });
      else if (this.#opcode === OPCODE.pong) on({ type: "pong" });
      else {
        const code = control.length >= 2 ? (control[0] << 8) | control[1] : 1005;
        const reason = new TextDecoder().decode(control.subarray(2));
        this.#failed = true; // nothing is read after a close
        on({ type: "close", code, reason });
      }
      return;
    }
    if (!this.#fin) return;
    const data = this.#message!.subarray(0, this.#messageLength);
    this.#message = undefined;
    this.#messageLength = 0;
    on({ type: "message", data, text: this.#messageText });
  }

  #fail(on: (event: ReadEvent) => void, code: number, why: string, at: number): number {
    this.#failed = true;
    this.#message = this.#control = undefined;
    on({ type: "error", code, why });
    return at;
  }
}

/** Masking keys for client frames, drawn from the system's random source in blocks. */
const maskPool = new Uint8Array(4096);
let maskAt = maskPool.length;

function nextMask(): Uint8Array {
  if (maskAt + 4 > maskPool.length) {
    crypto.getRandomValues(maskPool);
    maskAt = 0;
  }
  const mask = maskPool.subarray(maskAt, maskAt + 4);
  maskAt += 4;
  return mask;
}

/**
 * One frame: FIN set, `opcode`, `payload`; masked with a fresh random key when `mask` (frames a
 * client sends, RFC 6455 §5.3).
 */
export function encodeFrame(opcode: number, payload: Uint8Array, mask: boolean): Uint8Array {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const headerLength = 2 + lengthBytes + (mask ? 4 : 0);
  const out = new Uint8Array(headerLength + length);
  out[0] = 0x80 | opcode;
  if (lengthBytes === 0) out[1] = length;
  else if (lengthBytes === 2) {
    out[1] = 126;
    out[2] = length >> 8;
    out[3] = length & 0xff;
  } else {
    out[1] = 127;
    const high = Math.floor(length / 2 ** 32);
    out[2] = high >>> 24;
    out[3] = (high >> 16) & 0xff;
    out[4] = (high >> 8) & 0xff;
    out[5] = high & 0xff;
    out[6] = length >>> 24;
    out[7] = (length >> 16) & 0xff;
    out[8] = (length >> 8) & 0xff;
    out[9] = length & 0xff;
  }
  if (!mask) {
    out.set(payload, headerLength);
    return out;
  }
  out[1] |= 0x80;
  const key = nextMask();
  out.set(key, headerLength - 4);
  for (let i = 0; i < length; i++) out[headerLength + i] = payload[i] ^ key[i & 3];
  return out;
}

/** A close frame with `code` (and a short reason). */
export function closeFrame(code: number, reason: string, mask: boolean): Uint8Array {
  const text = new TextEncoder().encode(reason.slice(0, 120));
  const payload = new Uint8Array(2 + text.length);
  payload[0] = code >> 8;
  payload[1] = code & 0xff;
  payload.set(text, 2);
  return encodeFrame(OPCODE.close, payload, mask);
}
