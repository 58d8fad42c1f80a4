/**
 * JsSIP 3.13's CommonJS code asks for `require("node:events")`, which a browser bundle cannot
 * resolve (esbuild keeps `node:` built-ins external, and `deno bundle` has no alias option).
 * The bundle's `require` falls back to a global `require` at call time, so this module — imported
 * before JsSIP (ES module order) — defines one that hands out the `events` package (the
 * browser's EventEmitter, a JsSIP dependency) and nothing else.
 * @module
 */
import events from "npm:events@3.3.0";

/** The only module the JsSIP bundle requires at run time. */
globalThis.require = (name) => {
  if (name === "node:events" || name === "events") return events;
  throw new Error(`module ${name} is not available in the browser bundle`);
};
