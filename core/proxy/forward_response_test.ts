/** Tests of stateless response forwarding (RFC 3261 §16.7 step 3, §16.11, §18.2.2; RFC 3581). */

import assert from "node:assert/strict";
import fc from "fast-check";
import { forwardResponse } from "./forward_response.ts";
import { forwardRequest } from "./forward_request.ts";
import { FakeHost, FakeSource, framed } from "./testing/fake_host.ts";
import { latin1Decode, latin1Encode } from "../sip/latin1.ts";

const OUR_VIA = "Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK0123456789abcdef;i=42\r\n";
const CLIENT_VIA = "Via: SIP/2.0/TCP 198.51.100.7:5070;branch=z9hG4bKabc\r\n";

function response(vias = OUR_VIA + CLIENT_VIA, body = ""): string {
  return "SIP/2.0 180 Ringing\r\n" +
    vias +
    "From: <sip:alice@example.org>;tag=a1\r\n" +
    "To: <sip:bob@example.com>;tag=b1\r\n" +
    "Call-ID: c1@198.51.100.7\r\n" +
    "CSeq: 1 INVITE\r\n" +
    "Contact: <sip:bob@203.0.113.5:5060;transport=tcp>\r\n" +
    `Content-Length: ${body.length}\r\n` +
    "\r\n" + body;
}

function edit(text: string, from: string, to: string): string {
  assert.ok(text.includes(from), `test bug: ${JSON.stringify(from)} not in the message`);
  return text.replace(from, to);
}

function run(text: string | Uint8Array, open: number[] = [42]) {
  const host = new FakeHost();
  for (const id of open) host.openConnections.add(id);
  forwardResponse(host, framed(text));
  return host;
}

function dropped(text: string) {
  const host = run(text);
  assert.deepEqual(host.sent, []);
  assert.deepEqual(host.sentOnConnection.filter((s) => s.accepted), []);
  assert.equal(host.counter("responses_in"), 1);
  assert.equal(host.counter("responses_dropped"), 1);
  assert.equal(host.counter("responses_forwarded"), 0);
}

Deno.test("forwardResponse: our Via removed, sent on the connection from i= (exact bytes)", () => {
  const text = response(OUR_VIA + CLIENT_VIA, "v=0\r\n");
  const host = run(text);
  assert.deepEqual(host.sentOnConnection, [{
    id: 42,
    text: edit(text, OUR_VIA, ""),
    accepted: true,
    fallback: { transport: "tcp", host: "198.51.100.7", port: 5070 },
  }]);
  assert.deepEqual(host.sent, []);
  assert.equal(host.counter("responses_forwarded"), 1);
  assert.equal(host.counter("responses_dropped"), 0);
});

Deno.test("forwardResponse: our Via as the first value of a comma-separated line", () => {
  const text = response(
    "Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK0123456789abcdef;i=42 , " +
      "SIP/2.0/TCP 198.51.100.7:5070;branch=z9hG4bKabc,SIP/2.0/TCP p0.example.net;branch=z9hG4bKp0\r\n",
  );
  const host = run(text);
  assert.equal(host.sentOnConnection.length, 1);
  assert.equal(
    host.sentOnConnection[0].text,
    edit(
      text,
      "SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK0123456789abcdef;i=42 , ",
      "",
    ),
  );
});

Deno.test("forwardResponse: compact and lower-case Via names are recognised", () => {
  const text = response(
    "v: SIP/2.0/tcp 192.0.2.10:5060;branch=z9hG4bK0123456789abcdef;i=42\r\n" +
      "VIA: SIP/2.0/TCP 198.51.100.7:5070;branch=z9hG4bKabc\r\n",
  );
  const host = run(text);
  assert.equal(host.sentOnConnection.length, 1);
  assert.equal(
    host.sentOnConnection[0].text,
    edit(text, "v: SIP/2.0/tcp 192.0.2.10:5060;branch=z9hG4bK0123456789abcdef;i=42\r\n", ""),
  );
});

Deno.test("forwardResponse: connection gone → sent to the next Via's address", async (t) => {
  const cases: [string, string, { host: string; port: number; transport: string }][] = [
    ["sent-by", CLIENT_VIA, { transport: "tcp", host: "198.51.100.7", port: 5070 }],
    [
      "sent-by without port",
      "Via: SIP/2.0/TCP client.example.org;branch=z9hG4bKabc\r\n",
      { transport: "tcp", host: "client.example.org", port: 0 },
    ],
    [
      "received",
      "Via: SIP/2.0/TCP client.example.org:5070;branch=z9hG4bKabc;received=198.51.100.7\r\n",
      { transport: "tcp", host: "198.51.100.7", port: 5070 },
    ],
    [
      "received and rport (RFC 3581 §4)",
      "Via: SIP/2.0/TCP 10.0.0.3:5070;rport=40001;branch=z9hG4bKabc;received=203.0.113.9\r\n",
      { transport: "tcp", host: "203.0.113.9", port: 40001 },
    ],
    [
      "empty rport is ignored",
      "Via: SIP/2.0/TCP 10.0.0.3:5070;rport;branch=z9hG4bKabc\r\n",
      { transport: "tcp", host: "10.0.0.3", port: 5070 },
    ],
    [
      "IPv6 received without brackets for the socket",
      "Via: SIP/2.0/TCP [2001:db8::7]:5070;branch=z9hG4bKabc;received=[2001:db8::8]\r\n",
      { transport: "tcp", host: "2001:db8::8", port: 5070 },
    ],
    [
      "TLS next Via",
      "Via: SIP/2.0/TLS 198.51.100.7:5071;branch=z9hG4bKabc\r\n",
      { transport: "tls", host: "198.51.100.7", port: 5071 },
    ],
  ];
  for (const [name, clientVia, destination] of cases) {
    await t.step(name, () => {
      const text = response(OUR_VIA + clientVia);
      const host = run(text, []);
      assert.deepEqual(host.sentOnConnection.map((s) => s.id), [42]);
      assert.equal(host.sent.length, 1);
      assert.deepEqual(host.sent[0].destination, destination);
      assert.equal(host.sent[0].text, edit(text, OUR_VIA, ""));
      assert.equal(host.counter("responses_forwarded"), 1);
    });
  }
  await t.step("no i= parameter: straight to the address", () => {
    const ours = "Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK0123456789abcdef\r\n";
    const host = run(response(ours + CLIENT_VIA));
    assert.deepEqual(host.sentOnConnection.filter((s) => s.accepted), []);
    assert.equal(host.sent.length, 1);
    assert.deepEqual(host.sent[0].destination, {
      transport: "tcp",
      host: "198.51.100.7",
      port: 5070,
    });
  });
  await t.step("a failed send is counted", () => {
    const host = run(response(), []);
    host.fail(host.sent[0].bytes, "connect_failed");
    assert.equal(host.counter("send_failed"), 1);
  });
});

Deno.test("forwardResponse: responses that are not ours are dropped and counted", async (t) => {
  await t.step("top Via is another host", () => {
    dropped(response(edit(OUR_VIA, "192.0.2.10", "192.0.2.11") + CLIENT_VIA));
  });
  await t.step("top Via is our host on another port", () => {
    dropped(response(edit(OUR_VIA, ":5060", ":5070") + CLIENT_VIA));
  });
  await t.step("top Via names a transport we do not have", () => {
    dropped(response(edit(OUR_VIA, "/TCP", "/SCTP") + CLIENT_VIA));
  });
  await t.step(
    "top Via is the client's (we are not in the path)",
    () => dropped(response(CLIENT_VIA)),
  );
  await t.step("no Via at all", () => dropped(response("")));
  await t.step("no Via left after ours", () => dropped(response(OUR_VIA)));
  await t.step("malformed top Via", () => dropped(response("Via: SIP/2.0/TCP\r\n" + CLIENT_VIA)));
  await t.step("malformed next Via", () => dropped(response(OUR_VIA + "Via: garbage\r\n")));
  await t.step("malformed status line", () => {
    dropped(edit(response(), "SIP/2.0 180 Ringing", "SIP/2.0 1800 Ringing"));
  });
});

Deno.test("forwardResponse: round trip with forwardRequest", () => {
  // The request goes out with our Via; the response that comes back goes to the client's
  // connection with the client's Via as forwardRequest left it (received / rport).
  const host = new FakeHost();
  host.openConnections.add(9);
  const source = new FakeSource({ connectionId: 9, hostname: "203.0.113.9", port: 40001 });
  const clientVia = "Via: SIP/2.0/TCP 10.0.0.3:5070;rport;branch=z9hG4bKrt1\r\n";
  forwardRequest(
    host,
    source,
    framed(
      "BYE sip:bob@example.com SIP/2.0\r\n" + clientVia +
        "Max-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\n" +
        "Call-ID: rt\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    ),
  );
  assert.equal(host.sent.length, 1);
  const vias = host.sent[0].text.split("\r\n").filter((l) => l.startsWith("Via: "));
  const resp = "SIP/2.0 200 OK\r\n" + vias.map((v) => v + "\r\n").join("") +
    "From: <sip:a@b>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\nCall-ID: rt\r\nCSeq: 2 BYE\r\n" +
    "Content-Length: 0\r\n\r\n";
  forwardResponse(host, framed(resp));
  assert.equal(host.sentOnConnection.length, 1);
  assert.equal(host.sentOnConnection[0].id, 9);
  assert.equal(
    host.sentOnConnection[0].text,
    "SIP/2.0 200 OK\r\n" +
      "Via: SIP/2.0/TCP 10.0.0.3:5070;rport=40001;branch=z9hG4bKrt1;received=203.0.113.9\r\n" +
      "From: <sip:a@b>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\nCall-ID: rt\r\nCSeq: 2 BYE\r\n" +
      "Content-Length: 0\r\n\r\n",
  );
  // With the connection gone, the response goes to received:rport.
  host.openConnections.clear();
  forwardResponse(host, framed(resp));
  assert.equal(host.sent.length, 2);
  assert.deepEqual(host.sent[1].destination, {
    transport: "tcp",
    host: "203.0.113.9",
    port: 40001,
  });
});

Deno.test("forwardResponse property: everything but our Via is forwarded byte for byte", () => {
  const valueChar = fc.oneof(
    fc.integer({ min: 0x20, max: 0x7e }),
    fc.integer({ min: 0x80, max: 0xff }),
  )
    .map((c) => String.fromCharCode(c));
  const line = fc.tuple(
    fc.constantFrom("Contact", "Record-Route", "X-A", "Subject", "Warning", "Server"),
    fc.string({ unit: valueChar, maxLength: 30 }),
  ).map(([n, v]) => `${n}: ${v}\r\n`);
  fc.assert(
    fc.property(
      fc.array(line, { maxLength: 6 }),
      fc.array(line, { maxLength: 6 }),
      fc.uint8Array({ maxLength: 200 }),
      fc.integer({ min: 100, max: 699 }),
      (before, after, body, status) => {
        const head = `SIP/2.0 ${status} Whatever \xe9\r\n` + before.join("") + OUR_VIA +
          CLIENT_VIA +
          after.join("") + `Content-Length: ${body.length}\r\n\r\n`;
        const input = new Uint8Array(head.length + body.length);
        input.set(latin1Encode(head));
        input.set(body, head.length);
        const host = run(input);
        assert.equal(host.sentOnConnection.length, 1);
        const out = latin1Encode(host.sentOnConnection[0].text);
        const expectedHead = latin1Encode(edit(head, OUR_VIA, ""));
        assert.equal(
          latin1Decode(out.subarray(0, expectedHead.length)),
          latin1Decode(expectedHead),
        );
        assert.deepEqual(out.subarray(expectedHead.length), body);
        assert.equal(out.length, expectedHead.length + body.length);
      },
    ),
    { numRuns: 200 },
  );
});
