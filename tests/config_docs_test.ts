import assert from "node:assert/strict";
import { renderConfigDocs } from "../core/config/reference.ts";

Deno.test("docs/configuration.md is generated from the current settings tables", async () => {
  const current = await Deno.readTextFile(new URL("../docs/configuration.md", import.meta.url));
  assert.equal(current, await renderConfigDocs(), "run `deno task config-docs`");
});
