/**
 * Header values the proxy reads: comma-separated lists, parameters, Via (RFC 3261 §20.42),
 * name-addr values of Route / Record-Route (§20.30, §20.34), CSeq and numbers.
 * Offsets are kept so the proxy can edit one value of a multi-value line in place.
 * @module
 */
import { isHost } from "./uri.ts";

/** One element of a comma-separated header value: `text.slice(start, end)`. */
export interface ValueRange {
  start: number;
  end: number;
}

/**
 * Splits `text[start, end)` at commas that are outside quoted strings and `<…>`, trimming
 * white space around each element. Empty elements are skipped.
 */
export function splitCommaValues(
  text: string,
  start: number,
  end: number,
  limit = Infinity,
): ValueRange[] {
  const out: ValueRange[] = [];
  const comma = text.indexOf(",", start);
  if (comma < 0 || comma >= end) {
    // The common case, one value: no scan for quotes and brackets needed.
    let s = start;
    let e = end;
    while (s < e && isSpace(text.charCodeAt(s))) s++;
    while (e > s && isSpace(text.charCodeAt(e - 1))) e--;
    if (e > s) out.push({ start: s, end: e });
    return out;
  }
  let elementStart = start;
  let quoted = false;
  let angle = false;
  for (let i = start; i <= end; i++) {
    const c = i < end ? text.charCodeAt(i) : 44;
    if (quoted) {
      if (c === 92) i++; // backslash escapes the next character
      else if (c === 34) quoted = false;
      continue;
    }
    if (c === 34) quoted = true;
    else if (c === 60) angle = true;
    else if (c === 62) angle = false;
    else if (c === 44 && !angle) {
      let s = elementStart;
      let e = Math.min(i, end);
      while (s < e && isSpace(text.charCodeAt(s))) s++;
      while (e > s && isSpace(text.charCodeAt(e - 1))) e--;
      if (e > s && out.push({ start: s, end: e }) >= limit) return out;
      elementStart = i + 1;
    }
  }
  return out;
}

/** Parses `;name=value;flag` parameters; names lower case, a flag maps to `""`. */
export function parseParams(text: string): Map<string, string> {
  // One pass, no intermediate arrays: this runs for every Via, From and To on the hot path.
  const params = new Map<string, string>();
  let quoted = false;
  let start = 0;
  let eq = -1;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 59;
    if (quoted) {
      if (c === 92) i++;
      else if (c === 34) quoted = false;
      continue;
    }
    if (c === 34) quoted = true;
    else if (c === 61 && eq < 0) eq = i;
    else if (c === 59) {
      addParam(params, text, start, eq, i);
      start = i + 1;
      eq = -1;
    }
  }
  return params;
}

function addParam(
  params: Map<string, string>,
  text: string,
  start: number,
  eq: number,
  end: number,
) {
  const nameEnd = eq < 0 ? end : eq;
  let s = start;
  let e = nameEnd;
  while (s < e && isSpace(text.charCodeAt(s))) s++;
  while (e > s && isSpace(text.charCodeAt(e - 1))) e--;
  if (e === s) return;
  const name = text.slice(s, e).toLowerCase();
  if (eq < 0) {
    params.set(name, "");
    return;
  }
  s = eq + 1;
  e = end;
  while (s < e && isSpace(text.charCodeAt(s))) s++;
  while (e > s && isSpace(text.charCodeAt(e - 1))) e--;
  params.set(name, text.slice(s, e));
}

/** A parsed Via value. */
export interface Via {
  /** Transport in upper case: `TCP`, `TLS`, `UDP`, `WS`, … */
  transport: string;
  /** sent-by host, lower case (IPv6 in brackets). */
  host: string;
  /** sent-by port, or 0 when absent. */
  port: number;
  /** Parameters (branch, received, rport, i, …). */
  params: Map<string, string>;
}

/** Parses one Via value (`SIP/2.0/TCP host:port;branch=…`); undefined when malformed. */
export function parseVia(value: string): Via | undefined {
  const m = VIA.exec(value);
  if (m === null || !isHost(m[2])) return undefined;
  const port = m[3] === undefined ? 0 : Number(m[3]);
  if (port > 65535 || (m[3] !== undefined && port === 0)) return undefined;
  return {
    transport: m[1].toUpperCase(),
    host: m[2].toLowerCase(),
    port,
    params: m[4] === undefined ? new Map() : parseParams(m[4]),
  };
}

/** Whether a name-addr / addr-spec value is well formed (no allocation of its parameters). */
export function isNameAddr(value: string): boolean {
  const lt = findOutsideQuotes(value, 60);
  if (lt >= 0) {
    const gt = value.indexOf(">", lt);
    return gt > lt + 1;
  }
  const semi = value.indexOf(";");
  const uri = (semi < 0 ? value : value.slice(0, semi)).trim();
  return uri !== "" && !/\s/.test(uri);
}

/**
 * sent-protocol LWS sent-by *(;param), white space allowed around `/` and `:` (§25.1); `\s`
 * so that a folded value (CRLF + white space) parses too.
 */
const VIA =
  /^SIP\s*\/\s*2\.0\s*\/\s*([A-Za-z0-9-]+)\s+(\[[^\]\s]*\]|[^;:\s]+)(?:\s*:\s*([0-9]{1,5}))?\s*(;.*)?$/is;

/** The URI inside a name-addr (`"Bob" <sip:…>;p`) or addr-spec value, with header params. */
export interface NameAddr {
  uri: string;
  /** Header parameters after the URI (not URI parameters). */
  params: Map<string, string>;
}

/** Parses a name-addr / addr-spec value; undefined when malformed. */
export function parseNameAddr(value: string): NameAddr | undefined {
  const lt = findOutsideQuotes(value, 60);
  if (lt >= 0) {
    const gt = value.indexOf(">", lt);
    if (gt < 0) return undefined;
    const uri = value.slice(lt + 1, gt).trim();
    return uri === "" ? undefined : { uri, params: parseParams(value.slice(gt + 1)) };
  }
  const semi = value.indexOf(";");
  const uri = (semi < 0 ? value : value.slice(0, semi)).trim();
  if (uri === "" || /\s/.test(uri)) return undefined;
  return { uri, params: semi < 0 ? new Map() : parseParams(value.slice(semi)) };
}

/** Parses a CSeq value (`4711 INVITE`); undefined when malformed. */
export function parseCSeq(value: string): { seq: number; method: string } | undefined {
  const m = /^([0-9]{1,10})[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)$/.exec(value);
  if (m === null) return undefined;
  const seq = Number(m[1]);
  return seq > 0xffffffff ? undefined : { seq, method: m[2] };
}

/** The `tag` parameter of a From / To value, or undefined. */
export function tagOf(value: string): string | undefined {
  const parsed = parseNameAddr(value);
  return parsed?.params.get("tag");
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10;
}

function findOutsideQuotes(text: string, char: number): number {
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (quoted) {
      if (c === 92) i++;
      else if (c === 34) quoted = false;
    } else if (c === 34) quoted = true;
    else if (c === char) return i;
  }
  return -1;
}
