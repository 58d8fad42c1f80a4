/**
 * What a datagram (UDP) listener reads: one datagram is one message (RFC 3261 §18.3), or a
 * keepalive (RFC 5626 §4.4.1: CRLF or double CRLF, not answered), or a STUN binding request on
 * the SIP port (RFC 5389, used by RFC 5626 clients to keep their NAT binding), answered with
 * the address it came from.
 * @module
 */
import type { SipHead } from "../sip/head.ts";
import { CONTENT_LENGTH_INVALID, parseHead } from "../sip/parse_head.ts";
import { latin1Decode } from "../sip/latin1.ts";
import type { SocketAddress } from "./types.ts";

/** A datagram, framed. */
export type DatagramFrame =
  /**
   * A SIP message: its head and its bytes (a copy unless `copy` was false: a receive buffer is
   * reused); the body starts at `bodyStart`.
   */
  | { type: "message"; head: SipHead; bytes: Uint8Array; bodyStart: number }
  /** A request whose head is readable but whose body is shorter than its Content-Length. */
  | { type: "reject"; head: SipHead; why: string }
  /** Not SIP, or too large: dropped silently (answering garbage over UDP is amplification). */
  | { type: "drop"; why: string };

/**
 * Frames one datagram, or one WebSocket message (RFC 7118: one message per WebSocket message):
 * Content-Length optional; bytes beyond it ignored; shorter -> 400. `copy`: false when `data`
 * is the message's own buffer (the bytes are then a view of it).
 */
export function frameDatagram(
  data: Uint8Array,
  maxMessageSize: number,
  copy = true,
): DatagramFrame {
  if (data.length > maxMessageSize) return { type: "drop", why: "larger than max_message_size" };
  const headEnd = findHeadEnd(data);
  if (headEnd < 0) return { type: "drop", why: "no end of head" };
  const head = parseHead(latin1Decode(data, 0, headEnd));
  if (!head.isRequest && head.status === 0) return { type: "drop", why: "not a SIP message" };
  if (head.isRequest && !/^[A-Za-z]+$/.test(head.method)) {
    return { type: "drop", why: "not a SIP request line" };
  }
  const rest = data.length - headEnd;
  let length = head.contentLength;
  if (length === CONTENT_LENGTH_INVALID) {
    return head.isRequest
      ? { type: "reject", head, why: "Invalid Content-Length" }
      : { type: "drop", why: "invalid Content-Length" };
  }
  if (length < 0) length = rest; // optional over UDP: the body is the rest of the datagram
  if (length > rest) {
    return head.isRequest
      ? { type: "reject", head, why: "Body shorter than Content-Length" }
      : { type: "drop", why: "body shorter than Content-Length" };
  }
  const end = headEnd + length;
  return {
    type: "message",
    head,
    bytes: copy ? data.slice(0, end) : data.subarray(0, end),
    bodyStart: headEnd,
  };
}

/** Whether a datagram is only CRs and LFs (a keepalive). */
export function isKeepalive(data: Uint8Array): boolean {
  if (data.length === 0 || data.length > 4) return false;
  for (const b of data) if (b !== 13 && b !== 10) return false;
  return true;
}

const MAGIC_COOKIE = 0x2112a442;

/**
 * The STUN binding success response (RFC 5389 §7.3.1) to a binding request, with
 * XOR-MAPPED-ADDRESS = `from`; undefined when `data` is not a STUN binding request.
 */
export function stunBindingResponse(data: Uint8Array, from: SocketAddress): Uint8Array | undefined {
  if (data.length < 20 || (data[0] & 0xc0) !== 0) return undefined;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (view.getUint32(4) !== MAGIC_COOKIE || view.getUint16(0) !== 0x0001) return undefined;
  if (view.getUint16(2) + 20 !== data.length) return undefined;
  const ip = ipBytes(from.hostname);
  if (ip === undefined) return undefined;
  const attribute = 4 + 4 + ip.length; // type+length, family+port, address
  const out = new Uint8Array(20 + attribute);
  const o = new DataView(out.buffer);
  o.setUint16(0, 0x0101); // binding success response
  o.setUint16(2, attribute);
  out.set(data.subarray(4, 20), 4); // magic cookie and transaction id
  o.setUint16(20, 0x0020); // XOR-MAPPED-ADDRESS
  o.setUint16(22, 4 + ip.length);
  o.setUint8(25, ip.length === 4 ? 0x01 : 0x02);
  o.setUint16(26, from.port ^ (MAGIC_COOKIE >>> 16));
  for (let i = 0; i < ip.length; i++) out[28 + i] = ip[i] ^ out[4 + i]; // cookie, then id
  return out;
}

function findHeadEnd(data: Uint8Array): number {
  for (let i = 0; i + 1 < data.length; i++) {
    if (data[i] !== 10) continue;
    if (data[i + 1] === 10) return i + 2;
    if (data[i + 1] === 13 && data[i + 2] === 10) return i + 3;
  }
  return -1;
}

function ipBytes(host: string): Uint8Array | undefined {
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(host);
  if (v4 !== null) return new Uint8Array(v4.slice(1).map(Number));
  if (!host.includes(":")) return undefined;
  const [head, tail = ""] = host.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === "" ? [] : tail.split(":");
  const groups = [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  return out;
}
