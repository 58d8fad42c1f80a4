/**
 * Reaching clients over the connections they opened, from any worker (issue: flows): requests
 * by the client's address and by RFC 5626 flow tokens, responses whose connection lives in
 * another worker, 430 for a flow that is gone, 403 for a forged token, and connection churn.
 * Every cross-worker case is forced: the upstream's connection is opened until it lands in the
 * worker that does not own the client's connection (tests/support/proxy_env.ts).
 */
import assert from "node:assert/strict";
import { ProxyEnv } from "./support/proxy_env.ts";
import {
  buildRequest,
  buildResponse,
  type SipMessage,
  TestUac,
  TestUas,
} from "./support/sip_peer.ts";
import { withOutput } from "./support/sipedge_process.ts";

/** Registrar stand-in: answers every REGISTER 200 and records it. */
function registrar(): TestUas {
  return TestUas.listen();
}

function routerConfig(uas: TestUas, extra = ""): string {
  return `[plugins.static_router]
[[plugins.static_router.routes]]
methods = ["REGISTER"]
destination = "${uas.uri}"
${extra}`;
}

/** A REGISTER from `uac` (Contact = its own address unless given). */
function register(uac: TestUac, options: { contact?: string; headers?: string[] } = {}) {
  const contact = options.contact ?? `<sip:alice@127.0.0.1:${uac.localPort};transport=tcp>`;
  return buildRequest({
    method: "REGISTER",
    uri: "sip:127.0.0.1",
    via: `SIP/2.0/TCP 127.0.0.1:${uac.localPort};branch=z9hG4bK${crypto.randomUUID()};rport`,
    from: "<sip:alice@127.0.0.1>;tag=r1",
    to: "<sip:alice@127.0.0.1>",
    headers: [`Contact: ${contact};expires=600`, ...(options.headers ?? [])],
  });
}

const OUTBOUND_CONTACT = (port: number) =>
  `<sip:alice@192.0.2.55:${port};transport=tcp;ob>;reg-id=1;+sip.instance="<urn:uuid:00000000-0000-1000-8000-00000000000a>"`;

/** Registers `client` through sipedge; returns the REGISTER as the registrar saw it. */
async function registerThrough(
  client: TestUac,
  uas: TestUas,
  options: Parameters<typeof register>[1] = {},
): Promise<SipMessage> {
  const request = register(client, options);
  await client.send(request.bytes);
  const answer = await client.nextMessage();
  assert.equal(answer.status, 200);
  return (await uas.waitForCallId(request.callId)).message;
}

/** The Path URI (inside <>) of a REGISTER as the registrar saw it. */
function pathUri(seen: SipMessage): string {
  const path = seen.header("path");
  assert.ok(path, `Path added: ${seen.headText}`);
  const m = /^<([^>]+)>$/.exec(path);
  assert.ok(m, `one Path value: ${path}`);
  return m[1];
}

/** A request from the upstream to the client. */
function toClient(method: string, uri: string, route?: string) {
  return buildRequest({
    method,
    uri,
    via: `SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK${crypto.randomUUID()}`,
    from: "<sip:core@127.0.0.1>;tag=up1",
    to: "<sip:alice@127.0.0.1>",
    headers: [
      ...(route === undefined ? [] : [`Route: <${route}>`]),
      "Contact: <sip:core@127.0.0.1:5999;transport=tcp>",
    ],
  });
}

Deno.test("flows: a request for a client's address crosses workers, and its response comes back", async () => {
  await using uas = registrar();
  await using edge = await ProxyEnv.start(2, routerConfig(uas, '[flows]\nregister = "off"'));
  await withOutput(edge.proxy, async () => {
    await using client = await TestUac.connect(edge.port);
    await registerThrough(client, uas);
    const owner = await edge.ownerOf(client.localPort);
    await using upstream = await edge.connectIn({ not: owner });

    for (let i = 0; i < 5; i++) {
      const message = toClient("MESSAGE", `sip:alice@127.0.0.1:${client.localPort};transport=tcp`);
      await upstream.send(message.bytes);
      const atClient = await client.nextMessage();
      assert.equal(atClient.method, "MESSAGE");
      assert.equal(atClient.callId, message.callId);
      await client.send(buildResponse(atClient, 200));
      const back = await upstream.nextMessage();
      assert.equal(back.status, 200);
      assert.equal(back.callId, message.callId);
    }
    const counters = await edge.counters();
    assert.ok(
      counters.handoffs_out >= 10,
      `requests and responses handed off: ${counters.handoffs_out}`,
    );
    assert.equal(counters.handoffs_in, counters.handoffs_out);
  });
});

Deno.test("flows: outbound REGISTER gets a Path with a flow token; requests over it reach the client from any worker", async () => {
  await using uas = registrar();
  await using edge = await ProxyEnv.start(2, routerConfig(uas));
  await withOutput(edge.proxy, async () => {
    await using client = await TestUac.connect(edge.port);
    const seen = await registerThrough(client, uas, {
      contact: OUTBOUND_CONTACT(client.localPort),
      headers: ["Supported: outbound, path"],
    });
    const path = pathUri(seen);
    assert.match(
      path,
      new RegExp(`^sip:[A-Za-z0-9_-]{32}@127\\.0\\.0\\.1:${edge.port};transport=tcp;lr;ob$`),
    );
    const listed = await edge.inbound(client.localPort);
    assert.equal(listed.flow, true, "the connection is listed as a flow");

    // The registrar's INVITE to the contact (an address nobody can reach) with the Path as
    // Route, over a connection owned by the other worker.
    await using upstream = await edge.connectIn({ not: listed.worker });
    const invite = toClient(
      "INVITE",
      `sip:alice@192.0.2.55:${client.localPort};transport=tcp;ob`,
      path,
    );
    await upstream.send(invite.bytes);
    const atClient = await client.nextMessage();
    assert.equal(atClient.method, "INVITE");
    assert.equal(atClient.header("route"), undefined, "our Route removed");
    const rr = atClient.header("record-route");
    assert.ok(rr?.includes(path.split(";")[0]), `Record-Route with the flow token: ${rr}`);
    assert.match(atClient.header("via")!, /^SIP\/2\.0\/TCP 127\.0\.0\.1:\d+;branch=z9hG4bK/);

    // The client answers; the 200 crosses back to the upstream's worker.
    await client.send(buildResponse(atClient, 200));
    assert.equal((await upstream.nextMessage()).status, 200);

    // In-dialog BYE from the far end, routed by the Record-Route (token) alone.
    const bye = buildRequest({
      method: "BYE",
      uri: `sip:alice@192.0.2.55:${client.localPort};transport=tcp`,
      via: `SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK${crypto.randomUUID()}`,
      callId: invite.callId,
      from: "<sip:core@127.0.0.1>;tag=up1",
      to: "<sip:alice@127.0.0.1>;tag=uas",
      cseq: 2,
      headers: [`Route: <${/<([^>]+)>/.exec(rr!)![1]}>`],
    });
    await upstream.send(bye.bytes);
    const byeAtClient = await client.nextMessage();
    assert.equal(byeAtClient.method, "BYE");
    await client.send(buildResponse(byeAtClient, 200));
    assert.equal((await upstream.nextMessage()).status, 200);
  });
});

Deno.test("flows: 430 when the flow is gone, 403 for a token that does not verify", async () => {
  await using uas = registrar();
  await using edge = await ProxyEnv.start(2, routerConfig(uas));
  await withOutput(edge.proxy, async () => {
    const client = await TestUac.connect(edge.port);
    const seen = await registerThrough(client, uas, {
      contact: OUTBOUND_CONTACT(client.localPort),
      headers: ["Supported: outbound"],
    });
    const path = pathUri(seen);
    const owner = await edge.ownerOf(client.localPort);
    await client.close();
    // Wait until sipedge saw the close.
    for (let i = 0; i < 100 && (await edge.connections()).some((c) => c.flow); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }

    for (const want of [{ worker: owner }, { not: owner }]) {
      await using upstream = await edge.connectIn(want);
      const invite = toClient("INVITE", "sip:alice@192.0.2.55;ob", path);
      await upstream.send(invite.bytes);
      const answer = await upstream.nextMessage();
      assert.equal(answer.status, 430, answer.startLine);
      assert.equal(answer.reason, "Flow Failed");
      assert.equal(answer.callId, invite.callId);
    }

    // A token with one character changed.
    const token = /^sip:([^@]+)@/.exec(path)![1];
    const forged = path.replace(
      token,
      token.slice(0, 5) + (token[5] === "A" ? "B" : "A") + token.slice(6),
    );
    await using upstream = await TestUac.connect(edge.port);
    await upstream.send(toClient("MESSAGE", "sip:alice@192.0.2.55", forged).bytes);
    const answer = await upstream.nextMessage();
    assert.equal(answer.status, 403);
    const counters = await edge.counters();
    assert.equal(counters.flow_token_invalid, 1);
    assert.ok(counters.flow_failed >= 2);
  });
});

Deno.test("flows: with connection churn, a request for a closed flow never reaches another connection", async () => {
  await using uas = registrar();
  await using edge = await ProxyEnv.start(2, routerConfig(uas, '[flows]\nregister = "all"'));
  await withOutput(edge.proxy, async () => {
    const stale: string[] = [];
    // 20 clients register and leave; 5 stay connected.
    for (let i = 0; i < 20; i++) {
      const client = await TestUac.connect(edge.port);
      stale.push(pathUri(await registerThrough(client, uas)));
      await client.close();
    }
    const live: TestUac[] = [];
    for (let i = 0; i < 5; i++) {
      const client = await TestUac.connect(edge.port);
      await registerThrough(client, uas);
      live.push(client);
    }
    try {
      await using upstream = await TestUac.connect(edge.port);
      for (const path of stale) {
        await upstream.send(toClient("MESSAGE", "sip:alice@192.0.2.55", path).bytes);
        assert.equal((await upstream.nextMessage()).status, 430);
      }
      for (const client of live) await client.expectNothing(100);
    } finally {
      for (const client of live) await client.close();
    }
  });
});
