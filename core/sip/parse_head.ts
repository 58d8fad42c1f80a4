/**
 * Parses a SIP message head (RFC 3261 §7.1, §7.2, §7.3, §25): start line and header fields.
 *
 * Lines end in CRLF; a bare LF is accepted too (lenient, as most proxies are). Header names
 * are case-insensitive and compact forms are expanded. The parser never throws: a syntax
 * problem is recorded in `head.error` (the proxy answers 400 with it), and framing only needs
 * Content-Length.
 * @module
 */
import type { HeaderField, SipHead } from "./head.ts";
import { latin1Decode } from "./latin1.ts";
import { digitsValue, headerNameAt, isRegExpSpace, isToken } from "./token.ts";

/** Content-Length value meaning "present but not a valid number". */
export const CONTENT_LENGTH_INVALID = -2;

/**
 * The head of a complete message held in `bytes` (up to and including the empty line that
 * ends it; the whole message when it has none). For messages sipedge built or already framed.
 */
export function parseMessageHead(bytes: Uint8Array): SipHead {
  let end = bytes.length;
  for (let i = 0; i + 1 < bytes.length; i++) {
    if (bytes[i] !== 10) continue;
    if (bytes[i + 1] === 10) {
      end = i + 2;
      break;
    }
    if (bytes[i + 1] === 13 && bytes[i + 2] === 10) {
      end = i + 3;
      break;
    }
  }
  return parseHead(latin1Decode(bytes, 0, end));
}

/**
 * Parses `text` (a complete head, usually ending with an empty line) into a {@link SipHead}.
 * Offsets in the result are offsets into `text`.
 */
export function parseHead(text: string): SipHead {
  const head: SipHead = {
    text,
    isRequest: false,
    method: "",
    uri: "",
    version: "",
    status: 0,
    reason: "",
    headersStart: 0,
    headers: [],
    contentLength: -1,
    error: undefined,
  };
  let lineEnd = text.indexOf("\n");
  if (lineEnd < 0) lineEnd = text.length;
  const startLine = text.slice(
    0,
    lineEnd > 0 && text.charCodeAt(lineEnd - 1) === 13 ? lineEnd - 1 : lineEnd,
  );
  parseStartLine(head, startLine);
  head.headersStart = Math.min(lineEnd + 1, text.length);

  let pos = head.headersStart;
  let last: HeaderField | undefined;
  while (pos < text.length) {
    let nl = text.indexOf("\n", pos);
    if (nl < 0) nl = text.length;
    const contentEnd = nl > pos && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
    const next = Math.min(nl + 1, text.length);
    if (contentEnd === pos) break; // the empty line that ends the head
    const first = text.charCodeAt(pos);
    if (first === 32 || first === 9) {
      // A continuation line folds into the previous field's value.
      if (last === undefined) {
        setError(head, "Header folding before the first header");
      } else {
        const valueEnd = trimEnd(text, pos, contentEnd);
        if (valueEnd > pos && hasNonWhite(text, pos, contentEnd)) {
          last.valueEnd = valueEnd;
          last.folded = true;
        }
        last.end = next;
      }
      pos = next;
      continue;
    }
    const colon = text.indexOf(":", pos);
    if (colon < 0 || colon >= contentEnd) {
      setError(head, "Malformed header line");
      last = undefined;
      pos = next;
      continue;
    }
    const name = headerNameAt(text, pos, trimEnd(text, pos, colon));
    if (name === undefined) {
      setError(head, "Malformed header name");
      last = undefined;
      pos = next;
      continue;
    }
    let valueStart = colon + 1;
    while (valueStart < contentEnd && isWhite(text.charCodeAt(valueStart))) valueStart++;
    last = {
      name,
      start: pos,
      valueStart,
      valueEnd: trimEnd(text, valueStart, contentEnd),
      end: next,
      folded: false,
    };
    head.headers.push(last);
    pos = next;
  }
  readContentLength(head);
  return head;
}

function parseStartLine(head: SipHead, line: string): void {
  if (line.startsWith("SIP/")) {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
    const sp1 = line.indexOf(" ");
    head.version = sp1 < 0 ? line : line.slice(0, sp1);
    const code = sp1 < 0 ? "" : line.slice(sp1 + 1, sp1 + 4);
    const after = line.charCodeAt(sp1 + 4);
    if (!isStatusCode(code) || !(Number.isNaN(after) || after === 32)) {
      setError(head, "Malformed status line");
      return;
    }
    head.status = Number(code);
    head.reason = line.slice(sp1 + 5);
    return;
  }
  // Request-Line = Method SP Request-URI SP SIP-Version (exactly one SP each, §25.1)
  head.isRequest = true;
  const sp1 = line.indexOf(" ");
  const sp2 = sp1 < 0 ? -1 : line.indexOf(" ", sp1 + 1);
  if (sp1 <= 0 || sp2 < 0 || line.indexOf(" ", sp2 + 1) >= 0 || sp2 === sp1 + 1) {
    head.method = sp1 > 0 ? line.slice(0, sp1) : line;
    setError(head, "Malformed request line");
    return;
  }
  head.method = line.slice(0, sp1);
  head.uri = line.slice(sp1 + 1, sp2);
  head.version = line.slice(sp2 + 1);
  if (!isToken(head.method)) setError(head, "Malformed method");
  else if (!isAbsoluteUri(head.uri)) setError(head, "Malformed Request-URI");
  else if (head.version !== "SIP/2.0" && !/^SIP\/\d+\.\d+$/i.test(head.version)) {
    setError(head, "Malformed SIP version");
  }
}

/** Three digits, the first 1-6 (a status code, §25.1). */
function isStatusCode(code: string): boolean {
  if (code.length !== 3) return false;
  const a = code.charCodeAt(0), b = code.charCodeAt(1), c = code.charCodeAt(2);
  return a >= 49 && a <= 54 && b >= 48 && b <= 57 && c >= 48 && c <= 57;
}

/**
 * `scheme ":" 1*non-space`, scheme = ALPHA *(ALPHA / DIGIT / "+" / "-" / ".") -- what the
 * RegExp `^[A-Za-z][A-Za-z0-9+.-]*:\S+$` accepts, without one per request.
 */
function isAbsoluteUri(uri: string): boolean {
  const first = uri.charCodeAt(0) | 0x20;
  if (!(first >= 97 && first <= 122)) return false;
  let i = 1;
  for (; i < uri.length; i++) {
    const c = uri.charCodeAt(i);
    if (c === 58) break;
    const l = c | 0x20;
    if (!((l >= 97 && l <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46)) {
      return false;
    }
  }
  if (i >= uri.length - 1) return false; // no ":" or nothing after it
  for (i++; i < uri.length; i++) if (isRegExpSpace(uri.charCodeAt(i))) return false;
  return true;
}

function readContentLength(head: SipHead): void {
  for (const field of head.headers) {
    if (field.name !== "content-length") continue;
    const value = field.folded
      ? foldedContentLength(head.text.slice(field.valueStart, field.valueEnd))
      : digitsValue(head.text, field.valueStart, field.valueEnd, 10);
    if (value < 0 || (head.contentLength >= 0 && head.contentLength !== value)) {
      head.contentLength = CONTENT_LENGTH_INVALID;
      setError(head, "Invalid Content-Length");
      return;
    }
    head.contentLength = value;
  }
}

/** A Content-Length value written over several lines (rare): -1 unless digits once joined. */
function foldedContentLength(raw: string): number {
  const joined = raw.replace(/[ \t]*\r?\n[ \t]+/g, " ").trim();
  return digitsValue(joined, 0, joined.length, 10);
}

function setError(head: SipHead, message: string): void {
  head.error ??= message;
}

function isWhite(c: number): boolean {
  return c === 32 || c === 9;
}

function trimEnd(text: string, start: number, end: number): number {
  while (end > start && isWhite(text.charCodeAt(end - 1))) end--;
  return end;
}

function hasNonWhite(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (!isWhite(text.charCodeAt(i))) return true;
  return false;
}
