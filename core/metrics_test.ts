/** Tests of the Prometheus text format and of the /metrics page, checked by a strict parser. */

import assert from "node:assert/strict";
import { escapeLabelValue, formatMetrics, type MetricsSnapshot, renderMetrics } from "./metrics.ts";
import {
  COUNTER_HELP,
  emptyTables,
  FAILURE_REASONS,
  METHOD_LABELS,
  SIP_METHODS,
  type WorkerStats,
} from "./stats.ts";
import { type ParsedPage, parsePrometheus } from "../tests/support/prometheus.ts";

function value(page: ParsedPage, name: string, labels: Record<string, string> = {}): number {
  const found = page.samples.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  assert.equal(found.length, 1, `one sample ${name} ${JSON.stringify(labels)}`);
  return found[0].value;
}

function worker(id: number, fill: number): WorkerStats {
  const tables = emptyTables();
  for (const t of Object.values(tables)) t.fill(fill);
  const counters = Object.fromEntries(Object.keys(COUNTER_HELP).map((k) => [k, fill]));
  return {
    worker: id,
    counters,
    connections: 2 * fill,
    tables,
    connectionStates: { "tcp in open": fill, "tcp out connecting": 1 },
  };
}

function snapshot(overrides: Partial<MetricsSnapshot> = {}): MetricsSnapshot {
  return {
    version: "0.1.0",
    startedAt: 1_000_000,
    now: 1_010_500,
    workers: [worker(0, 1), worker(1, 2)],
    transports: ["tcp", "tls"],
    queuedBytes: 4096,
    blacklistEntries: 3,
    reloads: { succeeded: 2, failed: 1, lastAt: 1_005_000, lastErrors: ["bad"] },
    process: { cpuSeconds: 1.5, residentBytes: 1e8, heapUsedBytes: 5e6 },
    ...overrides,
  };
}

Deno.test("renderMetrics: a valid page with every family, sums over workers", () => {
  const page = parsePrometheus(renderMetrics(snapshot()));
  assert.equal(value(page, "sipedge_info", { version: "0.1.0" }), 1);
  assert.equal(value(page, "sipedge_uptime_seconds"), 10.5);
  assert.equal(value(page, "sipedge_workers"), 2);
  assert.equal(value(page, "sipedge_queued_bytes"), 4096);
  assert.equal(value(page, "sipedge_blacklist_entries"), 3);
  // Connections: summed by transport, direction and state; zero series for idle transports.
  const conn = "sipedge_connections";
  assert.equal(value(page, conn, { transport: "tcp", direction: "in", state: "open" }), 3);
  assert.equal(value(page, conn, { transport: "tcp", direction: "out", state: "connecting" }), 2);
  assert.equal(value(page, conn, { transport: "tls", direction: "out", state: "open" }), 0);
  // Messages by method and class, failures by reason: every label value, summed.
  for (const method of [...SIP_METHODS, "other"]) {
    assert.equal(value(page, "sipedge_requests_in_total", { method }), 3);
    assert.equal(value(page, "sipedge_requests_forwarded_total", { method }), 3);
  }
  for (const c of ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"]) {
    assert.equal(value(page, "sipedge_responses_in_total", { class: c }), 3);
    assert.equal(value(page, "sipedge_responses_forwarded_total", { class: c }), 3);
    assert.equal(value(page, "sipedge_local_replies_total", { class: c }), 3);
  }
  for (const reason of FAILURE_REASONS) {
    assert.equal(value(page, "sipedge_send_failures_total", { reason }), 3);
  }
  // Every counter is on the page: as its own family or as a labelled one.
  for (const name of Object.keys(COUNTER_HELP)) {
    assert.ok(page.types.has(`sipedge_${name}_total`), name);
  }
  assert.equal(value(page, "sipedge_send_timeouts_total"), 3);
  assert.equal(page.help.get("sipedge_send_timeouts_total"), COUNTER_HELP.send_timeouts);
  // Reloads.
  assert.equal(value(page, "sipedge_reloads_total", { result: "success" }), 2);
  assert.equal(value(page, "sipedge_reloads_total", { result: "failure" }), 1);
  assert.equal(value(page, "sipedge_config_last_reload_successful"), 0);
  assert.equal(value(page, "sipedge_config_last_reload_timestamp_seconds"), 1005);
  // Per worker.
  const perMethodIn = METHOD_LABELS.length + 6;
  assert.equal(value(page, "sipedge_worker_messages_in_total", { worker: "0" }), perMethodIn);
  assert.equal(value(page, "sipedge_worker_messages_in_total", { worker: "1" }), 2 * perMethodIn);
  assert.equal(value(page, "sipedge_worker_messages_out_total", { worker: "1" }), 2 * (15 + 12));
  assert.equal(value(page, "sipedge_worker_connections", { worker: "1" }), 4);
  assert.equal(value(page, "sipedge_process_cpu_seconds_total"), 1.5);
  assert.equal(page.types.get("sipedge_connections"), "gauge");
  assert.equal(page.types.get("sipedge_requests_in_total"), "counter");
});

Deno.test("renderMetrics: no workers, no reloads, no process figures: still valid", () => {
  const text = renderMetrics(snapshot({
    workers: [],
    transports: [],
    reloads: { succeeded: 0, failed: 0, lastAt: 0, lastErrors: [] },
    process: undefined,
  }));
  const page = parsePrometheus(text);
  assert.equal(value(page, "sipedge_config_last_reload_successful"), 1);
  assert.equal(value(page, "sipedge_requests_in_total", { method: "INVITE" }), 0);
  assert.ok(!page.types.has("sipedge_process_cpu_seconds_total"));
  assert.ok(!text.includes("sipedge_worker_connections{"));
});

Deno.test("formatMetrics: label values and HELP text are escaped", () => {
  const nasty = 'a "quoted" \\ back\nslash';
  const text = formatMetrics([{
    name: "x_total",
    type: "counter",
    help: "line one\nline two \\ end",
    samples: [{ labels: { v: nasty, w: "" }, value: 1 }, { labels: { v: "b" }, value: NaN }],
  }]);
  assert.equal(
    text,
    "# HELP x_total line one\\nline two \\\\ end\n# TYPE x_total counter\n" +
      'x_total{v="a \\"quoted\\" \\\\ back\\nslash",w=""} 1\nx_total{v="b"} NaN\n',
  );
  const page = parsePrometheus(text);
  assert.equal(page.samples[0].labels.v, nasty);
  assert.equal(escapeLabelValue("plain"), "plain");
});

Deno.test("formatMetrics: programming errors throw", () => {
  const f = (name: string, type: "counter" | "gauge" = "gauge", label = "ok") => ({
    name,
    type,
    help: "h",
    samples: [{ labels: { [label]: "v" }, value: 1 }],
  });
  assert.throws(() => formatMetrics([f("bad-name")]), /bad metric name/);
  assert.throws(() => formatMetrics([f("c", "counter")]), /must end in _total/);
  assert.throws(() => formatMetrics([f("a"), f("a")]), /twice/);
  assert.throws(() => formatMetrics([f("a", "gauge", "bad-label")]), /bad label name/);
  assert.throws(() => formatMetrics([f("a", "gauge", "__reserved")]), /bad label name/);
});

Deno.test("parsePrometheus rejects what a scraper would (the checker can fail)", () => {
  const bad = [
    "x 1\n", // no HELP/TYPE
    "# HELP x h\n# TYPE x gauge\nx 1\nx 2\n", // duplicate series
    '# HELP x h\n# TYPE x gauge\nx{a="1"} one\n', // not a number
    '# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\ny 1\nx{a="2"} 1\n',
    "# HELP x h\n# TYPE x counter\nx 1\n", // counter without _total
    '# HELP x h\n# TYPE x gauge\nx{a="q"q"} 1\n', // unescaped quote
    "# HELP x h\n# TYPE x gauge\nx 1", // no final line feed
  ];
  for (const text of bad) assert.throws(() => parsePrometheus(text), assert.AssertionError, text);
});
