/**
 * Tests of forwarding a response by its bytes (own_via_response.ts): it must take a response
 * only where forwardResponse would do exactly the same, byte for byte.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { findOwnVia, isPlainVia, ownViaPrefix, withoutOwnVia } from "./own_via_response.ts";
import { parseVia } from "../sip/header_values.ts";
import { forwardResponse } from "./forward_response.ts";
import { forwardRequest, ownViaSentBy } from "./forward_request.ts";
import { FakeHost, FakeSource, framed } from "./testing/fake_host.ts";
import { latin1Decode, latin1Encode } from "../sip/latin1.ts";

const OURS = "SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK0123456789abcdef;i=42";
const CLIENT = "SIP/2.0/TCP 198.51.100.7:5070;branch=z9hG4bKabc";

/** The prefixes a worker with the fake host's transports and addresses builds. */
function prefixesOf(host: FakeHost): Uint8Array[] {
  const all = new Set<string>();
  for (const t of host.transports) {
    for (const a of host.transports) all.add(ownViaSentBy(t.via, { host: a.host, port: a.port }));
  }
  return [...all].map(ownViaPrefix);
}

const PREFIXES = prefixesOf(new FakeHost());

function response(lines: string[], body = "", eol = "\r\n"): string {
  return ["SIP/2.0 200 OK", ...lines, `Content-Length: ${body.length}`].join(eol) + eol + eol +
    body;
}

const COMMON = [
  "From: <sip:alice@example.org>;tag=a1",
  "To: <sip:bob@example.com>;tag=b1",
  "Call-ID: c1@198.51.100.7",
  "CSeq: 1 INVITE",
];

/** What forwardResponse sends on connection `id` for `text`, or undefined. */
function fullPath(text: string, id: number): string | undefined {
  const host = new FakeHost();
  host.openConnections.add(id);
  forwardResponse(host, framed(text));
  const sent = host.sentOnConnection;
  return sent.length === 1 && sent[0].id === id && host.sent.length === 0
    ? sent[0].text
    : undefined;
}

function fastPath(text: string): { id: number; text: string } | undefined {
  const bytes = latin1Encode(text);
  const cut = findOwnVia(bytes, PREFIXES);
  return cut && { id: cut.connectionId, text: latin1Decode(withoutOwnVia(bytes, cut)) };
}

Deno.test("findOwnVia: the response to a request sipedge forwarded is cut as forwardResponse cuts it", () => {
  // The request's way out gives our Via as forwardRequest writes it.
  const host = new FakeHost();
  const source = new FakeSource({ connectionId: 77 });
  const request = "INVITE sip:bob@203.0.113.5 SIP/2.0\r\n" +
    `Via: ${CLIENT}\r\n` + COMMON.slice(0, 2).join("\r\n").replace(";tag=b1", "") +
    "\r\nCall-ID: c1@198.51.100.7\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
  forwardRequest(host, source, framed(request));
  assert.equal(host.sent.length, 1);
  const vias = host.sent[0].text.split("\r\n").filter((l) => l.startsWith("Via: "));
  assert.equal(vias.length, 2);
  const text = response([...vias, ...COMMON], "v=0\r\n");
  const fast = fastPath(text);
  assert.deepEqual(fast, { id: 77, text: text.replace(`${vias[0]}\r\n`, "") });
  assert.equal(fullPath(text, 77), fast?.text);
});

Deno.test("findOwnVia: a plain response, CRLF or bare LF, compact or any-case names", () => {
  for (const eol of ["\r\n", "\n"]) {
    for (const name of ["Via", "v", "VIA", "via ", "V\t"]) {
      const text = response([`${name}: ${OURS}`, `Via: ${CLIENT}`, ...COMMON], "", eol);
      const fast = fastPath(text);
      assert.deepEqual(fast, { id: 42, text: text.replace(`${name}: ${OURS}${eol}`, "") });
      assert.equal(fullPath(text, 42), fast?.text);
    }
  }
});

Deno.test("findOwnVia: what forwardResponse must decide is left to it", async (t) => {
  const cases: [string, string][] = [
    ["not the first Via", response([`Via: ${CLIENT}`, `Via: ${OURS}`, ...COMMON])],
    ["a second value on our line", response([`Via: ${OURS},${CLIENT}`, ...COMMON])],
    ["no Via after ours", response([`Via: ${OURS}`, ...COMMON])],
    ["a malformed next Via", response([`Via: ${OURS}`, "Via: garbage", ...COMMON])],
    ["another transport name", response([`Via: ${OURS.replace("TCP", "tcp")}`, `Via: ${CLIENT}`])],
    ["another address", response([`Via: ${OURS.replace("5060", "5062")}`, `Via: ${CLIENT}`])],
    ["no i", response([`Via: ${OURS.replace(";i=42", "")}`, `Via: ${CLIENT}`])],
    ["I in upper case", response([`Via: ${OURS.replace(";i=", ";I=")}`, `Via: ${CLIENT}`])],
    ["two i", response([`Via: ${OURS};i=43`, `Via: ${CLIENT}`])],
    ["i with letters", response([`Via: ${OURS}x`, `Via: ${CLIENT}`])],
    ["i empty", response([`Via: ${OURS.replace("=42", "=")}`, `Via: ${CLIENT}`])],
    ["i = 0", response([`Via: ${OURS.replace("=42", "=0")}`, `Via: ${CLIENT}`])],
    ["white space in our Via", response([`Via: ${OURS.replace(";i", " ;i")}`, `Via: ${CLIENT}`])],
    [
      "a quote in our Via",
      response([`Via: ${OURS.replace(";i=42", ';x="a;i=9;b"')}`, `Via: ${CLIENT}`]),
    ],
    ["a header without a name", response([`Via: ${OURS}`, `Via: ${CLIENT}`, ": x"])],
    ["a folded line", response([`Via: ${OURS}`, `Via: ${CLIENT}`, "Subject: a", " b"])],
    ["a malformed header name", response([`Via: ${OURS}`, `Via: ${CLIENT}`, "Bad Name: x"])],
    ["a line without a colon", response([`Via: ${OURS}`, `Via: ${CLIENT}`, "NoColon"])],
    ["two Content-Lengths", response([`Via: ${OURS}`, `Via: ${CLIENT}`, "l: 0"])],
    ["a stray CR", response([`Via: ${OURS}\r`, `Via: ${CLIENT}`])],
    ["a malformed status line", response([`Via: ${OURS}`, `Via: ${CLIENT}`]).replace("200", "20")],
    ["status 700", response([`Via: ${OURS}`, `Via: ${CLIENT}`]).replace("200", "700")],
    ["another SIP version", response([`Via: ${OURS}`, `Via: ${CLIENT}`]).replace("2.0 ", "2.1 ")],
    ["a body beyond Content-Length", response([`Via: ${OURS}`, `Via: ${CLIENT}`]) + "x"],
    [
      "no Content-Length",
      response([`Via: ${OURS}`, `Via: ${CLIENT}`]).replace(/Content-Length.*\r\n/, ""),
    ],
    [
      "a request",
      response([`Via: ${OURS}`, `Via: ${CLIENT}`]).replace(
        "SIP/2.0 200 OK",
        "OPTIONS sip:a SIP/2.0",
      ),
    ],
  ];
  for (const [name, text] of cases) {
    await t.step(name, () => assert.equal(fastPath(text), undefined));
  }
});

Deno.test("findOwnVia property: whatever it takes, forwardResponse sends byte for byte the same", () => {
  const eol = fc.constantFrom("\r\n", "\r\n", "\n");
  // Mostly what comes back in practice, with every kind of doubt mixed in.
  const usually = <T>(common: fc.Arbitrary<T>, odd: fc.Arbitrary<T>) =>
    fc.oneof({ weight: 4, arbitrary: common }, { weight: 1, arbitrary: odd });
  const ourVia = fc.tuple(
    usually(fc.constantFrom("Via", "v", "VIA"), fc.constantFrom("Via ", "via\t", "Vias", "Via x")),
    usually(
      fc.constantFrom(
        OURS,
        OURS + ";rport",
        "SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKx;i=7",
        "SIP/2.0/TCP 192.0.2.10:5061;branch=z9hG4bKx;i=7",
      ),
      fc.constantFrom(
        OURS.replace("TCP", "tcp"),
        OURS.replace(";i=", ";I="),
        OURS.replace(";i=", ";id=5;i="),
        OURS + ";i=43",
        OURS + "x",
        OURS + ';x="a;i=9"',
        OURS.replace(";i=42", ';x="a;i=9;b"'),
        OURS + " ",
        OURS + "," + CLIENT,
        OURS.replace("=42", "=0042"),
        OURS.replace("=42", "="),
        OURS.replace(";i=42", ";i"),
      ),
    ),
  ).map(([n, v]) => `${n}: ${v}`);
  const nextVia = fc.constantFrom(
    `Via: ${CLIENT}`,
    `v:${CLIENT};received=198.51.100.7;rport=5070`,
    `Via: ${CLIENT}, SIP/2.0/UDP p0.example.net;branch=z9hG4bKp0`,
    "Via: garbage",
    "Via: SIP/2.0/TCP",
    `Via:  ${CLIENT}  `,
  );
  const other = usually(
    fc.constantFrom(...COMMON, "Subject: a", "Record-Route: <sip:p1.example.com;lr>"),
    fc.constantFrom(
      " folded",
      "\tfolded",
      "Bad Name: x",
      "NoColon",
      ": no name",
      "X\u00e9: y",
      "Content-Length: 0",
      "l: 3",
    ),
  );
  const arb = fc.record({
    status: usually(
      fc.constantFrom("SIP/2.0 200 OK", "SIP/2.0 180 Ringing", "SIP/2.0 200"),
      fc.constantFrom("SIP/2.0 20 OK", "SIP/2.0 600 Busy Everywhere", "SIP/2.0 700 x"),
    ),
    ours: fc.option(ourVia, { freq: 8 }),
    next: fc.option(nextVia, { freq: 8 }),
    others: fc.array(other, { maxLength: 4 }),
    shuffle: fc.boolean(),
    eol,
    body: fc.constantFrom("", "v=0\r\n", "abc"),
    contentLength: usually(fc.constantFrom("right", "compact"), fc.constantFrom("wrong", "none")),
  });
  let taken = 0;
  fc.assert(
    fc.property(arb, (r) => {
      const vias = [r.ours, r.next].filter((v): v is string => v !== null);
      let lines = [...vias, ...r.others];
      if (r.shuffle) lines = [...r.others, ...vias];
      const cl = r.contentLength === "compact"
        ? [`l: ${r.body.length}`]
        : r.contentLength === "right"
        ? [`Content-Length: ${r.body.length}`]
        : r.contentLength === "wrong"
        ? [`Content-Length: ${r.body.length + 1}`]
        : [];
      const text = [r.status, ...lines, ...cl].join(r.eol) + r.eol + r.eol + r.body;
      const fast = fastPath(text);
      if (fast === undefined) return;
      taken++;
      assert.equal(fullPath(text, fast.id), fast.text, JSON.stringify(text));
    }),
    { numRuns: 4000 },
  );
  // The generator must reach the cut often enough for the property to mean something.
  assert.ok(taken > 400, `only ${taken} responses taken`);
});

Deno.test("isPlainVia property: what it takes, parseVia accepts", () => {
  const part = fc.constantFrom(
    ..."SIPsip/2.0 \t\r\u00a0TCPudp-[]:;=abc159.6\u00e9_,".split(""),
    "SIP/2.0/TCP ",
    "SIP/2.0/UDP ",
    "host.example.com",
    "198.51.100.7",
    "[2001:db8::1]",
    ":5060",
    ":0",
    ":65536",
    ":123456",
    ";branch=z9hG4bK1",
    ";rport",
  );
  // Near-plain values: a plain form with one piece changed.
  const nearPlain = fc.tuple(
    fc.constantFrom("SIP/2.0/", "sip/2.0/", "SIP/2.0 /", "SIP/2.1/"),
    fc.constantFrom("TCP", "WSS", "x-y", "", "T_P"),
    fc.constantFrom(" ", "  ", "\t", ""),
    fc.constantFrom("h", "a.b-c", "-a", "1.2.3.4", "[::1]", "[]", "[x]", "h_x", "\u00e9"),
    fc.constantFrom("", ":1", ":65535", ":65536", ":0", ":", ": 5", ":123456"),
    fc.constantFrom("", ";branch=1", ";", " ;x", "x", ",a"),
  ).map((p) => p.join(""));
  let plain = 0;
  fc.assert(
    fc.property(fc.oneof(fc.array(part, { minLength: 1, maxLength: 8 }), nearPlain), (parts) => {
      const value = typeof parts === "string" ? parts : parts.join("");
      const bytes = latin1Encode(value);
      if (!isPlainVia(bytes, 0, bytes.length)) return;
      plain++;
      assert.notEqual(parseVia(value), undefined, JSON.stringify(value));
    }),
    { numRuns: 20000 },
  );
  assert.ok(plain > 50, `the generator makes plain Vias too (${plain})`);
  // And it is bounded by its range: nothing after `end` is read as part of the value.
  const line = latin1Encode("SIP/2.0/TCP  x");
  assert.equal(isPlainVia(line, 0, 12), false);
});
