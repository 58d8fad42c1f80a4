/** Tests of latin1 conversion: one byte is one UTF-16 code unit, both ways. */

import assert from "node:assert/strict";
import { latin1Decode, latin1Encode, latin1Write } from "./latin1.ts";

Deno.test("latin1Decode: every byte value is its own code unit, in views at any offset", () => {
  const all = new Uint8Array(256 + 16);
  for (let i = 0; i < 256; i++) all[i + 16] = i;
  const view = all.subarray(16); // a view that does not start at its buffer's start
  const text = latin1Decode(view);
  assert.equal(text.length, 256);
  for (let i = 0; i < 256; i++) assert.equal(text.charCodeAt(i), i);
  assert.equal(latin1Decode(view, 65, 68), "ABC");
  assert.equal(latin1Decode(view, 10, 10), "");
});

Deno.test("latin1Decode: views of different buffers, one after the other", () => {
  const a = latin1Encode("INVITE sip:a SIP/2.0\r\n");
  const b = new Uint8Array(64).fill(0x78);
  assert.equal(latin1Decode(a, 0, 6), "INVITE");
  assert.equal(latin1Decode(b, 0, 3), "xxx");
  assert.equal(latin1Decode(a.subarray(7), 0, 5), "sip:a");
});

Deno.test("latin1Write / latin1Encode round-trip through latin1Decode", () => {
  let text = "";
  for (let i = 0; i < 256; i++) text += String.fromCharCode(i);
  assert.equal(latin1Decode(latin1Encode(text)), text);
  const out = new Uint8Array(8).fill(0);
  assert.equal(latin1Write("\u00e9t\u00e9", out, 2), 5);
  assert.deepEqual([...out], [0, 0, 0xe9, 0x74, 0xe9, 0, 0, 0]);
});
