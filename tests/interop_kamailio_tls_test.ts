/**
 * SIP over TLS between sipedge and Kamailio 5.6 (its tls module), both ways:
 *
 * - Kamailio as TLS client: a TCP client sends through Kamailio, which forwards over TLS to
 *   sipedge's tls listener (the generated certificate; Kamailio does not verify), and sipedge
 *   forwards to a TCP server.
 * - sipedge as TLS client: a TCP client sends through sipedge, which forwards over TLS to
 *   Kamailio's tls listener — verifying Kamailio's certificate against the test CA, host name
 *   (IP) included — and Kamailio forwards to a TCP server.
 *
 * Requests and responses must pass intact. Skipped when Kamailio is not installed (.ci/run
 * installs `kamailio` and `kamailio-tls-modules`).
 * @module
 */
import assert from "node:assert/strict";
import { startKamailio } from "./support/kamailio_process.ts";
import { findOnPath } from "./support/sipp.ts";
import { freePort, type SipedgeProcess, startSipedge } from "./support/sipedge_process.ts";
import { buildRequest, latin1, TestUac, TestUas, uniqueId } from "./support/sip_peer.ts";
import { TestPki } from "./support/tls_certs.ts";

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

const KAMAILIO = findOnPath("kamailio") ??
  (isFile("/usr/sbin/kamailio") ? "/usr/sbin/kamailio" : undefined);
const TLS_MODULE = [...Deno.readDirSync("/usr/lib")].some((d) =>
  isFile(`/usr/lib/${d.name}/kamailio/modules/tls.so`)
);
const ignore = KAMAILIO === undefined || !TLS_MODULE;

/** Runs `body`; a failure gets both processes' output appended. */
async function withOutputs(
  outputs: { name: string; output(): string }[],
  body: () => Promise<void>,
): Promise<void> {
  try {
    await body();
  } catch (error) {
    if (error instanceof Error) {
      for (const o of outputs) error.message += `\n--- ${o.name} output ---\n${o.output()}`;
    }
    throw error;
  }
}

/** A request with a body and headers sipedge and Kamailio must not touch. */
function testRequest(): ReturnType<typeof buildRequest> & { body: string } {
  const body =
    `v=0\r\no=- ${uniqueId()} 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n`;
  const request = buildRequest({
    method: "INVITE",
    uri: "sip:bob@example.com",
    headers: ["Content-Type: application/sdp", "X-Interop: tls both ways"],
    body,
  });
  return { ...request, body };
}

Deno.test({
  name: "interop kamailio tls: Kamailio as TLS client sends through sipedge; responses come back",
  ignore,
  fn: async () => {
    await using uas = TestUas.listen();
    const [edgeTcp, edgeTls, kamTcp] = [freePort(), freePort(), freePort()];
    await using pki = await TestPki.create();
    const ca = await pki.ca("Kamailio CA");
    const kamCert = await pki.issue(ca, "kamailio", { ips: ["127.0.0.1"] });
    const edge: SipedgeProcess = await startSipedge({
      config: `[sipedge]
workers = 2
[[listen]]
address = "tcp:127.0.0.1:${edgeTcp}"
[[listen]]
address = "tls:127.0.0.1:${edgeTls}"
[plugins.tls]
[plugins.static_router]
default_route = "${uas.uri}"
`,
    });
    try {
      await using kamailio = await startKamailio({
        port: kamTcp,
        forward: `sip:127.0.0.1:${edgeTls};transport=tls`,
        tls: { port: freePort(), certificate: kamCert.cert, privateKey: kamCert.key },
      });
      await withOutputs([{ name: "sipedge", output: edge.output }, {
        name: "kamailio",
        output: kamailio.output,
      }], async () => {
        await using uac = await TestUac.connect(kamTcp);
        for (let i = 0; i < 3; i++) {
          const request = testRequest();
          await uac.send(request.bytes);
          const response = await uac.nextMessage(5000);
          assert.equal(response.status, 200, response.text);
          assert.equal(response.callId, request.callId);
          assert.equal(response.headers("via").length, 1, "both proxies removed their Via");

          const { message } = await uas.waitForCallId(request.callId, 5000);
          const vias = message.headers("via");
          assert.match(vias[0], new RegExp(`^SIP/2\\.0/TCP 127\\.0\\.0\\.1:${edgeTcp};branch=`));
          assert.match(vias[1], /^SIP\/2\.0\/TLS 127\.0\.0\.1:\d+;branch=/, "Kamailio's TLS Via");
          assert.equal(latin1(message.body), request.body);
          assert.equal(message.header("x-interop"), "tls both ways");
        }
        // Kamailio connected over TLS (not TCP): sipedge's generated certificate was used.
        assert.match(edge.output(), /no certificate configured, using a generated self-signed one/);
      });
    } finally {
      await edge.stop();
    }
  },
});

Deno.test({
  name:
    "interop kamailio tls: sipedge as TLS client to Kamailio's TLS listener, certificate verified",
  ignore,
  fn: async () => {
    await using uas = TestUas.listen();
    await using pki = await TestPki.create();
    const ca = await pki.ca("Kamailio CA");
    const kamCert = await pki.issue(ca, "kamailio", { ips: ["127.0.0.1"] });
    const [edgeTcp, edgeTls, kamTcp, kamTls] = [freePort(), freePort(), freePort(), freePort()];
    await using kamailio = await startKamailio({
      port: kamTcp,
      forward: uas.uri,
      tls: { port: kamTls, certificate: kamCert.cert, privateKey: kamCert.key },
    });
    const edge = await startSipedge({
      config: `[sipedge]
workers = 2
[control]
address = "127.0.0.1:0"
[[listen]]
address = "tcp:127.0.0.1:${edgeTcp}"
[[listen]]
address = "tls:127.0.0.1:${edgeTls}"
[plugins.tls]
[[plugins.tls.client_domains]]
name = "kamailio"
match = ["127.0.0.1:${kamTls}"]
ca_list = ${JSON.stringify(ca.cert)}
[plugins.static_router]
default_route = "sip:127.0.0.1:${kamTls};transport=tls"
`,
    });
    try {
      await withOutputs([{ name: "sipedge", output: edge.output }, {
        name: "kamailio",
        output: kamailio.output,
      }], async () => {
        await using uac = await TestUac.connect(edgeTcp);
        for (let i = 0; i < 3; i++) {
          const request = testRequest();
          await uac.send(request.bytes);
          const response = await uac.nextMessage(5000);
          assert.equal(response.status, 200, response.text);
          assert.equal(response.callId, request.callId);
          assert.equal(response.headers("via").length, 1);

          const { message } = await uas.waitForCallId(request.callId, 5000);
          const vias = message.headers("via");
          assert.match(vias[0], new RegExp(`^SIP/2\\.0/TCP 127\\.0\\.0\\.1:${kamTcp};branch=`));
          assert.match(
            vias[1],
            new RegExp(`^SIP/2\\.0/TLS 127\\.0\\.0\\.1:${edgeTls};branch=`),
            "sipedge's TLS Via",
          );
          assert.equal(latin1(message.body), request.body);
          assert.equal(message.header("x-interop"), "tls both ways");
        }
        const url = /sipedge control API: (http:\/\/127\.0\.0\.1:\d+)/.exec(edge.output())![1];
        const { connections } = await (await fetch(`${url}/connections`)).json();
        const out = connections.find((c: { remote: string; direction: string }) =>
          c.direction === "out" && c.remote === `127.0.0.1:${kamTls}`
        );
        assert.ok(out !== undefined, JSON.stringify(connections));
        assert.equal(out.transport, "tls");
        assert.equal(out.details.domain, "kamailio");
        assert.equal(out.details.peer_certificate, "CN=kamailio");
        assert.equal(out.details.peer_verified, true);
        assert.match(out.details.tls_version, /^TLSv1\.[23]$/);
      });
    } finally {
      await edge.stop();
    }
  },
});
