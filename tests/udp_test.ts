/**
 * SIP over UDP end to end (plugins/udp.ts): UDP in and TCP out and back, TCP in and UDP out and
 * back (from a worker that does not bind the socket: handed to worker 0), responses to the
 * source address with received/rport, keepalives, STUN, garbage, a short body, the MTU rule,
 * and RFC 5626 flows over UDP (a flow is the client's address).
 */
import assert from "node:assert/strict";
import { ProxyEnv } from "./support/proxy_env.ts";
import {
  buildRequest,
  buildResponse,
  latin1,
  SipMessage,
  TestUac,
  TestUas,
  uniqueId,
} from "./support/sip_peer.ts";
import { withOutput } from "./support/sipedge_process.ts";

/** A UDP peer on 127.0.0.1 (a phone, or a UDP UAS). */
class UdpPeer implements AsyncDisposable {
  readonly socket: Deno.DatagramConn;
  readonly port: number;
  #received: { data: Uint8Array; from: Deno.NetAddr }[] = [];
  #reading: Promise<void>;
  #closed = false;

  constructor() {
    const socket = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    this.socket = socket;
    this.port = (socket.addr as Deno.NetAddr).port;
    this.#reading = (async () => {
      try {
        for await (const [data, from] of socket) {
          this.#received.push({ data, from: from as Deno.NetAddr });
        }
      } catch {
        // closed
      }
    })();
  }

  async send(data: Uint8Array | string, port: number): Promise<void> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    await this.socket.send(bytes, { transport: "udp", hostname: "127.0.0.1", port });
  }

  /** The next datagram (with its sender), within `timeoutMs`. */
  async next(timeoutMs = 3000): Promise<{ data: Uint8Array; from: Deno.NetAddr }> {
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
      const d = this.#received.shift();
      if (d !== undefined) return d;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    throw new Error(`no datagram within ${timeoutMs} ms`);
  }

  async nextMessage(timeoutMs = 3000): Promise<{ message: SipMessage; from: Deno.NetAddr }> {
    const { data, from } = await this.next(timeoutMs);
    return { message: SipMessage.parse(data), from };
  }

  async expectNothing(ms: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    assert.equal(
      this.#received.length,
      0,
      `unexpected: ${latin1(this.#received[0]?.data ?? new Uint8Array())}`,
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.close();
    await this.#reading;
  }
}

function udpPort(env: ProxyEnv): number {
  const udp = env.proxy.listening.find((a) => a.startsWith("udp:"))!;
  return Number(udp.split(":").at(-1));
}

async function start(workers: number, extra = "") {
  return await ProxyEnv.start(workers, extra, { listen: ["tcp:127.0.0.1:0", "udp:127.0.0.1:0"] });
}

/** A request from the UDP phone at `port`. */
function fromPhone(port: number, options: Parameters<typeof buildRequest>[0] = {}) {
  return buildRequest({
    via: `SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK${uniqueId()};rport`,
    ...options,
  });
}

Deno.test("udp: UDP in, TCP out, and the response back to the phone's address from the SIP port", async () => {
  await using uas = TestUas.listen();
  await using env = await start(2, `[plugins.static_router]\ndefault_route = "${uas.uri}"\n`);
  await withOutput(env.proxy, async () => {
    await using phone = new UdpPeer();
    const request = fromPhone(phone.port, { method: "MESSAGE", body: "hello" });
    await phone.send(request.bytes, udpPort(env));
    const atUas = await uas.waitForCallId(request.callId);
    const vias = atUas.message.headers("via");
    assert.match(vias[0], /^SIP\/2\.0\/TCP 127\.0\.0\.1:\d+;branch=z9hG4bK/);
    assert.match(vias[1], new RegExp(`;rport=${phone.port};received=127\\.0\\.0\\.1$`));
    assert.equal(new TextDecoder().decode(atUas.message.body), "hello");
    const { message, from } = await phone.nextMessage();
    assert.equal(message.status, 200);
    assert.equal(message.callId, request.callId);
    assert.equal(from.port, udpPort(env), "answered from the SIP port");
  });
});

Deno.test("udp: TCP in, UDP out (handed to worker 0 from worker 1), and the response back", async () => {
  await using phone = new UdpPeer(); // a UDP UAS
  await using env = await start(
    2,
    `[plugins.static_router]\ndefault_route = "sip:127.0.0.1:${phone.port};transport=udp"\n`,
  );
  await withOutput(env.proxy, async () => {
    for (const worker of [1, 0]) {
      await using uac = await env.connectIn({ worker });
      const request = buildRequest({ method: "OPTIONS", uri: "sip:uas@example.com" });
      await uac.send(request.bytes);
      const { message, from } = await phone.nextMessage();
      assert.equal(from.port, udpPort(env), "sent from the SIP port");
      assert.match(message.header("via")!, /^SIP\/2\.0\/UDP 127\.0\.0\.1:\d+;branch=/);
      // Record-Route is not asked for; the UAS answers to the top Via (sipedge's UDP port).
      await phone.send(buildResponse(message, 200), udpPort(env));
      const answer = await uac.nextMessage();
      assert.equal(answer.status, 200);
      assert.equal(answer.callId, request.callId);
    }
    const counters = await env.counters();
    assert.ok(counters.handoffs_out >= 2, `worker 1's send and the response handed over`);
  });
});

Deno.test("udp: keepalives get nothing, STUN gets the mapped address, garbage is dropped, a short body gets 400", async () => {
  await using uas = TestUas.listen();
  await using env = await start(1, `[plugins.static_router]\ndefault_route = "${uas.uri}"\n`);
  await withOutput(env.proxy, async () => {
    await using phone = new UdpPeer();
    const port = udpPort(env);
    await phone.send("\r\n\r\n", port);
    await phone.send("\r\n", port);
    await phone.send("hello, is this SIP?", port);
    await phone.send(new Uint8Array(30).fill(0xff), port);
    await phone.expectNothing(300);
    // STUN binding request (RFC 5389): type 0x0001, length 0, magic cookie, transaction id.
    const stun = new Uint8Array(20);
    const view = new DataView(stun.buffer);
    view.setUint16(0, 0x0001);
    view.setUint32(4, 0x2112a442);
    crypto.getRandomValues(stun.subarray(8));
    await phone.send(stun, port);
    const { data } = await phone.next();
    const r = new DataView(data.buffer, data.byteOffset, data.byteLength);
    assert.equal(r.getUint16(0), 0x0101, "binding success");
    assert.deepEqual(data.subarray(8, 20), stun.subarray(8, 20), "same transaction id");
    assert.equal(r.getUint16(20), 0x0020, "XOR-MAPPED-ADDRESS");
    assert.equal(r.getUint16(26) ^ 0x2112, phone.port);
    const ip = [...data.subarray(28, 32)].map((b, i) => b ^ stun[4 + i]).join(".");
    assert.equal(ip, "127.0.0.1");
    // Content-Length longer than the body: 400, nothing forwarded.
    const short = fromPhone(phone.port, { method: "MESSAGE", body: "abc", contentLength: 10 });
    await phone.send(short.bytes, port);
    const { message } = await phone.nextMessage();
    assert.equal(message.status, 400);
    assert.equal(message.reason, "Body shorter than Content-Length");
    // Bytes beyond Content-Length are ignored.
    const long = fromPhone(phone.port, { method: "MESSAGE", body: "abcdef", contentLength: 3 });
    await phone.send(long.bytes, port);
    assert.equal(
      new TextDecoder().decode((await uas.waitForCallId(long.callId)).message.body),
      "abc",
    );
    assert.equal((await phone.nextMessage()).message.status, 200);
    const counters = await env.counters();
    assert.equal(counters.udp_keepalives, 2);
    assert.equal(counters.stun_answered, 1);
    assert.equal(counters.udp_dropped, 3);
    assert.equal(uas.requests.length, 1, "only the good MESSAGE reached the UAS");
  });
});

Deno.test("udp: a request over the UDP MTU goes over TCP instead (RFC 3261 §18.1.1)", async () => {
  await using uas = TestUas.listen();
  await using env = await start(
    1,
    `[plugins.udp]\nmtu = 600\n[plugins.static_router]\ndefault_route = "sip:127.0.0.1:${uas.port};transport=udp"\n`,
  );
  await withOutput(env.proxy, async () => {
    await using uac = await TestUac.connect(env.port);
    const big = buildRequest({ method: "MESSAGE", body: "x".repeat(800) });
    await uac.send(big.bytes);
    const atUas = await uas.waitForCallId(big.callId);
    assert.match(atUas.message.header("via")!, /^SIP\/2\.0\/TCP /);
    assert.equal((await uac.nextMessage()).status, 200);
    assert.equal((await env.counters()).udp_mtu_to_tcp, 1);
  });
});

Deno.test("udp: RFC 5626 over UDP: the Path token names the phone's address; requests reach it from any worker", async () => {
  await using registrar = TestUas.listen();
  await using env = await start(
    2,
    `[plugins.static_router]\n[[plugins.static_router.routes]]\nmethods = ["REGISTER"]\ndestination = "${registrar.uri}"\n`,
  );
  await withOutput(env.proxy, async () => {
    await using phone = new UdpPeer();
    const register = fromPhone(phone.port, {
      method: "REGISTER",
      uri: "sip:127.0.0.1",
      headers: [
        `Contact: <sip:alice@10.0.0.9:5060;ob>;reg-id=1;+sip.instance="<urn:uuid:1>"`,
        "Supported: outbound",
      ],
    });
    await phone.send(register.bytes, udpPort(env));
    const seen = (await registrar.waitForCallId(register.callId)).message;
    assert.equal((await phone.nextMessage()).message.status, 200);
    const path = /^<([^>]+)>$/.exec(seen.header("path")!)![1];
    assert.match(path, /^sip:[A-Za-z0-9_-]{32}@127\.0\.0\.1:\d+;transport=tcp;lr;ob$/);
    for (const worker of [1, 0]) {
      await using core = await env.connectIn({ worker });
      const message = buildRequest({
        method: "MESSAGE",
        uri: "sip:alice@10.0.0.9:5060;ob",
        headers: [`Route: <${path}>`],
      });
      await core.send(message.bytes);
      const { message: atPhone, from } = await phone.nextMessage();
      assert.equal(atPhone.callId, message.callId);
      assert.equal(from.port, udpPort(env));
      assert.match(atPhone.header("via")!, /^SIP\/2\.0\/UDP /);
      await phone.send(buildResponse(atPhone, 200), udpPort(env));
      assert.equal((await core.nextMessage()).status, 200);
    }
  });
});
