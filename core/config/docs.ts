/**
 * Renders the settings tables (core sections and plugin schemas) as Markdown: the reference
 * in docs/configuration.md is generated from the same zod schemas that validate the file.
 * @module
 */
import type { z } from "zod";

interface Row {
  key: string;
  type: string;
  default: string;
  description: string;
}

/** Markdown table of an object schema's keys (nested arrays of tables get their own rows). */
export function settingsTable(schema: z.ZodType, prefix = ""): string {
  const rows: Row[] = [];
  collectRows(schema, prefix, rows);
  const lines = ["| key | type | default | description |", "|---|---|---|---|"];
  for (const r of rows) {
    lines.push(
      `| \`${r.key}\` | ${r.type} | ${r.default} | ${r.description.replaceAll("|", "\\|")} |`,
    );
  }
  return lines.join("\n");
}

type AnyDef = {
  type: string;
  innerType?: z.ZodType;
  defaultValue?: unknown;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  entries?: Record<string, string>;
  in?: z.ZodType;
  valueType?: z.ZodType;
};

function def(schema: z.ZodType): AnyDef {
  return (schema as unknown as { _zod: { def: AnyDef } })._zod.def;
}

function collectRows(schema: z.ZodType, prefix: string, rows: Row[]): void {
  const shape = unwrap(schema).shape;
  if (shape === undefined) return;
  for (const [name, field] of Object.entries(shape)) {
    const key = prefix === "" ? name : `${prefix}.${name}`;
    const inner = unwrap(field);
    rows.push({
      key,
      type: typeName(field),
      default: defaultOf(field),
      description: field.description ?? "",
    });
    if (inner.type === "array" && inner.element && unwrap(inner.element).shape) {
      collectRows(inner.element, `${key}[]`, rows);
    }
  }
}

/** The def under optional/default/pipe wrappers. */
function unwrap(schema: z.ZodType): AnyDef {
  let d = def(schema);
  while (true) {
    if ((d.type === "optional" || d.type === "default") && d.innerType) d = def(d.innerType);
    else if (d.type === "pipe" && d.in) d = def(d.in);
    else return d;
  }
}

function typeName(schema: z.ZodType): string {
  const d = unwrap(schema);
  const optional = def(schema).type === "optional" ? " (optional)" : "";
  if (def(schema).type === "pipe" || (def(schema).type === "default" && isDuration(schema))) {
    return `duration${optional}`;
  }
  switch (d.type) {
    case "int":
    case "number":
      return `integer${optional}`;
    case "enum":
      return `one of ${
        Object.values(d.entries ?? {}).map((v) => `\`${v}\``).join(", ")
      }${optional}`;
    case "array":
      return `array of ${d.element ? typeName(d.element) : "values"}${optional}`;
    case "object":
      return `table${optional}`;
    default:
      return `${d.type}${optional}`;
  }
}

function isDuration(schema: z.ZodType): boolean {
  const d = def(schema);
  return d.type === "default" && d.innerType !== undefined && def(d.innerType).type === "pipe";
}

function defaultOf(schema: z.ZodType): string {
  const d = def(schema);
  if (d.type !== "default") return "";
  const value = d.defaultValue;
  if (isDuration(schema) && typeof value === "number") return `\`${formatMs(value)}\``;
  if (Array.isArray(value) && value.length === 0) return "`[]`";
  return `\`${JSON.stringify(value)}\``;
}

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
