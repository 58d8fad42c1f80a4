import assert from "node:assert/strict";
import { startMemoryTrim } from "./memory_trim.ts";

Deno.test({
  name: "memory trim: glibc's malloc_trim gives freed native memory back",
  ignore: Deno.build.os !== "linux",
  fn() {
    const trimmer = startMemoryTrim({ intervalMs: 60_000 });
    assert.ok(trimmer !== undefined, "malloc_trim is reachable with --allow-ffi on glibc");
    try {
      const { before, after } = trimmer.trim();
      assert.ok(before > 0 && after > 0);
      assert.ok(after <= before + 4 * 1024 * 1024, `${before} → ${after}`);
    } finally {
      trimmer.stop();
    }
  },
});
