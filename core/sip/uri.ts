/**
 * SIP and SIPS URIs (RFC 3261 §19.1), parsed just far enough to route on.
 * @module
 */
import { digitsValue } from "./token.ts";

/** A parsed `sip:` / `sips:` URI. */
export interface SipUri {
  /** Lower-case scheme: `sip` or `sips`. */
  scheme: string;
  /** User part (may be empty), as written. */
  user: string;
  /** Host, lower case; IPv6 references keep their brackets (`[::1]`). */
  host: string;
  /** Port, or 0 when absent. */
  port: number;
  /** URI parameters, names lower case; a parameter without value maps to `""`. */
  params: ReadonlyMap<string, string>;
  /** Whether the URI has `?header=value` parts (allowed in Contact/Refer-To, not a Request-URI). */
  hasHeaders: boolean;
}

/** The parameters of a URI without any: one shared map (read-only by type), not one per URI. */
const NO_PARAMS: ReadonlyMap<string, string> = new Map();

/**
 * Parses a `sip:` or `sips:` URI; undefined when it is not one or is malformed. By offsets into
 * `text`: only the user, the host and the parameters are sliced (a Request-URI and a Route or
 * two per request).
 */
export function parseSipUri(text: string): SipUri | undefined {
  const colon = text.indexOf(":");
  const scheme = colon === 3 || colon === 4 ? sipScheme(text, colon) : undefined;
  if (scheme === undefined) return undefined;
  let user = "";
  let hostStart = colon + 1;
  // The first "@" ends the userinfo (which may hold ";" and "?"); "@" is not allowed
  // unescaped in the host, parameters or headers (§25.1).
  const at = text.indexOf("@", hostStart);
  if (at >= 0) {
    const password = text.indexOf(":", hostStart);
    user = text.slice(hostStart, password >= 0 && password < at ? password : at);
    hostStart = at + 1;
  }
  const q = text.indexOf("?", hostStart);
  const hasHeaders = q >= 0;
  const end = hasHeaders ? q : text.length;
  let semi = text.indexOf(";", hostStart);
  if (semi >= end) semi = -1;
  if (!readHostPort(text, hostStart, semi < 0 ? end : semi)) return undefined;
  const host = readHost;
  const port = readPort;
  let params: ReadonlyMap<string, string> = NO_PARAMS;
  if (semi >= 0) {
    const map = new Map<string, string>();
    for (const part of text.slice(semi + 1, end).split(";")) {
      if (part === "") continue;
      const eq = part.indexOf("=");
      if (eq < 0) map.set(part.toLowerCase(), "");
      else map.set(part.slice(0, eq).toLowerCase(), part.slice(eq + 1));
    }
    params = map;
  }
  return { scheme, user, host, port, params, hasHeaders };
}

/** `sip` or `sips` when `text[0, colon)` is one of them in any case, else undefined. */
function sipScheme(text: string, colon: number): string | undefined {
  if ((text.charCodeAt(0) | 0x20) !== 115 || (text.charCodeAt(1) | 0x20) !== 105) return undefined;
  if ((text.charCodeAt(2) | 0x20) !== 112) return undefined;
  if (colon === 3) return "sip";
  return (text.charCodeAt(3) | 0x20) === 115 ? "sips" : undefined;
}

/**
 * What is wrong with a `sip:`/`sips:` URI that {@link parseSipUri} refused, in words for a 400
 * reason phrase (`invalid port "99999"`).
 */
export function sipUriProblem(text: string): string {
  const colon = text.indexOf(":");
  let rest = colon < 0 ? "" : text.slice(colon + 1);
  const at = rest.indexOf("@");
  if (at >= 0) rest = rest.slice(at + 1);
  const end = rest.search(/[;?]/);
  const hostPort = end < 0 ? rest : rest.slice(0, end);
  if (hostPort === "") return "no host";
  const close = hostPort.lastIndexOf("]");
  const portColon = hostPort.lastIndexOf(":");
  if (portColon > close) {
    const port = hostPort.slice(portColon + 1);
    if (!/^[0-9]{1,5}$/.test(port) || Number(port) === 0 || Number(port) > 65535) {
      return `invalid port ${JSON.stringify(port.slice(0, 16))}`;
    }
    return `invalid host ${JSON.stringify(hostPort.slice(0, portColon).slice(0, 64))}`;
  }
  return `invalid host ${JSON.stringify(hostPort.slice(0, 64))}`;
}

/** Parses `host[:port]` (IPv6 in brackets); undefined when malformed. Host is lower case. */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  return readHostPort(text, 0, text.length) ? { host: readHost, port: readPort } : undefined;
}

/** What the last successful {@link readHostPort} read (module state: no object per call). */
let readHost = "";
let readPort = 0;

/** Reads `host[:port]` from `text[start, end)` into readHost / readPort; false when malformed. */
function readHostPort(text: string, start: number, end: number): boolean {
  // The port's ":" is the last one, after any "]" (an IPv6 reference holds colons).
  let colon = end - 1;
  while (colon >= start && text.charCodeAt(colon) !== 58 && text.charCodeAt(colon) !== 93) colon--;
  let port = 0;
  let hostEnd = end;
  if (colon >= start && text.charCodeAt(colon) === 58) {
    port = digitsValue(text, colon + 1, end, 5);
    if (port <= 0 || port > 65535) return false;
    hostEnd = colon;
  }
  const host = text.slice(start, hostEnd);
  if (!isHost(host)) return false;
  readHost = host.toLowerCase();
  readPort = port;
  return true;
}

/**
 * Whether `text` is a host (name, IPv4, or IPv6 reference in brackets): what the RegExp
 * `^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*|[0-9.]+)$` accepts, by hand (it runs for
 * every Via and URI on the hot path).
 */
export function isHost(text: string): boolean {
  const n = text.length;
  if (n === 0) return false;
  if (text.charCodeAt(0) === 91) { // "[": an IPv6 reference
    if (n < 3 || text.charCodeAt(n - 1) !== 93) return false;
    for (let i = 1; i < n - 1; i++) {
      const c = text.charCodeAt(i);
      const l = c | 0x20;
      if (!(isDigit(c) || (l >= 97 && l <= 102) || c === 58 || c === 46)) return false;
    }
    return true;
  }
  // A name starting with a letter or digit, or digits and dots only (".1" too, as before).
  let name = isAlnum(text.charCodeAt(0));
  let digitsAndDots = true;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (!(isAlnum(c) || c === 46 || c === 45)) name = false;
    if (!(isDigit(c) || c === 46)) digitsAndDots = false;
    if (!name && !digitsAndDots) return false;
  }
  return true;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isAlnum(c: number): boolean {
  const l = c | 0x20;
  return isDigit(c) || (l >= 97 && l <= 122);
}

/** Formats a host and port for a URI or Via (`[::1]:5060`, `example.com`). */
export function formatHostPort(host: string, port: number): string {
  const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return port > 0 ? `${h}:${port}` : h;
}

/** Strips IPv6 brackets: the form Deno's socket APIs take. */
export function bareHost(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}
