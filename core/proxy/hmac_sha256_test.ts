import assert from "node:assert/strict";
import fc from "fast-check";
import { createHash, createHmac } from "node:crypto";
import { HmacSha256, sha256 } from "./hmac_sha256.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("HmacSha256 and sha256 agree with node:crypto (property)", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 150 }),
      fc.uint8Array({ maxLength: 55 }),
      (key, message) => {
        const out = new Uint8Array(32);
        new HmacSha256(key).sign(message, out, 0);
        assert.equal(hex(out), createHmac("sha256", key).update(message).digest("hex"));
        assert.equal(hex(sha256(key)), createHash("sha256").update(key).digest("hex"));
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("HmacSha256: RFC 4231 test case 2, and a MAC cut short at an offset", () => {
  const mac = new HmacSha256(new TextEncoder().encode("Jefe"));
  const message = new TextEncoder().encode("what do ya want for nothing?");
  const out = new Uint8Array(32);
  mac.sign(message, out, 0);
  assert.equal(hex(out), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  const short = new Uint8Array(14);
  mac.sign(message, short, 3, 11);
  assert.equal(hex(short.subarray(3)), "5bdcc146bf60754e6a0424");
  assert.throws(() => mac.sign(new Uint8Array(56), out, 0), RangeError);
});
