/**
 * The modules sipedge runs (core/, plugins/, main.ts; tests and test helpers aside) hold no
 * character above U+00FF, not even in a comment (issue 11, memory at rest).
 *
 * Why: every isolate keeps the source of each module it loaded for as long as it lives, and
 * under `deno run` that source is Deno's emitted JavaScript with an inline source map carrying
 * the whole TypeScript file again. V8 stores a string as one byte per character when every
 * character fits in Latin-1, and as two bytes per character otherwise: one em dash in a comment
 * doubled the memory of the whole module, source map included. Measured (2026-12-03, supervisor
 * heap after a forced GC): 11.45 -> 10.61 MiB when the 143 such characters of 56 modules were
 * written in ASCII; a worker's modules 0.28 MiB less.
 * @module
 */
import assert from "node:assert/strict";
import { REPO_ROOT } from "../scripts/compile.ts";

/** Runtime modules, repo-relative: what the supervisor and the reader workers load. */
async function runtimeModules(): Promise<string[]> {
  const out = ["main.ts"];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(`${REPO_ROOT}/${dir}`)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) {
        if (entry.name !== "testing") await walk(path);
      } else if (entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
        out.push(path);
      }
    }
  };
  await walk("core");
  await walk("plugins");
  return out.sort();
}

/** `file:line: 'c' (U+XXXX)` for every character above U+00FF in `text`. */
export function wideCharacters(file: string, text: string): string[] {
  const found: string[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    for (const c of line) {
      const code = c.codePointAt(0)!;
      if (code > 0xff) {
        found.push(
          `${file}:${i + 1}: '${c}' (U+${code.toString(16).toUpperCase().padStart(4, "0")})`,
        );
      }
    }
  });
  return found;
}

Deno.test("source charset: the check finds what it is for", () => {
  assert.deepEqual(wideCharacters("a.ts", "// ok § × µ\n// a — b\nconst s = '→';\n"), [
    "a.ts:2: '—' (U+2014)",
    "a.ts:3: '→' (U+2192)",
  ]);
});

Deno.test("source charset: runtime modules are Latin-1 (one byte per character in V8)", async () => {
  const modules = await runtimeModules();
  assert.ok(modules.includes("core/worker_engine.ts") && modules.includes("plugins/tcp_worker.ts"));
  const found: string[] = [];
  for (const file of modules) {
    found.push(...wideCharacters(file, await Deno.readTextFile(`${REPO_ROOT}/${file}`)));
  }
  assert.deepEqual(
    found,
    [],
    "write these in ASCII (-- for a dash, -> for an arrow, ... , ~, <=): one character above " +
      "U+00FF makes V8 hold the whole module, and its inline source map, at two bytes a character",
  );
});
