/**
 * Finds the line of a key in TOML text, so that config errors can say where to look.
 * Handles `[table]`, `[[array.of.tables]]`, dotted and quoted keys; for a key that is not
 * written (a missing required key) it gives the line of the nearest enclosing table.
 * @module
 */

/** A key path as zod reports it: `["plugins", "static_router", "routes", 0, "destination"]`. */
export type KeyPath = readonly (string | number)[];

/** 1-based line of `path` in `text`, or undefined when not even its table is written. */
export function locateKey(text: string, path: KeyPath): number | undefined {
  const target = path.map(String).join("\u0000");
  const arrayCounts = new Map<string, number>();
  let table: string[] = [];
  let best: { line: number; depth: number } | undefined;
  const consider = (keyPath: string[], line: number) => {
    const joined = keyPath.join("\u0000");
    if (joined === target) {
      best = { line, depth: Infinity };
      return;
    }
    if (
      target.startsWith(joined + "\u0000") && (best === undefined || keyPath.length > best.depth)
    ) {
      best = { line, depth: keyPath.length };
    }
  };
  const lines = text.split("\n");
  for (let i = 0; i < lines.length && best?.depth !== Infinity; i++) {
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    const arrayHeader = /^\[\[\s*(.+?)\s*\]\]/.exec(line);
    const tableHeader = arrayHeader ? null : /^\[\s*(.+?)\s*\]/.exec(line);
    if (arrayHeader) {
      const name = splitKey(arrayHeader[1]);
      const key = name.join("\u0000");
      const index = arrayCounts.get(key) ?? 0;
      arrayCounts.set(key, index + 1);
      table = [...name, String(index)];
      consider(name, i + 1);
      consider(table, i + 1);
    } else if (tableHeader) {
      table = splitKey(tableHeader[1]);
      consider(table, i + 1);
    } else {
      const eq = /^((?:"[^"]*"|'[^']*'|[A-Za-z0-9_.\- ]+?)+)\s*=/.exec(line);
      if (eq) consider([...table, ...splitKey(eq[1])], i + 1);
    }
  }
  return best?.line;
}

function splitKey(key: string): string[] {
  const parts: string[] = [];
  const re = /\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_\-]+))\s*(?:\.|$)/y;
  let m: RegExpExecArray | null;
  while (re.lastIndex < key.length && (m = re.exec(key)) !== null) {
    parts.push(m[1] ?? m[2] ?? m[3]);
  }
  return parts;
}
