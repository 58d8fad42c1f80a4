/**
 * The parsed head of a SIP message (start line and header fields, RFC 3261 §7).
 *
 * The head is kept as a latin1 string whose offsets are byte offsets into the message, and
 * every header field is a set of offsets into it: nothing is copied until a value is asked
 * for, and a proxy can forward every field it does not change byte for byte.
 * @module
 */

/** One header field line (with its folded continuation lines), as offsets into the head. */
export interface HeaderField {
  /** Canonical name: lower case, compact forms expanded (`v` -> `via`). */
  name: string;
  /** Offset of the first byte of the line. */
  start: number;
  /** Offset of the first byte of the value (after `:` and leading white space). */
  valueStart: number;
  /** Offset after the last non-white-space byte of the value. */
  valueEnd: number;
  /** Offset after the line terminator of the last line of this field. */
  end: number;
  /** Whether the value spans several lines (RFC 3261 §7.3.1 line folding). */
  folded: boolean;
}

/** A parsed message head. */
export interface SipHead {
  /** The head as latin1 text, including the empty line that ends it. */
  text: string;
  /** True for a request, false for a response. */
  isRequest: boolean;
  /** Request method (requests), or `""`. */
  method: string;
  /** Request-URI as written (requests), or `""`. */
  uri: string;
  /** SIP version of the start line, e.g. `SIP/2.0`. */
  version: string;
  /** Status code (responses), or 0. */
  status: number;
  /** Reason phrase (responses), or `""`. */
  reason: string;
  /** Offset after the start line's terminator: where the header fields begin. */
  headersStart: number;
  /** Header fields in order. */
  headers: HeaderField[];
  /** Content-Length value; -1 when absent. */
  contentLength: number;
  /**
   * The first syntax problem found, worded for a 400 reason phrase, or undefined. A head with
   * an error can still be framed (its Content-Length was readable) unless `fatal` is set.
   */
  error: string | undefined;
}

/** Compact header forms (RFC 3261 §7.3.3 and the extensions that define one). */
export const COMPACT_FORMS: Readonly<Record<string, string>> = {
  a: "accept-contact",
  b: "referred-by",
  c: "content-type",
  d: "request-disposition",
  e: "content-encoding",
  f: "from",
  i: "call-id",
  j: "reject-contact",
  k: "supported",
  l: "content-length",
  m: "contact",
  n: "identity-info",
  o: "event",
  r: "refer-to",
  s: "subject",
  t: "to",
  u: "allow-events",
  v: "via",
  x: "session-expires",
  y: "identity",
};

/** Returns the canonical (lower-case, long-form) name of a header name as written. */
export function canonicalHeaderName(name: string): string {
  const lower = name.toLowerCase();
  if (lower.length === 1) return COMPACT_FORMS[lower] ?? lower;
  return lower;
}

/** The first field named `name` (canonical), or undefined. */
export function findHeader(head: SipHead, name: string): HeaderField | undefined {
  for (const h of head.headers) if (h.name === name) return h;
  return undefined;
}

/** The value of a field, with folded lines joined by one space. */
export function headerValue(head: SipHead, field: HeaderField): string {
  const raw = head.text.slice(field.valueStart, field.valueEnd);
  return field.folded ? raw.replace(/[ \t]*\r?\n[ \t]+/g, " ").trim() : raw;
}

/** The value of the first field named `name`, or undefined. */
export function getHeader(head: SipHead, name: string): string | undefined {
  const field = findHeader(head, name);
  return field === undefined ? undefined : headerValue(head, field);
}

/** Every field named `name`, in order. */
export function findHeaders(head: SipHead, name: string): HeaderField[] {
  const out: HeaderField[] = [];
  for (const h of head.headers) if (h.name === name) out.push(h);
  return out;
}
