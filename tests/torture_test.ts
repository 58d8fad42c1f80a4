/**
 * SIP torture tests over TCP, end to end: the messages of RFC 4475 (SIP torture test messages)
 * and RFC 5118 (IPv6 torture test messages), adapted to TCP (see tests/torture/README.md), and
 * framing edge cases, sent to one real sipedge process (`--forward` to a test UAS, one worker).
 *
 * For every message the test decides what a stateless proxy must do (RFC 3261 §16.3, §16.11,
 * §18.2.1, RFC 3581) and asserts it:
 *
 * - forwarded: every header line sipedge does not own arrives at the UAS byte for byte, the body
 *   intact; sipedge's Via is on top, Max-Forwards is one less, the sender's Via has `received`
 *   (and `rport`) — nothing else changes — and the UAS's answer comes back to the client with
 *   only sipedge's Via removed;
 * - answered: sipedge's own response (status, a reason phrase, Server: sipedge, the request's
 *   Via and Call-ID), never for an ACK, and nothing reaches the UAS;
 * - dropped (responses), or the connection closed (framing errors).
 *
 * After every case a plain request on a new connection must still be served. One sipedge for the
 * whole file; every case is a step of one test, so one failing case does not hide the others.
 *
 * @module
 */
import assert from "node:assert/strict";
import { findHeaders } from "../core/sip/head.ts";
import { freePort, type SipedgeProcess, startSipedge } from "./support/sipedge_process.ts";
import {
  buildRequest,
  buildResponse,
  concatBytes,
  latin1,
  latin1Bytes,
  SipMessage,
  TestUac,
  TestUas,
  type UasReceived,
  waitUntil,
} from "./support/sip_peer.ts";

// --- fixtures --------------------------------------------------------------------------------

/**
 * Reads `tests/torture/<name>.sip` (format in tests/torture/README.md) and returns its messages
 * as bytes: `#` lines dropped, LF → CRLF, `{{NAME}}` from `vars`, `{{xHH}}` bytes, `{{SP}}`,
 * and `{{CL}}` = the body length of each message.
 */
function fixture(name: string, vars: Record<string, string> = {}): Uint8Array[] {
  const raw = latin1(Deno.readFileSync(new URL(`./torture/${name}.sip`, import.meta.url)));
  const lines = raw.split("\n");
  while (lines.length > 0 && lines[0].startsWith("#")) lines.shift();
  return lines.join("\r\n").split("{{NEXT}}\r\n").map((text) => {
    const expanded = text.replace(/\{\{(x[0-9a-f]{2}|[A-Z]+)\}\}/g, (all, key: string) => {
      if (key.startsWith("x")) return String.fromCharCode(parseInt(key.slice(1), 16));
      if (key === "SP") return " ";
      if (key === "CL") return all;
      const value = vars[key];
      if (value === undefined) throw new Error(`fixture ${name}: no value for ${all}`);
      return value;
    });
    const headEnd = expanded.indexOf("\r\n\r\n");
    if (headEnd < 0) throw new Error(`fixture ${name}: no end of head`);
    const bodyLength = expanded.length - headEnd - 4;
    return latin1Bytes(
      expanded.slice(0, headEnd).replaceAll("{{CL}}", String(bodyLength)) +
        expanded.slice(headEnd),
    );
  });
}

/** The one message of a fixture. */
function message(name: string, vars: Record<string, string> = {}): Uint8Array {
  const messages = fixture(name, vars);
  assert.equal(messages.length, 1, `fixture ${name}`);
  return messages[0];
}

/** The raw Via lines of a request (what a UAS copies into its response, §8.2.6.2). */
function rawVias(request: SipMessage): string {
  const head = request.head;
  return findHeaders(head, "via").map((f) => head.text.slice(f.start, f.end)).join("");
}

// --- expected edits --------------------------------------------------------------------------

/** An expected edit: the first occurrence of `[0]` becomes `[1]`. */
type Change = [from: string, to: string];

/** `Max-Forwards` line as written (name, colon, space as in the message) → value - 1. */
function mf(line: string): Change {
  const m = /^(.*?)([0-9]+)$/.exec(line)!;
  return [`${line}\r\n`, `${m[1]}${Number(m[2]) - 1}\r\n`];
}

/** The end of the sender's top Via value (`tail`, up to the line end) gets `;received=`. */
function received(tail: string): Change {
  return [`${tail}\r\n`, `${tail};received=127.0.0.1\r\n`];
}

/** A top Via ending in `;rport` (buildRequest's) gets the source port and address (RFC 3581). */
function rport(port: number): Change {
  return [";rport\r\n", `;rport=${port};received=127.0.0.1\r\n`];
}

function applyChanges(text: string, changes: Change[]): string {
  let out = text;
  for (const [from, to] of changes) {
    const at = out.indexOf(from);
    if (at < 0) throw new Error(`test bug: ${JSON.stringify(from)} is not in the message`);
    out = out.slice(0, at) + to + out.slice(at + from.length);
  }
  return out;
}

// --- assertions ------------------------------------------------------------------------------

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Asserts two messages (latin1 text) are equal, showing the lines that differ. */
function assertText(actual: string, expected: string, what: string): void {
  if (actual === expected) return;
  const lines = (s: string) => s.split("\r\n").map((l) => JSON.stringify(l));
  assert.deepEqual(lines(actual), lines(expected), `${what}: bytes differ`);
  assert.fail(`${what}: bytes differ (${actual.length} vs ${expected.length} bytes)`);
}

/** Offset of the first Via header line in a message (where sipedge puts its own Via). */
function firstViaOffset(text: string): number {
  const head = text.slice(0, text.indexOf("\r\n\r\n") + 2);
  const m = /\r\n(?:via|v)[ \t]*:/i.exec(head);
  assert.ok(m, "test bug: no Via in the expected message");
  return m.index + 2;
}

/** Checks the sender's top Via field as forwarded, given the one expected. */
type ViaCheck = (actual: string, expected: string) => void;

/**
 * The same Via field, folded or not: a proxy that edits the top Via (received) may rewrite its
 * line folding (LWS is equivalent, RFC 3261 §7.3.1).
 */
const sameUnfolded: ViaCheck = (actual, expected) => {
  const unfold = (s: string) => s.replace(/[ \t]*\r\n[ \t]+/g, " ");
  assert.equal(unfold(actual), unfold(expected), "the sender's Via (unfolded)");
};

/** What sipedge did with something sent on a connection. */
type Outcome =
  | { kind: "forwarded"; atUas: UasReceived }
  | { kind: "answered"; reply: SipMessage }
  | { kind: "closed" }
  | { kind: "nothing" };

function describe(outcome: Outcome): string {
  switch (outcome.kind) {
    case "forwarded":
      return `forwarded it to the UAS as ${JSON.stringify(outcome.atUas.message.text)}`;
    case "answered":
      return `answered ${JSON.stringify(outcome.reply.startLine)} (${
        JSON.stringify(outcome.reply.text)
      })`;
    case "closed":
      return "closed the connection without an answer";
    case "nothing":
      return "neither forwarded nor answered it";
  }
}

// --- the proxy under test --------------------------------------------------------------------

/** A UAS answer for a request, by Call-ID (default: 200 via `buildResponse`). */
type Responder = (request: SipMessage) => Uint8Array | undefined;

/** sipedge (`--forward` to `uas`, one worker) and the UAS, for the whole file. */
class Torture implements AsyncDisposable {
  exited = false;

  private constructor(
    readonly uas: TestUas,
    readonly proxy: SipedgeProcess,
    readonly port: number,
    /** Custom UAS answers by Call-ID. */
    readonly responders: Map<string, Responder>,
  ) {
    proxy.status.then(() => this.exited = true);
  }

  static async start(): Promise<Torture> {
    const responders = new Map<string, Responder>();
    const uas = TestUas.listen({
      respond: (m) => {
        if (!m.isRequest) return undefined;
        const custom = responders.get(m.callId);
        if (custom !== undefined) return custom(m);
        return m.method === "ACK" ? undefined : buildResponse(m, 200);
      },
    });
    try {
      const port = freePort();
      const proxy = await startSipedge({
        args: ["--listen", `tcp:127.0.0.1:${port}`, "--forward", uas.uri, "--workers", "1"],
        // A short read timeout for the incomplete-message cases (clerr, junk).
        config: '[plugins.timeouts]\nmessage_read_timeout = "2s"\n',
      });
      return new Torture(uas, proxy, port, responders);
    } catch (error) {
      await uas.close();
      throw error;
    }
  }

  /** `127.0.0.1:<uas port>`, for fixtures. */
  get uasAddress(): string {
    return `127.0.0.1:${this.uas.port}`;
  }

  /** sipedge's Via as a regular expression on a message's text (with the CRLF before it). */
  get ourVia(): RegExp {
    return new RegExp(
      `\\r\\nVia: SIP/2\\.0/TCP 127\\.0\\.0\\.1:${this.port};branch=z9hG4bK[0-9A-Za-z]+;i=\\d+\\r\\n`,
      "g",
    );
  }

  /** Waits for what sipedge does with what `uac` just sent (`mark` = UAS messages before). */
  async outcome(uac: TestUac, mark: number, timeoutMs = 3000): Promise<Outcome> {
    try {
      await waitUntil(
        () =>
          this.uas.messages.length > mark || uac.receivedLength > 0 || uac.isClosed
            ? true
            : undefined,
        timeoutMs,
      );
    } catch {
      return { kind: "nothing" };
    }
    const atUas = this.uas.messages.slice(mark).find((r) => r.message.isRequest);
    if (atUas !== undefined) return { kind: "forwarded", atUas };
    const frame = await uac.next(1000);
    if (frame.type === "message") return { kind: "answered", reply: frame.message };
    return frame.type === "closed" ? { kind: "closed" } : { kind: "nothing" };
  }

  /**
   * Asserts `atUas` is `expected` (the request as sent, with the expected edits) plus sipedge's
   * Via right above the first Via. `topVia`, when given, checks the sender's top Via field (with
   * its continuation lines) instead of comparing it byte for byte. Returns sipedge's Via line
   * (with CRLF).
   */
  assertForwarded(atUas: UasReceived, expected: string, topVia?: ViaCheck): string {
    const actual = latin1(atUas.message.bytes);
    const ours = [...actual.matchAll(this.ourVia)];
    assert.equal(ours.length, 1, `one sipedge Via in ${JSON.stringify(actual)}`);
    const at = ours[0].index! + 2;
    const ourLine = ours[0][0].slice(2);
    assert.equal(at, firstViaOffset(expected), "sipedge's Via goes right above the first Via");
    let rest = actual.slice(0, at) + actual.slice(at + ourLine.length);
    let wanted = expected;
    if (topVia !== undefined) {
      /** Offset after the CRLF that ends the field starting at `at` (folding included). */
      const fieldEnd = (s: string) => {
        let end = s.indexOf("\r\n", at);
        while (s[end + 2] === " " || s[end + 2] === "\t") end = s.indexOf("\r\n", end + 2);
        return end + 2;
      };
      topVia(rest.slice(at, fieldEnd(rest) - 2), wanted.slice(at, fieldEnd(wanted) - 2));
      rest = rest.slice(0, at) + rest.slice(fieldEnd(rest));
      wanted = wanted.slice(0, at) + wanted.slice(fieldEnd(wanted));
    }
    assertText(rest, wanted, "forwarded request");
    return ourLine;
  }

  /** Asserts the client got what the UAS answered, with only sipedge's Via line removed. */
  assertRelayed(atClient: SipMessage, atUas: UasReceived, ourLine: string): void {
    assert.ok(atUas.response, "the UAS answered");
    const sent = latin1(atUas.response);
    assert.ok(sent.includes(ourLine), "the UAS's answer has sipedge's Via");
    assertText(latin1(atClient.bytes), sent.replace(ourLine, ""), "response at the client");
  }

  /**
   * Sends `request` on a new connection; it must be forwarded as `changes(clientPort)` say, and
   * the UAS's answer must come back. Returns what the UAS read.
   */
  async expectForwarded(
    request: Uint8Array,
    changes: (clientPort: number) => Change[],
    topVia?: ViaCheck,
  ): Promise<UasReceived> {
    await using uac = await TestUac.connect(this.port);
    const mark = this.uas.messages.length;
    await uac.send(request);
    const outcome = await this.outcome(uac, mark);
    if (outcome.kind !== "forwarded") {
      assert.fail(`expected the request to be forwarded; sipedge ${describe(outcome)}`);
    }
    const expected = applyChanges(latin1(request), changes(uac.localPort));
    const ourLine = this.assertForwarded(outcome.atUas, expected, topVia);
    this.assertRelayed(await uac.nextMessage(), outcome.atUas, ourLine);
    return outcome.atUas;
  }

  /**
   * Sends `request` on a new connection; sipedge must answer `status` with a reason phrase
   * matching `reason`, copying the request's Via and Call-ID, and forward nothing. Then the
   * connection must close (`closes`), or serve the next request.
   */
  async expectAnswered(
    request: Uint8Array,
    status: number,
    reason: RegExp,
    options: { closes?: boolean; headers?: Record<string, string> } = {},
  ): Promise<SipMessage> {
    await using uac = await TestUac.connect(this.port);
    const mark = this.uas.messages.length;
    await uac.send(request).catch(() => {}); // sipedge may close before it has read it all
    const outcome = await this.outcome(uac, mark);
    if (outcome.kind !== "answered") {
      assert.fail(`expected sipedge to answer ${status}; sipedge ${describe(outcome)}`);
    }
    const reply = outcome.reply;
    const m = /^SIP\/2\.0 ([0-9]{3}) (.+)$/.exec(reply.startLine);
    assert.ok(m, `a status line with a reason phrase: ${JSON.stringify(reply.startLine)}`);
    assert.equal(Number(m[1]), status, `status of ${JSON.stringify(reply.startLine)}`);
    assert.match(m[2], reason);
    assert.equal(reply.header("server"), "sipedge");
    const text = latin1(request);
    if (text.indexOf("\r\n\r\n") > 0) {
      const sent = SipMessage.parse(request);
      assert.deepEqual(reply.headers("via"), sent.headers("via"), "Via copied (§8.2.6.2)");
      assert.equal(reply.header("call-id"), sent.header("call-id"), "Call-ID copied");
    }
    // §8.2.6.2: a UAS (sipedge, answering) MUST add a To tag to a final response. (Checked
    // for framing errors, which close, in a step of their own.)
    if (status > 100 && !options.closes && reply.header("to") !== undefined) {
      assert.match(reply.header("to")!, /;\s*tag=/i, "To tag in sipedge's answer");
    }
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      assert.equal(reply.header(name), value, name);
    }
    const forwarded: string[] = [];
    if (options.closes) {
      assert.deepEqual(await uac.waitClosed(3000), [], "nothing after the answer, then close");
    } else {
      const barrier = buildRequest();
      await uac.send(barrier.bytes);
      const next = await uac.nextMessage();
      assert.equal(next.callId, barrier.callId, "the connection serves the next request");
      assert.equal(next.status, 200);
      forwarded.push(barrier.callId);
    }
    assert.deepEqual(
      this.uas.messages.slice(mark).map((r) => r.message.callId),
      forwarded,
      "nothing but the next request reached the UAS",
    );
    return reply;
  }

  /** Sends `request` then a plain request in one write: only the second may be answered. */
  async expectSilent(request: Uint8Array): Promise<void> {
    await using uac = await TestUac.connect(this.port);
    const mark = this.uas.messages.length;
    const barrier = buildRequest();
    await uac.send(concatBytes(request, barrier.bytes));
    const first = await uac.nextMessage();
    assert.equal(first.callId, barrier.callId, `first answer: ${first.text}`);
    await uac.expectNothing(100);
    assert.deepEqual(this.uas.messages.slice(mark).map((r) => r.message.callId), [
      barrier.callId,
    ]);
  }

  /** A connection sipedge opened to the UAS (forwarding a request first if needed). */
  async upstreamConnection(): Promise<number> {
    await this.assertServing();
    return this.uas.messages.at(-1)!.connection;
  }

  /** sipedge is running and serves a plain request on a new connection. */
  async assertServing(): Promise<void> {
    assert.equal(this.exited, false, "sipedge has exited");
    await using uac = await TestUac.connect(this.port);
    const request = buildRequest();
    await uac.send(request.bytes);
    const response = await uac.nextMessage();
    assert.equal(response.callId, request.callId);
    assert.equal(response.status, 200, response.startLine);
  }

  /** The last lines of sipedge's output, for failure messages. */
  outputTail(lines = 30): string {
    return this.proxy.output().split("\n").slice(-lines).join("\n");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.proxy.stop();
    } finally {
      await this.uas.close();
    }
  }
}

// --- the cases -------------------------------------------------------------------------------

/** A message a stateless proxy forwards; `changes` are the edits it makes besides its Via. */
interface ForwardCase {
  name: string;
  fixture: string;
  changes: (clientPort: number) => Change[];
  topVia?: ViaCheck;
}

/**
 * Valid messages (RFC 4475 §3.1.1, §3.2, §3.3, §3.4; RFC 5118 §4), and invalid ones whose fault
 * is in a part a stateless proxy neither uses nor changes: RFC 3261 §16.3 step 1 says those
 * parts "SHOULD be ignored and remain unchanged when the message is forwarded".
 */
const FORWARDED: ForwardCase[] = [
  {
    name: "RFC 4475 3.1.1.1 wsinv: folding, LWS, compact and odd-case names, empty Subject",
    fixture: "wsinv",
    changes: () => [mf("MaX-fOrWaRdS: 0068"), received("branch=390skdjuw")],
    topVia: sameUnfolded,
  },
  {
    name: "RFC 4475 3.1.1.2 intmeth: unknown method of token chars, NUL/BEL/DEL in a quoted string",
    fixture: "intmeth",
    changes: () => [mf("Max-Forwards: 255"), received("branch=z9hG4bK-.!%66*_+`'~")],
  },
  {
    name: "RFC 4475 3.1.1.3 esc01: % escapes in Request-URI, To, From, Contact",
    fixture: "esc01",
    changes: () => [mf("Max-Forwards: 87"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.1.1.4 escnull: %00 in user parts",
    fixture: "escnull",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.1.1.5 esc02: % that is not an escape (method RE%47IST%45R)",
    fixture: "esc02",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bK209%fzsnel234")],
  },
  {
    name: "RFC 4475 3.1.1.6 lwsdisp: no LWS between display name and <",
    fixture: "lwsdisp",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.1.1.7 longreq: long values, 34 Via fields",
    fixture: "longreq",
    changes: () => [mf("Max-Forwards: 70"), received("Via: SIP/2.0/TCP sip33.example.com")],
  },
  {
    name: "RFC 4475 3.1.1.9 semiuri: ; in the Request-URI user part",
    fixture: "semiuri",
    changes: () => [mf("Max-Forwards: 3"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.1.1.10 transports: UDP, SCTP, TLS, UNKNOWN, TCP Via",
    fixture: "transports",
    changes: () => [mf("Max-Forwards: 70"), received("t1.example.com;branch=z9hG4bKkdjuw")],
  },
  {
    name: "transports, with the unknown transport in the top Via",
    fixture: "transports_top",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKasd0f3en")],
  },
  {
    name: "RFC 4475 3.1.2.12 baddate: a Date with EST (proxies forward Date unchanged)",
    fixture: "baddate",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.1.2.13 regbadct: Contact URI with headers outside <> (not a proxy's field)",
    fixture: "regbadct",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.1.2.14 badaspec: spaces inside <> in To (not a proxy's field)",
    fixture: "badaspec",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKkdju43234")],
  },
  {
    // RFC 4475 suggests rejecting or repairing this; RFC 3261 §16.3 step 1 (normative) says a
    // proxy leaves components it does not use unchanged, and a stateless proxy cannot repair
    // From/To without breaking the dialog's identifiers.
    name: "RFC 4475 3.1.2.15 baddn: unquoted display names with non-token chars (not a proxy's)",
    fixture: "baddn",
    changes: () => [mf("Max-Forwards:      70"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.2.1 badbranch: branch is just the magic cookie",
    fixture: "badbranch",
    changes: () => [mf("Max-Forwards: 3"), received("branch=z9hG4bK")],
  },
  {
    name: "RFC 4475 3.3.4 unksm2: unknown URI schemes in To, From, Contact",
    fixture: "unksm2",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.3.6 invut: unknown Content-Type (a proxy does not look at bodies)",
    fixture: "invut",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.3.7 regaut01: unknown Authorization scheme",
    fixture: "regaut01",
    changes: () => [mf("Max-Forwards: 8"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.3.12 cparam01: Contact header parameter",
    fixture: "cparam01",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.3.13 cparam02: Contact URI parameter",
    fixture: "cparam02",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.3.14 regescrt: Contact URI with an escaped Route header",
    fixture: "regescrt",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.3.15 sdp01: unacceptable Accept",
    fixture: "sdp01",
    changes: () => [mf("Max-Forwards: 5"), received("branch=z9hG4bKkdjuw")],
  },
  {
    name: "RFC 4475 3.4.1 inv2543: RFC 2543 syntax (no branch, no tag, no Max-Forwards)",
    fixture: "inv2543",
    changes: () => [
      ["SIP/2.0\r\n", "SIP/2.0\r\nMax-Forwards: 70\r\n"],
      received("Via: SIP/2.0/UDP iftgw.example.com"),
    ],
  },
  {
    name: "RFC 5118 4.1 ipv6-good",
    fixture: "ipv6-good",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKas3-111")],
  },
  {
    name: "RFC 5118 4.3 port-ambiguous: [2001:db8::10:5070] is an address without port",
    fixture: "port-ambiguous",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKas3-111")],
  },
  {
    name: "RFC 5118 4.4 port-unambiguous: [2001:db8::10]:5070",
    fixture: "port-unambiguous",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKas3-111")],
  },
  {
    name: "RFC 5118 4.6 ipv6-in-sdp",
    fixture: "ipv6-in-sdp",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKas3-111")],
  },
  {
    name: "RFC 5118 4.7 mult-ip-in-header: IPv6 and IPv4 Via, received with IPv4",
    fixture: "mult-ip-in-header",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKas3-111")],
  },
  {
    name: "RFC 5118 4.8 mult-ip-in-sdp",
    fixture: "mult-ip-in-sdp",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKas3-111")],
  },
  {
    name: "RFC 5118 4.9 ipv4-mapped-ipv6",
    fixture: "ipv4-mapped-ipv6",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKbh19")],
  },
  {
    name: 'RFC 5118 4.10 ipv6-bug-abnf-3-colons ("must tolerate")',
    fixture: "ipv6-bug-abnf-3-colons",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKas3-111")],
  },
  {
    name: "RFC 5118 4.10 ipv6-correct-abnf-2-colons",
    fixture: "ipv6-correct-abnf-2-colons",
    changes: () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKas3-111")],
  },
];

/** A message sipedge must answer itself (RFC 3261 §16.3 steps 1–3, 6; §8.2.6; §18.3). */
interface AnswerCase {
  name: string;
  fixture: string;
  status: number;
  reason: RegExp;
  closes?: boolean;
  headers?: Record<string, string>;
}

const ANSWERED: AnswerCase[] = [
  {
    // RFC 4475: "there is no way to know how many octets" → on TCP, 400 and close.
    name: "RFC 4475 3.1.2.3 ncl: negative Content-Length → 400, close",
    fixture: "ncl",
    status: 400,
    reason: /Content-Length/,
    closes: true,
  },
  {
    name: "RFC 4475 3.3.9 mcl01: two different Content-Length values → 400, close",
    fixture: "mcl01",
    status: 400,
    reason: /Content-Length/,
    closes: true,
  },
  {
    // CSeq is what sipedge copies into its responses and hashes into the branch: malformed.
    name: "RFC 4475 3.1.2.4 scalar02: CSeq > 2**32-1 → 400",
    fixture: "scalar02",
    status: 400,
    reason: /CSeq/,
  },
  {
    // To is copied into every response sipedge makes, so it must parse (§16.3 step 1).
    name: "RFC 4475 3.1.2.6 quotbal: unterminated quoted string in To → 400",
    fixture: "quotbal",
    status: 400,
    reason: /To/,
  },
  {
    name: "RFC 4475 3.1.2.7 ltgtruri: Request-URI in <> → 400",
    fixture: "ltgtruri",
    status: 400,
    reason: /Request-URI|request line/i,
  },
  {
    name: "RFC 4475 3.1.2.8 lwsruri: LWS in the Request-URI → 400",
    fixture: "lwsruri",
    status: 400,
    reason: /Request-URI|request line/i,
  },
  {
    name: "RFC 4475 3.1.2.9 lwsstart: several SP between request line elements → 400",
    fixture: "lwsstart",
    status: 400,
    reason: /request line/i,
  },
  {
    // "acceptable to reject"; a proxy that forwards must strip the SPs. sipedge rejects.
    name: "RFC 4475 3.1.2.10 trws: SP after the SIP version → 400",
    fixture: "trws",
    status: 400,
    reason: /request line|version/i,
  },
  {
    name: "RFC 4475 3.1.2.16 badvers: SIP/7.0 → 505",
    fixture: "badvers",
    status: 505,
    reason: /Version Not Supported/,
  },
  {
    name: "RFC 4475 3.1.2.17 mismatch01: CSeq method differs from the method → 400",
    fixture: "mismatch01",
    status: 400,
    reason: /CSeq/,
  },
  {
    name: "RFC 4475 3.1.2.18 mismatch02: unknown method, CSeq method differs → 400",
    fixture: "mismatch02",
    status: 400,
    reason: /CSeq/,
  },
  {
    name: "RFC 4475 3.3.1 insuf: no From, To, Call-ID → 400",
    fixture: "insuf",
    status: 400,
    reason: /Missing/,
  },
  {
    name: "RFC 4475 3.3.5 bext01: Proxy-Require nothing supports → 420 with Unsupported",
    fixture: "bext01",
    status: 420,
    reason: /Bad Extension/,
    headers: { unsupported: "noProxiesSupportThis, norDoAnyProxiesSupportThis" },
  },
  {
    name: "RFC 4475 3.3.8 multi01: several Call-ID, To, From, CSeq, Max-Forwards → 400",
    fixture: "multi01",
    status: 400,
    reason: /Multiple/,
  },
  {
    name: "RFC 5118 4.2 ipv6-bad: IPv6 Request-URI host without brackets → 400",
    fixture: "ipv6-bad",
    status: 400,
    reason: /Request-URI/,
  },
];

// --- the battery -----------------------------------------------------------------------------

Deno.test({
  name: "torture: RFC 4475 / RFC 5118 messages and framing edge cases over TCP",
  // One sipedge and one UAS live across the steps, with their sockets.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    await using env = await Torture.start();
    const step = (name: string, fn: () => Promise<void>) =>
      t.step(name, async () => {
        try {
          await fn();
          // Whatever the case was, the next request on a new connection is served.
          await env.assertServing();
        } catch (error) {
          if (error instanceof Error) {
            error.message += `\n--- sipedge output (tail) ---\n${env.outputTail()}`;
          }
          throw error;
        }
      });
    const vars = () => ({ UAS: env.uasAddress });

    // --- forwarded -------------------------------------------------------------------------

    for (const c of FORWARDED) {
      await step(`forwarded: ${c.name}`, async () => {
        await env.expectForwarded(message(c.fixture, vars()), c.changes, c.topVia);
      });
    }

    await step(
      "forwarded: RFC 4475 3.1.1.11 mpart01: multipart body with binary part",
      async () => {
        const request = message("mpart01", vars());
        const atUas = await env.expectForwarded(request, (port) => [
          mf("Max-Forwards: 70"),
          // rport present: received goes in even though sent-by is the source IP (RFC 3581 §4).
          rport(port),
        ]);
        const sent = SipMessage.parse(request);
        assert.deepEqual([...atUas.message.body], [...sent.body], "body intact");
      },
    );

    await step("forwarded: RFC 4475 3.1.1.8 dblreq: two messages back to back, both", async () => {
      const [register, invite] = fixture("dblreq");
      await using uac = await TestUac.connect(env.port);
      const mark = env.uas.messages.length;
      await uac.send(concatBytes(register, "\r\n", invite));
      const [first, second] = await env.uas.waitForMessages(mark + 2).then((m) => m.slice(mark));
      const ours1 = env.assertForwarded(
        first,
        applyChanges(latin1(register), [
          mf("Max-Forwards: 8"),
          received("branch=z9hG4bKkdjuw23492"),
        ]),
      );
      const ours2 = env.assertForwarded(
        second,
        applyChanges(latin1(invite), [
          mf("Max-Forwards: 8"),
          received("branch=z9hG4bKkdjuw380234"),
        ]),
      );
      const [r1, r2] = await uac.nextMessages(2);
      env.assertRelayed(r1, first, ours1);
      env.assertRelayed(r2, second, ours2);
    });

    // RFC 3261 §7.3.1 / §25.1: LWS, folding included, may appear around the Via separators; the
    // top Via is the one a proxy reads (to add received) and the one a response goes back by.
    await step("forwarded: a top Via folded over two lines", async () => {
      const request = buildRequest({
        via: "SIP/2.0/TCP\r\n client.invalid:5099;branch=z9hG4bKfolded1",
      });
      await env.expectForwarded(
        request.bytes,
        () => [mf("Max-Forwards: 70"), received("branch=z9hG4bKfolded1")],
        sameUnfolded,
      );
    });

    await step("forwarded: a top Via with LWS around / and ; (one line)", async () => {
      const request = buildRequest({
        via: "SIP  /  2.0  /  TCP   client.invalid:5099 ;  branch = z9hG4bKlws1",
      });
      await env.expectForwarded(request.bytes, () => [
        mf("Max-Forwards: 70"),
        received("branch = z9hG4bKlws1"),
      ]);
    });

    await step("forwarded: %00 in the Request-URI user part", async () => {
      const request = buildRequest({ uri: "sip:null-%00-null@example.com" });
      await env.expectForwarded(request.bytes, (port) => [mf("Max-Forwards: 70"), rport(port)]);
    });

    await step("forwarded: the top Via in compact form (v:), below the other headers", async () => {
      const request = buildRequest({
        omit: ["Via"],
        headers: ["v: SIP/2.0/TCP client.invalid:5099;branch=z9hG4bKcompact1"],
      });
      await env.expectForwarded(request.bytes, () => [
        mf("Max-Forwards: 70"),
        received("branch=z9hG4bKcompact1"),
      ]);
    });

    // Any header field may be folded (RFC 3261 §7.3.1), Content-Length too; its value is 5.
    await step("forwarded: Content-Length folded onto a continuation line", async () => {
      const request = buildRequest({ method: "MESSAGE", body: "hello" });
      const bytes = latin1Bytes(
        latin1(request.bytes).replace("Content-Length: 5\r\n", "Content-Length:\r\n 5\r\n"),
      );
      await env.expectForwarded(bytes, (port) => [
        mf("Max-Forwards: 70"),
        rport(port),
      ]);
    });

    await step("forwarded: 3,000 header lines", async () => {
      const request = buildRequest({
        method: "MESSAGE",
        headers: Array.from({ length: 3000 }, (_, i) => `X-H${i}: v${i}`),
        body: "many",
      });
      await env.expectForwarded(request.bytes, (port) => [
        mf("Max-Forwards: 70"),
        rport(port),
      ]);
    });

    await step("relayed: a response whose next Via (the client's) is folded", async () => {
      const request = buildRequest({ via: "SIP/2.0/TCP client.invalid:5099;branch=z9hG4bKrf1" });
      env.responders.set(request.callId, (m) => {
        // The UAS folds the client's Via line (LWS is equivalent, §7.3.1).
        const text = latin1(buildResponse(m, 200));
        return latin1Bytes(
          text.replace("Via: SIP/2.0/TCP client.invalid", "Via: SIP/2.0/TCP\r\n client.invalid"),
        );
      });
      await env.expectForwarded(request.bytes, () => [
        mf("Max-Forwards: 70"),
        received("branch=z9hG4bKrf1"),
      ]);
    });

    // RFC 3261 §18.2.1: a server MUST put the packet's source address in `received`; a value
    // the sender wrote itself must not survive (else a response that cannot go back over the
    // connection goes where the sender said: reflection).
    for (const name of ["via-received-param-with-delim", "via-received-param-no-delim"]) {
      await step(`forwarded: RFC 5118 4.5 ${name}: received is the source address`, async () => {
        await env.expectForwarded(message(name), () => [mf("Max-Forwards: 70")], (line) => {
          const params = line.split(";").slice(1).map((p) => p.trim());
          assert.deepEqual(
            params.filter((p) => /^received=/i.test(p)),
            ["received=127.0.0.1"],
            `top Via at the UAS: ${line}`,
          );
          assert.ok(params.some((p) => /^branch=z9hG4bKas3/.test(p)), line);
          assert.ok(line.startsWith("Via: SIP/2.0/UDP [2001:db8::9:1];"), line);
        });
      });
    }

    // RFC 4475 3.1.2.11: "If the element is a proxy, the escaped headers MUST NOT appear in the
    // Request-URI of the forwarded request (and most certainly must not be translated into the
    // actual header of the forwarded request)". 400 is the other acceptable answer (§19.1.1:
    // headers are not allowed in a Request-URI).
    await step("RFC 4475 3.1.2.11 escruri: 400, or forwarded without the URI headers", async () => {
      const request = message("escruri");
      await using uac = await TestUac.connect(env.port);
      const mark = env.uas.messages.length;
      await uac.send(request);
      const outcome = await env.outcome(uac, mark);
      if (outcome.kind === "answered") {
        assert.equal(outcome.reply.status, 400, outcome.reply.startLine);
        return;
      }
      assert.equal(outcome.kind, "forwarded", describe(outcome));
      if (outcome.kind !== "forwarded") return;
      const fwd = outcome.atUas.message;
      assert.doesNotMatch(fwd.uri, /\?/, `forwarded Request-URI: ${fwd.uri}`);
      assert.deepEqual(fwd.headers("route"), [], "no Route made from the URI's headers");
    });

    // RFC 3261 §20.22: Max-Forwards is 0-255; RFC 4475 3.1.2.4: "If only the Max-Forwards field
    // were in error, the element could choose to process the request as if the field were
    // absent". Sane: 400, or forwarded with one Max-Forwards below the value received.
    for (const value of ["300", "99999999999"]) {
      await step(
        `Max-Forwards: ${value} (too big): 400, or forwarded decremented/clamped`,
        async () => {
          const request = buildRequest({ method: "INVITE", omit: ["Max-Forwards"] });
          const bytes = latin1Bytes(
            request.headText.replace("\r\nFrom:", `\r\nMax-Forwards: ${value}\r\nFrom:`),
          );
          await using uac = await TestUac.connect(env.port);
          const mark = env.uas.messages.length;
          await uac.send(bytes);
          const outcome = await env.outcome(uac, mark);
          if (outcome.kind === "answered") {
            assert.equal(outcome.reply.status, 400, outcome.reply.startLine);
            assert.notEqual(outcome.reply.reason, "");
            return;
          }
          assert.equal(outcome.kind, "forwarded", describe(outcome));
          if (outcome.kind !== "forwarded") return;
          const mfs = outcome.atUas.message.headers("max-forwards");
          assert.equal(mfs.length, 1, `Max-Forwards at the UAS: ${mfs}`);
          assert.match(mfs[0], /^[0-9]+$/);
          assert.ok(Number(mfs[0]) < Number(value), `Max-Forwards ${mfs[0]} after ${value}`);
          assert.equal((await uac.nextMessage()).status, 200);
        },
      );
    }

    // --- answered by sipedge ---------------------------------------------------------------

    for (const c of ANSWERED) {
      await step(`answered: ${c.name}`, async () => {
        await env.expectAnswered(message(c.fixture), c.status, c.reason, c);
      });
    }

    // RFC 3261 §8.2.6.2: "the UAS MUST add a tag to the To header field in the response" (but
    // a 100); sipedge's answers to malformed requests do, its answers to framing errors do not.
    await step(
      "answered: framing-error answers (400, 513) have a To tag like the others",
      async () => {
        const answers = [
          await env.expectAnswered(message("ncl"), 400, /Content-Length/, { closes: true }),
          await env.expectAnswered(
            buildRequest({ method: "MESSAGE", contentLength: 70_000 }).bytes,
            513,
            /Too Large/,
            { closes: true },
          ),
          await env.expectAnswered(message("mismatch01"), 400, /CSeq/),
        ];
        assert.deepEqual(
          answers.map((r) => `${r.startLine} / To: ${r.header("to")}`).filter((l) =>
            !/;tag=/.test(l)
          ),
          [],
          "answers without a To tag",
        );
      },
    );

    // RFC 3261 §16.3 step 3: Max-Forwards 0 → 483, but an OPTIONS the proxy MAY answer itself.
    await step(
      "answered: RFC 4475 3.3.11 zeromf: OPTIONS with Max-Forwards 0 → 200 or 483",
      async () => {
        const request = message("zeromf");
        await using uac = await TestUac.connect(env.port);
        const mark = env.uas.messages.length;
        await uac.send(request);
        const outcome = await env.outcome(uac, mark);
        assert.equal(outcome.kind, "answered", describe(outcome));
        if (outcome.kind !== "answered") return;
        assert.ok([200, 483].includes(outcome.reply.status), outcome.reply.startLine);
        assert.equal(outcome.reply.header("server"), "sipedge");
      },
    );

    // A scheme sipedge does not carry (not sip, sips or tel) gets 416 (RFC 3261 §16.3 step 2),
    // checked before routing: from a client, where --forward would route anything, and with no
    // route (from the upstream itself, on the connection sipedge opened to the UAS).
    for (const name of ["unkscm", "novelsc"]) {
      await step(`answered: RFC 4475 ${name} from a client (--forward) → 416`, async () => {
        await env.expectAnswered(message(name), 416, /^Unsupported URI Scheme$/);
      });
    }
    for (const name of ["unkscm", "novelsc"]) {
      await step(`answered: RFC 4475 ${name} from the upstream (no route) → 416`, async () => {
        const connection = await env.upstreamConnection();
        const request = SipMessage.parse(message(name));
        const mark = env.uas.messages.length;
        await env.uas.sendOn(connection, request.bytes);
        const { message: reply } = await env.uas.waitFor(
          (m) => !m.isRequest && m.callId === request.callId,
        );
        assert.equal(reply.startLine, "SIP/2.0 416 Unsupported URI Scheme");
        assert.equal(reply.header("server"), "sipedge");
        assert.deepEqual(reply.headers("via"), request.headers("via"));
        assert.equal(env.uas.messages.slice(mark).filter((m) => m.message.isRequest).length, 0);
      });
    }

    // Never an answer to an ACK (RFC 3261 §17.2.1, §16.3): malformed ACKs are dropped.
    const acks: [string, Uint8Array][] = [
      ["CSeq method mismatch", buildRequest({ method: "ACK", cseqMethod: "INVITE" }).bytes],
      ["SIP/7.0", buildRequest({ method: "ACK", version: "SIP/7.0" }).bytes],
      ["no From", buildRequest({ method: "ACK", omit: ["From"] }).bytes],
      ["Max-Forwards 0", buildRequest({ method: "ACK", maxForwards: 0 }).bytes],
      ["Proxy-Require", buildRequest({ method: "ACK", headers: ["Proxy-Require: foo"] }).bytes],
      ["Request-URI in <>", buildRequest({ method: "ACK", uri: "<sip:bob@example.com>" }).bytes],
    ];
    for (const [what, bytes] of acks) {
      await step(`silent: a malformed ACK (${what}) gets no answer`, () => env.expectSilent(bytes));
    }

    // --- responses from the UAS ------------------------------------------------------------

    /** The client sends `request`; the UAS answers `answer(request at the UAS)`. */
    const relay = async (request: Uint8Array, answer: Responder) => {
      const sent = SipMessage.parse(request);
      env.responders.set(sent.callId, answer);
      const uac = await TestUac.connect(env.port); // the caller closes it
      const mark = env.uas.messages.length;
      await uac.send(request);
      const atUas = await env.uas.waitForCallId(sent.callId).then((r) => {
        assert.ok(env.uas.messages.indexOf(r) >= mark);
        return r;
      });
      const ours = [...latin1(atUas.message.bytes).matchAll(env.ourVia)][0][0].slice(2);
      return { uac, atUas, ours };
    };

    for (const name of ["unreason", "noreason"]) {
      await step(`relayed: RFC 4475 ${name} (response from the UAS)`, async () => {
        const callId = name === "unreason"
          ? "unreason.1234ksdfak3j2erwedfsASdf"
          : "noreason.asndj203insdf99223ndf";
        const request = buildRequest({ method: "INVITE", callId, cseq: 35 });
        const { uac, atUas, ours } = await relay(
          request.bytes,
          (m) => message(name, { VIAS: rawVias(m) }),
        );
        try {
          env.assertRelayed(await uac.nextMessage(), atUas, ours);
        } finally {
          await uac.close();
        }
      });
    }

    // A stateless proxy reads only the Via of a response (RFC 3261 §16.11); the values RFC 4475
    // says make the UAC discard it are end-to-end, so it is relayed unchanged.
    await step(
      "relayed: RFC 4475 3.1.2.5 scalarlg: overlarge CSeq, Retry-After, Warning",
      async () => {
        const callId = "scalarlg.noase0of0234hn2qofoaf0232aewf2394r";
        const request = buildRequest({ callId });
        const { uac, atUas, ours } = await relay(
          request.bytes,
          (m) => message("scalarlg", { VIAS: rawVias(m) }),
        );
        try {
          env.assertRelayed(await uac.nextMessage(), atUas, ours);
        } finally {
          await uac.close();
        }
      },
    );

    // RFC 4475 3.1.2.19: a status code over 699 is dropped. The UAS sends it and then a 200 on
    // the same connection: the client must get the 200 only.
    for (
      const statusLine of ["SIP/2.0 4294967301 better not break the receiver", "SIP/2.0 700 Big"]
    ) {
      await step(`dropped: RFC 4475 bigcode response "${statusLine}"`, async () => {
        const callId = `bigcode.${statusLine.split(" ")[1]}.asdof3uj203asdnf3429uasdhfas3e`;
        const request = buildRequest({ method: "INVITE", callId });
        const { uac } = await relay(request.bytes, (m) => {
          const bad = latin1(message("bigcode", { VIAS: rawVias(m) })).replace(
            /^[^\r]*/,
            statusLine,
          );
          return concatBytes(bad, buildResponse(m, 200));
        });
        try {
          const first = await uac.nextMessage();
          assert.equal(first.startLine, "SIP/2.0 200 OK");
          await uac.expectNothing(100);
        } finally {
          await uac.close();
        }
      });
    }

    // --- framing ---------------------------------------------------------------------------

    // RFC 4475 3.1.2.2: over TCP "there's not much the receiving party could do but wait for the
    // next packet": no answer, nothing forwarded; the read timeout (2 s here) closes it.
    await step(
      "framing: RFC 4475 3.1.2.2 clerr: Content-Length past the end: wait, then close",
      async () => {
        await using uac = await TestUac.connect(env.port);
        const mark = env.uas.messages.length;
        const started = Date.now();
        await uac.send(message("clerr"));
        const frames = await uac.waitClosed(6000);
        const elapsed = Date.now() - started;
        assert.deepEqual(frames, [], "no answer to an incomplete message");
        assert.ok(elapsed >= 1500, `closed after ${elapsed} ms, before the read timeout`);
        assert.equal(env.uas.messages.length, mark, "nothing forwarded");
      },
    );

    const badLengths: [string, number, RegExp][] = [
      ["abc", 400, /Content-Length/],
      ["1 2", 400, /Content-Length/],
      ["+5", 400, /Content-Length/],
      ["0x10", 400, /Content-Length/],
      ["99999999999", 400, /Content-Length/],
      ["4294967296", 513, /Too Large/],
    ];
    for (const [value, status, reason] of badLengths) {
      await step(`framing: Content-Length "${value}" → ${status}, close`, async () => {
        const request = buildRequest({ method: "MESSAGE", contentLength: value, body: "hello" });
        await env.expectAnswered(request.bytes, status, reason, { closes: true });
      });
    }

    await step("framing: a CRLF before a request is ignored (RFC 3261 §7.5)", async () => {
      const request = buildRequest();
      await using uac = await TestUac.connect(env.port);
      await uac.send(concatBytes("\r\n", request.bytes));
      const response = await uac.nextMessage();
      assert.equal(response.callId, request.callId);
      await uac.expectNothing(100);
    });

    await step("framing: esc01 split in two at every byte offset", async () => {
      const request = message("esc01");
      await using uac = await TestUac.connect(env.port);
      const expected = applyChanges(latin1(request), [
        mf("Max-Forwards: 87"),
        received("branch=z9hG4bKkdjuw"),
      ]);
      for (let cut = 1; cut < request.length; cut++) {
        const mark = env.uas.messages.length;
        await uac.send(request.subarray(0, cut));
        await delay(1);
        await uac.send(request.subarray(cut));
        try {
          // The answer comes after the UAS read the request (no polling: this runs ~500 times).
          assert.equal((await uac.nextMessage()).status, 200);
          assert.equal(env.uas.messages.length, mark + 1);
          env.assertForwarded(env.uas.messages[mark], expected);
        } catch (error) {
          if (error instanceof Error) error.message = `split at ${cut}: ${error.message}`;
          throw error;
        }
      }
    });

    await step("framing: NUL bytes, CRLFs and a status line inside a body", async () => {
      const body = concatBytes(
        new Uint8Array([0, 0, 0, 13, 10, 13, 10, 0]),
        "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        new Uint8Array(256).map((_, i) => i),
        new Uint8Array([13, 10, 13, 10, 0]),
      );
      const request = buildRequest({
        method: "MESSAGE",
        headers: ["Content-Type: application/octet-stream"],
        body,
      });
      const atUas = await env.expectForwarded(
        request.bytes,
        (port) => [mf("Max-Forwards: 70"), rport(port)],
      );
      assert.deepEqual([...atUas.message.body], [...body]);
    });

    await step("framing: a 60 kB header value (under max_message_size) goes through", async () => {
      const value = Array.from({ length: 60_000 }, (_, i) => "abcdefghij"[i % 10]).join("");
      const request = buildRequest({ method: "MESSAGE", headers: [`X-Big: ${value}`] });
      await env.expectForwarded(
        request.bytes,
        (port) => [mf("Max-Forwards: 70"), rport(port)],
      );
    });

    /** A MESSAGE of exactly `size` bytes (padded with an X-Pad header). */
    const sized = (size: number) => {
      const id = crypto.randomUUID().slice(0, 8);
      const fields = {
        method: "MESSAGE",
        callId: `sized.${id}`,
        via: `SIP/2.0/TCP client.invalid:5099;branch=z9hG4bK${id};rport`,
        from: `<sip:alice@example.com>;tag=${id}`,
        body: "body",
      };
      const base = buildRequest({ ...fields, headers: ["X-Pad: "] });
      return buildRequest({
        ...fields,
        headers: [`X-Pad: ${"p".repeat(size - base.bytes.length)}`],
      });
    };

    await step(
      "framing: a message of exactly max_message_size (65535) bytes goes through",
      async () => {
        const request = sized(65535);
        assert.equal(request.bytes.length, 65535);
        await env.expectForwarded(
          request.bytes,
          (
            port,
          ) => [mf("Max-Forwards: 70"), rport(port)],
        );
      },
    );

    await step("framing: one byte over max_message_size → 513, close", async () => {
      const request = sized(65536);
      assert.equal(request.bytes.length, 65536);
      await env.expectAnswered(request.bytes, 513, /Too Large/, { closes: true });
    });

    await step("framing: a 70 kB header value (head over the limit) → 513, close", async () => {
      const request = buildRequest({
        method: "MESSAGE",
        headers: [`X-Big: ${"y".repeat(70_000)}`],
      });
      await env.expectAnswered(request.bytes, 513, /Too Large/, { closes: true });
    });

    await step("framing: Content-Length over the limit → 513 at once, close", async () => {
      const request = buildRequest({ method: "MESSAGE", contentLength: 70_000 });
      await env.expectAnswered(request.bytes, 513, /Too Large/, { closes: true });
    });

    await step("framing: 1,000 tiny requests pipelined in one write", async () => {
      const requests = Array.from({ length: 1000 }, (_, i) =>
        buildRequest({
          callId: `pipe${i}.${crypto.randomUUID().slice(0, 8)}`,
          via: `SIP/2.0/TCP c.invalid;branch=z9hG4bKp${i}`,
          from: `<sip:a@b>;tag=${i}`,
          to: "<sip:b@b>",
          uri: "sip:b@b",
        }));
      await using uac = await TestUac.connect(env.port);
      const mark = env.uas.messages.length;
      await uac.send(concatBytes(...requests.map((r) => r.bytes)));
      const responses = await uac.nextMessages(1000, 15_000);
      assert.ok(responses.every((r) => r.status === 200));
      assert.deepEqual(responses.map((r) => r.callId), requests.map((r) => r.callId), "in order");
      assert.equal(env.uas.messages.length - mark, 1000);
      await uac.expectNothing(100);
    });

    await step(
      "framing: not SIP at all (an HTTP request): no crash, connection closed",
      async () => {
        await using uac = await TestUac.connect(env.port);
        await uac.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        const frames = await uac.waitClosed(5000);
        for (const f of frames) {
          assert.equal(f.type, "message");
          if (f.type === "message") assert.equal(f.message.status, 400, f.message.startLine);
        }
      },
    );

    await step("framing: 8 kB of random bytes: no crash, connection closed", async () => {
      let seed = 4475;
      const junk = new Uint8Array(8192).map(() => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed >> 16 & 0xff;
      });
      await using uac = await TestUac.connect(env.port);
      const mark = env.uas.messages.length;
      await uac.send(junk).catch(() => {});
      await uac.waitClosed(6000);
      assert.equal(env.uas.messages.length, mark, "nothing forwarded");
    });

    // --- still alive -----------------------------------------------------------------------

    await step("after the battery: sipedge runs and answers an OPTIONS to itself", async () => {
      assert.equal(env.exited, false, "sipedge exited");
      await using uac = await TestUac.connect(env.port);
      const options = buildRequest({
        uri: `sip:127.0.0.1:${env.port}`,
        to: `<sip:127.0.0.1:${env.port}>`,
      });
      await uac.send(options.bytes);
      const reply = await uac.nextMessage();
      assert.equal(reply.startLine, "SIP/2.0 200 OK");
      assert.equal(reply.header("server"), "sipedge");
      assert.equal(reply.callId, options.callId);
      assert.doesNotMatch(env.proxy.output(), /Uncaught|TypeError|RangeError|ReferenceError/);
    });
  },
});
