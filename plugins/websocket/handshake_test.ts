import assert from "node:assert/strict";
import {
  acceptKey,
  answerHandshake,
  checkServerAnswer,
  clientRequest,
  headEnd,
  parseHttpHead,
} from "./handshake.ts";

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

function request(lines: string[], start = "GET /ws HTTP/1.1") {
  return parseHttpHead([start, ...lines].join("\r\n"))!;
}

const GOOD = [
  "Host: edge.example.com",
  "Upgrade: websocket",
  "Connection: keep-alive, Upgrade",
  `Sec-WebSocket-Key: ${KEY}`,
  "Sec-WebSocket-Version: 13",
  "Sec-WebSocket-Protocol: chat, sip",
  "Origin: https://app.example.com",
];

Deno.test("handshake: the RFC 6455 sample key", () => {
  assert.equal(acceptKey(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
});

Deno.test("handshake: a browser's upgrade is answered 101 with the sip subprotocol", () => {
  const d = answerHandshake(request(GOOD), { paths: [], allowedOrigins: [] });
  assert.ok(d.ok);
  assert.match(d.response, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(d.response, /\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/);
  assert.match(d.response, /\r\nSec-WebSocket-Protocol: sip\r\n\r\n$/);
  assert.equal(d.path, "/ws");
  assert.equal(d.origin, "https://app.example.com");
});

Deno.test("handshake: refusals name the problem", () => {
  const policy = { paths: ["/ws"], allowedOrigins: ["https://app.example.com"] };
  const status = (lines: string[], start?: string) => {
    const d = answerHandshake(request(lines, start), policy);
    assert.equal(d.ok, false);
    return (d as { status: number }).status;
  };
  const without = (name: string) => GOOD.filter((l) => !l.startsWith(name));
  assert.equal(status(GOOD, "GET /other HTTP/1.1"), 404);
  assert.equal(status(GOOD, "GET /ws HTTP/2.0"), 505);
  assert.equal(status(GOOD, "POST /ws HTTP/1.1"), 404);
  assert.equal(status(without("Upgrade")), 404);
  assert.equal(status(without("Connection")), 400);
  assert.equal(status([...without("Sec-WebSocket-Version"), "Sec-WebSocket-Version: 8"]), 426);
  assert.equal(status([...without("Sec-WebSocket-Key"), "Sec-WebSocket-Key: short"]), 400);
  assert.equal(status([...without("Origin"), "Origin: https://evil.example"]), 403);
  assert.equal(status([...without("Sec-WebSocket-Protocol"), "Sec-WebSocket-Protocol: chat"]), 400);
  assert.equal(status(without("Sec-WebSocket-Protocol")), 400);
  // A query string does not change the path; no Origin (not a browser) is accepted.
  assert.ok(answerHandshake(request(GOOD, "GET /ws?x=1 HTTP/1.1"), policy).ok);
  assert.ok(answerHandshake(request(without("Origin")), policy).ok);
});

Deno.test("handshake: the client's request and the check of the answer", () => {
  const { request: text, key } = clientRequest("::1", 8080, "/sip", 80);
  assert.match(text, /^GET \/sip HTTP\/1\.1\r\nHost: \[::1\]:8080\r\n/);
  assert.equal(headEnd(new TextEncoder().encode(text)), text.length);
  const answer = (lines: string[]) => parseHttpHead(lines.join("\r\n"))!;
  assert.equal(
    checkServerAnswer(
      answer([
        "HTTP/1.1 101 Switching Protocols",
        `Sec-WebSocket-Accept: ${acceptKey(key)}`,
        "Sec-WebSocket-Protocol: sip",
      ]),
      key,
    ),
    undefined,
  );
  assert.match(checkServerAnswer(answer(["HTTP/1.1 404 Not Found"]), key)!, /404/);
  assert.match(
    checkServerAnswer(
      answer(["HTTP/1.1 101 Switching Protocols", `Sec-WebSocket-Accept: ${acceptKey(key)}`]),
      key,
    )!,
    /sip/,
  );
  assert.match(
    checkServerAnswer(
      answer(["HTTP/1.1 101 OK", "Sec-WebSocket-Accept: x", "Sec-WebSocket-Protocol: sip"]),
      key,
    )!,
    /Accept/,
  );
  assert.match(clientRequest("a.example", 80, "/", 80).request, /\r\nHost: a\.example\r\n/);
});
