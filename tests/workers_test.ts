/**
 * sipedge with two reader workers: connections are spread over the workers by SO_REUSEPORT
 * (which worker takes a connection cannot be chosen or seen from outside); every client must
 * be served, and every response must come back on the connection its request came in on.
 *
 * @module
 */
import assert from "node:assert/strict";
import { freePort, startSipedge } from "./support/sipedge_process.ts";
import { buildRequest, concatBytes, TestUac, TestUas } from "./support/sip_peer.ts";

const CLIENTS = 20;
const REQUESTS_PER_CLIENT = 5;

Deno.test("workers: 20 connections over 2 workers all get their own responses", async () => {
  await using uas = TestUas.listen();
  const port = freePort();
  await using proxy = await startSipedge({
    args: ["--listen", `tcp:127.0.0.1:${port}`, "--forward", uas.uri, "--workers", "2"],
  });
  assert.match(proxy.readyLine, /\(2 workers\)/);

  const clients: TestUac[] = [];
  try {
    for (let i = 0; i < CLIENTS; i++) clients.push(await TestUac.connect(port));

    // Every client writes its requests at once (pipelined), all clients at the same time.
    const sent = clients.map((_, c) =>
      Array.from({ length: REQUESTS_PER_CLIENT }, (_, r) =>
        buildRequest({
          method: r % 2 === 0 ? "OPTIONS" : "MESSAGE",
          callId: `client${c}-request${r}-${crypto.randomUUID()}`,
          body: `from client ${c}, request ${r}\r\n`,
        }))
    );
    await Promise.all(
      clients.map((client, c) => client.send(concatBytes(...sent[c].map((r) => r.bytes)))),
    );
    const received = await Promise.all(
      clients.map((client) => client.nextMessages(REQUESTS_PER_CLIENT, 5000)),
    );

    for (let c = 0; c < CLIENTS; c++) {
      const callIds = received[c].map((m) => m.callId);
      assert.deepEqual(
        new Set(callIds),
        new Set(sent[c].map((r) => r.callId)),
        `client ${c} got responses to: ${callIds.join(", ")}`,
      );
      assert.ok(received[c].every((m) => m.status === 200));
    }
    // Nothing else arrives anywhere, and the UAS saw each request once.
    await Promise.all(clients.map((client) => client.expectNothing(100)));
    assert.equal(uas.requests.length, CLIENTS * REQUESTS_PER_CLIENT);
    assert.equal(
      new Set(uas.requests.map((r) => r.message.callId)).size,
      CLIENTS * REQUESTS_PER_CLIENT,
    );
    // Each worker opens one connection to the upstream and reuses it for all its clients.
    assert.ok(
      uas.connectionCount >= 1 && uas.connectionCount <= 2,
      `${uas.connectionCount} upstream connections`,
    );
  } catch (error) {
    if (error instanceof Error) error.message += `\n--- sipedge output ---\n${proxy.output()}`;
    throw error;
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
});
