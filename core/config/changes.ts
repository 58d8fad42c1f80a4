/**
 * What a reload changes: the differences between two resolved configs as one line each, for
 * the reload report and the log (`plugins.limits: conn_wq_max, wq_max`, `listen: added
 * tls:127.0.0.1:5061`). Secrets are never printed, only that they changed.
 * @module
 */
import type { ResolvedConfig, ResolvedListen, ResolvedPlugin } from "./load.ts";

/** Settings that only a restart applies (the reload reports them as such). */
const RESTART_ONLY = new Set(["sipedge.workers", "control.address", "control.token"]);
/** Settings whose values are not shown. */
const SECRET = new Set(["control.token", "flows.key"]);

/**
 * One line per difference between `before` and `after`; empty when they are the same.
 * `view` gives a plugin's operator-facing view (its `inspect`), compared instead of its config
 * when present: a prepared config holds file contents, the view names what changed in them.
 */
export function describeChanges(
  before: ResolvedConfig,
  after: ResolvedConfig,
  view: (plugin: ResolvedPlugin) => unknown = (p) => p.config,
): string[] {
  const lines: string[] = [];
  for (const section of ["sipedge", "control", "flows"] as const) {
    const a = before[section] as Record<string, unknown>;
    const b = after[section] as Record<string, unknown>;
    for (const key of Object.keys(b)) {
      if (same(a[key], b[key])) continue;
      const path = `${section}.${key}`;
      const what = SECRET.has(path)
        ? "changed"
        : `${JSON.stringify(a[key])} -> ${JSON.stringify(b[key])}`;
      lines.push(`${path}: ${what}${RESTART_ONLY.has(path) ? " (applies at the next start)" : ""}`);
    }
  }
  const oldListen = new Map(before.listen.map((l) => [listenName(l), l]));
  const newListen = new Map(after.listen.map((l) => [listenName(l), l]));
  for (const [name, l] of newListen) {
    const old = oldListen.get(name);
    if (old === undefined) lines.push(`listen: added ${name}`);
    else if (!same(old.advertise, l.advertise)) lines.push(`listen ${name}: advertise changed`);
  }
  for (const name of oldListen.keys()) {
    if (!newListen.has(name)) lines.push(`listen: removed ${name} (its connections stay open)`);
  }
  const oldPlugins = new Map(before.plugins.map((p) => [p.name, p]));
  const newPlugins = new Map(after.plugins.map((p) => [p.name, p]));
  for (const [name, p] of newPlugins) {
    const old = oldPlugins.get(name);
    if (old === undefined) {
      lines.push(`plugins.${name}: added`);
      continue;
    }
    if (old.moduleUrl !== p.moduleUrl || old.version !== p.version) {
      lines.push(`plugins.${name}: new module version`);
      continue;
    }
    const keys = changedKeys(view(old), view(p));
    if (keys.length > 0) lines.push(`plugins.${name}: ${keys.join(", ")}`);
  }
  for (const name of oldPlugins.keys()) {
    if (!newPlugins.has(name)) lines.push(`plugins.${name}: removed`);
  }
  return lines;
}

/**
 * Top-level keys whose values differ; for a list of named entries (`[{name, ...}]`), the names
 * of the entries that were added, removed or changed: `server_domains[main]`.
 */
function changedKeys(before: unknown, after: unknown): string[] {
  const a = (before ?? {}) as Record<string, unknown>;
  const b = (after ?? {}) as Record<string, unknown>;
  const out: string[] = [];
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (same(a[key], b[key])) continue;
    const names = changedNames(a[key], b[key]);
    out.push(names === undefined ? key : names.map((n) => `${key}[${n}]`).join(", "));
  }
  return out;
}

function changedNames(before: unknown, after: unknown): string[] | undefined {
  const named = (v: unknown) =>
    Array.isArray(v) && v.every((e) => typeof e?.name === "string")
      ? new Map(v.map((e) => [e.name as string, e]))
      : undefined;
  const a = named(before);
  const b = named(after);
  if (a === undefined || b === undefined) return undefined;
  const names = [...new Set([...a.keys(), ...b.keys()])].filter((n) => !same(a.get(n), b.get(n)));
  return names.length > 0 ? names : undefined;
}

/** `tcp:127.0.0.1:5060` (the port as configured: 0 stays 0). */
export function listenName(l: ResolvedListen): string {
  const host = l.hostname.includes(":") ? `[${l.hostname}]` : l.hostname;
  return `${l.transport}:${host}:${l.port}`;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
