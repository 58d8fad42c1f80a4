/**
 * The hot path keeps its optimized code across garbage collections (core/keep_shape.ts): a
 * collection that reduces memory frees the maps of classes with no object alive, and V8
 * deoptimizes the code compiled against them ("embedded weak objects cleared"). The probe
 * (tests/support/shape_probe.ts) runs the request path hot, then forces collections under
 * `--optimize-for-size`, where every one reduces memory (sipedge's own flags leave that to V8's
 * memory reducer, which is not predictable enough for a test); a class of its own that is not kept
 * must be deoptimized by them (the control), sipedge's must not be.
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";

Deno.test("the request path keeps its optimized code across memory-reducing collections", async () => {
  const probe = fromFileUrl(new URL("./support/shape_probe.ts", import.meta.url));
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-read",
      // Not --trace-opt: background compiles would print between the collector's lines.
      "--v8-flags=--optimize-for-size,--expose-gc,--trace-deopt,--allow-natives-syntax",
      probe,
    ],
    cwd: fromFileUrl(new URL("..", import.meta.url)),
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  assert.match(text, /PROBE DONE/);
  const cleared = text.split("\n").filter((l) => l.includes("embedded weak objects cleared"));
  const names = cleared.map((l) => /SharedFunctionInfo ([^>]+)>/.exec(l)?.[1] ?? l);
  // The path was optimized at all (else there is nothing to lose) ...
  assert.match(text, /PROBE OPTIMIZED true/);
  // ... the control shows that collections do deoptimize code of an unkept class here ...
  assert.ok(
    names.some((n) => n === "Unkept" || n === "unkeptLength" || n === "unkeptWork"),
    `the control was not deoptimized: ${names.join(", ") || "nothing was"}`,
  );
  // ... and nothing of sipedge's was.
  const ours = names.filter((n) => !["Unkept", "unkeptLength", "unkeptWork", "run"].includes(n));
  assert.deepEqual(ours, [], `deoptimized by a collection: ${ours.join(", ")}`);
});
