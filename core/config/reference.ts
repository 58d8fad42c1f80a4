/**
 * The configuration reference (docs/configuration.md), rendered from the core sections and
 * every built-in plugin's schema.
 * @module
 */
import { settingsTable } from "./docs.ts";
import { controlSection, flowsSection, listenEntry, sipedgeSection } from "./schema.ts";
import { BUILTIN_PLUGINS } from "../plugin/registry.ts";

/** The whole reference page as Markdown. */
export async function renderConfigDocs(): Promise<string> {
  const parts = [
    "# Configuration reference",
    "",
    "<!-- Generated from the settings tables in core/config/schema.ts and the built-in plugins'",
    "schemas by `deno task config-docs`; a test fails when this file is out of date. -->",
    "",
    "sipedge reads one TOML file (`--config FILE`, default `./config.toml`). Durations are",
    "strings with a unit: `500ms`, `10s`, `2m`, `1h`. Unknown keys are errors. An error names",
    "the file, the line and the key.",
    "",
    "## `[sipedge]`",
    "",
    settingsTable(sipedgeSection),
    "",
    "## `[control]`",
    "",
    settingsTable(controlSection),
    "",
    "## `[flows]`",
    "",
    "sipedge as an RFC 5626 edge proxy: a REGISTER that asks for it is forwarded with a Path",
    "naming sipedge and carrying a flow token for the connection it came in on; a request whose",
    "Route carries that token is delivered over that connection from whichever worker it",
    "arrives in (430 Flow Failed when it closed, 403 when the token does not verify). See",
    'README, "Reaching clients".',
    "",
    settingsTable(flowsSection),
    "",
    "## `[[listen]]` (one or more)",
    "",
    settingsTable(listenEntry),
    "",
    "## `[plugins.NAME]`",
    "",
    "A `[plugins.NAME]` table enables a plugin. Built-in plugins are found by name; a user",
    'plugin names its module with `module = "path/to/plugin.ts"` (relative to the config',
    "file). The other keys of the table are the plugin's settings. Built-in transports named",
    "by a `[[listen]]` address are enabled even without a table. See docs/plugins.md.",
    "",
  ];
  for (const [name, load] of Object.entries(BUILTIN_PLUGINS)) {
    const plugin = (await load()).default;
    parts.push(`### \`[plugins.${name}]\` (${plugin.kind})`, "", plugin.description, "");
    parts.push(settingsTable(plugin.config), "");
  }
  return parts.join("\n");
}
