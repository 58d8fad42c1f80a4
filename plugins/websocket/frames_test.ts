import assert from "node:assert/strict";
import fc from "fast-check";
import { CLOSE, closeFrame, encodeFrame, FrameReader, OPCODE, type ReadEvent } from "./frames.ts";

function read(chunks: Uint8Array[], options: { masked?: boolean; max?: number } = {}) {
  const reader = new FrameReader({
    expectMasked: options.masked ?? true,
    maxMessageSize: () => options.max ?? 1 << 20,
  });
  const events: ReadEvent[] = [];
  for (const chunk of chunks) {
    reader.feed(
      chunk,
      (e) => events.push(e.type === "message" ? { ...e, data: e.data.slice() } : e),
    );
  }
  return { events, reader };
}

function splitAt(data: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let at = 0;
  for (const p of points) {
    out.push(data.slice(at, p));
    at = p;
  }
  out.push(data.slice(at));
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

Deno.test("frames: lengths of 7, 16 and 64 bits round-trip, masked and not", () => {
  for (const size of [0, 1, 125, 126, 65535, 65536, 70000]) {
    const payload = new Uint8Array(size).map((_, i) => i * 7);
    for (const masked of [true, false]) {
      const { events } = read([encodeFrame(OPCODE.binary, payload, masked)], { masked });
      assert.equal(events.length, 1);
      const e = events[0] as Extract<ReadEvent, { type: "message" }>;
      assert.equal(e.type, "message");
      assert.equal(e.text, false);
      assert.deepEqual(e.data, payload);
    }
  }
});

Deno.test("frames: any split of any fragmentation of messages with pings between yields the messages", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 5 }),
      fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 5, maxLength: 5 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      (messages, fragments, cuts) => {
        const frames: Uint8Array[] = [];
        messages.forEach((m, i) => {
          const parts = fragments[i];
          const size = Math.ceil(m.length / parts) || 1;
          for (let f = 0; f < parts; f++) {
            const frame = encodeFrame(
              f === 0 ? OPCODE.text : OPCODE.continuation,
              m.subarray(f * size, (f + 1) * size),
              true,
            );
            if (f < parts - 1) frame[0] &= 0x7f;
            frames.push(frame);
            if (f === 0) frames.push(encodeFrame(OPCODE.ping, new Uint8Array([i]), true));
          }
        });
        const { events } = read(splitAt(concat(frames), cuts));
        const got = events.filter((e) => e.type === "message").map((e) =>
          (e as { data: Uint8Array }).data
        );
        assert.deepEqual(got, messages);
        assert.equal(events.filter((e) => e.type === "ping").length, messages.length);
      },
    ),
  );
});

Deno.test("frames: protocol errors and the size limit", () => {
  const payload = new TextEncoder().encode("OPTIONS sip:x SIP/2.0\r\n\r\n");
  const error = (chunks: Uint8Array[], options = {}) => {
    const { events } = read(chunks, options);
    const last = events.at(-1)!;
    assert.equal(last.type, "error", JSON.stringify(events));
    return last as Extract<ReadEvent, { type: "error" }>;
  };
  assert.equal(error([encodeFrame(OPCODE.text, payload, false)]).code, CLOSE.protocolError);
  assert.equal(
    error([encodeFrame(OPCODE.text, payload, true)], { masked: false }).code,
    CLOSE.protocolError,
  );
  const reserved = encodeFrame(OPCODE.text, payload, true);
  reserved[0] |= 0x40;
  assert.equal(error([reserved]).code, CLOSE.protocolError);
  assert.equal(error([encodeFrame(OPCODE.continuation, payload, true)]).code, CLOSE.protocolError);
  assert.equal(error([encodeFrame(0x3, payload, true)]).code, CLOSE.protocolError);
  const bigPing = encodeFrame(OPCODE.ping, new Uint8Array(126), true);
  assert.equal(error([bigPing]).code, CLOSE.protocolError);
  const tooBig = error([encodeFrame(OPCODE.text, new Uint8Array(2000), true)], { max: 1024 });
  assert.equal(tooBig.code, CLOSE.tooBig);
  // Only the header is needed to refuse: a huge announced length allocates nothing.
  const huge = encodeFrame(OPCODE.binary, new Uint8Array(70000), true).subarray(0, 14);
  assert.equal(error([huge], { max: 65535 }).code, CLOSE.tooBig);
  // Fragments count together.
  const first = encodeFrame(OPCODE.text, new Uint8Array(600), true);
  first[0] &= 0x7f;
  const second = encodeFrame(OPCODE.continuation, new Uint8Array(600), true);
  assert.equal(error([first, second], { max: 1024 }).code, CLOSE.tooBig);
});

Deno.test("frames: close frames carry code and reason; nothing is read after them", () => {
  const { events } = read([
    closeFrame(CLOSE.goingAway, "bye", true),
    encodeFrame(OPCODE.text, new Uint8Array(3), true),
  ]);
  assert.deepEqual(events, [{ type: "close", code: 1001, reason: "bye" }]);
  const empty = read([encodeFrame(OPCODE.close, new Uint8Array(0), true)]).events;
  assert.deepEqual(empty, [{ type: "close", code: 1005, reason: "" }]);
});
