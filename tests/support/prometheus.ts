/**
 * A strict parser of the Prometheus text format (0.0.4), for tests of /metrics: it fails on
 * anything a scraper would reject or misread.
 * @module
 */
import assert from "node:assert/strict";

/** One parsed sample. */
export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed page: families by name, every sample. */
export interface ParsedPage {
  types: Map<string, string>;
  help: Map<string, string>;
  samples: ParsedSample[];
}

const METRIC_NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL_PAIR = `([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"`;
const SAMPLE = new RegExp(
  `^(${METRIC_NAME})(?:\\{((?:${LABEL_PAIR})(?:,${LABEL_PAIR})*)?\\})? (\\S+)$`,
);

/**
 * Parses Prometheus text (0.0.4) strictly: every line is HELP, TYPE or a sample; HELP and TYPE
 * come once per family and before its samples; a family's samples are contiguous; no series
 * twice; values are numbers. Throws naming the line otherwise.
 */
export function parsePrometheus(text: string): ParsedPage {
  assert.ok(text.endsWith("\n"), "the page ends with a line feed");
  const page: ParsedPage = { types: new Map(), help: new Map(), samples: [] };
  const series = new Set<string>();
  const closed = new Set<string>(); // families whose samples are over
  let current: string | undefined;
  text.slice(0, -1).split("\n").forEach((line, i) => {
    const where = `line ${i + 1}: ${line}`;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta !== null) {
      const [, kind, name, rest] = meta;
      assert.match(name, new RegExp(`^${METRIC_NAME}$`), where);
      assert.ok(!closed.has(name) && name !== current || kind === "TYPE", where);
      if (kind === "HELP") {
        assert.ok(!page.help.has(name), `HELP twice: ${where}`);
        assert.ok(!page.types.has(name), `HELP after TYPE: ${where}`);
        page.help.set(name, rest);
      } else {
        assert.ok(!page.types.has(name), `TYPE twice: ${where}`);
        assert.match(rest, /^(counter|gauge|histogram|summary|untyped)$/, where);
        page.types.set(name, rest);
      }
      if (current !== undefined && current !== name) closed.add(current);
      current = name;
      return;
    }
    assert.ok(!line.startsWith("#"), `unknown comment: ${where}`);
    const m = SAMPLE.exec(line);
    assert.ok(m !== null, `not a sample: ${where}`);
    const name = m[1];
    assert.equal(name, current, `sample outside its family (HELP/TYPE first): ${where}`);
    assert.ok(page.types.has(name) && page.help.has(name), `no HELP/TYPE before: ${where}`);
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? "").matchAll(new RegExp(LABEL_PAIR, "g"))) {
      assert.ok(!(pair[1] in labels), `label twice: ${where}`);
      labels[pair[1]] = pair[2].replace(/\\(.)/g, (_, c) => c === "n" ? "\n" : c);
    }
    const raw = m[m.length - 1];
    assert.match(raw, /^(NaN|[+-]Inf|-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?)$/, where);
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    assert.ok(!series.has(key), `duplicate series: ${where}`);
    series.add(key);
    page.samples.push({ name, labels, value });
  });
  for (const [name, type] of page.types) {
    if (type === "counter") assert.match(name, /_total$/, `counter ${name} ends in _total`);
  }
  return page;
}

/** The value of the one sample of `name` whose labels include `labels`. */
export function sampleValue(
  page: ParsedPage,
  name: string,
  labels: Record<string, string> = {},
): number {
  const found = page.samples.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  assert.equal(found.length, 1, `one sample ${name} ${JSON.stringify(labels)}`);
  return found[0].value;
}
