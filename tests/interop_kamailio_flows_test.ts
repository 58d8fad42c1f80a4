/**
 * sipedge as the RFC 5626 edge proxy in front of a real registrar (Kamailio 5.6: registrar and
 * usrloc with `use_path`, tm, rr; tests/support/kamailio_registrar.ts). Clients register through
 * sipedge over TCP or TLS; a caller connected to sipedge calls each of them (INVITE, ACK, BYE)
 * through Kamailio's location lookup, which sends the INVITE back to sipedge with the Path as
 * Route; sipedge delivers it over the callee's own connection in whichever worker owns it.
 * With TCP the callees are placed one per worker, so calls cross workers for certain.
 * Skipped when Kamailio is not installed.
 */
import assert from "node:assert/strict";
import {
  kamailioRegistrarAvailable,
  startKamailioRegistrar,
} from "./support/kamailio_registrar.ts";
import { ProxyEnv } from "./support/proxy_env.ts";
import { freePort, withOutput } from "./support/sipedge_process.ts";
import {
  buildRequest,
  buildResponse,
  type SipMessage,
  TestUac,
  uniqueId,
} from "./support/sip_peer.ts";
import { TlsUac } from "./support/tls_peer.ts";

const ignore = !kamailioRegistrarAvailable();

/** A client connection, TCP or TLS. */
interface Client {
  send(data: Uint8Array | string): Promise<void>;
  nextMessage(timeoutMs?: number): Promise<SipMessage>;
  close(): Promise<void>;
  localPort: number;
}

/** The `<…>` URIs of every Record-Route (or Route) line, in order. */
function uris(message: SipMessage, name: string): string[] {
  return message.headers(name).flatMap((line) => [...line.matchAll(/<([^>]+)>/g)].map((m) => m[1]));
}

/** Registers `user` from `client` through sipedge (RFC 5626 outbound); returns the 200. */
async function register(client: Client, user: string): Promise<SipMessage> {
  const request = buildRequest({
    method: "REGISTER",
    uri: "sip:127.0.0.1",
    via: `SIP/2.0/TCP 192.0.2.55:${client.localPort};branch=z9hG4bK${uniqueId()};rport`,
    from: `<sip:${user}@127.0.0.1>;tag=${uniqueId()}`,
    to: `<sip:${user}@127.0.0.1>`,
    headers: [
      `Contact: <sip:${user}@192.0.2.55:${client.localPort};transport=tcp;ob>;reg-id=1;` +
      `+sip.instance="<urn:uuid:00000000-0000-1000-8000-${
        String(client.localPort).padStart(12, "0")
      }>";expires=300`,
      "Supported: outbound, path",
    ],
  });
  await client.send(request.bytes);
  const answer = await client.nextMessage(5000);
  assert.equal(answer.status, 200, answer.text);
  return answer;
}

/** One call from `caller` to `user` (registered on `callee`): INVITE/200/ACK, BYE/200. */
async function call(caller: TestUac, callee: Client, user: string) {
  const callId = `${uniqueId()}@caller`;
  const from = `<sip:bob@127.0.0.1>;tag=${uniqueId()}`;
  const via = () => `SIP/2.0/TCP 127.0.0.1:${caller.localPort};branch=z9hG4bK${uniqueId()};rport`;
  const contact = `Contact: <sip:bob@127.0.0.1:${caller.localPort};transport=tcp>`;
  const invite = buildRequest({
    method: "INVITE",
    uri: `sip:${user}@127.0.0.1`,
    via: via(),
    callId,
    from,
    to: `<sip:${user}@127.0.0.1>`,
    headers: [contact, "Content-Type: application/sdp"],
    body: "v=0\r\n",
  });
  await caller.send(invite.bytes);
  const atCallee = await callee.nextMessage(5000);
  assert.equal(atCallee.method, "INVITE", atCallee.startLine);
  assert.equal(atCallee.callId, callId);
  assert.equal(atCallee.header("route"), undefined, "every Route consumed on the way");
  const recordRoutes = uris(atCallee, "record-route");
  assert.ok(
    recordRoutes.some((u) => new RegExp(`^sip:[A-Za-z0-9_-]{32}@127\\.0\\.0\\.1:\\d+;`).test(u)),
    `sipedge Record-Routes with the flow token: ${recordRoutes.join(" | ")}`,
  );
  // The callee answers (echoing Record-Route, RFC 3261 §12.1.1), over its own connection.
  const calleeContact = `<sip:${user}@192.0.2.55:${callee.localPort};transport=tcp;ob>`;
  await callee.send(buildResponse(atCallee, 200, {
    headers: [
      ...atCallee.headers("record-route").map((l) => `Record-Route: ${l}`),
      `Contact: ${calleeContact}`,
    ],
  }));
  let ok = await caller.nextMessage(5000);
  while (ok.status < 200) ok = await caller.nextMessage(5000);
  assert.equal(ok.status, 200, ok.startLine);
  // The caller's route set: the Record-Route of the 200, reversed (RFC 3261 §12.1.2).
  const routeSet = uris(ok, "record-route").reverse();
  const toWithTag = ok.header("to")!;
  const inDialog = (method: string, cseq: number) =>
    buildRequest({
      method,
      uri: calleeContact.slice(1, -1),
      via: via(),
      callId,
      from,
      to: toWithTag,
      cseq,
      cseqMethod: method,
      headers: routeSet.map((u) => `Route: <${u}>`),
    });
  await caller.send(inDialog("ACK", 1).bytes);
  const ack = await callee.nextMessage(5000);
  assert.equal(ack.method, "ACK", ack.startLine);
  await caller.send(inDialog("BYE", 2).bytes);
  const bye = await callee.nextMessage(5000);
  assert.equal(bye.method, "BYE", bye.startLine);
  await callee.send(buildResponse(bye, 200));
  const byeOk = await caller.nextMessage(5000);
  assert.equal(byeOk.status, 200, byeOk.startLine);
}

for (const workers of [2, 4]) {
  for (const transport of ["tcp", "tls"] as const) {
    Deno.test({
      name:
        `interop kamailio flows: ${transport} clients register through sipedge (${workers} workers); calls through Kamailio's location lookup reach each one over its own connection`,
      ignore,
      async fn() {
        await using kamailio = await startKamailioRegistrar({ port: freePort() });
        await using env = await ProxyEnv.start(
          workers,
          `[plugins.static_router]\ndefault_route = "${kamailio.uri}"\n`,
          { listen: ["tcp:127.0.0.1:0", "tls:127.0.0.1:0"] },
        );
        const tlsPort = Number(env.proxy.listening[1].split(":").at(-1));
        await withOutput(env.proxy, async () => {
          const callees: { client: Client; user: string }[] = [];
          try {
            for (let i = 0; i < workers * 2; i++) {
              const client: Client = transport === "tcp"
                ? await env.connectIn({ worker: i % workers })
                : await TlsUac.connect(tlsPort);
              const user = `alice${i}`;
              callees.push({ client, user });
              await register(client, user);
            }
            const listed = await env.connections();
            assert.equal(listed.filter((c) => c.flow).length, workers * 2, "every callee a flow");
            await using caller = await TestUac.connect(env.port);
            for (const { client, user } of callees) await call(caller, client, user);
            const counters = await env.counters();
            assert.equal(counters.flows_registered, workers * 2);
            if (transport === "tcp") {
              assert.ok(counters.handoffs_out > 0, "calls crossed workers");
            }
            assert.equal(counters.flow_failed ?? 0, 0);
          } catch (error) {
            throw new Error(`${(error as Error).message}\n--- kamailio ---\n${kamailio.output()}`);
          } finally {
            for (const { client } of callees) await client.close();
          }
        });
      },
    });
  }
}

Deno.test({
  name:
    "interop kamailio flows: two sipedge instances in front of one registrar, no shared state: each call reaches the instance in the callee's Path",
  ignore,
  async fn() {
    await using kamailio = await startKamailioRegistrar({ port: freePort() });
    const route = `[plugins.static_router]\ndefault_route = "${kamailio.uri}"\n`;
    await using east = await ProxyEnv.start(2, route);
    await using west = await ProxyEnv.start(2, route);
    await withOutput(east.proxy, async () => {
      await using alice = await TestUac.connect(east.port);
      await using bob = await TestUac.connect(west.port);
      await register(alice, "alice");
      await register(bob, "bob");
      // Bob's caller side is west; the callee alice is on east, and the other way round.
      await using westCaller = await TestUac.connect(west.port);
      await using eastCaller = await TestUac.connect(east.port);
      await call(westCaller, alice, "alice");
      await call(eastCaller, bob, "bob");
      const [e, w] = [await east.counters(), await west.counters()];
      assert.equal(e.flows_registered, 1);
      assert.equal(w.flows_registered, 1);
      // Each INVITE for a callee went through the callee's instance only.
      assert.equal(e.flow_token_invalid ?? 0, 0);
      assert.equal(w.flow_token_invalid ?? 0, 0);
    });
  },
});
