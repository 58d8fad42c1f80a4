/** Tests of the SIP stream framer (RFC 3261 §18.3, RFC 5626 §3.5.1). */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type Frame, StreamFramer } from "./stream_framer.ts";
import { latin1Decode, latin1Encode } from "./latin1.ts";
import { CONTENT_LENGTH_INVALID, parseHead } from "./parse_head.ts";

/** A frame reduced to plain data (message bytes copied: they are only valid in the callback). */
type Seen =
  | { type: "message"; text: string; bodyStart: number; start: string }
  | { type: "ping" }
  | { type: "error"; status: number; reason: string; start: string | undefined };

function snapshot(frame: Frame): Seen {
  switch (frame.type) {
    case "message":
      return {
        type: "message",
        text: latin1Decode(frame.bytes),
        bodyStart: frame.bodyStart,
        start: startOf(frame.head.isRequest, frame.head.method, frame.head.status),
      };
    case "ping":
      return { type: "ping" };
    case "error":
      return {
        type: "error",
        status: frame.status,
        reason: frame.reason,
        start: frame.head === undefined
          ? undefined
          : startOf(frame.head.isRequest, frame.head.method, frame.head.status),
      };
  }
}

function startOf(isRequest: boolean, method: string, status: number): string {
  return isRequest ? method : String(status);
}

const bytes = (text: string) => latin1Encode(text);

/**
 * Feeds `chunks` one after the other through one reused buffer (the caller may reuse a chunk
 * after feed returns, so it is scribbled over after every call) and returns the frames.
 */
function feedAll(
  framer: StreamFramer,
  chunks: Uint8Array[],
  results?: boolean[],
): Seen[] {
  const seen: Seen[] = [];
  const max = Math.max(1, ...chunks.map((c) => c.length));
  const scratch = new Uint8Array(max);
  for (const chunk of chunks) {
    scratch.set(chunk);
    const view = scratch.subarray(0, chunk.length);
    const ok = framer.feed(view, (frame) => seen.push(snapshot(frame)));
    results?.push(ok);
    scratch.fill(0xee);
  }
  return seen;
}

function frame(text: string, options: { max?: number; chunks?: number[] } = {}): Seen[] {
  const framer = new StreamFramer({ maxMessageSize: options.max ?? 65535 });
  return feedAll(framer, split(bytes(text), options.chunks ?? []));
}

/** Splits `data` at the given offsets (sorted, deduplicated, clamped). */
function split(data: Uint8Array, points: number[]): Uint8Array[] {
  const cuts = [...new Set(points.map((p) => Math.max(0, Math.min(data.length, p))))]
    .sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const cut of cuts) {
    if (cut > from) out.push(data.subarray(from, cut));
    from = Math.max(from, cut);
  }
  if (from < data.length || out.length === 0) out.push(data.subarray(from));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function request(method: string, body = "", extra = ""): string {
  return `${method} sip:bob@example.com SIP/2.0\r\n` +
    `Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK${method}\r\n` +
    `Call-ID: c-${method}\r\n` +
    `CSeq: 1 ${method}\r\n` +
    extra +
    `Content-Length: ${body.length}\r\n\r\n${body}`;
}

function message(text: string, start: string): Seen {
  return { type: "message", text, bodyStart: text.indexOf("\r\n\r\n") + 4, start };
}

const PING: Seen = { type: "ping" };

Deno.test("stream framer: one message", () => {
  const text = request("INVITE", "v=0\r\n");
  assert.deepEqual(frame(text), [message(text, "INVITE")]);
});

Deno.test("stream framer: a response", () => {
  const text = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\nl: 0\r\n\r\n";
  assert.deepEqual(frame(text), [message(text, "180")]);
});

Deno.test("stream framer: pipelined messages in one chunk", () => {
  const a = request("INVITE", "abc");
  const b = request("OPTIONS");
  const c = "SIP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
  assert.deepEqual(frame(a + b + c), [
    message(a, "INVITE"),
    message(b, "OPTIONS"),
    message(c, "200"),
  ]);
});

Deno.test("stream framer: a message split across chunks gives the same frames", async (t) => {
  const a = request("INVITE", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n");
  const b = request("BYE", "x");
  const text = a + "\r\n\r\n" + b;
  const expected = [message(a, "INVITE"), PING, message(b, "BYE")];
  await t.step("one byte at a time", () => {
    const all = bytes(text);
    const points = Array.from({ length: all.length }, (_, i) => i);
    assert.deepEqual(frame(text, { chunks: points }), expected);
  });
  await t.step("every single split point", () => {
    for (let i = 1; i < text.length; i++) {
      assert.deepEqual(frame(text, { chunks: [i] }), expected, `split at ${i}`);
    }
  });
  await t.step("every pair of split points", () => {
    for (let i = 1; i < text.length; i += 3) {
      for (let j = i + 1; j < text.length; j += 5) {
        assert.deepEqual(frame(text, { chunks: [i, j] }), expected, `split at ${i}, ${j}`);
      }
    }
  });
});

Deno.test("stream framer: body bytes are handed out intact (binary, CRLFs, NULs)", () => {
  const body = new Uint8Array(256).map((_, i) => i);
  const head = bytes(
    "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n" +
      "Content-Type: application/octet-stream\r\nContent-Length: 256\r\n\r\n",
  );
  const data = concat([head, body]);
  for (const points of [[], [head.length], [head.length + 10], [3, head.length + 128, 300]]) {
    const framer = new StreamFramer({ maxMessageSize: 65535 });
    const frames: { body: Uint8Array; all: Uint8Array }[] = [];
    for (const chunk of split(data, points)) {
      framer.feed(chunk.slice(), (f) => {
        assert.equal(f.type, "message");
        if (f.type === "message") {
          frames.push({ body: f.bytes.slice(f.bodyStart), all: f.bytes.slice() });
        }
      });
    }
    assert.equal(frames.length, 1);
    assert.deepEqual(frames[0].body, body);
    assert.deepEqual(frames[0].all, data);
  }
});

Deno.test("stream framer: CRLF handling between messages", async (t) => {
  const a = request("OPTIONS");
  await t.step("leading single CRLF is skipped", () => {
    assert.deepEqual(frame("\r\n" + a), [message(a, "OPTIONS")]);
  });
  await t.step("a single CRLF between messages is no ping", () => {
    assert.deepEqual(frame(a + "\r\n" + a), [message(a, "OPTIONS"), message(a, "OPTIONS")]);
  });
  await t.step("a lone CRLF is no ping", () => {
    assert.deepEqual(frame("\r\n"), []);
  });
  await t.step("a double CRLF is exactly one ping", () => {
    assert.deepEqual(frame("\r\n\r\n"), [PING]);
    assert.deepEqual(frame(a + "\r\n\r\n" + a), [
      message(a, "OPTIONS"),
      PING,
      message(a, "OPTIONS"),
    ]);
  });
  await t.step("double CRLF split as CRLF | CRLF is one ping", () => {
    assert.deepEqual(frame("\r\n\r\n", { chunks: [2] }), [PING]);
    assert.deepEqual(frame("\r\n\r\n", { chunks: [1, 2, 3] }), [PING]);
    const framer = new StreamFramer({ maxMessageSize: 65535 });
    assert.deepEqual(feedAll(framer, [bytes(a + "\r\n"), bytes("\r\n")]), [
      message(a, "OPTIONS"),
      PING,
    ]);
  });
  await t.step("two pings in a row", () => {
    assert.deepEqual(frame("\r\n\r\n\r\n\r\n"), [PING, PING]);
    assert.deepEqual(frame("\r\n\r\n\r\n\r\n", { chunks: [5] }), [PING, PING]);
    // Three CRLFs: one ping, and the third CRLF counts towards the next one.
    assert.deepEqual(frame("\r\n\r\n\r\n"), [PING]);
  });
  await t.step("a ping does not leave the framer holding bytes", () => {
    const framer = new StreamFramer({ maxMessageSize: 65535 });
    feedAll(framer, [bytes("\r\n\r\n")]);
    assert.equal(framer.buffered, 0);
  });
});

Deno.test("stream framer: LF-only line endings are framed", () => {
  const text = "OPTIONS sip:bob@example.com SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\n" +
    "Content-Length: 2\n\nab";
  const frames = frame(text);
  assert.deepEqual(frames, [{
    type: "message",
    text,
    bodyStart: text.length - 2,
    start: "OPTIONS",
  }]);
  assert.deepEqual(frame(text, { chunks: [text.length - 3, text.length - 2] }), frames);
});

Deno.test("stream framer: missing Content-Length is a 400 and stops the framer", () => {
  const framer = new StreamFramer({ maxMessageSize: 65535 });
  const results: boolean[] = [];
  const text = "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n";
  const frames = feedAll(framer, [bytes(text), bytes(request("OPTIONS"))], results);
  assert.deepEqual(frames, [{
    type: "error",
    status: 400,
    reason: "Missing Content-Length",
    start: "OPTIONS",
  }]);
  assert.deepEqual(results, [false, false]);
  assert.equal(framer.buffered, 0);
});

Deno.test("stream framer: a failed framer ignores later input even when split", () => {
  const framer = new StreamFramer({ maxMessageSize: 65535 });
  const frames = feedAll(framer, [
    bytes("BYE sip:x SIP/2.0\r\nContent-Length: x\r\n\r\n"),
    bytes("\r\n\r\n"),
    bytes(request("BYE")),
  ]);
  assert.deepEqual(frames, [{
    type: "error",
    status: 400,
    reason: "Invalid Content-Length",
    start: "BYE",
  }]);
});

Deno.test("stream framer: invalid or conflicting Content-Length is a 400", async (t) => {
  for (
    const [name, header] of [
      ["not a number", "Content-Length: abc\r\n"],
      ["negative", "Content-Length: -1\r\n"],
      ["empty", "Content-Length:\r\n"],
      ["with a sign", "Content-Length: +3\r\n"],
      ["fractional", "Content-Length: 1.5\r\n"],
      ["conflicting values", "Content-Length: 3\r\nl: 4\r\n"],
    ]
  ) {
    await t.step(name, () => {
      const text = "INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: x\r\n" + header + "\r\nabcd";
      assert.deepEqual(frame(text), [{
        type: "error",
        status: 400,
        reason: "Invalid Content-Length",
        start: "INVITE",
      }]);
    });
  }
});

Deno.test("stream framer: compact `l:` Content-Length", () => {
  const text = "MESSAGE sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bK1\r\n" +
    "L: 5\r\n\r\nhello";
  assert.deepEqual(frame(text + text, { chunks: [text.length + 3] }), [
    message(text, "MESSAGE"),
    message(text, "MESSAGE"),
  ]);
});

Deno.test("stream framer: messages larger than maxMessageSize get 513", async (t) => {
  const max = 1024;
  await t.step("head too large and without its end", () => {
    const head = "INVITE sip:bob@example.com SIP/2.0\r\nSubject: " + "x".repeat(max) + "\r\n";
    const framer = new StreamFramer({ maxMessageSize: max });
    const results: boolean[] = [];
    const frames = feedAll(framer, split(bytes(head), [100, 600]), results);
    assert.deepEqual(frames, [{
      type: "error",
      status: 513,
      reason: "Message Too Large",
      start: "INVITE",
    }]);
    assert.equal(results.at(-1), false);
  });
  await t.step("head too large, no complete line: no head", () => {
    const frames = frame("INVITE sip:" + "x".repeat(max + 10), { max });
    assert.deepEqual(frames, [{
      type: "error",
      status: 513,
      reason: "Message Too Large",
      start: undefined,
    }]);
  });
  await t.step("head + body too large: 513 before the body arrives", () => {
    const text = request("MESSAGE", "b".repeat(max));
    const headOnly = text.slice(0, text.length - max);
    assert.deepEqual(frame(headOnly, { max }), [{
      type: "error",
      status: 513,
      reason: "Message Too Large",
      start: "MESSAGE",
    }]);
  });
  await t.step("exactly maxMessageSize is framed; one more byte is not", () => {
    let n = 0;
    while (request("MESSAGE", "b".repeat(n)).length < max) n++;
    const body = "b".repeat(n);
    const exact = request("MESSAGE", body);
    assert.equal(exact.length, max);
    assert.deepEqual(frame(exact, { max }), [message(exact, "MESSAGE")]);
    const over = request("MESSAGE", body + "b");
    assert.equal(over.length, max + 1);
    assert.equal(frame(over, { max })[0].type, "error");
  });
});

Deno.test("stream framer: `buffered` is 0 between messages and > 0 inside one", () => {
  const framer = new StreamFramer({ maxMessageSize: 65535 });
  const text = request("INVITE", "body!");
  const data = bytes(text + text);
  const frames: Frame["type"][] = [];
  framer.feed(data.slice(0, 10), (f) => frames.push(f.type));
  assert.equal(framer.buffered, 10);
  framer.feed(data.slice(10, text.length - 2), (f) => frames.push(f.type));
  assert.equal(framer.buffered, text.length - 2);
  framer.feed(data.slice(text.length - 2, text.length), (f) => frames.push(f.type));
  assert.equal(framer.buffered, 0);
  assert.deepEqual(frames, ["message"]);
  framer.feed(data.slice(text.length, text.length + 3), (f) => frames.push(f.type));
  assert.equal(framer.buffered, 3);
  framer.feed(data.slice(text.length + 3), (f) => frames.push(f.type));
  assert.equal(framer.buffered, 0);
  assert.deepEqual(frames, ["message", "message"]);
});

Deno.test("stream framer: a message before a framing error in the same chunk is still handed out", () => {
  const ok = request("OPTIONS");
  const bad = "OPTIONS sip:x SIP/2.0\r\nCall-ID: x\r\n\r\n";
  assert.deepEqual(frame(ok + bad + ok), [
    message(ok, "OPTIONS"),
    { type: "error", status: 400, reason: "Missing Content-Length", start: "OPTIONS" },
  ]);
});

// ---- property tests ----

const tokenChar = fc.constantFrom(
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
);
const token = fc.string({ unit: tokenChar, minLength: 1, maxLength: 12 });
const valueChar = fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f)
  .map((c) => String.fromCharCode(c));
const headerValue = fc.string({ unit: valueChar, maxLength: 40 }).map((v) => v.trim() || "v");

/** A random valid message: head (with Content-Length, maybe compact) and a binary body. */
const arbMessage = fc.record({
  isRequest: fc.boolean(),
  method: fc.constantFrom("INVITE", "ACK", "BYE", "OPTIONS", "MESSAGE", "X-CUSTOM"),
  status: fc.integer({ min: 100, max: 699 }),
  headers: fc.array(fc.tuple(token, headerValue), { maxLength: 6 }),
  compactLength: fc.boolean(),
  lfOnly: fc.boolean(),
  body: fc.uint8Array({ maxLength: 300 }),
  separator: fc.constantFrom("", "\r\n", "\r\n\r\n"),
}).map((m) => {
  const eol = m.lfOnly ? "\n" : "\r\n";
  let head = m.isRequest
    ? `${m.method} sip:u@example.com SIP/2.0${eol}`
    : `SIP/2.0 ${m.status} R${eol}`;
  for (const [name, value] of m.headers) {
    // Keep clear of Content-Length ("l" and "content-length" in any case).
    const safe = /^(l|content-length)$/i.test(name) ? `X-${name}` : name;
    head += `${safe}: ${value}${eol}`;
  }
  head += `${m.compactLength ? "l" : "Content-Length"}: ${m.body.length}${eol}${eol}`;
  const headBytes = bytes(head);
  const all = concat([bytes(m.separator), headBytes, m.body]);
  const expected: Seen[] = m.separator === "\r\n\r\n" ? [PING] : [];
  expected.push({
    type: "message",
    text: latin1Decode(concat([headBytes, m.body])),
    bodyStart: headBytes.length,
    start: m.isRequest ? m.method : String(m.status),
  });
  return { all, expected };
});

Deno.test("stream framer property: any split of valid messages gives the same frames", () => {
  fc.assert(
    fc.property(
      fc.array(arbMessage, { minLength: 1, maxLength: 5 }),
      fc.array(fc.nat(), { maxLength: 40 }),
      (messages, rawPoints) => {
        const data = concat(messages.map((m) => m.all));
        const expected = messages.flatMap((m) => m.expected);
        const points = rawPoints.map((p) => p % (data.length + 1));
        const framer = new StreamFramer({ maxMessageSize: 65535 });
        const results: boolean[] = [];
        const seen = feedAll(framer, split(data, points), results);
        assert.deepEqual(seen, expected);
        assert.ok(results.every((r) => r));
        assert.equal(framer.buffered, 0);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("stream framer property: arbitrary bytes in arbitrary chunks never throw", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 600 }),
        // Mostly-SIP-looking bytes reach deeper into the framer.
        fc.array(
          fc.constantFrom(
            "INVITE sip:a SIP/2.0\r\n",
            "Content-Length: 3\r\n",
            "l: 10\r\n",
            "Content-Length: 99999999999\r\n",
            "\r\n",
            "\n",
            "\r",
            "abc",
            "SIP/2.0 200 OK\n",
          ),
          { maxLength: 20 },
        ).map((parts) => bytes(parts.join(""))),
      ),
      fc.array(fc.nat(), { maxLength: 20 }),
      fc.integer({ min: 1, max: 700 }),
      (data, rawPoints, max) => {
        const framer = new StreamFramer({ maxMessageSize: max });
        let errors = 0;
        let afterError = 0;
        for (const chunk of split(data, rawPoints.map((p) => p % (data.length + 1)))) {
          framer.feed(chunk, (f) => {
            if (errors > 0) afterError++;
            if (f.type === "error") errors++;
            if (f.type === "message") {
              assert.ok(f.bytes.length <= max);
              assert.ok(f.bodyStart <= f.bytes.length);
            }
          });
        }
        assert.ok(errors <= 1);
        assert.equal(afterError, 0);
        assert.ok(framer.buffered <= Math.max(max, data.length));
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("stream framer: a lowered maxMessageSize (reload) applies from the next message", () => {
  const framer = new StreamFramer({ maxMessageSize: 65535 });
  const text = request("MESSAGE", "b".repeat(2000));
  const first = feedAll(framer, [bytes(text)], []);
  assert.equal(first.length, 1);
  assert.equal(first[0].type, "message");
  framer.maxMessageSize = 1024;
  const second = feedAll(framer, [bytes(text)], []);
  assert.deepEqual(second.map((f) => f.type === "error" && f.status), [513]);
});

Deno.test("stream framer property: a head framed from its bytes frames as the parser reads it", () => {
  // Content-Length lines in every spelling that matters to the byte scan (case, compact form,
  // white space, leading zeros, too many digits, stray CR, lookalike names), among other lines,
  // folding and bare LFs: the framer must answer exactly what the parser's Content-Length says,
  // and the head it hands out must be the parser's.
  const clName = fc.constantFrom(
    "Content-Length",
    "content-length",
    "CONTENT-LENGTH",
    "l",
    "L",
    "Content-Lengthx",
    "Content\rLength",
    "Content Length",
    "xl",
  );
  const clValue = fc.constantFrom("0", "5", "007", "12345678901", "1234567890", "", "+3", "5 5");
  const white = fc.constantFrom("", " ", "\t", "  ", " \t");
  const clLine = fc.tuple(clName, white, white, clValue, white).map(([n, w1, w2, v, w3]) =>
    `${n}${w1}:${w2}${v}${w3}`
  );
  const otherLine = fc.constantFrom(
    "Via: SIP/2.0/TCP h;branch=z9hG4bK1",
    "Call-ID: x",
    " folded continuation",
    "\tfolded",
    "No colon here",
    "CSeq: 1 OPTIONS",
  );
  const arbHead = fc.record({
    start: fc.constantFrom(
      "SIP/2.0 200 OK",
      "SIP/2.0 180 Ringing",
      "OPTIONS sip:a@b SIP/2.0",
      "Content-Length: 3",
    ),
    lines: fc.array(fc.oneof(clLine, otherLine), { maxLength: 6 }),
    eol: fc.constantFrom("\r\n", "\n"),
  });
  fc.assert(
    fc.property(arbHead, ({ start, lines, eol }) => {
      const headText = [start, ...lines].join(eol) + eol + eol;
      const expected = parseHead(headText);
      const body = "abcdefghij".repeat(2);
      const framer = new StreamFramer({ maxMessageSize: 65535 });
      const frames: Frame[] = [];
      const heads: unknown[] = [];
      framer.feed(bytes(headText + body), (f) => {
        frames.push(f);
        if (f.type === "message") heads.push(structuredClone(f.head));
      });
      const first = frames[0];
      if (expected.contentLength === -1 || expected.contentLength === CONTENT_LENGTH_INVALID) {
        assert.equal(first?.type === "error" && first.status, 400);
      } else if (headText.length + expected.contentLength > 65535) {
        assert.equal(first?.type === "error" && first.status, 513);
      } else if (expected.contentLength > body.length) {
        assert.equal(frames.length, 0); // waiting for the rest of the body
      } else {
        assert.equal(first?.type, "message");
        if (first.type === "message") {
          assert.equal(first.bytes.length, headText.length + expected.contentLength);
          assert.equal(first.bodyStart, headText.length);
        }
        assert.deepEqual(heads[0], structuredClone(expected));
      }
    }),
    { numRuns: 2000 },
  );
});
