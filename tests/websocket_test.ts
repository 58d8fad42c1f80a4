/**
 * SIP over WebSocket (RFC 7118) end to end through a running sipedge with 2 workers: ws and
 * wss clients (tests/support/ws_peer.ts, every byte under the test's control) to a TCP
 * upstream and back; flows for clients that register without asking for outbound; the
 * handshake's refusals; message size, fragmentation, masking, control frames and keepalives;
 * sipedge as a WebSocket client of an upstream (Deno's own WebSocket server as the peer).
 */
import assert from "node:assert/strict";
import { ProxyEnv } from "./support/proxy_env.ts";
import { buildRequest, buildResponse, TestUac, TestUas } from "./support/sip_peer.ts";
import { freePort, startSipedge, withOutput } from "./support/sipedge_process.ts";
import { TestPki } from "./support/tls_certs.ts";
import { WsClient } from "./support/ws_peer.ts";
import { CLOSE, encodeFrame, OPCODE } from "../plugins/websocket/frames.ts";

const LISTEN = ["tcp:127.0.0.1:0", "ws:127.0.0.1:0", "wss:127.0.0.1:0"];

/** The ports of an env started with {@link LISTEN}. */
function ports(edge: ProxyEnv): { tcp: number; ws: number; wss: number } {
  const port = (t: string) =>
    Number(edge.proxy.listening.find((l) => l.startsWith(`${t}:`))!.split(":").at(-1));
  return { tcp: port("tcp"), ws: port("ws"), wss: port("wss") };
}

/** A request as JsSIP writes it: `.invalid` host in Via and Contact, no Content-Length. */
function browserRequest(
  method: string,
  uri: string,
  options: { transport?: "WS" | "WSS"; headers?: string[]; toTag?: string } = {},
) {
  return buildRequest({
    method,
    uri,
    via: `SIP/2.0/${options.transport ?? "WSS"} df7jal23ls0d.invalid;branch=z9hG4bK${
      crypto.randomUUID().slice(0, 8)
    }`,
    from: "<sip:alice@example.com>;tag=b1",
    to: `<sip:bob@example.com>${options.toTag ? `;tag=${options.toTag}` : ""}`,
    headers: [
      "Contact: <sip:kq8u5pp7@df7jal23ls0d.invalid;transport=ws>",
      ...options.headers ?? [],
    ],
    omit: ["Content-Length"],
  });
}

Deno.test("websocket: ws and wss clients reach a TCP upstream and get its answers", async () => {
  await using uas = TestUas.listen();
  await using edge = await ProxyEnv.start(2, "", { listen: LISTEN });
  await withOutput(edge.proxy, async () => {
    const p = ports(edge);
    for (const secure of [false, true]) {
      await using client = await WsClient.connect({ port: secure ? p.wss : p.ws, secure });
      assert.equal(client.answer.headers.get("sec-websocket-protocol"), "sip");
      for (let i = 0; i < 3; i++) {
        const request = browserRequest("OPTIONS", `sip:uas@127.0.0.1:${uas.port};transport=tcp`, {
          transport: secure ? "WSS" : "WS",
        });
        client.send(request.bytes);
        const answer = await client.message();
        assert.equal(answer.status, 200);
        assert.equal(answer.callId, request.callId);
        const seen = (await uas.waitForCallId(request.callId)).message;
        const vias = seen.headers("via");
        assert.match(vias[0], /^SIP\/2\.0\/TCP 127\.0\.0\.1:\d+;branch=z9hG4bK/);
        // No rport asked for (JsSIP does not): received only.
        assert.match(
          vias[1],
          new RegExp(
            `^SIP/2\\.0/${
              secure ? "WSS" : "WS"
            } df7jal23ls0d\\.invalid;branch=\\w+;received=127\\.0\\.0\\.1$`,
          ),
        );
      }
      const listed = await edge.inbound(client.localPort);
      assert.equal(listed.transport, secure ? "wss" : "ws");
    }
    // Several messages in one read, each its own WebSocket message: none merged or lost.
    await using client = await WsClient.connect({ port: p.ws });
    const burst = Array.from(
      { length: 20 },
      () => browserRequest("OPTIONS", `sip:uas@127.0.0.1:${uas.port};transport=tcp`),
    );
    client.sendRaw(
      concat(burst.map((r) => encodeFrame(OPCODE.text, r.bytes, true))),
    );
    const ids = new Set<string>();
    for (let i = 0; i < burst.length; i++) ids.add((await client.message()).callId!);
    assert.deepEqual([...ids].sort(), burst.map((r) => r.callId).sort());
  });
});

Deno.test("websocket: a client that registers without outbound gets a flow; requests reach it over its WebSocket from any worker", async () => {
  await using registrar = TestUas.listen();
  await using edge = await ProxyEnv.start(
    2,
    `[plugins.static_router]
[[plugins.static_router.routes]]
methods = ["REGISTER"]
destination = "${registrar.uri}"`,
    { listen: LISTEN },
  );
  await withOutput(edge.proxy, async () => {
    const p = ports(edge);
    for (const secure of [false, true]) {
      await using browser = await WsClient.connect({ port: secure ? p.wss : p.ws, secure });
      const register = browserRequest("REGISTER", "sip:example.com", {
        headers: ["Expires: 600"],
      });
      browser.send(register.bytes);
      assert.equal((await browser.message()).status, 200);
      const seen = (await registrar.waitForCallId(register.callId)).message;
      const path = /^<([^>]+)>$/.exec(seen.header("path") ?? "")?.[1];
      assert.ok(path, `a Path without Supported: outbound: ${seen.headText}`);
      assert.match(path, /^sip:[A-Za-z0-9_-]{32}@127\.0\.0\.1:\d+;transport=tcp;lr;ob$/);
      const listed = await edge.inbound(browser.localPort);
      assert.equal(listed.flow, true);

      // The core sends a MESSAGE to the registered contact (an .invalid host) with the Path as
      // Route, over a connection in the other worker.
      await using core = await edge.connectIn({ not: listed.worker });
      const message = buildRequest({
        method: "MESSAGE",
        uri: "sip:kq8u5pp7@df7jal23ls0d.invalid;transport=ws",
        via: `SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK${crypto.randomUUID()}`,
        headers: [`Route: <${path}>`, "Content-Type: text/plain"],
        body: "hello browser",
      });
      await core.send(message.bytes);
      const atBrowser = await browser.message();
      assert.equal(atBrowser.method, "MESSAGE");
      assert.equal(new TextDecoder().decode(atBrowser.body), "hello browser");
      assert.equal(atBrowser.header("route"), undefined, "our Route is removed");
      browser.send(buildResponse(atBrowser, 200));
      const back = await core.nextMessage();
      assert.equal(back.status, 200);
      assert.equal(back.callId, message.callId);
    }
  });
});

Deno.test("websocket: a call from a ws client is record-routed with its flow token", async () => {
  await using uas = TestUas.listen();
  await using edge = await ProxyEnv.start(2, "", { listen: LISTEN });
  await withOutput(edge.proxy, async () => {
    const p = ports(edge);
    await using browser = await WsClient.connect({ port: p.ws });
    const invite = browserRequest("INVITE", `sip:uas@127.0.0.1:${uas.port};transport=tcp`);
    browser.send(invite.bytes);
    assert.equal((await browser.message()).status, 200);
    const seen = (await uas.waitForCallId(invite.callId)).message;
    const routes = seen.headers("record-route");
    assert.equal(routes.length, 2, `ws in, tcp out: two Record-Routes: ${seen.headText}`);
    assert.match(routes[0], /^<sip:[A-Za-z0-9_-]{32}@127\.0\.0\.1:\d+;transport=tcp;lr>$/);
    assert.match(routes[1], /^<sip:[A-Za-z0-9_-]{32}@127\.0\.0\.1:\d+;transport=ws;lr>$/);
  });
});

Deno.test("websocket: the handshake refuses what is not a SIP WebSocket", async () => {
  await using edge = await ProxyEnv.start(
    1,
    `[plugins.ws]
paths = ["/sip"]
allowed_origins = ["https://app.example.com"]`,
    { listen: LISTEN },
  );
  await withOutput(edge.proxy, async () => {
    const p = ports(edge);
    const noSip = await WsClient.refusal({ port: p.ws, path: "/sip", protocols: ["chat"] });
    assert.equal(noSip.status, 400);
    assert.match(noSip.text, /sip/);
    const noProtocol = await WsClient.refusal({ port: p.ws, path: "/sip", protocols: [] });
    assert.equal(noProtocol.status, 400);
    assert.equal((await WsClient.refusal({ port: p.ws, path: "/other" })).status, 404);
    const page = await WsClient.refusal({
      port: p.ws,
      rawRequest: "GET /sip HTTP/1.1\r\nHost: x\r\n\r\n",
    });
    assert.equal(page.status, 404, "a plain GET is not an upgrade");
    const origin = await WsClient.refusal({
      port: p.ws,
      path: "/sip",
      origin: "https://evil.example.net",
    });
    assert.equal(origin.status, 403);
    const version = await WsClient.refusal({
      port: p.ws,
      rawRequest: "GET /sip HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n" +
        "Sec-WebSocket-Protocol: sip\r\n\r\n",
    });
    assert.equal(version.status, 426);
    assert.equal(version.headers.get("sec-websocket-version"), "13");
    const garbage = await WsClient.refusal({ port: p.ws, rawRequest: "HELLO\r\n\r\n" });
    assert.equal(garbage.status, 400);
    // What is allowed: the path, the origin, several protocols offered; wss has no limits.
    await using ok = await WsClient.connect({
      port: p.ws,
      path: "/sip",
      origin: "https://App.Example.com",
      protocols: ["chat", "sip"],
    });
    assert.equal(ok.answer.status, 101);
    await using anyPath = await WsClient.connect({ port: p.wss, secure: true, path: "/x" });
    assert.equal(anyPath.answer.status, 101);
  });
});

Deno.test("websocket: frames — fragments, control frames, keepalives, oversize and unmasked frames", async () => {
  await using uas = TestUas.listen();
  await using edge = await ProxyEnv.start(
    1,
    `[plugins.limits]
max_message_size = 4096`,
    { listen: LISTEN },
  );
  await withOutput(edge.proxy, async () => {
    const p = ports(edge);
    const target = `sip:uas@127.0.0.1:${uas.port};transport=tcp`;
    await using client = await WsClient.connect({ port: p.ws });

    // A message in three fragments, with a ping between them (allowed, RFC 6455 §5.4).
    const request = browserRequest("OPTIONS", target);
    const third = Math.ceil(request.bytes.length / 3);
    const frames = [0, 1, 2].map((i) => {
      const frame = encodeFrame(
        i === 0 ? OPCODE.text : OPCODE.continuation,
        request.bytes.subarray(i * third, (i + 1) * third),
        true,
      );
      if (i < 2) frame[0] &= 0x7f;
      return frame;
    });
    client.sendRaw(frames[0]);
    client.ping("between");
    client.sendRaw(concat([frames[1], frames[2]]));
    const pong = await client.next((e) => e.type === "pong");
    assert.equal(pong.type, "pong");
    assert.equal((await client.message()).callId, request.callId);

    // A CRLF CRLF keepalive message gets a CRLF message (RFC 5626 over WebSocket, SIP.js).
    client.send("\r\n\r\n");
    const crlf = await client.next((e) => e.type === "message");
    assert.deepEqual([...(crlf as { data: Uint8Array }).data], [13, 10]);

    // A binary message is a SIP message too; a malformed one is dropped, the connection stays.
    client.send("not a SIP message", { binary: true });
    const binary = browserRequest("OPTIONS", target);
    client.send(binary.bytes, { binary: true });
    assert.equal((await client.message()).callId, binary.callId);

    // Too big for max_message_size: closed with 1009.
    client.send(
      browserRequest("MESSAGE", target, { headers: [`X-Pad: ${"a".repeat(5000)}`] }).bytes,
    );
    const close = await client.closeFrame();
    assert.equal(close.code, CLOSE.tooBig);
    await client.ended();

    // A client frame without a mask: 1002.
    await using unmasked = await WsClient.connect({ port: p.ws });
    unmasked.sendRaw(encodeFrame(OPCODE.text, browserRequest("OPTIONS", target).bytes, false));
    assert.equal((await unmasked.closeFrame()).code, CLOSE.protocolError);
    await unmasked.ended();

    // The client closes: its close frame is echoed.
    await using closing = await WsClient.connect({ port: p.ws });
    closing.sendRaw(encodeFrame(OPCODE.close, new Uint8Array([0x03, 0xe8]), true));
    assert.equal((await closing.closeFrame()).code, CLOSE.normal);
    await closing.ended();

    const counters = await edge.counters();
    assert.ok(counters.framing_errors >= 1, "the malformed message was counted");
  });
});

Deno.test("websocket: sipedge pings idle clients; one that does not answer is closed", async () => {
  await using edge = await ProxyEnv.start(
    1,
    `[plugins.ws]
ping_interval = "300ms"
ping_timeout = "500ms"`,
    { listen: LISTEN },
  );
  await withOutput(edge.proxy, async () => {
    const p = ports(edge);
    await using answering = await WsClient.connect({ port: p.ws });
    await using silent = await WsClient.connect({ port: p.ws, autoPong: false });
    await silent.next((e) => e.type === "ping", 3000, "a ping from sipedge");
    await silent.ended(4000);
    assert.ok(answering.events.some((e) => e.type === "ping"), "the other client was pinged");
    assert.equal(answering.closed, false, "a client that answers stays");
    const counters = await edge.counters();
    assert.ok(counters.keepalive_closed >= 1, JSON.stringify(counters));
  });
});

/** A WebSocket SIP server on Deno's own WebSocket (a peer that is not sipedge's code). */
function wsUpstream(tls?: { cert: string; key: string }) {
  const received: string[] = [];
  const protocols: string[] = [];
  const controller = new AbortController();
  const server = Deno.serve(
    {
      hostname: "127.0.0.1",
      port: 0,
      signal: controller.signal,
      onListen: () => {},
      ...(tls ?? {}),
    },
    (request) => {
      protocols.push(request.headers.get("sec-websocket-protocol") ?? "");
      const { socket, response } = Deno.upgradeWebSocket(request, { protocol: "sip" });
      socket.onmessage = (event) => {
        const text = String(event.data);
        received.push(text);
        // Answer 200 with the request's Via, From, To, Call-ID and CSeq.
        const keep = text.split("\r\n").filter((l) => /^(via|from|to|call-id|cseq):/i.test(l));
        socket.send(`SIP/2.0 200 OK\r\n${keep.join("\r\n")}\r\nContent-Length: 0\r\n\r\n`);
      };
      return response;
    },
  );
  return {
    port: server.addr.port,
    received,
    protocols,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await server.finished;
    },
  };
}

Deno.test("websocket: sipedge connects to ws and wss upstreams (Deno's own WebSocket server as the peer)", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Test CA");
  const cert = await pki.issue(ca, "upstream", { ips: ["127.0.0.1"] });
  await using plain = wsUpstream();
  await using secure = wsUpstream({ cert: cert.certPem, key: cert.keyPem });
  await using edge = await ProxyEnv.start(
    2,
    `[[plugins.tls.client_domains]]
name = "test"
match = ["127.0.0.1"]
ca_list = "${ca.cert}"`,
    { listen: LISTEN },
  );
  await withOutput(edge.proxy, async () => {
    await using client = await TestUac.connect(edge.port);
    for (const [upstream, transport] of [[plain, "ws"], [secure, "wss"]] as const) {
      for (let i = 0; i < 3; i++) {
        const request = buildRequest({
          uri: `sip:svc@127.0.0.1:${upstream.port};transport=${transport}`,
          via: `SIP/2.0/TCP 127.0.0.1:${client.localPort};branch=z9hG4bK${crypto.randomUUID()}`,
        });
        await client.send(request.bytes);
        const answer = await client.nextMessage();
        assert.equal(answer.status, 200, answer.text);
        assert.equal(answer.callId, request.callId);
      }
      assert.deepEqual(new Set(upstream.protocols), new Set(["sip"]));
      assert.match(
        upstream.received[0],
        new RegExp(`^OPTIONS sip:svc@127\\.0\\.0\\.1:\\d+;transport=${transport} SIP/2\\.0\r\n`),
      );
      assert.match(
        upstream.received[0],
        new RegExp(`\r\nVia: SIP/2\\.0/${transport.toUpperCase()} 127\\.0\\.0\\.1:\\d+;branch=`),
      );
    }
    const out = (await edge.connections()).filter((c) => c.direction === "out");
    assert.deepEqual(new Set(out.map((c) => c.transport)), new Set(["ws", "wss"]));
  });
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("websocket: wss certificates come from [plugins.tls] domains by SNI; a reload swaps them and adds a ws listener, open connections kept", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Test CA");
  const a = await pki.issue(ca, "a", { dns: ["a.example"] });
  const a2 = await pki.issue(ca, "a2", { dns: ["a.example"] });
  const fallback = await pki.issue(ca, "fallback", { dns: ["default.example"] });
  const [wssPort, wsPort] = [freePort(), freePort()];
  const path = pki.path("sipedge.toml");
  const config = (aCert: typeof a, withWs: boolean) =>
    `[sipedge]
workers = 2
shutdown_timeout = "200ms"
[control]
address = "127.0.0.1:0"
[[listen]]
address = "tcp:127.0.0.1:0"
[[listen]]
address = "wss:127.0.0.1:${wssPort}"
${withWs ? `[[listen]]\naddress = "ws:127.0.0.1:${wsPort}"\n` : ""}
[[plugins.tls.server_domains]]
name = "a"
listener = "127.0.0.1:${wssPort}"
server_names = ["a.example"]
certificate = "${aCert.cert}"
private_key = "${aCert.key}"
[[plugins.tls.server_domains]]
name = "fallback"
certificate = "${fallback.cert}"
private_key = "${fallback.key}"
`;
  await Deno.writeTextFile(path, config(a, false));
  await using proxy = await startSipedge({ args: ["--config", path] });
  await withOutput(proxy, async () => {
    const api = /sipedge control API: (http:\/\/127\.0\.0\.1:\d+)/.exec(proxy.output())![1];
    const cn = (client: WsClient) =>
      (client.socket as import("node:tls").TLSSocket).getPeerCertificate().subject.CN;
    const ping = async (client: WsClient, port: number, transport: string) => {
      const request = browserRequest("OPTIONS", `sip:127.0.0.1:${port};transport=${transport}`);
      client.send(request.bytes);
      const answer = await client.message((m) => m.callId === request.callId);
      assert.equal(answer.status, 200);
    };
    await using before = await WsClient.connect({
      port: wssPort,
      secure: true,
      servername: "a.example",
    });
    assert.equal(cn(before), "a");
    await using noSni = await WsClient.connect({ port: wssPort, secure: true });
    assert.equal(cn(noSni), "fallback");
    await ping(before, wssPort, "wss");

    await Deno.writeTextFile(path, config(a2, true));
    const report = await (await fetch(`${api}/reload`, { method: "POST" })).json();
    assert.equal(report.ok, true, JSON.stringify(report));
    await using after = await WsClient.connect({
      port: wssPort,
      secure: true,
      servername: "a.example",
    });
    assert.equal(cn(after), "a2", "a new handshake gets the new certificate");
    await ping(before, wssPort, "wss"); // the connection made before the reload still works
    await using plain = await WsClient.connect({ port: wsPort });
    await ping(plain, wsPort, "ws");
  });
});

Deno.test("websocket: a browser that stops reading: queue limit and send timeout apply, the flow then fails with 430", async () => {
  await using registrar = TestUas.listen();
  await using edge = await ProxyEnv.start(
    1,
    `[plugins.static_router]
[[plugins.static_router.routes]]
methods = ["REGISTER"]
destination = "${registrar.uri}"
[plugins.limits]
conn_wq_max = 65536
[plugins.timeouts]
send_timeout = "1s"`,
    { listen: LISTEN },
  );
  await withOutput(edge.proxy, async () => {
    const p = ports(edge);
    await using browser = await WsClient.connect({ port: p.ws });
    const register = browserRequest("REGISTER", "sip:example.com");
    browser.send(register.bytes);
    assert.equal((await browser.message()).status, 200);
    const seen = (await registrar.waitForCallId(register.callId)).message;
    const path = /^<([^>]+)>$/.exec(seen.header("path")!)![1];
    browser.socket.pause(); // the browser's tab hangs: nothing is read any more

    await using core = await TestUac.connect(p.tcp);
    const message = () =>
      buildRequest({
        method: "MESSAGE",
        uri: "sip:kq8u5pp7@df7jal23ls0d.invalid;transport=ws",
        via: `SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK${crypto.randomUUID()}`,
        headers: [`Route: <${path}>`, "Content-Type: text/plain"],
        body: "x".repeat(16_000),
      });
    // Until sipedge refuses one (the kernel buffers fill first): 503 queue full.
    let refused;
    for (let i = 0; i < 400 && refused === undefined; i++) {
      await core.send(message().bytes);
      refused = await core.nextMessage(20).catch(() => undefined);
    }
    assert.ok(refused, "a message was refused");
    assert.equal(refused.status, 503);
    assert.match(refused.header("reason") ?? "", /queue full/);
    // No write progress for send_timeout: the connection fails; the flow is gone.
    await edge.until(
      async () => (await edge.connections()).some((c) => c.transport === "ws") ? undefined : true,
      5000,
      "the ws connection to be closed by send_timeout",
    );
    const counters = await edge.counters();
    assert.ok(counters.queue_full >= 1 && counters.send_timeouts === 1, JSON.stringify(counters));
    const gauges = await (await fetch(`${edge.controlUrl}/status`)).json();
    assert.equal(gauges.queued_bytes ?? gauges.gauges?.queued_bytes, 0);
    await core.send(message().bytes);
    let answer = await core.nextMessage();
    while (answer.status === 503 || answer.status === 408) answer = await core.nextMessage();
    assert.equal(answer.status, 430);
  });
});

Deno.test("websocket: a frame trickled in (slowloris) is cut by message_read_timeout", async () => {
  await using edge = await ProxyEnv.start(
    1,
    `[plugins.timeouts]
message_read_timeout = "700ms"`,
    { listen: LISTEN },
  );
  await withOutput(edge.proxy, async () => {
    const p = ports(edge);
    await using slow = await WsClient.connect({ port: p.ws });
    const frame = encodeFrame(
      OPCODE.text,
      browserRequest("OPTIONS", "sip:x@127.0.0.1").bytes,
      true,
    );
    const started = Date.now();
    for (let i = 0; i < 40 && !slow.closed; i++) {
      slow.sendRaw(frame.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, 100));
    }
    await slow.ended(3000);
    const took = Date.now() - started;
    assert.ok(took < 3000, `closed after ${took} ms`);
    assert.ok((await edge.counters()).read_timeouts >= 1);
  });
});
