/**
 * Writes docs/configuration.md from the settings tables (`deno task config-docs`), or with
 * `--check` exits 1 when the file is out of date. The text is {@link renderConfigDocs}.
 * @module
 */
import { renderConfigDocs } from "../core/config/reference.ts";

const path = new URL("../docs/configuration.md", import.meta.url);
const text = await renderConfigDocs();
if (Deno.args.includes("--check")) {
  const current = await Deno.readTextFile(path).catch(() => "");
  if (current !== text) {
    console.error("docs/configuration.md is out of date: run `deno task config-docs`");
    Deno.exit(1);
  }
} else {
  await Deno.writeTextFile(path, text);
  console.log("wrote docs/configuration.md");
}
