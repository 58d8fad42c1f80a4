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
  fc.assert(
    fc.property(fc.string(), fc.string(), fc.string(), (a, b, c) => {
      assert.equal(hash64Joined(a, b, c), hash64(`${a}|${b}|${c}`));
    }),
    { numRuns: 2000 },
  );
  assert.equal(hash64Joined("z9hG4bK-1", "127.0.0.1", "40000"), "988d07e315c6de12");
});
