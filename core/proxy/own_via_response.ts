/**
 * The common response, forwarded by its bytes (RFC 3261 §16.7 step 3): a response whose top Via
 * is the one sipedge wrote, byte for byte, alone on its line and with its `i` parameter, goes
 * back by cutting that line out -- no head string, no header objects. This is what a stateless
 * proxy spends most of its responses on; forwardResponse handles everything else.
 *
 * The cut is taken only where forwardResponse would do exactly the same: a head the parser
 * reads without error (start line, header names, no folding, one valid Content-Length), our Via
 * as the first Via field and alone on its line, and a next Via that parses. Anything else --
 * and any doubt -- is `undefined`, and the caller goes the full way.
 * @module
 */
import { parseVia } from "../sip/header_values.ts";
import { latin1Decode } from "../sip/latin1.ts";
import { allocBytes } from "../sip/bytes.ts";
import {
  COLON,
  CR,
  HT,
  isContentLengthName,
  isLineEndAt,
  LF,
  plainLengthValueAt,
  skipWhite,
  SP,
} from "../sip/head_bytes.ts";
import { tokenEnd } from "../sip/token.ts";

/** Where our Via line is in a response, and the connection its `i` names. */
export interface OwnViaCut {
  /** The connection the request came in on (our Via's `i`). */
  connectionId: number;
  /** Offset of our Via line. */
  start: number;
  /** Offset after its line terminator. */
  end: number;
}

const SEMI = 59;
const COMMA = 44;
const QUOTE = 34;

/**
 * Finds our Via in `bytes` (a whole framed response): its line must start, after `Via:` or
 * `v:`, with one of `sentBy` (`SIP/2.0/TCP 127.0.0.1:5060;branch=`, as forwardRequest writes
 * it: {@link ownViaPrefix}). Returns undefined for anything forwardResponse must decide.
 */
export function findOwnVia(
  bytes: Uint8Array,
  sentBy: readonly Uint8Array[],
): OwnViaCut | undefined {
  const n = bytes.length;
  // Status-Line: "SIP/2.0 " three digits (1-6, 0-9, 0-9), then a space or the line's end.
  if (
    n < 16 || bytes[0] !== 83 || bytes[1] !== 73 || bytes[2] !== 80 || bytes[3] !== 47 ||
    bytes[4] !== 50 || bytes[5] !== 46 || bytes[6] !== 48 || bytes[7] !== SP ||
    bytes[8] < 49 || bytes[8] > 54 || !isDigit(bytes[9]) || !isDigit(bytes[10])
  ) return undefined;
  let i = 11;
  if (bytes[i] !== SP && !isLineEndAt(bytes, i)) return undefined;
  while (i < n && bytes[i] !== LF) i++;

  let cut: OwnViaCut | undefined;
  let nextVia = -1;
  let contentLength = -1;
  for (let line = i + 1; line < n; line = i + 1) {
    const first = bytes[line];
    if (first === CR || first === LF) {
      // The empty line: the head is complete and was read without doubt.
      const headEnd = first === LF ? line + 1 : bytes[line + 1] === LF ? line + 2 : -1;
      if (headEnd < 0 || cut === undefined || nextVia < 0 || headEnd + contentLength !== n) {
        return undefined;
      }
      return nextViaParses(bytes, nextVia) ? cut : undefined;
    }
    // A header line: a token name, white space, a colon (what parseHead reads without error).
    const nameEnd = tokenEnd(bytes, line);
    if (nameEnd === line) return undefined; // folding or a malformed name
    let at = skipWhite(bytes, nameEnd);
    if (bytes[at] !== COLON) return undefined;
    at++;
    const length = nameEnd - line;
    if (isVia(bytes, line, length)) {
      at = skipWhite(bytes, at);
      if (cut === undefined) {
        cut = ownVia(bytes, at, line, sentBy);
        if (cut === undefined) return undefined;
        i = cut.end - 1;
        continue;
      }
      if (nextVia < 0) nextVia = at;
    } else if (isContentLengthName(bytes, line, length)) {
      if (contentLength >= 0) return undefined; // repeated: the parser compares them
      contentLength = plainLengthValueAt(bytes, at);
      if (contentLength < 0) return undefined;
    }
    i = at;
    while (i < n && bytes[i] !== LF) i++;
  }
  return undefined;
}

/** `bytes` without `[cut.start, cut.end)`: the response as it goes on. */
export function withoutOwnVia(bytes: Uint8Array, cut: OwnViaCut): Uint8Array {
  const out = allocBytes(bytes.length - (cut.end - cut.start));
  out.set(bytes.subarray(0, cut.start), 0);
  out.set(bytes.subarray(cut.end), cut.start);
  return out;
}

/** What our Via value starts with for `sentBy` (`SIP/2.0/TCP host:port`). */
export function ownViaPrefix(sentBy: string): Uint8Array {
  return new TextEncoder().encode(`${sentBy};branch=`);
}

/**
 * Our Via's value at `at` (its line at `line`): one of `sentBy`, then parameters without white
 * space, commas or quotes, exactly one of them `i` (any case) and that one `;i=` digits.
 */
function ownVia(
  bytes: Uint8Array,
  at: number,
  line: number,
  sentBy: readonly Uint8Array[],
): OwnViaCut | undefined {
  let prefix = -1;
  for (let p = 0; p < sentBy.length && prefix < 0; p++) {
    const candidate = sentBy[p];
    let k = 0;
    while (k < candidate.length && bytes[at + k] === candidate[k]) k++;
    if (k === candidate.length) prefix = candidate.length;
  }
  if (prefix < 0) return undefined;
  let id = -1;
  let i = at + prefix;
  for (; i < bytes.length; i++) {
    const c = bytes[i];
    if (c === CR || c === LF) break;
    if (c === SP || c === HT || c === COMMA || c === QUOTE) return undefined;
    if (c !== SEMI || (bytes[i + 1] | 0x20) !== 105) continue; // ";i" or ";I"
    const after = bytes[i + 2];
    if (tokenEnd(bytes, i + 2) > i + 2) continue; // a longer name
    if (id >= 0 || bytes[i + 1] !== 105 || after !== 61) return undefined; // not one ";i="
    id = 0;
    let digits = 0;
    for (i += 3; isDigit(bytes[i]); i++, digits++) id = id * 10 + bytes[i] - 48;
    // Only digits: forwardResponse reads the value with Number() ("12abc" is no id).
    if (digits === 0 || digits > 15 || !(bytes[i] === SEMI || bytes[i] === CR || bytes[i] === LF)) {
      return undefined;
    }
    i--;
  }
  if (id <= 0 || !isLineEndAt(bytes, i)) return undefined;
  return { connectionId: id, start: line, end: bytes[i] === CR ? i + 2 : i + 1 };
}

/**
 * Whether the Via value at `at` (to its line's end) parses, as forwardResponse requires; a line
 * with a comma (several values: which is first needs quotes and brackets weighed) is left to it.
 */
function nextViaParses(bytes: Uint8Array, at: number): boolean {
  let end = at;
  for (; end < bytes.length && bytes[end] !== LF; end++) if (bytes[end] === COMMA) return false;
  // What splitCommaValues trims around a value.
  while (end > at && (bytes[end - 1] === SP || bytes[end - 1] === HT || bytes[end - 1] === CR)) {
    end--;
  }
  if (end === at) return false;
  return isPlainVia(bytes, at, end) || parseVia(latin1Decode(bytes, at, end)) !== undefined;
}

/**
 * Whether `bytes[at, end)` is a Via value in its plain form, which parseVia accepts: `SIP/2.0/`,
 * a transport, one space, a host (a name or IPv4 address, or an IPv6 reference), an optional
 * port 1-65535, then parameters or nothing. False means "ask parseVia", not "malformed".
 */
export function isPlainVia(bytes: Uint8Array, at: number, end: number): boolean {
  if (end - at < 11) return false;
  for (let k = 0; k < 8; k++) if (bytes[at + k] !== SIP_2_0[k]) return false;
  let i = at + 8;
  const transport = i;
  while (i < end && isTransportChar(bytes[i])) i++;
  if (i === transport || i >= end || bytes[i] !== SP) return false;
  const host = ++i;
  if (i >= end) return false;
  if (bytes[i] === 91) { // "[": an IPv6 reference
    for (i++; i < end && isIpv6Char(bytes[i]); i++);
    if (i === host + 1 || i >= end || bytes[i] !== 93) return false;
    i++;
  } else {
    // Letters, digits, dots and dashes, starting with a letter or digit.
    if (!isAlnum(bytes[i])) return false;
    while (i < end && (isAlnum(bytes[i]) || bytes[i] === 46 || bytes[i] === 45)) i++;
  }
  if (i < end && bytes[i] === COLON) {
    let port = 0;
    const digits = ++i;
    for (; i < end && isDigit(bytes[i]) && i - digits < 5; i++) port = port * 10 + bytes[i] - 48;
    if (i === digits || port === 0 || port > 65535) return false;
  }
  return i === end || bytes[i] === SEMI;
}

const SIP_2_0 = new TextEncoder().encode("SIP/2.0/");

/** `[A-Za-z0-9-]`, the characters of a Via transport. */
function isTransportChar(c: number): boolean {
  return isAlnum(c) || c === 45;
}

function isAlnum(c: number): boolean {
  const l = c | 0x20;
  return isDigit(c) || (l >= 97 && l <= 122);
}

/** Hex digits, `:` and `.`: what an IPv6 reference holds (isHost). */
function isIpv6Char(c: number): boolean {
  const l = c | 0x20;
  return isDigit(c) || (l >= 97 && l <= 102) || c === 58 || c === 46;
}

/** `Via` or `v`, in any case. */
function isVia(bytes: Uint8Array, at: number, length: number): boolean {
  if ((bytes[at] | 0x20) !== 118) return false;
  return length === 1 ||
    (length === 3 && (bytes[at + 1] | 0x20) === 105 && (bytes[at + 2] | 0x20) === 97);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
