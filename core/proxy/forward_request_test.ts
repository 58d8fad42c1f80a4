/** Tests of stateless request forwarding (RFC 3261 §16.3–§16.6, §16.11; RFC 3581). */

import assert from "node:assert/strict";
import fc from "fast-check";
import { DEFAULT_MAX_FORWARDS, forwardRequest } from "./forward_request.ts";
import { FakeHost, type FakeHostOptions, FakeSource, framed } from "./testing/fake_host.ts";
import type { FlowSettings } from "./proxy_host.ts";
import type { Router, RouteRequest, RouteResult } from "../plugin/types.ts";
import { latin1Decode, latin1Encode } from "../sip/latin1.ts";
import { parseHead } from "../sip/parse_head.ts";
import { getHeader } from "../sip/head.ts";
import { parseDestination } from "../transport/destination.ts";

const CLIENT_VIA = "Via: SIP/2.0/TCP 198.51.100.7:5070;branch=z9hG4bKabc\r\n";

/** A request from the client at 198.51.100.7:5070 (connection 42). */
function request(method = "INVITE", uri = "sip:bob@example.com", body = ""): string {
  return `${method} ${uri} SIP/2.0\r\n` +
    CLIENT_VIA +
    "Max-Forwards: 70\r\n" +
    'From: "Alice" <sip:alice@example.org>;tag=a1\r\n' +
    "To: <sip:bob@example.com>\r\n" +
    "Call-ID: c1@198.51.100.7\r\n" +
    `CSeq: 1 ${method}\r\n` +
    "Subject: Lunch, today?\r\n" +
    `Content-Length: ${body.length}\r\n` +
    "\r\n" + body;
}

/** `text` with `from` replaced by `to`; fails when `from` is not there (no silent no-op). */
function edit(text: string, from: string, to: string): string {
  assert.ok(text.includes(from), `test bug: ${JSON.stringify(from)} not in the message`);
  return text.replace(from, to);
}

function forward(
  text: string | Uint8Array,
  options: FakeHostOptions & { source?: FakeSource; host?: FakeHost } = {},
) {
  const host = options.host ?? new FakeHost(options);
  const source = options.source ?? new FakeSource();
  host.sources.set(source.connectionId, source);
  forwardRequest(host, source, framed(text));
  return { host, source };
}

/** The one forwarded message. */
function forwarded(text: string | Uint8Array, options: Parameters<typeof forward>[1] = {}) {
  const { host, source } = forward(text, options);
  assert.deepEqual(source.replies, [], "no local reply expected");
  assert.equal(host.sent.length, 1, "one message sent");
  return { host, source, sent: host.sent[0], out: host.sent[0].text };
}

/** The one local reply. */
function replied(text: string, options: Parameters<typeof forward>[1] = {}) {
  const { host, source } = forward(text, options);
  assert.equal(host.sent.length, 0, "nothing forwarded");
  assert.equal(source.replies.length, 1, "one local reply");
  return { host, source, reply: source.replies[0], head: parseHead(source.replies[0]) };
}

const OUR_VIA = /^Via: SIP\/2\.0\/TCP 192\.0\.2\.10:5060;branch=(z9hG4bK[0-9a-f]{16});i=42\r\n/m;

/** The branch of our (first) Via in a forwarded message. */
function branchOf(out: string): string {
  const m = OUR_VIA.exec(out);
  assert.ok(m, `our Via not found in:\n${out}`);
  assert.ok(out.indexOf(m[0]) < out.indexOf(CLIENT_VIA.slice(0, 20)), "our Via is on top");
  return m[1];
}

function ourVia(branch: string, id = 42): string {
  return `Via: SIP/2.0/TCP 192.0.2.10:5060;branch=${branch};i=${id}\r\n`;
}

/** A router that always gives the same result and records what it was asked. */
function fixedRouter(result: RouteResult | undefined): Router & { asked: RouteRequest[] } {
  const asked: RouteRequest[] = [];
  return {
    asked,
    route(req) {
      asked.push(req);
      return result;
    },
  };
}

Deno.test("forwardRequest: our Via on top, Max-Forwards decremented (exact bytes)", () => {
  const text = request("INVITE", "sip:bob@example.com", "v=0\r\n");
  const { host, sent, out } = forwarded(text);
  const branch = branchOf(out);
  assert.equal(
    out,
    edit(
      edit(text, CLIENT_VIA, ourVia(branch) + CLIENT_VIA),
      "Max-Forwards: 70",
      "Max-Forwards: 69",
    ),
  );
  assert.deepEqual(sent.destination, { transport: "tcp", host: "example.com", port: 0 });
  assert.equal(host.counter("requests_in"), 1);
  assert.equal(host.counter("requests_forwarded"), 1);
  assert.equal(host.counter("requests_rejected"), 0);
});

Deno.test("forwardRequest: Max-Forwards", async (t) => {
  await t.step("added as 70 when missing", () => {
    const text = edit(request(), "Max-Forwards: 70\r\n", "");
    const { out } = forwarded(text);
    const branch = branchOf(out);
    assert.equal(DEFAULT_MAX_FORWARDS, 70);
    // Added right after the request line, before our Via.
    assert.equal(
      out,
      edit(
        text,
        "SIP/2.0\r\n" + CLIENT_VIA,
        "SIP/2.0\r\nMax-Forwards: 70\r\n" + ourVia(branch) + CLIENT_VIA,
      ),
    );
  });
  await t.step("only the number is replaced (spacing kept)", () => {
    const text = edit(request(), "Max-Forwards: 70\r\n", "max-forwards:   10  \r\n");
    const { out } = forwarded(text);
    assert.ok(out.includes("\r\nmax-forwards:   9  \r\n"), out);
  });
  await t.step("1 becomes 0 and is forwarded", () => {
    const { out } = forwarded(edit(request(), "Max-Forwards: 70", "Max-Forwards: 1"));
    assert.ok(out.includes("\r\nMax-Forwards: 0\r\n"));
  });
  await t.step("0 → 483 Too Many Hops (exact bytes)", () => {
    const { reply, host } = replied(edit(request(), "Max-Forwards: 70", "Max-Forwards: 0"));
    const tag = /;tag=(sipedge-[0-9a-f]{12})\r\n/.exec(reply)?.[1];
    assert.ok(tag, reply);
    assert.equal(
      reply,
      "SIP/2.0 483 Too Many Hops\r\n" +
        CLIENT_VIA +
        'From: "Alice" <sip:alice@example.org>;tag=a1\r\n' +
        `To: <sip:bob@example.com>;tag=${tag}\r\n` +
        "Call-ID: c1@198.51.100.7\r\n" +
        "CSeq: 1 INVITE\r\n" +
        "Server: sipedge\r\n" +
        "Content-Length: 0\r\n\r\n",
    );
    assert.equal(host.counter("requests_rejected"), 1);
    assert.equal(host.counter("local_replies"), 1);
  });
  await t.step("OPTIONS with 0 → 200 OK from us", () => {
    const { head } = replied(edit(request("OPTIONS"), "Max-Forwards: 70", "Max-Forwards: 0"));
    assert.equal(head.status, 200);
    assert.equal(head.reason, "OK");
    assert.equal(getHeader(head, "cseq"), "1 OPTIONS");
  });
  for (const bad of ["abc", "-1", "1.5", "", "1 2", "1234567890"]) {
    await t.step(`${JSON.stringify(bad)} → 400`, () => {
      const { head } = replied(edit(request(), "Max-Forwards: 70", `Max-Forwards: ${bad}`));
      assert.equal(head.status, 400);
      assert.equal(head.reason, "Invalid Max-Forwards");
    });
  }
});

Deno.test("forwardRequest: our Via names the outgoing transport and address", async (t) => {
  await t.step("tls for a sips: Request-URI", () => {
    const { out, sent } = forwarded(request("INVITE", "sips:bob@example.com"));
    assert.match(
      out,
      /^INVITE sips:bob@example\.com SIP\/2\.0\r\nVia: SIP\/2\.0\/TLS 192\.0\.2\.10:5061;branch=z9hG4bK[0-9a-f]{16};i=42\r\nVia: SIP\/2\.0\/TCP 198\.51/,
    );
    assert.deepEqual(sent.destination, { transport: "tls", host: "example.com", port: 0 });
  });
  await t.step("transport parameter of the Request-URI", () => {
    const { out, sent } = forwarded(request("INVITE", "sip:bob@10.0.0.9:5099;transport=TLS"));
    assert.match(out, /\r\nVia: SIP\/2\.0\/TLS 192\.0\.2\.10:5061;branch=/);
    assert.deepEqual(sent.destination, { transport: "tls", host: "10.0.0.9", port: 5099 });
  });
  await t.step("IPv6 advertised address in brackets; connection id of the source", () => {
    const { out } = forwarded(request(), {
      transports: [{
        name: "tcp",
        via: "TCP",
        host: "2001:db8::10",
        port: 5062,
        defaultPort: 5060,
      }],
      source: new FakeSource({ connectionId: 7 }),
    });
    assert.match(
      out,
      /\r\nVia: SIP\/2\.0\/TCP \[2001:db8::10\]:5062;branch=z9hG4bK[0-9a-f]{16};i=7\r\nVia: SIP\/2\.0\/TCP 198/,
    );
  });
  await t.step("maddr wins over the host", () => {
    const { sent } = forwarded(request("INVITE", "sip:bob@example.com;maddr=10.1.1.1"));
    assert.deepEqual(sent.destination, { transport: "tcp", host: "10.1.1.1", port: 0 });
  });
  await t.step("transport not enabled → 503 with a Reason", () => {
    const { head, reply } = replied(request("INVITE", "sips:bob@example.com"), {
      transports: [{ name: "tcp", via: "TCP", host: "192.0.2.10", port: 5060, defaultPort: 5060 }],
    });
    assert.equal(head.status, 503);
    assert.ok(reply.includes('\r\nReason: SIP;cause=503;text="transport tls not enabled"\r\n'));
  });
});

Deno.test("forwardRequest: stateless branch (RFC 3261 §16.11)", async (t) => {
  const branchFor = (text: string) => branchOf(forwarded(text).out);
  const invite = request();
  const inviteBranch = branchFor(invite);

  await t.step("same for a retransmission", () => {
    assert.equal(branchFor(invite), inviteBranch);
  });
  await t.step("differs from the client's branch (it is ours)", () => {
    assert.notEqual(inviteBranch, "z9hG4bKabc");
  });
  await t.step("same for the CANCEL of the INVITE", () => {
    assert.equal(branchFor(request("CANCEL")), inviteBranch);
  });
  await t.step("same for the ACK of a non-2xx response", () => {
    const ack = edit(
      request("ACK"),
      "To: <sip:bob@example.com>",
      "To: <sip:bob@example.com>;tag=b7",
    );
    assert.equal(branchFor(ack), inviteBranch);
  });
  await t.step("differs for another transaction", () => {
    assert.notEqual(branchFor(edit(invite, "z9hG4bKabc", "z9hG4bKabd")), inviteBranch);
    // A 2xx ACK is its own transaction: new client branch.
    const ack2xx = edit(
      edit(request("ACK"), "z9hG4bKabc", "z9hG4bKack1"),
      "To: <sip:bob@example.com>",
      "To: <sip:bob@example.com>;tag=b7",
    );
    assert.notEqual(branchFor(ack2xx), inviteBranch);
  });
  await t.step("differs for the same branch from another sent-by", () => {
    const other = edit(invite, "198.51.100.7:5070;branch", "198.51.100.7:5071;branch");
    const { out } = forwarded(other, { source: new FakeSource({ port: 5071 }) });
    assert.notEqual(branchOf(out), inviteBranch);
  });
});

Deno.test("forwardRequest: stateless branch for RFC 2543 requests (no magic cookie)", async (t) => {
  const OLD_VIA = "Via: SIP/2.0/TCP 198.51.100.7:5070\r\n";
  const old = (method: string) => edit(request(method), CLIENT_VIA, OLD_VIA);
  const branchFor = (text: string) => {
    const { out } = forwarded(text);
    const branch = branchOf(out);
    assert.ok(out.includes(ourVia(branch) + text.split("\r\n")[1] + "\r\n"), "client Via kept");
    return branch;
  };
  const inviteBranch = branchFor(old("INVITE"));
  await t.step("stable for a retransmission", () => {
    assert.equal(branchFor(old("INVITE")), inviteBranch);
  });
  await t.step("differs for another CSeq / Call-ID / From tag", () => {
    assert.notEqual(branchFor(edit(old("INVITE"), "CSeq: 1", "CSeq: 2")), inviteBranch);
    assert.notEqual(branchFor(edit(old("INVITE"), "Call-ID: c1", "Call-ID: c2")), inviteBranch);
    assert.notEqual(branchFor(edit(old("INVITE"), "tag=a1", "tag=a2")), inviteBranch);
  });
  await t.step("a non-cookie branch is part of the key", () => {
    const withBranch = (b: string) =>
      edit(old("INVITE"), OLD_VIA, `Via: SIP/2.0/TCP 198.51.100.7:5070;branch=${b}\r\n`);
    const a = branchFor(withBranch("1"));
    assert.equal(branchFor(withBranch("1")), a);
    assert.notEqual(branchFor(withBranch("2")), a);
  });
  await t.step("same for the CANCEL", () => {
    assert.equal(branchFor(old("CANCEL")), inviteBranch);
  });
  await t.step("same for the ACK of a non-2xx response (its To has the response's tag)", () => {
    // RFC 3261 §17.2.3: an RFC 2543 ACK matches the INVITE by Request-URI, From tag, Call-ID,
    // CSeq number and top Via; its To tag is the one of the response, which the INVITE lacked.
    // Downstream servers match on our branch, so it has to be the INVITE's.
    const ack = edit(old("ACK"), "To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b7");
    assert.equal(branchFor(ack), inviteBranch);
  });
});

Deno.test("forwardRequest: received and rport on the sender's Via (RFC 3261 §18.2.1, RFC 3581)", async (t) => {
  const via = (value: string) => edit(request(), CLIENT_VIA, `Via: ${value}\r\n`);
  const senderViaOf = (text: string, source = new FakeSource()) => {
    const { out } = forwarded(text, { source });
    const lines = out.split("\r\n").filter((l) => l.startsWith("Via: "));
    assert.equal(lines.length, 2);
    assert.match(lines[0], /^Via: SIP\/2\.0\/TCP 192\.0\.2\.10:5060;branch=/);
    return lines[1];
  };
  await t.step("sent-by is the source address: unchanged", () => {
    assert.equal(senderViaOf(request()), CLIENT_VIA.slice(0, -2));
  });
  await t.step("sent-by is a host name: received added", () => {
    assert.equal(
      senderViaOf(via("SIP/2.0/TCP client.example.org:5070;branch=z9hG4bKabc")),
      "Via: SIP/2.0/TCP client.example.org:5070;branch=z9hG4bKabc;received=198.51.100.7",
    );
  });
  await t.step("sent-by is another IP: received added", () => {
    assert.equal(
      senderViaOf(via("SIP/2.0/TCP 10.0.0.3:5070;branch=z9hG4bKabc")),
      "Via: SIP/2.0/TCP 10.0.0.3:5070;branch=z9hG4bKabc;received=198.51.100.7",
    );
  });
  await t.step("rport: filled with the source port, received added even when equal", () => {
    assert.equal(
      senderViaOf(
        via("SIP/2.0/TCP 198.51.100.7:5070;rport;branch=z9hG4bKabc"),
        new FakeSource({ port: 40001 }),
      ),
      "Via: SIP/2.0/TCP 198.51.100.7:5070;rport=40001;branch=z9hG4bKabc;received=198.51.100.7",
    );
  });
  await t.step("rport as the last parameter, behind NAT", () => {
    assert.equal(
      senderViaOf(
        via("SIP/2.0/TCP 10.0.0.3:5070;branch=z9hG4bKabc;rport"),
        new FakeSource({ hostname: "203.0.113.9", port: 1025 }),
      ),
      "Via: SIP/2.0/TCP 10.0.0.3:5070;branch=z9hG4bKabc;rport=1025;received=203.0.113.9",
    );
  });
  await t.step("a received already there is not added twice", () => {
    assert.equal(
      senderViaOf(via("SIP/2.0/TCP 10.0.0.3:5070;branch=z9hG4bKabc;received=198.51.100.7")),
      "Via: SIP/2.0/TCP 10.0.0.3:5070;branch=z9hG4bKabc;received=198.51.100.7",
    );
  });
  await t.step("a received the sender wrote is replaced, wherever and however written", () => {
    assert.equal(
      senderViaOf(via("SIP/2.0/TCP 10.0.0.3:5070;Received = 10.0.0.3 ;branch=z9hG4bKabc")),
      "Via: SIP/2.0/TCP 10.0.0.3:5070;received=198.51.100.7;branch=z9hG4bKabc",
    );
    assert.equal(
      senderViaOf(via("SIP/2.0/TCP 10.0.0.3:5070;branch=z9hG4bKabc;received")),
      "Via: SIP/2.0/TCP 10.0.0.3:5070;branch=z9hG4bKabc;received=198.51.100.7",
      "a received without a value is given one",
    );
  });
  await t.step(
    "an rport flag in any case, with white space, and a quoted ';rport' left alone",
    () => {
      assert.equal(
        senderViaOf(
          via('SIP/2.0/TCP 10.0.0.3:5070;x="a;rport" ; RPORT ;branch=z9hG4bKabc'),
          new FakeSource({ port: 1025 }),
        ),
        'Via: SIP/2.0/TCP 10.0.0.3:5070;x="a;rport" ;rport=1025 ;branch=z9hG4bKabc;received=198.51.100.7',
      );
    },
  );
  await t.step("only the top value of a comma-separated Via line changes", () => {
    const text = edit(
      request(),
      CLIENT_VIA,
      "Via: SIP/2.0/TCP 10.0.0.3:5070;branch=z9hG4bKabc, SIP/2.0/TCP p0.example.net;branch=z9hG4bKp0\r\n",
    );
    assert.equal(
      senderViaOf(text),
      "Via: SIP/2.0/TCP 10.0.0.3:5070;branch=z9hG4bKabc;received=198.51.100.7, SIP/2.0/TCP p0.example.net;branch=z9hG4bKp0",
    );
  });
  await t.step("the second Via line is never touched", () => {
    const text = edit(
      request(),
      CLIENT_VIA,
      CLIENT_VIA + "Via: SIP/2.0/TCP 10.9.9.9:5070;rport;branch=z9hG4bKp0\r\n",
    );
    const { out } = forwarded(text);
    assert.ok(
      out.includes(CLIENT_VIA + "Via: SIP/2.0/TCP 10.9.9.9:5070;rport;branch=z9hG4bKp0\r\n"),
    );
  });
});

Deno.test("forwardRequest: Route preprocessing and loose routing (RFC 3261 §16.4, §16.6)", async (t) => {
  const withRoute = (routeLines: string, method = "INVITE", uri = "sip:bob@example.com") =>
    edit(request(method, uri), "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n" + routeLines);
  const expectOut = (text: string, out: string, removed: string, replacement = "") =>
    edit(
      edit(
        edit(text, CLIENT_VIA, ourVia(branchOf(out)) + CLIENT_VIA),
        "Max-Forwards: 70",
        "Max-Forwards: 69",
      ),
      removed,
      replacement,
    );

  await t.step("our Route line removed; the next Route is the destination", () => {
    const text = withRoute(
      "Route: <sip:192.0.2.10:5060;lr>\r\nRoute: <sip:p2.example.net:5080;lr>\r\n",
    );
    const { out, sent } = forwarded(text);
    assert.equal(out, expectOut(text, out, "Route: <sip:192.0.2.10:5060;lr>\r\n"));
    assert.deepEqual(sent.destination, { transport: "tcp", host: "p2.example.net", port: 5080 });
  });
  await t.step("our only Route removed (default port): destination from the Request-URI", () => {
    const text = withRoute("Route: <sip:192.0.2.10;lr>\r\n");
    const { out, sent } = forwarded(text);
    assert.equal(out, expectOut(text, out, "Route: <sip:192.0.2.10;lr>\r\n"));
    assert.deepEqual(sent.destination, { transport: "tcp", host: "example.com", port: 0 });
  });
  await t.step("our value removed from a comma-separated Route line", () => {
    const text = withRoute(
      "Route: <sip:192.0.2.10:5060;lr>, <sip:p2.example.net;lr>,<sip:p3;lr>\r\n",
    );
    const { out, sent } = forwarded(text);
    assert.equal(out, expectOut(text, out, "<sip:192.0.2.10:5060;lr>, ", ""));
    assert.ok(out.includes("\r\nRoute: <sip:p2.example.net;lr>,<sip:p3;lr>\r\n"));
    assert.deepEqual(sent.destination, { transport: "tcp", host: "p2.example.net", port: 0 });
  });
  await t.step("two of ours (double Record-Route, tls then tcp) removed", () => {
    const text = withRoute(
      "Route: <sip:192.0.2.10:5061;transport=tls;lr>, <sip:192.0.2.10:5060;transport=tcp;lr>, <sip:p2.example.net;lr>\r\n",
    );
    const { out, sent } = forwarded(text);
    assert.equal(
      out,
      expectOut(
        text,
        out,
        "<sip:192.0.2.10:5061;transport=tls;lr>, <sip:192.0.2.10:5060;transport=tcp;lr>, ",
      ),
    );
    assert.deepEqual(sent.destination, { transport: "tcp", host: "p2.example.net", port: 0 });
  });
  await t.step("two of ours on separate lines, sips: one by its default port", () => {
    const text = withRoute("Route: <sips:192.0.2.10;lr>\r\nRoute: <sip:192.0.2.10;lr>\r\n");
    const { out, sent } = forwarded(text);
    assert.equal(
      out,
      expectOut(text, out, "Route: <sips:192.0.2.10;lr>\r\nRoute: <sip:192.0.2.10;lr>\r\n"),
    );
    assert.deepEqual(sent.destination, { transport: "tcp", host: "example.com", port: 0 });
  });
  await t.step("ours with an upper-case transport parameter (RFC 3261 §19.1.4)", () => {
    // Only tls listens on port 5061 here; `transport=TLS` means tls, so the default port is
    // 5061 and the value is ours (not a hop to 192.0.2.10:5060, which would be someone else).
    const host = new FakeHost({
      transports: [
        { name: "tcp", via: "TCP", host: "192.0.2.10", port: 5070, defaultPort: 5060 },
        { name: "tls", via: "TLS", host: "192.0.2.10", port: 5061, defaultPort: 5061 },
      ],
    });
    const text = withRoute("Route: <sip:192.0.2.10;transport=TLS;lr>\r\n");
    const { sent, out } = forwarded(text, { host });
    assert.ok(!out.includes("Route:"), out);
    assert.deepEqual(sent.destination, { transport: "tcp", host: "example.com", port: 0 });
  });
  await t.step("a Route that is not ours stays", () => {
    const text = withRoute("Route: <sip:192.0.2.10:5070;lr>\r\n");
    const { out, sent } = forwarded(text);
    assert.ok(out.includes("\r\nRoute: <sip:192.0.2.10:5070;lr>\r\n"));
    assert.deepEqual(sent.destination, { transport: "tcp", host: "192.0.2.10", port: 5070 });
  });
  await t.step("a Route is used before any router", () => {
    const router = fixedRouter({ destination: { transport: "tcp", host: "10.0.0.5", port: 5080 } });
    const { sent } = forwarded(withRoute("Route: <sip:p2.example.net;lr>\r\n"), {
      routers: [router],
    });
    assert.deepEqual(sent.destination, { transport: "tcp", host: "p2.example.net", port: 0 });
    assert.equal(router.asked.length, 0);
  });
  await t.step("malformed Route → 400", () => {
    const { head } = replied(withRoute("Route: <http://p2.example.net>\r\n"));
    assert.equal(head.status, 400);
    assert.equal(head.reason, "Malformed Route header");
  });
  await t.step("OPTIONS to us after our Route is removed → 200", () => {
    const { head } = replied(
      withRoute("Route: <sip:192.0.2.10;lr>\r\n", "OPTIONS", "sip:192.0.2.10"),
    );
    assert.equal(head.status, 200);
  });
});

Deno.test("forwardRequest: strict routing (RFC 3261 §16.4, §16.6 step 6)", async (t) => {
  const withRoute = (routeLines: string, uri = "sip:bob@example.com") =>
    edit(request("INVITE", uri), "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n" + routeLines);

  await t.step("next hop without lr: its URI becomes the Request-URI, ours goes last", () => {
    const text = withRoute("Route: <sip:p2.example.net>\r\nRoute: <sip:p3.example.net;lr>\r\n");
    const { out, sent } = forwarded(text);
    const expected = edit(
      edit(
        edit(
          edit(text, "INVITE sip:bob@example.com SIP/2.0", "INVITE sip:p2.example.net SIP/2.0"),
          CLIENT_VIA,
          ourVia(branchOf(out)) + CLIENT_VIA,
        ),
        "Max-Forwards: 70\r\nRoute: <sip:p2.example.net>\r\n",
        "Max-Forwards: 69\r\n",
      ),
      "Content-Length: 0\r\n\r\n",
      "Content-Length: 0\r\nRoute: <sip:bob@example.com>\r\n\r\n",
    );
    assert.equal(out, expected);
    assert.deepEqual(sent.destination, { transport: "tcp", host: "p2.example.net", port: 0 });
  });
  await t.step("previous hop was a strict router: the last Route becomes the Request-URI", () => {
    const text = withRoute(
      "Route: <sip:bob@client.example.com:5080;transport=tcp>\r\n",
      "sip:192.0.2.10:5060;transport=tcp;lr",
    );
    const { out, sent } = forwarded(text);
    const expected = edit(
      edit(
        edit(
          text,
          "INVITE sip:192.0.2.10:5060;transport=tcp;lr SIP/2.0",
          "INVITE sip:bob@client.example.com:5080;transport=tcp SIP/2.0",
        ),
        CLIENT_VIA,
        ourVia(branchOf(out)) + CLIENT_VIA,
      ),
      "Max-Forwards: 70\r\nRoute: <sip:bob@client.example.com:5080;transport=tcp>\r\n",
      "Max-Forwards: 69\r\n",
    );
    assert.equal(out, expected);
    assert.deepEqual(sent.destination, {
      transport: "tcp",
      host: "client.example.com",
      port: 5080,
    });
  });
  await t.step("previous hop strict and next hop strict", () => {
    // Request-URI is ours (a strict router put our Record-Route URI there) and the first
    // remaining Route has no lr: §16.4 makes the last Route value the Request-URI, then §16.6
    // step 6 swaps in the strict next hop and appends that Request-URI to the Route set.
    const text = withRoute(
      "Route: <sip:p3.example.net>, <sip:bob@client.example.com>\r\n",
      "sip:192.0.2.10:5060;transport=tcp;lr",
    );
    const { out, sent } = forwarded(text);
    assert.deepEqual(sent.destination, { transport: "tcp", host: "p3.example.net", port: 0 });
    const expected = edit(
      edit(
        edit(
          edit(
            text,
            "INVITE sip:192.0.2.10:5060;transport=tcp;lr SIP/2.0",
            "INVITE sip:p3.example.net SIP/2.0",
          ),
          CLIENT_VIA,
          ourVia(branchOf(out)) + CLIENT_VIA,
        ),
        "Max-Forwards: 70\r\nRoute: <sip:p3.example.net>, <sip:bob@client.example.com>\r\n",
        "Max-Forwards: 69\r\n",
      ),
      "Content-Length: 0\r\n\r\n",
      "Content-Length: 0\r\nRoute: <sip:bob@client.example.com>\r\n\r\n",
    );
    assert.equal(out, expected);
  });
});

Deno.test("forwardRequest: Record-Route when the router asks for it", async (t) => {
  const RR_TCP = "Record-Route: <sip:192.0.2.10:5060;transport=tcp;lr>\r\n";
  const RR_TLS = "Record-Route: <sip:192.0.2.10:5061;transport=tls;lr>\r\n";
  const to = (transport: string, recordRoute: boolean) =>
    fixedRouter({ destination: { transport, host: "10.0.0.5", port: 5080 }, recordRoute });

  await t.step("one Record-Route line (exact bytes)", () => {
    const text = request();
    const { out, sent } = forwarded(text, { routers: [to("tcp", true)] });
    assert.equal(
      out,
      edit(
        // Record-Route right after the request line, then our Via above the client's.
        edit(
          text,
          "SIP/2.0\r\n" + CLIENT_VIA,
          "SIP/2.0\r\n" + RR_TCP + ourVia(branchOf(out)) + CLIENT_VIA,
        ),
        "Max-Forwards: 70",
        "Max-Forwards: 69",
      ),
    );
    assert.deepEqual(sent.destination, { transport: "tcp", host: "10.0.0.5", port: 5080 });
  });
  await t.step("on top of the existing Record-Route values", () => {
    const text = edit(request(), "Subject:", "Record-Route: <sip:p0.example.net;lr>\r\nSubject:");
    const { out } = forwarded(text, { routers: [to("tcp", true)] });
    assert.ok(out.includes(`\r\n${RR_TCP}Record-Route: <sip:p0.example.net;lr>\r\n`), out);
    assert.equal(out.split("Record-Route:").length, 3);
  });
  await t.step("two lines when the transport changes (outgoing side first)", () => {
    const { out } = forwarded(request(), {
      routers: [to("tcp", true)],
      source: new FakeSource({ transport: "tls" }),
    });
    assert.ok(out.includes(RR_TCP + RR_TLS), out);
    assert.equal(out.split("Record-Route:").length, 3);
  });
  await t.step("none when the router does not ask", () => {
    const { out } = forwarded(request(), { routers: [to("tcp", false)] });
    assert.ok(!out.includes("Record-Route"));
  });
  await t.step("tls in, tcp out with no tcp listener: only addresses we listen on", () => {
    const { out } = forwarded(request(), {
      routers: [to("tcp", true)],
      source: new FakeSource({ transport: "tls" }),
      transports: [
        {
          name: "tcp",
          via: "TCP",
          host: "192.0.2.10",
          port: 5060,
          defaultPort: 5060,
          listening: false,
        },
        { name: "tls", via: "TLS", host: "192.0.2.10", port: 5061, defaultPort: 5061 },
      ],
    });
    // One Record-Route, the TLS one (the only way back in), and a TCP Via whose sent-by is the
    // TLS listener's address: the response comes back on the connection the request went out on.
    assert.ok(out.includes(RR_TLS), out);
    assert.equal(out.split("Record-Route:").length, 2, out);
    assert.match(out, /\r\nVia: SIP\/2\.0\/TCP 192\.0\.2\.10:5061;branch=z9hG4bK/);
  });
  await t.step("the router sees method, URI and source", () => {
    const router = to("tcp", false);
    forwarded(request("MESSAGE"), { routers: [router], source: new FakeSource({ port: 4000 }) });
    assert.equal(router.asked.length, 1);
    assert.equal(router.asked[0].method, "MESSAGE");
    assert.equal(router.asked[0].uri?.host, "example.com");
    assert.deepEqual(router.asked[0].source, {
      transport: "tcp",
      hostname: "198.51.100.7",
      port: 4000,
    });
  });
  await t.step("routers asked in order; undefined passes on", () => {
    const first = fixedRouter(undefined);
    const second = to("tcp", false);
    const { sent } = forwarded(request(), { routers: [first, second] });
    assert.equal(first.asked.length, 1);
    assert.equal(sent.destination.host, "10.0.0.5");
  });
  await t.step("a router's reply is sent", () => {
    const router = fixedRouter({
      reply: { status: 403, reason: "Forbidden", headers: ['Warning: 399 x "no"'] },
    });
    const { head, reply } = replied(request(), { routers: [router] });
    assert.equal(head.status, 403);
    assert.ok(reply.includes('\r\nWarning: 399 x "no"\r\n'));
  });
});

Deno.test("forwardRequest: validation (RFC 3261 §16.3)", async (t) => {
  const rejects = (text: string, status: number, reason: string, options: FakeHostOptions = {}) => {
    const { head, host } = replied(text, options);
    assert.equal(head.status, status);
    assert.equal(head.reason, reason);
    assert.equal(host.counter("requests_rejected"), 1);
    return head;
  };
  await t.step("505 for SIP/3.0", () => {
    rejects(edit(request(), "SIP/2.0\r\n", "SIP/3.0\r\n"), 505, "Version Not Supported");
  });
  await t.step("400 for a malformed request line, with the parser's reason", () => {
    rejects(
      edit(request(), "INVITE sip:bob@example.com SIP/2.0", "INVITE  sip:bob@example.com SIP/2.0"),
      400,
      "Malformed request line",
    );
  });
  for (
    const [line, reason] of [
      ["Call-ID: c1@198.51.100.7\r\n", "Missing Call-ID header"],
      ['From: "Alice" <sip:alice@example.org>;tag=a1\r\n', "Missing From header"],
      ["To: <sip:bob@example.com>\r\n", "Missing To header"],
      ["CSeq: 1 INVITE\r\n", "Missing CSeq header"],
      [CLIENT_VIA, "Missing Via header"],
    ]
  ) {
    await t.step(`400 ${reason}`, () => {
      const head = rejects(edit(request(), line, ""), 400, reason);
      if (line !== CLIENT_VIA) assert.equal(getHeader(head, "via"), CLIENT_VIA.slice(5, -2));
    });
  }
  await t.step("400 CSeq method mismatch", () => {
    rejects(
      edit(request(), "CSeq: 1 INVITE", "CSeq: 1 BYE"),
      400,
      "CSeq method does not match the request method",
    );
  });
  await t.step("400 malformed CSeq", () => {
    rejects(edit(request(), "CSeq: 1 INVITE", "CSeq: INVITE"), 400, "Malformed CSeq header");
  });
  await t.step("400 duplicate Call-ID", () => {
    rejects(
      edit(request(), "Call-ID: c1@198.51.100.7\r\n", "Call-ID: c1@198.51.100.7\r\ni: c2\r\n"),
      400,
      "Multiple Call-ID headers",
    );
  });
  await t.step("400 duplicate To", () => {
    rejects(
      edit(
        request(),
        "To: <sip:bob@example.com>\r\n",
        "To: <sip:bob@example.com>\r\nt: <sip:x@y>\r\n",
      ),
      400,
      "Multiple To headers",
    );
  });
  await t.step("400 malformed From", () => {
    rejects(
      edit(
        request(),
        'From: "Alice" <sip:alice@example.org>;tag=a1',
        "From: <sip:alice@example.org;tag=a1",
      ),
      400,
      "Malformed From header",
    );
  });
  await t.step("400 malformed Via", () => {
    rejects(edit(request(), CLIENT_VIA, "Via: SIP/2.0/TCP\r\n"), 400, "Malformed Via header");
  });
  await t.step("400 malformed sip: Request-URI", () => {
    rejects(
      edit(request(), "sip:bob@example.com SIP", "sip:bob@exa_mple.com SIP"),
      400,
      'Malformed Request-URI: invalid host "exa_mple.com"',
    );
  });
  await t.step("400 names a bad port in the Request-URI", () => {
    rejects(
      edit(request(), "sip:bob@example.com SIP", "sips:bob@example.com:99999 SIP"),
      400,
      'Malformed Request-URI: invalid port "99999"',
    );
  });
  await t.step("416 for a scheme sipedge does not carry, even with a default route", () => {
    const router = { route: () => ({ destination: parseDestination("sip:192.0.2.99") }) };
    for (const uri of ["http://example.com/", "mailto:bob@example.com", "urn:x:y"]) {
      rejects(
        edit(request(), "sip:bob@example.com SIP", `${uri} SIP`),
        416,
        "Unsupported URI Scheme",
        { routers: [router] },
      );
    }
  });
  await t.step("420 for Proxy-Require, with Unsupported", () => {
    const { head, reply } = replied(
      edit(request(), "Subject:", "Proxy-Require: foo, bar\r\nProxy-Require: baz\r\nSubject:"),
    );
    assert.equal(head.status, 420);
    assert.equal(head.reason, "Bad Extension");
    assert.ok(reply.includes("\r\nUnsupported: foo, bar, baz\r\n"), reply);
  });
  await t.step("416 for a tel: URI with no route", () => {
    rejects(request("INVITE", "tel:+15551234"), 416, "Unsupported URI Scheme");
  });
  await t.step("a tel: URI a router routes is forwarded", () => {
    const router = fixedRouter({
      destination: { transport: "tcp", host: "gw.example.net", port: 0 },
    });
    const { sent, out } = forwarded(request("INVITE", "tel:+15551234"), { routers: [router] });
    assert.equal(router.asked[0].uri, undefined);
    assert.equal(sent.destination.host, "gw.example.net");
    assert.ok(out.startsWith("INVITE tel:+15551234 SIP/2.0\r\n"));
  });
});

Deno.test("forwardRequest: requests to our own address", async (t) => {
  await t.step("OPTIONS without user → 200 OK from us (exact bytes)", () => {
    const text = edit(
      request("OPTIONS", "sip:192.0.2.10:5060"),
      "To: <sip:bob@example.com>",
      "To: <sip:192.0.2.10>",
    );
    const { reply, host } = replied(text);
    const tag = /\r\nTo: <sip:192\.0\.2\.10>;tag=(sipedge-[0-9a-f]{12})\r\n/.exec(reply)?.[1];
    assert.ok(tag, reply);
    assert.equal(
      reply,
      "SIP/2.0 200 OK\r\n" +
        CLIENT_VIA +
        'From: "Alice" <sip:alice@example.org>;tag=a1\r\n' +
        `To: <sip:192.0.2.10>;tag=${tag}\r\n` +
        "Call-ID: c1@198.51.100.7\r\n" +
        "CSeq: 1 OPTIONS\r\n" +
        "Server: sipedge\r\n" +
        "Content-Length: 0\r\n\r\n",
    );
    assert.equal(host.counter("local_replies"), 1);
    assert.equal(host.counter("requests_rejected"), 0);
    // A retransmission gets the same To tag.
    assert.equal(replied(text).reply, reply);
  });
  await t.step("OPTIONS to us with a To tag keeps it", () => {
    const text = edit(
      request("OPTIONS", "sip:192.0.2.10"),
      "To: <sip:bob@example.com>",
      "To: <sip:192.0.2.10>;tag=zz",
    );
    const { head } = replied(text);
    assert.equal(getHeader(head, "to"), "<sip:192.0.2.10>;tag=zz");
  });
  await t.step("OPTIONS to an alias → 200", () => {
    const { head } = replied(request("OPTIONS", "sip:proxy.example.net"), {
      aliases: ["proxy.example.net"],
    });
    assert.equal(head.status, 200);
  });
  await t.step("a user at our address with no route → 404", () => {
    const { head } = replied(request("INVITE", "sip:bob@192.0.2.10:5060"));
    assert.equal(head.status, 404);
    assert.equal(head.reason, "Not Found");
  });
  await t.step("OPTIONS with a user at our address → 404 (not for us to answer)", () => {
    const { head } = replied(request("OPTIONS", "sip:bob@192.0.2.10"));
    assert.equal(head.status, 404);
  });
  await t.step("a user at our address that a router routes is forwarded", () => {
    const router = fixedRouter({ destination: { transport: "tcp", host: "10.0.0.5", port: 5080 } });
    const { sent } = forwarded(request("INVITE", "sip:bob@192.0.2.10"), { routers: [router] });
    assert.equal(sent.destination.host, "10.0.0.5");
  });
});

Deno.test("forwardRequest: ACK never gets a locally generated response", async (t) => {
  const silent = (text: string, options: Parameters<typeof forward>[1] = {}) => {
    const { host, source } = forward(text, options);
    assert.deepEqual(source.replies, []);
    assert.deepEqual(host.sent, []);
    assert.equal(host.counter("requests_rejected"), 1);
    assert.equal(host.counter("local_replies"), 0);
  };
  await t.step(
    "malformed ACK",
    () => silent(edit(request("ACK"), "Call-ID: c1@198.51.100.7\r\n", "")),
  );
  await t.step(
    "ACK with a bad request line",
    () => silent(edit(request("ACK"), "ACK sip:", "ACK  sip:")),
  );
  await t.step(
    "ACK with Max-Forwards 0",
    () => silent(edit(request("ACK"), "Max-Forwards: 70", "Max-Forwards: 0")),
  );
  await t.step("ACK to a user at our address", () => silent(request("ACK", "sip:bob@192.0.2.10")));
  await t.step(
    "ACK over a disabled transport",
    () =>
      silent(request("ACK", "sips:bob@example.com"), {
        transports: [{
          name: "tcp",
          via: "TCP",
          host: "192.0.2.10",
          port: 5060,
          defaultPort: 5060,
        }],
      }),
  );
  await t.step("ACK that cannot be sent", () => {
    const { host, source, sent } = forwarded(request("ACK"));
    host.fail(sent.bytes, "connect_failed");
    assert.deepEqual(source.replies, []);
    assert.equal(host.counter("send_failed"), 1);
  });
});

Deno.test("forwardRequest: a failed send gets a 503 with a Reason", async (t) => {
  for (
    const [failure, text] of [
      ["connect_failed", "connect failed"],
      ["closed", "connection closed"],
    ] as const
  ) {
    await t.step(failure, () => {
      const { host, source, sent } = forwarded(request());
      host.fail(sent.bytes, failure);
      assert.equal(source.replies.length, 1);
      const reply = source.replies[0];
      const head = parseHead(reply);
      assert.equal(head.status, 503);
      assert.equal(head.reason, "Service Unavailable");
      assert.equal(getHeader(head, "reason"), `SIP;cause=503;text="${text}"`);
      assert.equal(getHeader(head, "via"), CLIENT_VIA.slice(5, -2));
      assert.equal(getHeader(head, "cseq"), "1 INVITE");
      assert.match(getHeader(head, "to")!, /^<sip:bob@example\.com>;tag=sipedge-[0-9a-f]{12}$/);
      assert.equal(host.counter("send_failed"), 1);
    });
  }
});

Deno.test("forwardRequest: binary body and latin1 header bytes are forwarded as they are", () => {
  const body = new Uint8Array(256).map((_, i) => 255 - i);
  const head = edit(
    request("MESSAGE", "sip:bob@example.com", "x".repeat(256)),
    "x".repeat(256),
    "",
  );
  const headBytes = latin1Encode(edit(head, "Subject: Lunch, today?", "Subject: caf\xe9 \xff\x80"));
  const bytes = new Uint8Array(headBytes.length + body.length);
  bytes.set(headBytes);
  bytes.set(body, headBytes.length);
  const { sent } = forwarded(bytes);
  assert.deepEqual(sent.bytes.subarray(sent.bytes.length - 256), body);
  assert.ok(sent.text.includes("\r\nSubject: caf\xe9 \xff\x80\r\n"));
});

// ---- property: every header the proxy does not own is forwarded byte for byte ----

const tokenChar = fc.constantFrom(
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
);
const headerName = fc.oneof(
  fc.constantFrom(
    "Subject",
    "Contact",
    "m",
    "User-Agent",
    "Allow",
    "Supported",
    "k",
    "Accept",
    "P-Asserted-Identity",
    "Content-Type",
    "c",
    "Require",
    "Record-Route-Not",
  ),
  fc.string({ unit: tokenChar, minLength: 1, maxLength: 10 }).map((t) => `X-${t}`),
);
const valueChar = fc.oneof(
  fc.integer({ min: 0x20, max: 0x7e }),
  fc.integer({ min: 0x80, max: 0xff }),
).map((c) => String.fromCharCode(c));
const headerValue = fc.string({ unit: valueChar, maxLength: 30 });

const arbRequest = fc.record({
  method: fc.constantFrom("INVITE", "OPTIONS", "MESSAGE", "BYE", "REGISTER", "SUBSCRIBE", "INFO"),
  extras: fc.array(
    fc.tuple(headerName, fc.constantFrom(": ", ":", " : ", ":\t"), headerValue, fc.nat()),
    {
      maxLength: 8,
    },
  ),
  maxForwards: fc.option(fc.integer({ min: 1, max: 255 }), { nil: undefined }),
  secondVia: fc.boolean(),
  body: fc.uint8Array({ maxLength: 200 }),
  clPosition: fc.nat(),
});

Deno.test("forwardRequest property: unowned header lines and the body are forwarded byte for byte", () => {
  fc.assert(
    fc.property(arbRequest, (r) => {
      const lines = [
        CLIENT_VIA,
        ...(r.secondVia ? ["v: SIP/2.0/TCP p0.example.net;branch=z9hG4bKp0\r\n"] : []),
        "From: <sip:alice@example.org>;tag=a1\r\n",
        "To: <sip:bob@example.com>\r\n",
        "Call-ID: prop@198.51.100.7\r\n",
        `CSeq: 7 ${r.method}\r\n`,
      ];
      for (const [name, colon, value, at] of r.extras) {
        lines.splice(1 + (at % lines.length), 0, `${name}${colon}${value}\r\n`);
      }
      lines.splice(1 + (r.clPosition % lines.length), 0, `Content-Length: ${r.body.length}\r\n`);
      const mfLine = r.maxForwards === undefined ? undefined : `Max-Forwards: ${r.maxForwards}\r\n`;
      if (mfLine) lines.splice(lines.length - 1, 0, mfLine);
      const startLine = `${r.method} sip:bob@example.com SIP/2.0\r\n`;
      const input = concat(latin1Encode(startLine + lines.join("") + "\r\n"), r.body);

      const { out, sent } = forwarded(input);
      const branch = branchOf(out);
      const expectedLines = lines.map((l) =>
        l === CLIENT_VIA
          ? ourVia(branch) + l
          : l === mfLine
          ? `Max-Forwards: ${r.maxForwards! - 1}\r\n`
          : l
      );
      const added = mfLine ? "" : "Max-Forwards: 70\r\n"; // right after the request line
      const expected = concat(
        latin1Encode(startLine + added + expectedLines.join("") + "\r\n"),
        r.body,
      );
      assert.deepEqual(
        latin1Decode(sent.bytes.subarray(0, sent.bytes.length - r.body.length)),
        latin1Decode(expected.subarray(0, expected.length - r.body.length)),
      );
      assert.deepEqual(sent.bytes, expected);
    }),
    { numRuns: 300 },
  );
});

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

// --- RFC 5626 flows ----------------------------------------------------------------------------

/** A REGISTER from the client, with extra header lines. */
function registerRequest(...lines: string[]): string {
  return edit(
    request("REGISTER", "sip:example.com"),
    "Subject: Lunch, today?\r\n",
    lines.map((l) => `${l}\r\n`).join(""),
  );
}

const OUTBOUND_CONTACT =
  'Contact: <sip:alice@10.0.0.5:5070;transport=tcp;ob>;reg-id=1;+sip.instance="<urn:uuid:1>"';
const PATH = /^Path: <sip:([A-Za-z0-9_-]{32})@192\.0\.2\.10:5060;transport=tcp;lr;ob>\r\n/m;

Deno.test("forwardRequest: REGISTER gets a Path with a flow token naming its connection", async (t) => {
  const router = fixedRouter({ destination: parseDestination("sip:203.0.113.5;transport=tcp") });
  const cases: [string, string[], FlowSettings["register"], boolean][] = [
    ["reg-id and +sip.instance", [OUTBOUND_CONTACT], "outbound", true],
    ["Supported: outbound", ["Supported: outbound", "Contact: <sip:a@10.0.0.5>"], "outbound", true],
    ["Supported: path", ["Supported: timer, path", "Contact: <sip:a@10.0.0.5>"], "outbound", true],
    ["a plain REGISTER", ["Contact: <sip:a@10.0.0.5>"], "outbound", false],
    ["a plain REGISTER, register = all", ["Contact: <sip:a@10.0.0.5>"], "all", true],
    ["outbound, register = off", [OUTBOUND_CONTACT], "off", false],
  ];
  for (const [name, lines, mode, expected] of cases) {
    await t.step(name, () => {
      const host = new FakeHost({ routers: [router] });
      host.flows = { register: mode, record_route: true };
      const source = new FakeSource({ connectionId: 4242 });
      const { out } = forwarded(registerRequest(...lines), { host, source });
      const path = PATH.exec(out);
      assert.equal(path !== null, expected, out);
      assert.equal(host.counter("flows_registered"), expected ? 1 : 0);
      assert.equal(source.flow, expected);
      if (path === null) return;
      assert.deepEqual(host.checkFlowToken(path[1]), {
        ok: true,
        connectionId: 4242,
        transport: "tcp",
      });
      // Path goes on top of the Path values already there (RFC 3327 §5.2).
      const again = new FakeHost({ routers: [router] });
      again.flows = host.flows;
      const withPath = forwarded(registerRequest(...lines, "Path: <sip:other.example;lr>"), {
        host: again,
      }).out;
      assert.match(withPath, /Path: <sip:[^>]+;lr;ob>\r\nPath: <sip:other\.example;lr>\r\n/);
    });
  }
  await t.step("in over TLS, out over TCP: the Path names the TCP side", () => {
    const source = new FakeSource({ transport: "tls" });
    const { out } = forwarded(registerRequest(OUTBOUND_CONTACT), { routers: [router], source });
    const token = PATH.exec(out)![1];
    assert.deepEqual(new FakeHost().checkFlowToken(token), {
      ok: true,
      connectionId: 42,
      transport: "tls",
    });
  });
});

/** A request for the client from elsewhere, routed by a Route naming us with `token`. */
function towardsFlow(token: string, method = "INVITE", extra = ""): string {
  return edit(
    request(method, "sip:alice@10.0.0.5:5070;ob"),
    "Subject: Lunch, today?\r\n",
    `Route: <sip:${token}@192.0.2.10:5060;transport=tcp;lr>\r\n${extra}`,
  );
}

Deno.test("forwardRequest: a Route with a flow token delivers over the flow", async (t) => {
  const client = new FakeSource({ connectionId: 777, transport: "tls" });
  const token = client.flowToken(true)!;
  await t.step(
    "INVITE from another connection: over the flow, Record-Routed with the token",
    () => {
      const host = new FakeHost();
      host.openConnections.add(777);
      const { source } = forward(towardsFlow(token), { host });
      assert.deepEqual(source.replies, []);
      assert.equal(host.sent.length, 0, "not sent by address");
      assert.equal(host.sentOnConnection.length, 1);
      const sent = host.sentOnConnection[0];
      assert.equal(sent.id, 777);
      assert.equal(sent.fallback, undefined, "a flow has no fallback: 430 when it is gone");
      assert.ok(!sent.text.includes("\r\nRoute:"), "our Route removed");
      // Via names the flow's transport (TLS) and our TLS address; Record-Route carries the token.
      assert.match(
        sent.text,
        /\r\nVia: SIP\/2\.0\/TLS 192\.0\.2\.10:5061;branch=z9hG4bK[0-9a-f]+;i=42\r\n/,
      );
      assert.ok(
        sent.text.includes(`Record-Route: <sip:${token}@192.0.2.10:5061;transport=tls;lr>\r\n`),
        sent.text,
      );
    },
  );
  await t.step("an in-dialog request is not Record-Routed", () => {
    const host = new FakeHost();
    host.openConnections.add(777);
    forward(
      towardsFlow(token, "BYE").replace(
        "To: <sip:bob@example.com>",
        "To: <sip:bob@example.com>;tag=b",
      ),
      { host },
    );
    assert.ok(!host.sentOnConnection[0].text.includes("Record-Route"));
  });
  await t.step("the flow is gone: 430 Flow Failed to the sender", () => {
    const host = new FakeHost();
    const { source } = forward(towardsFlow(token), { host });
    assert.equal(source.replies.length, 1);
    const head = parseHead(source.replies[0]);
    assert.equal(head.status, 430);
    assert.equal(head.reason, "Flow Failed");
    assert.equal(getHeader(head, "reason"), 'SIP;cause=430;text="flow failed"');
    assert.equal(host.counter("flow_failed"), 1);
  });
  await t.step("the client's own request: the token names its connection, routing goes on", () => {
    const host = new FakeHost();
    const text = towardsFlow(token, "BYE", "Route: <sip:203.0.113.9;lr>\r\n");
    const { out, sent } = forwarded(
      text.replace("To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b"),
      {
        host,
        source: client,
      },
    );
    assert.deepEqual(sent.destination, { transport: "tcp", host: "203.0.113.9", port: 0 });
    assert.ok(out.includes("Route: <sip:203.0.113.9;lr>\r\n"));
    assert.ok(!out.includes(token));
  });
  await t.step("a forged token: 403, nothing sent", () => {
    const forged = token.slice(0, -1) + (token.endsWith("A") ? "B" : "A");
    const { head, host } = replied(towardsFlow(forged));
    assert.equal(head.status, 403);
    assert.equal(head.reason, "Invalid Flow Token");
    assert.equal(host.counter("flow_token_invalid"), 1);
    assert.equal(host.sentOnConnection.length, 0);
  });
  await t.step("a user part that is not token-shaped is an ordinary Route", () => {
    const { sent } = forwarded(towardsFlow("alice"));
    assert.deepEqual(sent.destination, { transport: "tcp", host: "10.0.0.5", port: 5070 });
  });
});

Deno.test("forwardRequest: a dialog-forming request from a flow is Record-Routed with its token", async (t) => {
  const router = fixedRouter({ destination: parseDestination("sip:203.0.113.5;transport=tcp") });
  for (
    const [method, expected] of [["INVITE", true], ["SUBSCRIBE", true], ["MESSAGE", false]] as const
  ) {
    await t.step(method, () => {
      const source = new FakeSource({ connectionId: 99 });
      const token = source.flowToken(true)!;
      const { out } = forwarded(request(method), { routers: [router], source });
      assert.equal(
        out.includes(`Record-Route: <sip:${token}@192.0.2.10:5060;transport=tcp;lr>\r\n`),
        expected,
        out,
      );
    });
  }
  await t.step("not a flow, or record_route = false: no Record-Route", () => {
    assert.ok(!forwarded(request(), { routers: [router] }).out.includes("Record-Route"));
    const host = new FakeHost({ routers: [router] });
    host.flows = { register: "outbound", record_route: false };
    const source = new FakeSource();
    source.flowToken(true);
    assert.ok(!forwarded(request(), { host, source }).out.includes("Record-Route"));
  });
});

Deno.test("forwardRequest: the ACK for a reply sipedge made is absorbed; other ACKs go on", () => {
  const { reply } = replied(edit(request(), "Max-Forwards: 70", "Max-Forwards: 0"));
  const tag = /;tag=(sipedge-[0-9a-f]{12})\r\n/.exec(reply)![1];
  const ack = edit(
    edit(request("ACK"), "To: <sip:bob@example.com>", `To: <sip:bob@example.com>;tag=${tag}`),
    "CSeq: 1 ACK",
    "CSeq: 1 ACK",
  );
  const { host, source } = forward(ack);
  assert.equal(host.sent.length, 0, "not forwarded");
  assert.deepEqual(source.replies, [], "never answered");
  assert.equal(host.counter("acks_absorbed"), 1);
  const other = edit(
    request("ACK"),
    "To: <sip:bob@example.com>",
    "To: <sip:bob@example.com>;tag=u1",
  );
  assert.equal(forwarded(other).host.counter("acks_absorbed"), 0);
});
