/**
 * Reading header lines from a message's bytes, for the paths that take a message without parsing
 * it (the stream framer's Content-Length, a response forwarded by its bytes). Each answers as
 * parse_head would for what it accepts; what it does not accept, the caller leaves to the parser.
 * @module
 */

export const LF = 10;
export const CR = 13;
export const SP = 32;
export const HT = 9;
export const COLON = 58;

/** Offset after the spaces and tabs from `at`. */
export function skipWhite(bytes: Uint8Array, at: number): number {
  while (bytes[at] === SP || bytes[at] === HT) at++;
  return at;
}

/** CRLF or a bare LF at `at` (the parser's line ends). */
export function isLineEndAt(bytes: Uint8Array, at: number): boolean {
  return bytes[at] === LF || (bytes[at] === CR && bytes[at + 1] === LF);
}

/** Whether the token `bytes[at, at + length)` is `Content-Length` or `l`, in any case. */
export function isContentLengthName(bytes: Uint8Array, at: number, length: number): boolean {
  if (length === 1) return (bytes[at] | 0x20) === 108;
  if (length !== CONTENT_LENGTH.length) return false;
  // A token holds no CR, so `| 0x20` cannot turn one into the dash.
  for (let k = 0; k < length; k++) if ((bytes[at + k] | 0x20) !== CONTENT_LENGTH[k]) return false;
  return true;
}

const CONTENT_LENGTH = new TextEncoder().encode("content-length");

/**
 * The Content-Length value after a colon at `at` in its plain form -- spaces or tabs, 1-10 digits
 * (the parser's limit), spaces or tabs, the line's end -- or -1 for anything else.
 */
export function plainLengthValueAt(bytes: Uint8Array, at: number): number {
  at = skipWhite(bytes, at);
  let digits = 0;
  let value = 0;
  for (; bytes[at] >= 48 && bytes[at] <= 57; at++, digits++) value = value * 10 + bytes[at] - 48;
  if (digits === 0 || digits > 10) return -1;
  return isLineEndAt(bytes, skipWhite(bytes, at)) ? value : -1;
}
