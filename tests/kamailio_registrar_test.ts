/**
 * The Kamailio registrar of tests/support/kamailio_registrar.ts on its own, without sipedge:
 * the test plays the RFC 5626 edge proxy. A REGISTER arrives as an edge forwards it (the
 * edge's Via on top, its `Path: <sip:FLOWTOKEN@127.0.0.1:EDGEPORT;transport=tcp;lr;ob>`,
 * an outbound contact with `reg-id` and `+sip.instance`); an INVITE for the user must then
 * come out of Kamailio towards the edge's listener with that Path as its Route and the
 * registered contact as its Request-URI, and the dialog's ACK and BYE must follow the
 * Record-Route set (Kamailio, then the edge). Skipped when Kamailio is not installed.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type KamailioRegistrar,
  kamailioRegistrarAvailable,
  startKamailioRegistrar,
} from "./support/kamailio_registrar.ts";
import { freePort } from "./support/sipedge_process.ts";
import {
  buildRequest,
  buildResponse,
  type SipMessage,
  TestUac,
  TestUas,
  uniqueId,
} from "./support/sip_peer.ts";
import { TlsUac, TlsUas } from "./support/tls_peer.ts";
import { hasOpenssl, TestPki } from "./support/tls_certs.ts";

const ignore = !kamailioRegistrarAvailable();

/** The user agent's contact: where it says it is (not reachable: only the edge's flow is). */
const UA_CONTACT = "sip:alice@192.0.2.10:5060;transport=tcp;ob";
const INSTANCE = "<urn:uuid:00000000-0000-1000-8000-000000000001>";
const FLOW_TOKEN = "FLOWTOKEN";

/** Runs `body`; a failure gets Kamailio's output appended. */
async function withOutput(kamailio: KamailioRegistrar, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    if (error instanceof Error) error.message += `\n--- kamailio output ---\n${kamailio.output()}`;
    throw error;
  }
}

/** The next final response (1xx skipped). */
async function nextFinal(uac: TestUac): Promise<SipMessage> {
  while (true) {
    const message = await uac.nextMessage();
    assert.ok(!message.isRequest, `expected a response, got ${message.startLine}`);
    if (message.status >= 200) return message;
  }
}

/** The edge's Path (and Record-Route) URI, as sipedge adds it. */
function edgeUri(edgePort: number, ob = true): string {
  return `<sip:${FLOW_TOKEN}@127.0.0.1:${edgePort};transport=tcp;lr${ob ? ";ob" : ""}>`;
}

/** A REGISTER for alice as the edge forwards it: its Via on top, its Path, the UA's Via. */
function edgeRegister(
  edgePort: number,
  options: { pathOb?: boolean; transport?: "tcp" | "tls" } = {},
) {
  const transport = options.transport ?? "tcp";
  const path = transport === "tcp"
    ? edgeUri(edgePort, options.pathOb ?? true)
    : `<sip:${FLOW_TOKEN}@127.0.0.1:${edgePort};transport=tls;lr;ob>`;
  const id = uniqueId();
  return buildRequest({
    method: "REGISTER",
    uri: "sip:127.0.0.1",
    from: `<sip:alice@127.0.0.1>;tag=${id}`,
    to: "<sip:alice@127.0.0.1>",
    omit: ["Via"],
    headers: [
      `Via: SIP/2.0/${transport.toUpperCase()} 127.0.0.1:${edgePort};branch=z9hG4bK-edge-${id}`,
      `Via: SIP/2.0/TCP 192.0.2.10:5060;received=192.0.2.10;rport=5060;branch=z9hG4bK-ua-${id}`,
      `Path: ${path}`,
      "Supported: outbound, path",
      `Contact: <${UA_CONTACT}>;reg-id=1;+sip.instance="${INSTANCE}"`,
      "Expires: 600",
    ],
  });
}

/**
 * The fake edge (and, behind it, the UA): answers INVITE with 200 — the edge's Record-Route
 * on top of the ones received, as the UA copies them — and BYE with 200; never ACK.
 */
function fakeEdge(): TestUas {
  let port = 0;
  const edge = TestUas.listen({
    respond: (message) => {
      if (!message.isRequest || message.method === "ACK") return undefined;
      if (message.method !== "INVITE") return buildResponse(message, 200);
      return buildResponse(message, 200, {
        toTag: `alice-${uniqueId()}`,
        headers: [
          `Record-Route: ${edgeUri(port)}`,
          ...message.headers("record-route").map((rr) => `Record-Route: ${rr}`),
          `Contact: <${UA_CONTACT}>`,
        ],
      });
    },
  });
  port = edge.port;
  return edge;
}

Deno.test({
  name: "kamailio registrar: an INVITE for a user registered via an edge goes to the edge's Path",
  ignore,
  fn: async () => {
    await using edge = fakeEdge();
    await using kamailio = await startKamailioRegistrar({ port: freePort() });
    await withOutput(kamailio, async () => {
      // (1) The REGISTER, as forwarded by the edge.
      {
        await using registering = await TestUac.connect(kamailio.port);
        await registering.send(edgeRegister(edge.port).bytes);
        const ok = await nextFinal(registering);
        assert.equal(ok.status, 200, ok.text);
        const contact = ok.header("contact") ?? "";
        assert.ok(contact.startsWith(`<${UA_CONTACT}>`), contact);
        assert.match(contact, /;reg-id=1\b/);
        assert.ok(contact.includes(`+sip.instance="${INSTANCE}"`), contact);
        assert.match(contact, /;expires=(600|599)\b/);
        assert.equal(ok.header("require"), "outbound"); // outbound_mode 1
        assert.equal(ok.header("path"), undefined); // path_mode 0: stored, not echoed
      }

      // (2) A call for alice: out through the edge, with the Path as Route.
      await using caller = await TestUac.connect(kamailio.port);
      const callId = `${uniqueId()}@caller.invalid`;
      const fromTag = uniqueId();
      const callerVia = () =>
        `SIP/2.0/TCP 127.0.0.1:${caller.localPort};branch=z9hG4bK${uniqueId()};rport`;
      const dialog = {
        callId,
        from: `<sip:bob@127.0.0.1>;tag=${fromTag}`,
        headers: [`Contact: <sip:bob@127.0.0.1:${caller.localPort};transport=tcp>`],
      };
      await caller.send(
        buildRequest({
          ...dialog,
          method: "INVITE",
          uri: "sip:alice@127.0.0.1",
          to: "<sip:alice@127.0.0.1>",
          via: callerVia(),
          headers: [...dialog.headers, "Content-Type: application/sdp"],
          body: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n",
        }).bytes,
      );
      const invite = (await edge.waitFor((m) => m.method === "INVITE" && m.callId === callId))
        .message;
      assert.equal(invite.uri, UA_CONTACT);
      assert.deepEqual(invite.headers("route"), [edgeUri(edge.port)]);
      const kamailioRr = invite.headers("record-route");
      assert.equal(kamailioRr.length, 1, invite.text);
      assert.ok(kamailioRr[0].includes(`127.0.0.1:${kamailio.port}`), kamailioRr[0]);
      assert.ok(invite.body.length > 0);

      const ok = await nextFinal(caller);
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.callId, callId);
      const to = ok.header("to") ?? "";
      assert.match(to, /;tag=alice-/);
      // The route set: the Record-Route values reversed (Kamailio first, then the edge).
      const routes = ok.headers("record-route").reverse();
      assert.deepEqual(routes, [kamailioRr[0], edgeUri(edge.port)]);

      // ACK and BYE: through Kamailio (loose_route) to the edge.
      const inDialog = (method: string, cseq: number) =>
        buildRequest({
          ...dialog,
          method,
          uri: UA_CONTACT,
          to,
          cseq,
          via: callerVia(),
          headers: [...dialog.headers, ...routes.map((r) => `Route: ${r}`)],
        }).bytes;
      await caller.send(inDialog("ACK", 1));
      const ack = (await edge.waitFor((m) => m.method === "ACK" && m.callId === callId)).message;
      assert.equal(ack.uri, UA_CONTACT);
      assert.deepEqual(ack.headers("route"), [edgeUri(edge.port)]);

      await caller.send(inDialog("BYE", 2));
      const bye = (await edge.waitFor((m) => m.method === "BYE" && m.callId === callId)).message;
      assert.equal(bye.uri, UA_CONTACT);
      assert.deepEqual(bye.headers("route"), [edgeUri(edge.port)]);
      const byeOk = await nextFinal(caller);
      assert.equal(byeOk.status, 200, byeOk.text);
      assert.equal(byeOk.header("cseq"), "2 BYE");
    });
  },
});

Deno.test({
  name:
    "kamailio registrar: an INVITE for a user not registered gets 404, nothing reaches the edge",
  ignore,
  fn: async () => {
    await using edge = fakeEdge();
    await using kamailio = await startKamailioRegistrar({ port: freePort() });
    await withOutput(kamailio, async () => {
      await using caller = await TestUac.connect(kamailio.port);
      await caller.send(
        buildRequest({
          method: "INVITE",
          uri: "sip:carol@127.0.0.1",
          to: "<sip:carol@127.0.0.1>",
          via: `SIP/2.0/TCP 127.0.0.1:${caller.localPort};branch=z9hG4bK${uniqueId()};rport`,
        }).bytes,
      );
      const response = await nextFinal(caller);
      assert.equal(response.status, 404, response.text);
      assert.equal(edge.messages.length, 0);
    });
  },
});

Deno.test({
  name: "kamailio registrar: a reg-id REGISTER through a proxy whose Path lacks ;ob gets 439",
  ignore,
  fn: async () => {
    await using edge = fakeEdge();
    await using kamailio = await startKamailioRegistrar({ port: freePort() });
    await withOutput(kamailio, async () => {
      await using registering = await TestUac.connect(kamailio.port);
      await registering.send(edgeRegister(edge.port, { pathOb: false }).bytes);
      const response = await nextFinal(registering);
      assert.equal(response.status, 439, response.text);
    });
  },
});

Deno.test({
  name:
    "kamailio registrar: REGISTER over TLS with a transport=tls Path; the INVITE goes out over TLS",
  ignore: !kamailioRegistrarAvailable(true) || !hasOpenssl(),
  fn: async () => {
    await using pki = await TestPki.create();
    const ca = await pki.ca("test ca");
    const edgeCert = await pki.issue(ca, "edge", { ips: ["127.0.0.1"] });
    const kamCert = await pki.issue(ca, "kamailio", { ips: ["127.0.0.1"] });
    await using edge = await TlsUas.listen({ cert: edgeCert.certPem, key: edgeCert.keyPem });
    const tlsPort = freePort();
    await using kamailio = await startKamailioRegistrar({
      port: freePort(),
      tls: { port: tlsPort, certificate: kamCert.cert, privateKey: kamCert.key },
    });
    await withOutput(kamailio, async () => {
      {
        await using registering = await TlsUac.connect(tlsPort, { ca: ca.certPem });
        await registering.send(edgeRegister(edge.port, { transport: "tls" }).bytes);
        const ok = await registering.nextMessage();
        assert.equal(ok.status, 200, ok.text);
      }
      await using caller = await TestUac.connect(kamailio.port);
      const request = buildRequest({
        method: "INVITE",
        uri: "sip:alice@127.0.0.1",
        to: "<sip:alice@127.0.0.1>",
        via: `SIP/2.0/TCP 127.0.0.1:${caller.localPort};branch=z9hG4bK${uniqueId()};rport`,
      });
      await caller.send(request.bytes);
      assert.equal((await nextFinal(caller)).status, 200);
      const invite = edge.requests.find((r) => r.message.callId === request.callId)?.message;
      assert.ok(invite !== undefined);
      assert.equal(invite.uri, UA_CONTACT);
      assert.deepEqual(invite.headers("route"), [
        `<sip:${FLOW_TOKEN}@127.0.0.1:${edge.port};transport=tls;lr;ob>`,
      ]);
      // TCP in, TLS out: Kamailio record-routes twice (one entry per side).
      assert.equal(invite.headers("record-route").length, 2, invite.text);
    });
  },
});
