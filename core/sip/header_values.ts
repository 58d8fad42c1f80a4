/**
 * Header values the proxy reads: comma-separated lists, parameters, Via (RFC 3261 §20.42),
 * name-addr values of Route / Record-Route (§20.30, §20.34), CSeq and numbers.
 * Offsets are kept so the proxy can edit one value of a multi-value line in place.
 * @module
 */
import { isHost } from "./uri.ts";
import { keepShapeOf } from "../keep_shape.ts";
import { digitsValue, isRegExpSpace, isTokenAt } from "./token.ts";

/** One element of a comma-separated header value: `text.slice(start, end)`. */
export interface ValueRange {
  start: number;
  end: number;
}

/**
 * Splits `text[start, end)` at commas that are outside quoted strings and `<...>`, trimming
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
    const only = trimmedRange(text, start, end);
    if (only !== undefined) out.push(only);
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

/**
 * The first element of `text[start, end)` as {@link splitCommaValues} gives it, without an array:
 * a request's top Via, on every request.
 */
export function firstCommaValue(text: string, start: number, end: number): ValueRange | undefined {
  const comma = text.indexOf(",", start);
  if (comma >= 0 && comma < end) return splitCommaValues(text, start, end, 1)[0];
  return trimmedRange(text, start, end);
}

/** `text[start, end)` without white space around it; undefined when nothing is left. */
function trimmedRange(text: string, start: number, end: number): ValueRange | undefined {
  while (start < end && isSpace(text.charCodeAt(start))) start++;
  while (end > start && isSpace(text.charCodeAt(end - 1))) end--;
  return end > start ? { start, end } : undefined;
}

/** Parses `;name=value;flag` parameters; names lower case, a flag maps to `""`. */
export function parseParams(text: string): Map<string, string> {
  const params = new Map<string, string>();
  scanParams(text, (start, eq, end) => {
    const nameStart = trimStart(text, start, eq < 0 ? end : eq);
    const nameEnd = trimEnd(text, nameStart, eq < 0 ? end : eq);
    if (nameEnd === nameStart) return;
    params.set(text.slice(nameStart, nameEnd).toLowerCase(), paramValue(text, eq, end));
  });
  return params;
}

/**
 * Calls `visit(start, eq, end)` for each `;`-separated parameter of `text`, in order: `eq` is the
 * offset of its first `=` (-1 for a flag). `;` and `=` inside quoted strings do not count. One
 * pass, no intermediate arrays: this runs for every Via, From and To on the hot path.
 */
function scanParams(text: string, visit: (start: number, eq: number, end: number) => void): void {
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
      visit(start, eq, i);
      start = i + 1;
      eq = -1;
    }
  }
}

function trimStart(text: string, start: number, end: number): number {
  while (start < end && isSpace(text.charCodeAt(start))) start++;
  return start;
}

function trimEnd(text: string, start: number, end: number): number {
  while (end > start && isSpace(text.charCodeAt(end - 1))) end--;
  return end;
}

/** A parsed Via value. */
export interface Via {
  /** Transport in upper case: `TCP`, `TLS`, `UDP`, `WS`, ... */
  transport: string;
  /** sent-by host, lower case (IPv6 in brackets). */
  host: string;
  /** sent-by port, or 0 when absent. */
  port: number;
  /** Parameters (branch, received, rport, i, ...), names lower case. */
  params: ReadonlyMap<string, string>;
}

/** Parses one Via value (`SIP/2.0/TCP host:port;branch=...`); undefined when malformed. */
export function parseVia(value: string): Via | undefined {
  // sent-protocol LWS sent-by *(;param), white space allowed around `/` and `:` (§25.1), any
  // white space (a folded value holds CRLF): by hand, as the RegExp
  // `^SIP\s*\/\s*2\.0\s*\/\s*([A-Za-z0-9-]+)\s+(\[[^\]\s]*\]|[^;:\s]+)(?:\s*:\s*([0-9]{1,5}))?\s*(;.*)?$`
  // (flags i, s) did -- same acceptance (header_values_test.ts), a fifth of its cost.
  const n = value.length;
  if (n < 9 || (value.charCodeAt(0) | 0x20) !== 115 || (value.charCodeAt(1) | 0x20) !== 105) {
    return undefined;
  }
  if ((value.charCodeAt(2) | 0x20) !== 112) return undefined; // "sip", any case
  let i = skipSpace(value, 3);
  if (value.charCodeAt(i) !== 47) return undefined; // "/"
  i = skipSpace(value, i + 1);
  if (value.charCodeAt(i) !== 50 || value.charCodeAt(i + 1) !== 46) return undefined; // "2."
  if (value.charCodeAt(i + 2) !== 48) return undefined; // "0"
  i = skipSpace(value, i + 3);
  if (value.charCodeAt(i) !== 47) return undefined; // "/"
  i = skipSpace(value, i + 1);
  const transportStart = i;
  while (i < n && isTransportChar(value.charCodeAt(i))) i++;
  if (i === transportStart) return undefined;
  const transportEnd = i;
  i = skipSpace(value, i);
  if (i === transportEnd) return undefined; // LWS required before sent-by
  const hostStart = i;
  if (value.charCodeAt(i) === 91) { // "[": an IPv6 reference
    while (++i < n && value.charCodeAt(i) !== 93 && !isRegExpSpace(value.charCodeAt(i)));
    if (value.charCodeAt(i) !== 93) return undefined;
    i++;
  } else {
    while (i < n) {
      const c = value.charCodeAt(i);
      if (c === 59 || c === 58 || isRegExpSpace(c)) break;
      i++;
    }
    if (i === hostStart) return undefined;
  }
  const host = value.slice(hostStart, i);
  if (!isHost(host)) return undefined;
  let port = 0;
  i = skipSpace(value, i);
  if (value.charCodeAt(i) === 58) { // ":"
    i = skipSpace(value, i + 1);
    const portStart = i;
    while (i < n && i - portStart < 6 && isDigit(value.charCodeAt(i))) i++;
    port = digitsValue(value, portStart, i, 5);
    if (port <= 0 || port > 65535) return undefined;
    i = skipSpace(value, i);
  }
  if (i < n && value.charCodeAt(i) !== 59) return undefined; // only parameters may follow
  return {
    transport: value.slice(transportStart, transportEnd).toUpperCase(),
    host: host.toLowerCase(),
    port,
    params: i < n ? new ParamList(value.slice(i), i) : NO_PARAMS,
  };
}

const NO_PARAMS: ReadonlyMap<string, string> = new Map();

/** Where a parameter is in the value it was read from (see {@link ParamList.span}). */
export interface ParamSpan {
  /** Offset of the `;` before it. */
  start: number;
  /** Offset after its name. */
  nameEnd: number;
  /** Offset after its value (of the next `;`, or the end of the value). */
  end: number;
}

/** {@link ParamList.span} of a Via's (or other) parameters; undefined when not a ParamList. */
export function paramSpan(
  params: ReadonlyMap<string, string>,
  name: string,
): ParamSpan | undefined {
  return params instanceof ParamList ? params.span(name) : undefined;
}

/**
 * `;name=value;flag` parameters read from their text when asked for, the same as
 * {@link parseParams} gives (names case-insensitive, a flag is `""`, the last of a repeated
 * name wins): a proxy asks a Via for two or three of them, where the map sliced and lower-cased
 * every name and value (a Via parsed and asked for three: 1.5 -> 1.2 µs, deno bench).
 */
export class ParamList implements ReadonlyMap<string, string> {
  readonly #text: string;
  /** Where `#text` starts in the value it was read from (for {@link span}). */
  readonly #offset: number;
  /** Per parameter: name start and end (trimmed), `=` (-1 for a flag), end; made on first get. */
  #ranges: number[] | undefined;
  #map: Map<string, string> | undefined;

  /** `text`: the parameters (`;a=1;b`), found at `offset` of the value they were read from. */
  constructor(text: string, offset = 0) {
    this.#text = text;
    this.#offset = offset;
  }

  /** The value of parameter `name` (lower case), `""` for a flag, undefined when absent. */
  get(name: string): string | undefined {
    if (this.#map !== undefined) return this.#map.get(name);
    const found = this.#find(name);
    if (found < 0) return undefined;
    const ranges = this.#ranges!;
    return paramValue(this.#text, ranges[found + 2], ranges[found + 3]);
  }

  /**
   * Where the parameter that {@link get} reads is, as offsets in the value the parameters were
   * read from: its `;` (what precedes the name: white space may follow it), the end of its name,
   * and the end of its value (the next `;`, or the end). For editing it in place; undefined when
   * absent.
   */
  span(name: string): ParamSpan | undefined {
    const found = this.#find(name);
    if (found < 0) return undefined;
    const text = this.#text;
    const ranges = this.#ranges!;
    let start = ranges[found];
    while (start > 0 && text.charCodeAt(start - 1) !== 59) start--; // back over white space
    if (start > 0) start--;
    const offset = this.#offset;
    return {
      start: offset + start,
      nameEnd: offset + ranges[found + 1],
      end: offset + ranges[found + 3],
    };
  }

  /** Index in `#ranges` of the last parameter named `name` (as in a Map, the last one wins). */
  #find(name: string): number {
    const text = this.#text;
    const ranges = this.#ranges ??= paramRanges(text);
    let found = -1;
    for (let i = 0; i < ranges.length; i += 4) {
      if (nameIs(text, ranges[i], ranges[i + 1], name)) found = i;
    }
    return found;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  get size(): number {
    return this.#all().size;
  }

  forEach(
    callback: (value: string, key: string, map: ReadonlyMap<string, string>) => void,
    thisArg?: unknown,
  ): void {
    this.#all().forEach((value, key) => callback.call(thisArg, value, key, this));
  }

  entries(): MapIterator<[string, string]> {
    return this.#all().entries();
  }

  keys(): MapIterator<string> {
    return this.#all().keys();
  }

  values(): MapIterator<string> {
    return this.#all().values();
  }

  [Symbol.iterator](): MapIterator<[string, string]> {
    return this.#all()[Symbol.iterator]();
  }

  #all(): Map<string, string> {
    return this.#map ??= parseParams(this.#text);
  }
}

// The map of a ParamList that has been read (see core/keep_shape.ts).
keepShapeOf(new ParamList(";x", 0)).get("x");

/** Offsets of each parameter with a name (see ParamList's `#ranges`), in one pass. */
function paramRanges(text: string): number[] {
  const ranges: number[] = [];
  scanParams(text, (start, eq, end) => {
    const nameStart = trimStart(text, start, eq < 0 ? end : eq);
    const nameEnd = trimEnd(text, nameStart, eq < 0 ? end : eq);
    if (nameEnd > nameStart) ranges.push(nameStart, nameEnd, eq, end); // no empty names
  });
  return ranges;
}

/** Whether `text[start, end)` is `name` (lower case), ignoring case. */
function nameIs(text: string, start: number, end: number, name: string): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) {
    const c = text.charCodeAt(start + i);
    const k = name.charCodeAt(i);
    if (c === k || (c >= 65 && c <= 90 && c + 32 === k)) continue;
    // Beyond ASCII, lower case as parseParams does (À -> à).
    return c > 127 && text.slice(start, end).toLowerCase() === name;
  }
  return true;
}

/** The trimmed value after `eq` up to `end`; `""` for a flag (no `=`). */
function paramValue(text: string, eq: number, end: number): string {
  if (eq < 0) return "";
  const start = trimStart(text, eq + 1, end);
  return text.slice(start, trimEnd(text, start, end));
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isRegExpSpace(text.charCodeAt(i))) i++;
  return i;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** `[A-Za-z0-9-]`: the characters of a Via transport. */
function isTransportChar(c: number): boolean {
  const l = c | 0x20;
  return (l >= 97 && l <= 122) || isDigit(c) || c === 45;
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

/** The URI inside a name-addr (`"Bob" <sip:...>;p`) or addr-spec value, with header params. */
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
  // By hand, as the RegExp `^([0-9]{1,10})[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)$` did (one per request).
  let i = 0;
  while (i < value.length && i <= 10 && isDigit(value.charCodeAt(i))) i++;
  if (i === 0 || i > 10) return undefined;
  const digits = i;
  while (value.charCodeAt(i) === 32 || value.charCodeAt(i) === 9) i++;
  if (i === digits || !isTokenAt(value, i, value.length)) return undefined;
  const seq = digitsValue(value, 0, digits, 10);
  return seq > 0xffffffff ? undefined : { seq, method: value.slice(i) };
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
