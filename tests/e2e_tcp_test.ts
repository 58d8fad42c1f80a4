/**
 * End-to-end tests over TCP: sipedge runs as a real process (`startSipedge`) between a test
 * client ({@linkcode TestUac}) and a test server ({@linkcode TestUas}), all on 127.0.0.1.
 * Every test starts its own sipedge and closes every process and socket it opened.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  freePort,
  REPO_ROOT,
  type SipedgeProcess,
  startSipedge,
} from "./support/sipedge_process.ts";
import {
  buildRequest,
  buildResponse,
  bytesEqual,
  concatBytes,
  latin1,
  latin1Bytes,
  type SipMessage,
  TestUac,
  TestUas,
  uniqueId,
  waitUntil,
} from "./support/sip_peer.ts";

// --- helpers ---------------------------------------------------------------------------------

/** A running sipedge and the port it listens on. */
interface RunningProxy extends AsyncDisposable {
  process: SipedgeProcess;
  port: number;
}

interface ProxyOptions {
  /** `--forward` URI (omitted when undefined). */
  forward?: string;
  /** Config text (with no [[listen]]: `--listen` gives it). */
  config?: string;
  /** Reader workers (default 2). */
  workers?: number;
}

/** Starts sipedge on a free port: `--listen tcp:127.0.0.1:PORT [--forward URI] --workers N`. */
async function startProxy(options: ProxyOptions): Promise<RunningProxy> {
  const port = freePort();
  const args = ["--listen", `tcp:127.0.0.1:${port}`, "--workers", String(options.workers ?? 2)];
  if (options.forward !== undefined) args.push("--forward", options.forward);
  const process = await startSipedge({ args, config: options.config });
  assert.deepEqual(process.listening, [`tcp:127.0.0.1:${port}`]);
  return { process, port, [Symbol.asyncDispose]: async () => void await process.stop() };
}

/** Runs `body`; a failure gets sipedge's output appended to its message. */
async function withOutput(proxy: RunningProxy, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    if (error instanceof Error) {
      error.message += `\n--- sipedge output ---\n${proxy.process.output()}`;
    }
    throw error;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Asserts two byte arrays are equal, showing the differing lines when they are not. */
function assertBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (bytesEqual(actual, expected)) return;
  assert.deepEqual(
    latin1(actual).split("\r\n"),
    latin1(expected).split("\r\n"),
    `${what}: bytes differ`,
  );
  assert.fail(`${what}: bytes differ (${actual.length} vs ${expected.length} bytes)`);
}

/** sipedge's own Via line for a proxy on `port`. */
function ourViaPattern(port: number): RegExp {
  return new RegExp(
    `^Via: SIP/2\\.0/TCP 127\\.0\\.0\\.1:${port};branch=z9hG4bK[0-9A-Za-z]+;i=\\d+$`,
  );
}

/** A binary body: NUL, 0xff, CRLFs, a blank line and a status line inside. */
function binaryBody(): Uint8Array {
  return concatBytes(
    new Uint8Array([0x00, 0x01, 0xff, 0xfe, 0x00, 0x0d, 0x0a, 0x0d, 0x0a, 0x80]),
    "v=0\r\n\r\nSIP/2.0 200 OK\r\nContent-Length: 5\r\n\r\n",
    new Uint8Array(256).map((_, i) => i),
    "\r\n\r\n\r\n",
    new Uint8Array([0xff, 0x00]),
  );
}

/** Asserts the response is sipedge's own answer `status reason` to `callId`. */
function assertLocalReply(message: SipMessage, status: number, reason: string, callId?: string) {
  assert.equal(message.startLine, `SIP/2.0 ${status} ${reason}`, `reply: ${message.text}`);
  assert.equal(message.header("server"), "sipedge");
  if (callId !== undefined) assert.equal(message.callId, callId);
}

// --- forwarding ------------------------------------------------------------------------------

Deno.test("e2e: a request is forwarded intact, with our Via and Max-Forwards - 1", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const id = uniqueId();
    const body = binaryBody();
    const topVia = `Via: SIP/2.0/TCP 198.51.100.7:5099;branch=z9hG4bK${id};rport`;
    const head = [
      "INVITE sip:+15551234@example.com;user=phone SIP/2.0",
      topVia,
      "v:  SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKdown ;received=192.0.2.99",
      `From: "Alice \\"A\\" Smith" <sip:alice@example.com>;tag=${id}`,
      "To:<sip:+15551234@example.com;user=phone>",
      `i: ${id}@client.invalid`,
      "CSeq:   314159   INVITE",
      "Max-Forwards: 70",
      "Contact: <sip:alice@198.51.100.7:5099;transport=tcp>;expires=60",
      "X-Folded: first part,",
      "\t second part",
      "Subject: caf\xe9 \xff bytes  ",
      "k: timer, 100rel",
      "Allow: INVITE,ACK ,  CANCEL",
      "X-Empty:",
      "Record-Route: <sip:upstream.example.com;lr>",
      "Content-Type: application/octet-stream",
      `l: ${body.length}`,
    ];
    const request = concatBytes(head.map((l) => `${l}\r\n`).join("") + "\r\n", body);
    await uac.send(request);

    const { message } = await uas.waitForCallId(`${id}@client.invalid`);
    const lines = message.headerLines;
    assert.match(lines[0], ourViaPattern(proxy.port), "sipedge's Via on top");
    const expectedHead = [
      head[0],
      lines[0],
      `${topVia}=${uac.localPort};received=127.0.0.1`,
      ...head.slice(2).map((l) => l === "Max-Forwards: 70" ? "Max-Forwards: 69" : l),
    ];
    assertBytes(
      message.bytes,
      concatBytes(expectedHead.map((l) => `${l}\r\n`).join("") + "\r\n", body),
      "forwarded request",
    );
    assertBytes(message.body, body, "body");

    // The client gets the 200 back.
    const response = await uac.nextMessage();
    assert.equal(response.status, 200);
    assert.equal(response.callId, `${id}@client.invalid`);
  });
});

Deno.test("e2e: responses come back on the client connection without our Via", async () => {
  const responseBody = binaryBody();
  await using uas = TestUas.listen({
    respond: (request) => {
      if (!request.isRequest || request.method === "ACK") return undefined;
      const extra = [
        "Contact: <sip:bob@127.0.0.1:5070;transport=tcp>",
        "X-Resp: \xe9t\xe9 ,  spaced  ",
        "Content-Type: application/octet-stream",
      ];
      return concatBytes(
        buildResponse(request, 180, { headers: extra, toTag: "t1" }),
        buildResponse(request, 200, { headers: extra, toTag: "t1", body: responseBody }),
      );
    },
  });
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const request = buildRequest({
      method: "INVITE",
      via: "SIP/2.0/TCP client.invalid:5099;branch=z9hG4bKresp1;rport, " +
        "SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKsecond",
      headers: ["Via: SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKthird"],
    });
    await uac.send(request.bytes);
    const received = await uas.waitForCallId(request.callId);
    assert.ok(received.response);

    // What the UAS sent, less its first line that is sipedge's Via.
    const sent = latin1(received.response);
    const ourVia = received.message.headerLines[0];
    assert.match(ourVia, ourViaPattern(proxy.port));
    const expected = latin1Bytes(sent.split(`${ourVia}\r\n`).join(""));
    assert.equal(sent.split(`${ourVia}\r\n`).length, 3, "our Via in both responses");

    const [ringing, ok] = await uac.nextMessages(2);
    assert.equal(ringing.status, 180);
    assert.equal(ok.status, 200);
    assertBytes(concatBytes(ringing.bytes, ok.bytes), expected, "responses at the client");
    assert.deepEqual(ok.headers("via"), [
      `SIP/2.0/TCP client.invalid:5099;branch=z9hG4bKresp1;rport=${uac.localPort};` +
      "received=127.0.0.1, SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKsecond",
      "SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKthird",
    ]);
    assertBytes(ok.body, responseBody, "response body");
    await uac.expectNothing(100);
  });
});

Deno.test("e2e: our Via is removed from a response that has every Via on one line", async () => {
  await using uas = TestUas.listen({
    respond: (request) => {
      if (!request.isRequest) return undefined;
      const vias = request.headers("via").join(" ,  ");
      const headText = latin1(buildResponse(request, 200, { headers: ["X-Kept: yes"] }));
      return headText.replace(/^(Via: .*\r\n)+/m, `Via: ${vias}\r\n`);
    },
  });
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const request = buildRequest({
      via: "SIP/2.0/TCP client.invalid:5099;branch=z9hG4bKoneline",
      headers: ["Via: SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKbelow"],
    });
    await uac.send(request.bytes);
    const response = await uac.nextMessage();
    assert.equal(response.status, 200);
    assert.deepEqual(response.headers("via"), [
      "SIP/2.0/TCP client.invalid:5099;branch=z9hG4bKoneline;received=127.0.0.1 ,  " +
      "SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKbelow",
    ]);
    assert.equal(response.header("x-kept"), "yes");
  });
});

Deno.test("e2e: a request without Max-Forwards gets Max-Forwards: 70", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const request = buildRequest({ omit: ["Max-Forwards"] });
    await uac.send(request.bytes);
    const { message } = await uas.waitForCallId(request.callId);
    assert.deepEqual(message.headers("max-forwards"), ["70"]);
    assert.equal((await uac.nextMessage()).status, 200);
  });
});

Deno.test("e2e: stateless branch: same for retransmission, ACK and CANCEL; new otherwise", async () => {
  await using uas = TestUas.listen({ answer: false });
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const via = "SIP/2.0/TCP client.invalid:5099;branch=z9hG4bKtxn1";
    const callId = `${uniqueId()}@client.invalid`;
    const from = "<sip:alice@example.com>;tag=a1";
    const invite = buildRequest({ method: "INVITE", via, callId, from });
    const ack = buildRequest({
      method: "ACK",
      via,
      callId,
      from,
      to: "<sip:bob@example.com>;tag=uas",
    });
    const cancel = buildRequest({ method: "CANCEL", via, callId, from });
    const other = buildRequest({
      method: "INVITE",
      via: "SIP/2.0/TCP client.invalid:5099;branch=z9hG4bKtxn2",
      callId,
      from,
      cseq: 2,
    });
    for (const r of [invite, invite, ack, cancel, other]) await uac.send(r.bytes);
    const got = await uas.waitForMessages(5);
    const branches = got.map((r) => /;branch=([^;]+)/.exec(r.message.headerLines[0])?.[1]);
    assert.deepEqual(got.map((r) => r.message.method), [
      "INVITE",
      "INVITE",
      "ACK",
      "CANCEL",
      "INVITE",
    ]);
    assert.match(branches[0]!, /^z9hG4bK/);
    assert.equal(branches[1], branches[0], "retransmission");
    assert.equal(branches[2], branches[0], "ACK of a non-2xx");
    assert.equal(branches[3], branches[0], "CANCEL");
    assert.notEqual(branches[4], branches[0], "a new transaction");
  });
});

Deno.test("e2e: when the upstream closes its connection, the next request opens a new one", async () => {
  await using uas = TestUas.listen({ closeAfterAnswer: true });
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    for (let i = 0; i < 3; i++) {
      const request = buildRequest();
      await uac.send(request.bytes);
      const response = await uac.nextMessage();
      assert.equal(response.callId, request.callId);
      await waitUntil(() => uas.openConnections === 0 || undefined, 2000, "the UAS to close");
      await delay(50);
    }
    assert.equal(uas.connectionCount, 3);
  });
});

// Shows a sipedge bug (reported to the lead): when the upstream's EOF and the next request are
// read in the same event-loop turn, the request is queued on the closing connection, never
// written, and answered `503 (connection closed)` instead of going out on a new connection.
// Fails in 5-20 of 100 iterations on a 2-CPU machine.
Deno.test("e2e: a request sent just as the upstream closes its connection goes out on a new one", async () => {
  await using uas = TestUas.listen({ closeAfterAnswer: true });
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const failed: string[] = [];
    for (let i = 0; i < 100; i++) {
      const request = buildRequest();
      await uac.send(request.bytes); // at once: the UAS is closing the previous connection
      const response = await uac.nextMessage();
      assert.equal(response.callId, request.callId);
      if (response.status !== 200) {
        failed.push(`#${i}: ${response.startLine} (Reason: ${response.header("reason")})`);
      }
    }
    assert.deepEqual(failed, [], `${failed.length} of 100 requests were not forwarded`);
  });
});

Deno.test("e2e: a request from the upstream reaches the client over its connection", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const invite = buildRequest({ method: "INVITE", from: "<sip:alice@example.com>;tag=a9" });
    await uac.send(invite.bytes);
    const atUas = await uas.waitForCallId(invite.callId);
    assert.equal((await uac.nextMessage()).status, 200);

    // The UAS hangs up: a BYE to the client's address (its Contact), on the connection the
    // INVITE came in on (so it reaches the worker that has the client's connection).
    const bye = buildRequest({
      method: "BYE",
      uri: `sip:alice@127.0.0.1:${uac.localPort};transport=tcp`,
      via: `SIP/2.0/TCP 127.0.0.1:${uas.port};branch=z9hG4bKuasbye`,
      callId: invite.callId,
      from: "<sip:bob@example.com>;tag=uas",
      to: "<sip:alice@example.com>;tag=a9",
    });
    await uas.sendOn(atUas.connection, bye.bytes);
    const byeAtClient = await uac.nextMessage();
    assert.equal(byeAtClient.method, "BYE");
    assert.match(byeAtClient.headerLines[0], ourViaPattern(proxy.port));
    assert.equal(
      byeAtClient.headerLines[1],
      `Via: SIP/2.0/TCP 127.0.0.1:${uas.port};branch=z9hG4bKuasbye`,
    );

    await uac.send(buildResponse(byeAtClient, 200));
    const okAtUas = await uas.waitFor((m) => !m.isRequest && m.callId === invite.callId);
    assert.equal(okAtUas.message.status, 200);
    assert.equal(okAtUas.message.header("cseq"), "1 BYE");
    assert.deepEqual(okAtUas.message.headers("via"), [
      `SIP/2.0/TCP 127.0.0.1:${uas.port};branch=z9hG4bKuasbye`,
    ]);
    assert.equal(okAtUas.connection, atUas.connection);
  });
});

Deno.test("e2e: 50 pipelined requests in one write get 50 responses", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    // ~800 bytes each: the 40 kB write spans several of sipedge's 16 kB reads.
    const requests = Array.from({ length: 50 }, (_, i) =>
      buildRequest({
        method: i % 2 === 0 ? "OPTIONS" : "MESSAGE",
        body: `message ${i}\r\n${"b".repeat(500)}`,
      }));
    await uac.send(concatBytes(...requests.map((r) => r.bytes)));
    const responses = await uac.nextMessages(50, 5000);
    assert.ok(responses.every((r) => r.status === 200));
    assert.deepEqual(
      new Set(responses.map((r) => r.callId)),
      new Set(requests.map((r) => r.callId)),
    );
    assert.equal(uas.requests.length, 50);
    await uac.expectNothing(100);
  });
});

Deno.test("e2e: a request written one byte at a time is forwarded and answered", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const body = binaryBody();
    const request = buildRequest({
      method: "INVITE",
      headers: ["Content-Type: application/octet-stream"],
      body,
    });
    await uac.send(request.bytes, { chunkSize: 1 });
    const response = await uac.nextMessage(5000);
    assert.equal(response.status, 200);
    assert.equal(response.callId, request.callId);
    const { message } = await uas.waitForCallId(request.callId);
    assertBytes(message.body, body, "body");
    assert.equal(message.headerLines.length, request.headerLines.length + 1);
  });
});

Deno.test("e2e: 60 kB binary messages go through intact both ways", async () => {
  const big = (seed: number) => new Uint8Array(60_000).map((_, i) => (i * 31 + seed) & 0xff);
  await using uas = TestUas.listen({
    respond: (request) =>
      request.isRequest
        ? buildResponse(request, 200, {
          headers: ["Content-Type: application/octet-stream"],
          body: big(request.body[0]),
        })
        : undefined,
  });
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const requests = [1, 2, 3].map((seed) =>
      buildRequest({
        method: "MESSAGE",
        headers: ["Content-Type: application/octet-stream"],
        body: big(seed),
      })
    );
    await uac.send(concatBytes(...requests.map((r) => r.bytes)));
    const responses = await uac.nextMessages(3, 5000);
    for (const [i, r] of requests.entries()) {
      const atUas = await uas.waitForCallId(r.callId);
      assertBytes(atUas.message.body, big(i + 1), `request ${i} body at the UAS`);
      const response = responses.find((m) => m.callId === r.callId);
      assert.ok(response, `response ${i}`);
      assertBytes(response.body, big(i + 1), `response ${i} body at the client`);
    }
  });
});

Deno.test("e2e: a response for a client that has gone is dropped; others are served", async () => {
  await using uas = TestUas.listen({ answer: false });
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    const gone = await TestUac.connect(proxy.port);
    const request = buildRequest({ method: "INVITE" });
    await gone.send(request.bytes);
    const atUas = await uas.waitForCallId(request.callId);
    await gone.close();
    await delay(50);
    await uas.sendOn(atUas.connection, buildResponse(atUas.message, 200));
    await delay(100);

    await using uac = await TestUac.connect(proxy.port);
    const next = buildRequest();
    await uac.send(next.bytes);
    const nextAtUas = await uas.waitForCallId(next.callId);
    await uas.sendOn(nextAtUas.connection, buildResponse(nextAtUas.message, 200));
    const response = await uac.nextMessage();
    assert.equal(response.callId, next.callId);
    await uac.expectNothing(100);
  });
});

Deno.test("e2e: two --listen addresses both serve, and both are sipedge's own", async () => {
  await using uas = TestUas.listen();
  const ports = [freePort(), freePort()];
  await using process = await startSipedge({
    args: [
      ...ports.flatMap((p) => ["--listen", `tcp:127.0.0.1:${p}`]),
      "--forward",
      uas.uri,
      "--workers",
      "2",
    ],
  });
  assert.deepEqual(process.listening, ports.map((p) => `tcp:127.0.0.1:${p}`));
  for (const port of ports) {
    await using uac = await TestUac.connect(port);
    const request = buildRequest();
    await uac.send(request.bytes);
    assert.equal((await uac.nextMessage()).callId, request.callId);
    for (const target of ports) {
      const options = buildRequest({ uri: `sip:127.0.0.1:${target}` });
      await uac.send(options.bytes);
      assertLocalReply(await uac.nextMessage(), 200, "OK", options.callId);
    }
  }
  assert.equal(uas.messages.length, 2);
});

// --- keepalive -------------------------------------------------------------------------------

Deno.test("e2e: CRLF keepalive ping gets exactly one CRLF back", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    await uac.send("\r\n\r\n");
    assert.deepEqual(await uac.next(), { type: "crlf" });
    await uac.expectNothing(300);
    assert.deepEqual([...uac.received], [13, 10]);

    // A ping between two pipelined requests.
    const first = buildRequest();
    const second = buildRequest();
    await uac.send(concatBytes(first.bytes, "\r\n\r\n", second.bytes));
    const frames = [await uac.next(), await uac.next(), await uac.next()];
    assert.equal(frames.filter((f) => f.type === "crlf").length, 1, JSON.stringify(frames));
    const callIds = frames.flatMap((f) => f.type === "message" ? [f.message.callId] : []);
    assert.deepEqual(callIds.sort(), [first.callId, second.callId].sort());
    await uac.expectNothing(200);
    assert.equal(
      uac.receivedLength,
      2 + 2 + frames.reduce(
        (n, f) => n + (f.type === "message" ? f.message.bytes.length : 0),
        0,
      ),
    );
    assert.equal(uas.messages.length, 2);
    assert.equal(uas.errors.length, 0);
  });
});

// --- errors ----------------------------------------------------------------------------------

Deno.test("e2e: missing Content-Length gets 400 and the connection is closed", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const request = buildRequest({ method: "INVITE", omit: ["Content-Length"] });
    await uac.send(request.bytes);
    const frames = await uac.waitClosed();
    assert.equal(frames.length, 1, JSON.stringify(frames));
    assert.equal(frames[0].type, "message");
    if (frames[0].type === "message") {
      assertLocalReply(frames[0].message, 400, "Missing Content-Length", request.callId);
    }
    assert.equal(uas.messages.length, 0);
  });
});

Deno.test("e2e: malformed requests get 400 naming the problem; the connection stays", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const cases: { request: Uint8Array; status: number; reason: string }[] = [
      {
        request: buildRequest({ method: "INVITE", omit: ["Call-ID"] }).bytes,
        status: 400,
        reason: "Missing Call-ID header",
      },
      {
        request: buildRequest({ method: "INVITE", omit: ["From"] }).bytes,
        status: 400,
        reason: "Missing From header",
      },
      {
        request: buildRequest({ method: "INVITE", cseqMethod: "BYE" }).bytes,
        status: 400,
        reason: "CSeq method does not match the request method",
      },
      {
        request: buildRequest({ headers: ["Max-Forwards: 9"] }).bytes,
        status: 400,
        reason: "Multiple Max-Forwards headers",
      },
      {
        request: latin1Bytes(
          latin1(buildRequest({ method: "INVITE" }).bytes).replace(
            "INVITE sip:bob@example.com SIP/2.0",
            "INVITE  sip:bob@example.com SIP/2.0",
          ),
        ),
        status: 400,
        reason: "Malformed request line",
      },
      {
        request: buildRequest({ method: "INVITE", headers: ["Proxy-Require: foo"] }).bytes,
        status: 420,
        reason: "Bad Extension",
      },
    ];
    for (const c of cases) {
      await uac.send(c.request);
      const reply = await uac.nextMessage();
      assertLocalReply(reply, c.status, c.reason);
    }
    // Still open and working; nothing of the above reached the UAS.
    const good = buildRequest();
    await uac.send(good.bytes);
    const ok = await uac.nextMessage();
    assert.equal(ok.status, 200);
    assert.equal(ok.callId, good.callId);
    assert.deepEqual(uas.messages.map((m) => m.message.callId), [good.callId]);
  });
});

Deno.test("e2e: INVITE with Max-Forwards 0 gets 483 (OPTIONS gets 200 from sipedge)", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const invite = buildRequest({ method: "INVITE", maxForwards: 0 });
    await uac.send(invite.bytes);
    const reply = await uac.nextMessage();
    assertLocalReply(reply, 483, "Too Many Hops", invite.callId);
    assert.match(reply.header("to")!, /;tag=/);

    const options = buildRequest({ method: "OPTIONS", maxForwards: 0 });
    await uac.send(options.bytes);
    assertLocalReply(await uac.nextMessage(), 200, "OK", options.callId);
    await uac.expectNothing(100);
    assert.equal(uas.messages.length, 0);
  });
});

Deno.test("e2e: SIP/3.0 gets 505", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const request = buildRequest({ method: "INVITE", version: "SIP/3.0" });
    await uac.send(request.bytes);
    assertLocalReply(await uac.nextMessage(), 505, "Version Not Supported", request.callId);
    // The connection is still usable.
    const good = buildRequest();
    await uac.send(good.bytes);
    assert.equal((await uac.nextMessage()).callId, good.callId);
    assert.deepEqual(uas.messages.map((m) => m.message.callId), [good.callId]);
  });
});

Deno.test("e2e: a message over max_message_size gets 513 and the connection closes", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({
    forward: uas.uri,
    config: "[plugins.limits]\nmax_message_size = 2048\n",
  });
  await withOutput(proxy, async () => {
    // Just under the limit: forwarded.
    {
      await using uac = await TestUac.connect(proxy.port);
      const small = buildRequest({ method: "MESSAGE", body: "x".repeat(1500) });
      await uac.send(small.bytes);
      assert.equal((await uac.nextMessage()).status, 200);
    }
    // Body over the limit (the head gives Content-Length).
    {
      await using uac = await TestUac.connect(proxy.port);
      const big = buildRequest({ method: "MESSAGE", body: "x".repeat(3000) });
      await uac.send(big.bytes);
      const frames = await uac.waitClosed();
      assert.equal(frames.length, 1, JSON.stringify(frames));
      assert.equal(frames[0].type, "message");
      if (frames[0].type === "message") {
        assertLocalReply(frames[0].message, 513, "Message Too Large", big.callId);
      }
    }
    // A head that never ends.
    {
      await using uac = await TestUac.connect(proxy.port);
      const head = buildRequest({ method: "MESSAGE", omit: ["Content-Length"] });
      const endless = head.headText.slice(0, -2) + `X-Long: ${"y".repeat(3000)}`;
      await uac.send(endless).catch(() => {}); // sipedge may close before all is written
      const frames = await uac.waitClosed();
      assert.equal(frames.length, 1, JSON.stringify(frames));
      assert.equal(frames[0].type, "message");
      if (frames[0].type === "message") {
        assertLocalReply(frames[0].message, 513, "Message Too Large", head.callId);
      }
    }
    assert.equal(uas.messages.length, 1);
  });
});

Deno.test("e2e: OPTIONS addressed to sipedge is answered by sipedge, not forwarded", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const options = buildRequest({
      method: "OPTIONS",
      uri: `sip:127.0.0.1:${proxy.port}`,
      to: `<sip:127.0.0.1:${proxy.port}>`,
    });
    await uac.send(options.bytes);
    const reply = await uac.nextMessage();
    assertLocalReply(reply, 200, "OK", options.callId);
    assert.match(reply.header("to")!, /;tag=/);
    // A request after it is forwarded; had the OPTIONS been forwarded, it would be first.
    const barrier = buildRequest();
    await uac.send(barrier.bytes);
    assert.equal((await uac.nextMessage()).callId, barrier.callId);
    assert.deepEqual(uas.messages.map((m) => m.message.callId), [barrier.callId]);
  });
});

// --- robustness ------------------------------------------------------------------------------

Deno.test("e2e: a client that disconnects mid-message does not disturb others", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using other = await TestUac.connect(proxy.port);
    const before = buildRequest();
    await other.send(before.bytes);
    assert.equal((await other.nextMessage()).callId, before.callId);

    for (const cut of [10, 100, 250]) {
      const quitter = await TestUac.connect(proxy.port);
      const request = buildRequest({ method: "INVITE", body: "v=0\r\n".repeat(20) });
      await quitter.send(request.bytes.subarray(0, cut));
      await delay(20);
      await quitter.close();
    }
    // Both a connection opened before and a new one are still served.
    const after = buildRequest();
    await other.send(after.bytes);
    assert.equal((await other.nextMessage()).callId, after.callId);
    await using second = await TestUac.connect(proxy.port);
    const fresh = buildRequest();
    await second.send(fresh.bytes);
    assert.equal((await second.nextMessage()).callId, fresh.callId);
    assert.equal(uas.messages.length, 3);
  });
});

Deno.test("e2e: a message not complete within message_read_timeout closes the connection", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({
    forward: uas.uri,
    config: '[plugins.timeouts]\nmessage_read_timeout = "1s"\n',
  });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const request = buildRequest({ method: "INVITE", body: "v=0\r\n".repeat(100) });
    const started = Date.now();
    await uac.send(request.bytes.subarray(0, 40));
    // Slowloris: keep trickling a byte every 200 ms; the timer counts from the message start.
    let at = 40;
    while (!uac.isClosed && Date.now() - started < 4000 && at < request.bytes.length - 1) {
      await delay(200);
      await uac.send(request.bytes.subarray(at, at + 1)).catch(() => {});
      at++;
    }
    const frames = await uac.waitClosed(Math.max(1, 4000 - (Date.now() - started)));
    const elapsed = Date.now() - started;
    assert.deepEqual(frames, []);
    assert.ok(elapsed >= 900, `closed after ${elapsed} ms: before the timeout`);
    assert.ok(elapsed <= 3000, `closed after ${elapsed} ms`);
    assert.equal(uas.messages.length, 0);

    // Others are served, and a slow-but-complete message on a new connection works.
    await using fresh = await TestUac.connect(proxy.port);
    const ok = buildRequest();
    await fresh.send(ok.bytes, { chunkSize: 50, delayMs: 50 });
    assert.equal((await fresh.nextMessage()).callId, ok.callId);
  });
});

Deno.test("e2e: upstream refusing connections: 503 with Reason; ACK gets nothing", async () => {
  const deadPort = freePort(); // nobody listens there
  await using proxy = await startProxy({ forward: `sip:127.0.0.1:${deadPort};transport=tcp` });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const invite = buildRequest({ method: "INVITE" });
    await uac.send(invite.bytes);
    const reply = await uac.nextMessage();
    assertLocalReply(reply, 503, "Service Unavailable", invite.callId);
    assert.match(reply.header("reason") ?? "", /^SIP;cause=503;text="[^"]+"$/);

    // An ACK then an INVITE: only the INVITE is answered.
    const ack = buildRequest({ method: "ACK", to: "<sip:bob@example.com>;tag=abc" });
    const second = buildRequest({ method: "INVITE" });
    await uac.send(concatBytes(ack.bytes, second.bytes));
    const next = await uac.nextMessage();
    assert.equal(next.callId, second.callId, `got ${next.startLine} for ${next.callId}`);
    assert.equal(next.status, 503);
    await uac.expectNothing(300);
  });
});

Deno.test("e2e: Record-Route, and an in-dialog request routed by its Route", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({
    config: `[plugins.static_router]
record_route = true

[[plugins.static_router.routes]]
domain = "example.com"
destination = "${uas.uri}"
`,
  });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const ourUri = `<sip:127.0.0.1:${proxy.port};transport=tcp;lr>`;
    const invite = buildRequest({ method: "INVITE", uri: "sip:bob@example.com" });
    await uac.send(invite.bytes);
    const atUas = await uas.waitForCallId(invite.callId);
    assert.deepEqual(atUas.message.headers("record-route"), [ourUri]);
    const ok = await uac.nextMessage();
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.headers("record-route"), [], "the UAS does not copy Record-Route");

    // In-dialog: Route = what was recorded, Request-URI = the UAS (its Contact).
    const bye = buildRequest({
      method: "BYE",
      uri: `sip:bob@127.0.0.1:${uas.port};transport=tcp`,
      callId: invite.callId,
      cseq: 2,
      to: "<sip:bob@example.com>;tag=uas",
      headers: [`Route: ${ourUri}`, "X-After-Route: kept"],
    });
    await uac.send(bye.bytes);
    const byeAtUas = await uas.waitFor((m) => m.method === "BYE");
    assert.deepEqual(byeAtUas.message.headers("route"), []);
    assert.equal(byeAtUas.message.uri, `sip:bob@127.0.0.1:${uas.port};transport=tcp`);
    assert.equal(byeAtUas.message.header("x-after-route"), "kept");
    const byeOk = await uac.nextMessage();
    assert.equal(byeOk.status, 200);
    assert.equal(byeOk.header("cseq"), "2 BYE");
  });
});

// --- process life cycle ----------------------------------------------------------------------

Deno.test("e2e: SIGTERM: exits 0 promptly and closes client connections", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const request = buildRequest();
    await uac.send(request.bytes);
    assert.equal((await uac.nextMessage()).status, 200);
    const started = Date.now();
    const status = await proxy.process.stop("SIGTERM");
    const elapsed = Date.now() - started;
    assert.equal(status.code, 0);
    assert.equal(status.signal, null);
    assert.ok(elapsed < 3000, `exit took ${elapsed} ms`);
    assert.deepEqual(await uac.waitClosed(1000), []);
    await assert.rejects(TestUac.connect(proxy.port), Deno.errors.ConnectionRefused);
  });
});

Deno.test("e2e: SIGTERM: no new connections while draining, then exit 0", async () => {
  // A UAS that never reads: sipedge's writes to it back up, so stopping waits for the drain.
  await using uas = TestUas.listen({ read: false });
  await using proxy = await startProxy({
    forward: uas.uri,
    // Queue limits high enough that all of it stays queued (not failed as queue_full).
    config: '[sipedge]\nshutdown_timeout = "2s"\n[plugins.limits]\nconn_wq_max = 100000000\n' +
      "wq_max = 100000000\n",
  });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(proxy.port);
    const one = buildRequest({ method: "MESSAGE", body: "z".repeat(60_000) }).bytes;
    await uac.send(concatBytes(...Array.from({ length: 200 }, () => one)));
    await waitUntil(() => uas.connectionCount > 0 || undefined, 3000, "sipedge to connect");
    await delay(300);

    let exited = false;
    proxy.process.status.then(() => exited = true);
    const started = Date.now();
    const stopping = proxy.process.stop("SIGTERM");
    await waitUntil(
      () => proxy.process.output().includes("stopping") || undefined,
      2000,
      "the stopping log line",
    );
    await delay(200);
    assert.equal(exited, false, "sipedge exited at once: nothing was left to drain");
    await assert.rejects(TestUac.connect(proxy.port), Deno.errors.ConnectionRefused);
    assert.equal(exited, false, "sipedge exited before the connect was tried");

    const status = await stopping;
    const elapsed = Date.now() - started;
    assert.equal(status.code, 0);
    assert.ok(elapsed >= 1500, `exited after ${elapsed} ms, before shutdown_timeout`);
    assert.ok(elapsed < 5000, `exited after ${elapsed} ms`);
  });
});

Deno.test("e2e: SIGINT exits 0 too; SIGHUP keeps running", async () => {
  await using uas = TestUas.listen();
  await using proxy = await startProxy({ forward: uas.uri });
  await withOutput(proxy, async () => {
    // A request first: a signal right after the ready line hits the bug shown below.
    await using uac = await TestUac.connect(proxy.port);
    const request = buildRequest();
    await uac.send(request.bytes);
    assert.equal((await uac.nextMessage()).callId, request.callId);

    Deno.kill(proxy.process.pid, "SIGHUP");
    await waitUntil(
      () => proxy.process.output().includes("SIGHUP") || undefined,
      2000,
      "the SIGHUP log line",
    );
    const after = buildRequest();
    await uac.send(after.bytes);
    assert.equal((await uac.nextMessage()).callId, after.callId);

    const status = await proxy.process.stop("SIGINT");
    assert.equal(status.code, 0);
    assert.deepEqual(await uac.waitClosed(1000), []);
  });
});

// Shows a sipedge bug (reported to the lead): main.ts prints the ready line before it installs
// its SIGTERM/SIGINT/SIGHUP listeners, so a signal sent as soon as the line is read kills the
// process with the default action (exit by SIGTERM, code 143) instead of a graceful stop.
Deno.test("e2e: SIGTERM sent as soon as the ready line appears still exits 0", async () => {
  const results: string[] = [];
  for (let i = 0; i < 8; i++) {
    await using proxy = await startProxy({});
    const status = await proxy.process.stop("SIGTERM");
    results.push(status.signal === null ? `exit ${status.code}` : `killed by ${status.signal}`);
  }
  assert.deepEqual(results, Array(8).fill("exit 0"));
});

// --- command line ----------------------------------------------------------------------------

async function runCli(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", "-A", "main.ts", ...args],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Runs `--check-config` on `text` written to a temporary file; returns the result and path. */
async function checkConfig(text: string) {
  const path = await Deno.makeTempFile({ prefix: "sipedge_cli_", suffix: ".toml" });
  try {
    await Deno.writeTextFile(path, text);
    return { path, ...await runCli("--check-config", "--config", path) };
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("cli: --help exits 0 and prints usage", async () => {
  const r = await runCli("--help");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Usage: sipedge/);
  assert.match(r.stdout, /--listen/);
  assert.match(r.stdout, /--check-config/);
});

Deno.test("cli: --version prints sipedge 0.1.0", async () => {
  const r = await runCli("--version");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^sipedge 0\.1\.0\b/);
});

Deno.test("cli: an unknown option exits 2", async () => {
  const r = await runCli("--bogus");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown option --bogus/);
});

Deno.test("cli: --check-config accepts the bundled config.toml", async () => {
  const r = await runCli("--check-config", "--config", "config.toml");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /config\.toml: configuration is valid/);
});

Deno.test("cli: --check-config rejects an unknown key, naming file, line and key", async () => {
  const r = await checkConfig(
    '[plugins.limits]\nmax_message_size = 2048\nbogus = 1\n\n[[listen]]\naddress = "tcp:127.0.0.1:5060"\n',
  );
  assert.equal(r.code, 1, r.stdout);
  assert.ok(r.stderr.includes(`${r.path}:3: plugins.limits.bogus: unknown key`), r.stderr);
});

Deno.test("cli: --check-config rejects bad TOML, naming file and line", async () => {
  const r = await checkConfig('[[listen]]\naddress = "tcp:127.0.0.1:5060"\n[sip\n');
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, new RegExp(`${r.path.replace(/[.]/g, "\\.")}:3(:\\d+)?: TOML syntax`));
});

Deno.test("cli: --check-config rejects a wrong type, naming file, line and key", async () => {
  const r = await checkConfig(
    '[[listen]]\naddress = "tcp:127.0.0.1:5060"\n\n[plugins.limits]\nmax_message_size = "big"\n',
  );
  assert.equal(r.code, 1, r.stdout);
  assert.ok(r.stderr.includes(`${r.path}:5: plugins.limits.max_message_size: `), r.stderr);
  // The value is there, it has the wrong type: "missing" would send the user looking for
  // a key that is present.
  assert.doesNotMatch(r.stderr, /missing/, r.stderr);
  assert.match(r.stderr, /expected (number|int)/);
});

Deno.test("cli: --check-config names a missing key as missing", async () => {
  const r = await checkConfig('[[listen]]\nadvertise = "example.com"\n');
  assert.equal(r.code, 1, r.stdout);
  assert.ok(r.stderr.includes(`${r.path}:1: listen[0].address: missing`), r.stderr);
});
