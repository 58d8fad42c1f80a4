/**
 * The WebSocket opening handshake (RFC 6455 §4) for SIP (RFC 7118 §4): the server side checks
 * an HTTP/1.1 GET upgrade request -- path, Origin, `Sec-WebSocket-Protocol: sip` -- and answers
 * 101 with the `sip` subprotocol or an HTTP error; the client side builds the request and checks
 * the server's answer.
 * @module
 */
import { createHash } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** The largest handshake request or response head accepted. */
export const MAX_HANDSHAKE_BYTES = 8192;

/** An HTTP request or response head. */
export interface HttpHead {
  /** The first line's three parts: method, target, version (request) or version, code, reason. */
  start: [string, string, string];
  /** Header fields by lower-case name; repeated fields joined with ", ". */
  headers: Map<string, string>;
}

/**
 * Finds the end of an HTTP head in `data` (the index after the empty line), or -1. Only
 * CRLF CRLF ends a head (RFC 9112 allows a bare LF, but browsers and SIP stacks send CRLF).
 */
export function headEnd(data: Uint8Array): number {
  for (let i = 3; i < data.length; i++) {
    if (data[i] === 10 && data[i - 1] === 13 && data[i - 2] === 10 && data[i - 3] === 13) {
      return i + 1;
    }
  }
  return -1;
}

/** Parses a head (without the final empty line); undefined when it is not HTTP/1.x-shaped. */
export function parseHttpHead(text: string): HttpHead | undefined {
  const lines = text.split("\r\n");
  const start = lines[0].split(" ");
  if (start.length < 3) return undefined;
  const first: [string, string, string] = [start[0], start[1], start.slice(2).join(" ")];
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const before = headers.get(name);
    headers.set(name, before === undefined ? value : `${before}, ${value}`);
  }
  return { start: first, headers };
}

/** What the server checks a handshake against (the plugin's settings). */
export interface ServerPolicy {
  /** Accepted request paths; empty: any. */
  paths: readonly string[];
  /** Accepted Origin values (lower case, `scheme://host[:port]`); empty: any. */
  allowedOrigins: readonly string[];
}

/** The server's decision on a request head. */
export type ServerDecision =
  | { ok: true; response: string; path: string; origin: string | undefined }
  | { ok: false; status: number; reason: string; response: string; why: string };

/** Checks an upgrade request and builds the answer. */
export function answerHandshake(head: HttpHead, policy: ServerPolicy): ServerDecision {
  const [method, target, version] = head.start;
  const refuse = (status: number, reason: string, why: string, extra: string[] = []) => ({
    ok: false as const,
    status,
    reason,
    why,
    response: httpError(status, reason, why, extra),
  });
  if (!/^HTTP\/1\.[01]$/.test(version)) {
    return refuse(505, "HTTP Version Not Supported", `not HTTP/1.1: ${version}`);
  }
  const path = target.split("?")[0];
  if (policy.paths.length > 0 && !policy.paths.includes(path)) {
    return refuse(404, "Not Found", `path ${path} is not a SIP WebSocket path`);
  }
  const upgrade = head.headers.get("upgrade")?.toLowerCase() ?? "";
  if (method !== "GET" || !tokens(upgrade).includes("websocket")) {
    return refuse(404, "Not Found", "not a WebSocket upgrade request");
  }
  if (!tokens(head.headers.get("connection")?.toLowerCase() ?? "").includes("upgrade")) {
    return refuse(400, "Bad Request", "Connection does not include Upgrade");
  }
  if (head.headers.get("sec-websocket-version") !== "13") {
    return refuse(426, "Upgrade Required", "Sec-WebSocket-Version is not 13", [
      "Sec-WebSocket-Version: 13",
    ]);
  }
  const key = head.headers.get("sec-websocket-key") ?? "";
  if (!/^[A-Za-z0-9+/]{22}==$/.test(key)) {
    return refuse(400, "Bad Request", "missing or malformed Sec-WebSocket-Key");
  }
  const origin = head.headers.get("origin");
  if (
    origin !== undefined && policy.allowedOrigins.length > 0 &&
    !policy.allowedOrigins.includes(origin.toLowerCase())
  ) {
    return refuse(403, "Forbidden", `origin ${origin} is not allowed`);
  }
  const protocols = tokens(head.headers.get("sec-websocket-protocol")?.toLowerCase() ?? "");
  if (!protocols.includes("sip")) {
    return refuse(400, "Bad Request", 'Sec-WebSocket-Protocol does not offer "sip"');
  }
  const response = "HTTP/1.1 101 Switching Protocols\r\n" +
    "Upgrade: websocket\r\n" +
    "Connection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n` +
    "Sec-WebSocket-Protocol: sip\r\n\r\n";
  return { ok: true, response, path, origin };
}

/** An HTTP error response that closes the connection. */
export function httpError(status: number, reason: string, body: string, extra: string[] = []) {
  const text = `${body}\n`;
  return `HTTP/1.1 ${status} ${reason}\r\n` +
    "Connection: close\r\n" +
    "Content-Type: text/plain; charset=utf-8\r\n" +
    extra.map((line) => `${line}\r\n`).join("") +
    `Content-Length: ${new TextEncoder().encode(text).length}\r\n\r\n${text}`;
}

/** The Sec-WebSocket-Accept value for a key (RFC 6455 §4.2.2). */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

/** A client's upgrade request, and the key it sent (to check the answer). */
export function clientRequest(
  host: string,
  port: number,
  path: string,
  defaultPort: number,
): { request: string; key: string } {
  const nonce = new Uint8Array(16);
  crypto.getRandomValues(nonce);
  const key = btoa(String.fromCharCode(...nonce));
  const hostPart = host.includes(":") ? `[${host}]` : host;
  const request = `GET ${path} HTTP/1.1\r\n` +
    `Host: ${port === defaultPort ? hostPart : `${hostPart}:${port}`}\r\n` +
    "Upgrade: websocket\r\n" +
    "Connection: Upgrade\r\n" +
    `Sec-WebSocket-Key: ${key}\r\n` +
    "Sec-WebSocket-Version: 13\r\n" +
    "Sec-WebSocket-Protocol: sip\r\n" +
    "User-Agent: sipedge\r\n\r\n";
  return { request, key };
}

/** Why a server's answer to our request is not an accepted `sip` upgrade, or undefined. */
export function checkServerAnswer(head: HttpHead, key: string): string | undefined {
  const [version, code, reason] = head.start;
  if (!version.startsWith("HTTP/1.")) return "not an HTTP response";
  if (code !== "101") return `the server answered ${code} ${reason}`;
  if (head.headers.get("sec-websocket-accept") !== acceptKey(key)) {
    return "wrong Sec-WebSocket-Accept";
  }
  if (head.headers.get("sec-websocket-protocol")?.toLowerCase() !== "sip") {
    return 'the server did not select the "sip" subprotocol';
  }
  return undefined;
}

/** Comma-separated tokens, trimmed. */
function tokens(value: string): string[] {
  return value.split(",").map((t) => t.trim()).filter((t) => t !== "");
}
