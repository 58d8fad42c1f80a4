/**
 * A bare SIP-over-WebSocket server for the runtime comparison of issue 13: what one idle
 * WebSocket connection costs in each way Deno can serve it, without sipedge on top. Every mode
 * answers an OPTIONS with 200 (Via, From, To, Call-ID, CSeq copied) so that scripts/wsload.ts
 * `idle` can check each connection works before it holds it.
 *
 *   deno run -A --unstable-net docs/benchmarks/issue13/bare_server.ts MODE PORT [CERT KEY]
 *
 * MODE:
 *   serve      Deno.serve + Deno.upgradeWebSocket (ws)
 *   serve_tls  Deno.serve with cert/key + Deno.upgradeWebSocket (wss)
 *   raw        Deno.listen, a minimal RFC 6455 handshake and framing in JS, one pending 2 KB
 *              conn.read() per connection (ws; the approach of plugins/websocket over tcp)
 *   raw_tls    the same over Deno.listenTls (wss; single certificate)
 *   node_tls   node:tls createServer + the same handshake and framing on 'data' events (wss;
 *              the approach of plugins/websocket over plugins/tls)
 *   node_net   node:net createServer + the same (ws), for reference
 *   npm_ws     npm `ws` WebSocketServer over node:http (ws)
 *   npm_wss    npm `ws` WebSocketServer over node:https (wss)
 *
 * BUF (environment, default 2048): read buffer of the raw modes.
 * Prints "READY <mode> <port>" when it listens. SIGTERM ends it.
 * @module
 */
import { createHash } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import http from "node:http";
import https from "node:https";

const [mode, portText, certFile, keyFile] = Deno.args;
const port = Number(portText);
const BUF = Number(Deno.env.get("BUF") ?? 2048);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** The 200 for a SIP request (text), or undefined for anything else. */
function answer(request: string): string | undefined {
  if (request.startsWith("SIP/2.0")) return undefined;
  const lines = request.split("\r\n");
  const keep: string[] = [];
  for (const line of lines) {
    const name = line.slice(0, line.indexOf(":")).trim().toLowerCase();
    if (["via", "v", "from", "f", "call-id", "i", "cseq"].includes(name)) keep.push(line);
    else if (name === "to" || name === "t") {
      keep.push(line.includes("tag=") ? line : `${line};tag=bare`);
    }
  }
  return `SIP/2.0 200 OK\r\n${keep.join("\r\n")}\r\nContent-Length: 0\r\n\r\n`;
}

function acceptKey(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

function handshakeAnswer(head: string): string {
  const m = /\r\nsec-websocket-key:\s*(\S+)/i.exec(head);
  if (!m) return "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${acceptKey(m[1])}\r\nSec-WebSocket-Protocol: sip\r\n\r\n`;
}

/** An unmasked server text frame. */
function frame(text: string): Uint8Array {
  const payload = encoder.encode(text);
  const h = payload.length < 126 ? 2 : 4;
  const out = new Uint8Array(h + payload.length);
  out[0] = 0x81;
  if (h === 2) out[1] = payload.length;
  else {
    out[1] = 126;
    out[2] = payload.length >> 8;
    out[3] = payload.length & 0xff;
  }
  out.set(payload, h);
  return out;
}

/**
 * The handshake and framing of one connection, fed with bytes, writing through `write`.
 * Keeps nothing between messages but what is incomplete.
 */
class WsServerConn {
  #acc: Uint8Array | undefined;
  #open = false;
  constructor(readonly write: (b: Uint8Array) => void, readonly close: () => void) {}

  feed(chunk: Uint8Array): void {
    let data = chunk;
    if (this.#acc) {
      data = new Uint8Array(this.#acc.length + chunk.length);
      data.set(this.#acc);
      data.set(chunk, this.#acc.length);
      this.#acc = undefined;
    }
    let at = 0;
    if (!this.#open) {
      const text = decoder.decode(data);
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) {
        this.#acc = data.slice();
        return;
      }
      this.write(encoder.encode(handshakeAnswer(text.slice(0, end + 2))));
      this.#open = true;
      at = end + 4;
    }
    while (at < data.length) {
      const avail = data.length - at;
      if (avail < 2) break;
      let len = data[at + 1] & 0x7f;
      let h = 2;
      if (len === 126) {
        if (avail < 4) break;
        len = (data[at + 2] << 8) | data[at + 3];
        h = 4;
      } else if (len === 127) {
        this.close();
        return;
      }
      const masked = (data[at + 1] & 0x80) !== 0;
      if (masked) h += 4;
      if (avail < h + len) break;
      const payload = data.slice(at + h, at + h + len);
      if (masked) {
        for (let i = 0; i < len; i++) payload[i] ^= data[at + h - 4 + (i & 3)];
      }
      const opcode = data[at] & 0x0f;
      if (opcode === 1 || opcode === 2) {
        const reply = answer(decoder.decode(payload));
        if (reply) this.write(frame(reply));
      } else if (opcode === 8) {
        this.write(new Uint8Array([0x88, 0]));
        this.close();
        return;
      } else if (opcode === 9) {
        this.write(new Uint8Array([0x8a, 0]));
      }
      at += h + len;
    }
    if (at < data.length) this.#acc = data.slice(at);
  }
}

/** One Deno stream connection: a pending read of BUF bytes, a serialized write chain. */
function serveDenoConn(conn: Deno.Conn): void {
  // Accepted Deno.TcpConn sockets keep Nagle's algorithm on (sipedge's tcp plugin turns it off):
  // without this, a second small write waits for the peer's ACK (≈2.4 ms median here).
  // Deno.TlsConn has no setNoDelay.
  if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
  let chain = Promise.resolve();
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch { /* closed */ }
  };
  const ws = new WsServerConn((b) => {
    chain = chain.then(async () => {
      let off = 0;
      while (off < b.length) off += await conn.write(b.subarray(off));
    }).catch(close);
  }, close);
  (async () => {
    const buf = new Uint8Array(BUF);
    try {
      while (!closed) {
        const n = await conn.read(buf);
        if (n === null) break;
        ws.feed(buf.subarray(0, n));
      }
    } catch { /* reset */ }
    close();
  })();
}

/** One node socket (net or tls). */
function serveNodeSocket(socket: net.Socket): void {
  socket.setNoDelay(true);
  const ws = new WsServerConn((b) => socket.write(b), () => socket.destroy());
  socket.on("data", (b: Uint8Array) => ws.feed(b));
  socket.on("error", () => socket.destroy());
}

function onWebSocket(socket: WebSocket): void {
  socket.onmessage = (e) => {
    const reply = answer(typeof e.data === "string" ? e.data : decoder.decode(e.data));
    if (reply) socket.send(reply);
  };
}

const hostname = "127.0.0.1";
const cert = certFile ? Deno.readTextFileSync(certFile) : undefined;
const key = keyFile ? Deno.readTextFileSync(keyFile) : undefined;
const needCert = () => {
  if (!cert || !key) throw new Error(`${mode} needs CERT and KEY files`);
  return { cert, key };
};
const ready = () => console.log(`READY ${mode} ${port}`);

function upgradeHandler(req: Request): Response {
  const { socket, response } = Deno.upgradeWebSocket(req, { protocol: "sip" });
  onWebSocket(socket);
  return response;
}

switch (mode) {
  case "serve":
    Deno.serve({ hostname, port, onListen: ready }, upgradeHandler);
    break;
  case "serve_tls":
    Deno.serve({ hostname, port, ...needCert(), onListen: ready }, upgradeHandler);
    break;
  case "raw":
  case "raw_tls": {
    const listener = mode === "raw"
      ? Deno.listen({ hostname, port })
      : Deno.listenTls({ hostname, port, ...needCert() });
    ready();
    for await (const conn of listener) serveDenoConn(conn);
    break;
  }
  case "node_tls": {
    const server = tls.createServer(needCert(), serveNodeSocket);
    server.listen(port, hostname, ready);
    break;
  }
  case "node_net": {
    const server = net.createServer(serveNodeSocket);
    server.listen(port, hostname, ready);
    break;
  }
  case "npm_ws":
  case "npm_wss": {
    const { WebSocketServer } = await import("npm:ws@8");
    const server = mode === "npm_ws" ? http.createServer() : https.createServer(needCert());
    const wss = new WebSocketServer({
      server,
      handleProtocols: (protocols: Set<string>) => protocols.has("sip") ? "sip" : false,
    });
    // deno-lint-ignore no-explicit-any
    wss.on("connection", (ws: any) => {
      ws.on("message", (data: Uint8Array) => {
        const reply = answer(decoder.decode(data));
        if (reply) ws.send(reply);
      });
    });
    server.listen(port, hostname, ready);
    break;
  }
  default:
    console.error(`unknown mode ${mode}`);
    Deno.exit(2);
}
