/** Tests of the stateless-branch hash. */

import assert from "node:assert/strict";
import fc from "fast-check";
import { hash64, hash64Joined } from "./hash.ts";

Deno.test("hash64: values are stable across versions (branches of a running dialog survive an upgrade)", () => {
  // Computed with the implementation before hash64Joined existed.
  assert.equal(hash64(""), "811c9dc5000238a8");
  assert.equal(hash64("z9hG4bK-1|127.0.0.1|40000"), "988d07e315c6de12");
  assert.equal(hash64("\u00e9x|y|0"), "d0401797c3de983d");
});

Deno.test("hash64Joined is hash64 of the joined string (property)", () => {
  const number = fc.oneof(
    fc.constantFrom(0, 1, 9, 10, 99, 100, 5060, 65535, 100000),
    fc.integer({ min: 0, max: 0x7fffffff }),
  );
  fc.assert(
    fc.property(fc.string(), fc.string(), number, (a, b, n) => {
      assert.equal(hash64Joined(a, b, n), hash64(`${a}|${b}|${n}`));
    }),
    { numRuns: 2000 },
  );
  assert.equal(hash64Joined("z9hG4bK-1", "127.0.0.1", 40000), "988d07e315c6de12");
});
