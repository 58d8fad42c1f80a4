/**
 * Frames SIP messages on a byte stream (RFC 3261 §18.3, RFC 5626 §3.5.1).
 *
 * A message ends after its head (an empty line) plus Content-Length bytes of body;
 * Content-Length is mandatory on streams. CRLFs between messages are skipped, and a double
 * CRLF is a keepalive ping that the connection answers with a single CRLF (pong).
 *
 * The common case costs no copy: complete messages are handed out as views of the chunk just
 * read. Only the bytes of an incomplete message are kept, in a buffer of this framer that
 * exists only while a message is incomplete (idle connections hold no buffer).
 *
 * Nor does a response cost a parse: framing needs only Content-Length, which a plain head (one
 * Content-Length line, no folded lines) yields to a byte scan; the head is parsed when first
 * asked for, so a response forwarded by its bytes alone (core/proxy/own_via_response.ts) is
 * never parsed. Requests (always parsed) and other heads are parsed at once; the byte scan
 * answers exactly as the parser does (a property test holds it to that).
 * @module
 */
import type { SipHead } from "./head.ts";
import { latin1Decode } from "./latin1.ts";
import { CONTENT_LENGTH_INVALID, parseHead } from "./parse_head.ts";
import {
  COLON,
  CR,
  HT,
  isContentLengthName,
  LF,
  plainLengthValueAt,
  skipWhite,
  SP,
} from "./head_bytes.ts";
import { tokenEnd } from "./token.ts";
import { keepShapeOf } from "../keep_shape.ts";

/**
 * A complete message: `bytes` is the whole message; `bytes` and `head` (parsed from `bytes`
 * on first use) are valid only during the callback.
 */
export interface MessageFrame {
  type: "message";
  readonly head: SipHead;
  bytes: Uint8Array;
  /** Offset of the body in `bytes` (= head length). */
  bodyStart: number;
}

/** A double-CRLF keepalive ping (answer with a single CRLF). */
export interface PingFrame {
  type: "ping";
}

/**
 * The stream cannot be framed any further (no or bad Content-Length, message too large).
 * `head` is what could be parsed, to build an error response; the connection must close.
 */
export interface ErrorFrame {
  type: "error";
  status: 400 | 513;
  reason: string;
  head: SipHead | undefined;
  /**
   * A message-oriented transport (WebSocket): only this message was bad, the next one starts
   * in step, so the connection stays open.
   */
  keepOpen?: boolean;
}

/** What {@link StreamFramer.feed} hands out. */
export type Frame = MessageFrame | PingFrame | ErrorFrame;

/** Options for {@link StreamFramer}. */
export interface StreamFramerOptions {
  /** Largest message (head + body) in bytes; a larger one is an error frame with 513. */
  maxMessageSize: number;
}

const PING: PingFrame = { type: "ping" };

/** Incremental SIP stream framer; one per connection. */
export class StreamFramer {
  #max: number;
  #pending: Uint8Array | undefined;
  #pendingLength = 0;
  /** Bytes of the current message already searched for the end of the head. */
  #scanned = 0;
  /** Line feeds seen in a row between messages (two make a ping). */
  #lineFeeds = 0;
  /** Head length of the current message once its head is complete, else -1. */
  #headLength = -1;
  /** Content-Length of the current message once its head is complete. */
  #contentLength = 0;
  /** The current message's head, when it had to be parsed to be framed. */
  #head: SipHead | undefined;
  #failed = false;

  constructor(options: StreamFramerOptions) {
    this.#max = options.maxMessageSize;
  }

  /** Largest message accepted (a reload of the limits changes it for the next message). */
  set maxMessageSize(bytes: number) {
    this.#max = bytes;
  }

  /** Bytes held for an incomplete message (0 between messages). */
  get buffered(): number {
    return this.#pendingLength;
  }

  /**
   * Feeds the bytes just read and calls `onFrame` for every frame they complete, in order.
   * `chunk` may be reused by the caller after this returns. Returns false once the stream
   * has failed (an error frame was handed out); later calls do nothing.
   */
  feed(chunk: Uint8Array, onFrame: (frame: Frame) => void): boolean {
    if (this.#failed) return false;
    let data = chunk;
    let length = chunk.length;
    if (this.#pendingLength > 0) {
      data = this.#append(chunk);
      length = this.#pendingLength;
    }
    let pos = 0;
    while (pos < length) {
      if (this.#headLength < 0) {
        pos = this.#skipLineBreaks(data, pos, length, onFrame);
        if (pos === length) break;
        const headEnd = this.#findHeadEnd(data, pos, length);
        if (headEnd < 0) {
          if (length - pos > this.#max) {
            return this.#fail(onFrame, 513, "Message Too Large", partialHead(data, pos, length));
          }
          break;
        }
        // A request is parsed whatever happens to it: reading its Content-Length from the
        // bytes first would be work done twice.
        const plainLength = isResponseAt(data, pos) ? plainContentLength(data, pos, headEnd) : -1;
        if (plainLength >= 0) {
          if (headEnd - pos + plainLength > this.#max) {
            const head = parseHead(latin1Decode(data, pos, headEnd));
            return this.#fail(onFrame, 513, "Message Too Large", head);
          }
          this.#head = undefined;
          this.#headLength = headEnd - pos;
          this.#contentLength = plainLength;
        } else {
          const head = parseHead(latin1Decode(data, pos, headEnd));
          if (head.contentLength === -1) {
            return this.#fail(onFrame, 400, "Missing Content-Length", head);
          }
          if (head.contentLength === CONTENT_LENGTH_INVALID) {
            return this.#fail(onFrame, 400, "Invalid Content-Length", head);
          }
          if (headEnd - pos + head.contentLength > this.#max) {
            return this.#fail(onFrame, 513, "Message Too Large", head);
          }
          this.#head = head;
          this.#headLength = headEnd - pos;
          this.#contentLength = head.contentLength;
        }
      }
      const total = this.#headLength + this.#contentLength;
      if (length - pos < total) break;
      const frame = new StreamMessage(
        data.subarray(pos, pos + total),
        this.#headLength,
        this.#head,
      );
      this.#head = undefined;
      this.#headLength = -1;
      this.#scanned = 0;
      pos += total;
      onFrame(frame);
      if (this.#failed) return false;
    }
    this.#keep(data, pos, length);
    return true;
  }

  /** Skips CR/LF between messages, handing out a ping for every double line break. */
  #skipLineBreaks(data: Uint8Array, pos: number, length: number, onFrame: (f: Frame) => void) {
    while (pos < length) {
      const c = data[pos];
      if (c === LF) {
        if (++this.#lineFeeds === 2) {
          this.#lineFeeds = 0;
          onFrame(PING);
        }
      } else if (c !== CR) {
        this.#lineFeeds = 0;
        return pos;
      }
      pos++;
    }
    return pos;
  }

  /** Offset after the empty line ending the head that starts at `start`, or -1. */
  #findHeadEnd(data: Uint8Array, start: number, length: number): number {
    // A plain loop: lines are tens of bytes apart, where a native indexOf per line costs more
    // (measured).
    let i = start + Math.max(0, this.#scanned - 3);
    for (; i < length; i++) {
      if (data[i] !== LF) continue;
      if (i > start && data[i - 1] === LF) return i + 1;
      if (i > start + 1 && data[i - 1] === CR && data[i - 2] === LF) return i + 1;
    }
    this.#scanned = length - start;
    return -1;
  }

  #append(chunk: Uint8Array): Uint8Array {
    const needed = this.#pendingLength + chunk.length;
    let buffer = this.#pending!;
    if (buffer.length < needed) {
      const grown = new Uint8Array(Math.max(needed, buffer.length * 2));
      grown.set(buffer.subarray(0, this.#pendingLength));
      buffer = this.#pending = grown;
    }
    buffer.set(chunk, this.#pendingLength);
    this.#pendingLength = needed;
    return buffer;
  }

  /** Keeps `data[pos, length)` (an incomplete message) for the next feed. */
  #keep(data: Uint8Array, pos: number, length: number): void {
    const rest = length - pos;
    if (rest === 0) {
      this.#pendingLength = 0;
      this.#pending = undefined;
      return;
    }
    if (data === this.#pending) {
      if (pos > 0) data.copyWithin(0, pos, length);
    } else {
      this.#pending = new Uint8Array(Math.max(rest * 2, 2048));
      this.#pending.set(data.subarray(pos, length));
    }
    this.#pendingLength = rest;
  }

  #fail(onFrame: (f: Frame) => void, status: 400 | 513, reason: string, head?: SipHead) {
    this.#failed = true;
    this.#pending = undefined;
    this.#pendingLength = 0;
    this.#head = undefined;
    onFrame({ type: "error", status, reason, head });
    return false;
  }
}

/** A message handed out by the framer: its head is parsed on first use, if it was not already. */
class StreamMessage implements MessageFrame {
  readonly type = "message";
  readonly bytes: Uint8Array;
  readonly bodyStart: number;
  #head: SipHead | undefined;

  constructor(bytes: Uint8Array, bodyStart: number, head: SipHead | undefined) {
    this.bytes = bytes;
    this.bodyStart = bodyStart;
    this.#head = head;
  }

  get head(): SipHead {
    return this.#head ??= parseHead(latin1Decode(this.bytes, 0, this.bodyStart));
  }
}

// The map of a framed message (see core/keep_shape.ts).
keepShapeOf(new StreamMessage(new Uint8Array(0), 0, undefined));

/** Whether the message at `pos` is a response (starts with `SIP/`, as parseHead decides). */
export function isResponseAt(data: Uint8Array, pos: number): boolean {
  return data[pos] === 83 && data[pos + 1] === 73 && data[pos + 2] === 80 && data[pos + 3] === 47;
}

/** What {@link plainContentLength} returns for a head the parser must read. */
const NOT_PLAIN = -1;

/**
 * The Content-Length of the head `data[start, end)` read from its bytes, or {@link NOT_PLAIN}
 * unless the head is plain: exactly one Content-Length line (`Content-Length` in any case, or
 * `l`), its value 1-10 digits with only spaces or tabs around them, and no folded line anywhere
 * (a continuation could extend the value). For a plain head this is the parser's answer; every
 * other head (missing, repeated or odd Content-Length, folding) goes to the parser, which
 * decides as it always has.
 */
function plainContentLength(data: Uint8Array, start: number, end: number): number {
  let value = NOT_PLAIN;
  let i = start;
  // Header lines start after the start line's LF; the scan stops at the empty line.
  while (i < end && data[i] !== LF) i++;
  for (let line = i + 1; line < end; line = i + 1) {
    const c = data[line];
    if (c === CR || c === LF) break; // the empty line
    if (c === SP || c === HT) return NOT_PLAIN; // folding
    const nameEnd = tokenEnd(data, line);
    const colon = skipWhite(data, nameEnd);
    if (data[colon] === COLON && isContentLengthName(data, line, nameEnd - line)) {
      if (value !== NOT_PLAIN) return NOT_PLAIN; // repeated: the parser compares them
      value = plainLengthValueAt(data, colon + 1);
      if (value < 0) return NOT_PLAIN;
    }
    i = colon;
    while (i < end && data[i] !== LF) i++;
  }
  return value;
}

/** Parses the complete lines of an unfinished head, so that an error response can be built. */
function partialHead(data: Uint8Array, start: number, length: number): SipHead | undefined {
  let end = length;
  while (end > start && data[end - 1] !== LF) end--;
  return end > start ? parseHead(latin1Decode(data, start, end)) : undefined;
}
