/**
 * `/metrics`: the Prometheus text exposition format (version 0.0.4) -- `# HELP` and `# TYPE`
 * before each family's samples, names prefixed `sipedge_`, counters ending in `_total`, label
 * values escaped.
 *
 * {@link renderMetrics} turns a {@link MetricsSnapshot} (what the supervisor and its workers
 * report, gathered by the control API) into the text; {@link formatMetrics} is the format
 * alone. Everything is built per scrape, never on the message path.
 *
 * | family                                                   | type    | labels                      |
 * | -------------------------------------------------------- | ------- | --------------------------- |
 * | `sipedge_info`                                           | gauge   | version                     |
 * | `sipedge_connections`                                    | gauge   | transport, direction, state |
 * | `sipedge_queued_bytes`, `sipedge_blacklist_entries`, `sipedge_bans` | gauge |                  |
 * | `sipedge_bans_total`                                     | counter | reason (flood, admin)       |
 * | `sipedge_requests_in_total`, `..._requests_forwarded_total`| counter | method                      |
 * | `sipedge_responses_in_total`, `..._responses_forwarded_total`, `..._local_replies_total` | counter | class |
 * | `sipedge_send_failures_total`                            | counter | reason                      |
 * | `sipedge_<counter>_total` for the other counters         | counter |                             |
 * | `sipedge_reloads_total`                                  | counter | result (success, failure)   |
 * | `sipedge_worker_messages_in_total`, `..._out_total`, `..._connections`, `..._heap_used_bytes` | | worker |
 * | `sipedge_process_cpu_seconds_total`, `..._resident_memory_bytes`, ... | | |
 * @module
 */
import { type PoolStatus, RESTART_REASONS } from "./worker_pool.ts";
import {
  addTables,
  COUNTER_HELP,
  type CounterName,
  type CounterTables,
  emptyTables,
  FAILURE_REASONS,
  METHOD_LABELS,
  STATUS_CLASSES,
  type WorkerStats,
} from "./stats.ts";

/** The Content-Type of the text format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Metric types used here. */
export type MetricType = "counter" | "gauge";

/** One sample: labels (in this order) and a value. */
export interface MetricSample {
  labels?: Record<string, string>;
  value: number;
}

/** A metric family: its name, type, help text and samples. */
export interface MetricFamily {
  name: string;
  type: MetricType;
  help: string;
  samples: MetricSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Formats families as Prometheus text. Throws on a bad metric or label name, a counter not
 * ending in `_total`, or a family name used twice: those are programming errors, and a scraper
 * would reject or misread the whole page.
 */
export function formatMetrics(families: readonly MetricFamily[]): string {
  const seen = new Set<string>();
  let out = "";
  for (const f of families) {
    if (!NAME.test(f.name)) throw new Error(`bad metric name ${f.name}`);
    if (f.type === "counter" && !f.name.endsWith("_total")) {
      throw new Error(`counter ${f.name} must end in _total`);
    }
    if (seen.has(f.name)) throw new Error(`metric family ${f.name} twice`);
    seen.add(f.name);
    out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
    for (const s of f.samples) {
      let labels = "";
      for (const [k, v] of Object.entries(s.labels ?? {})) {
        if (!LABEL.test(k) || k.startsWith("__")) throw new Error(`bad label name ${k}`);
        labels += `${labels === "" ? "" : ","}${k}="${escapeLabelValue(v)}"`;
      }
      out += `${f.name}${labels === "" ? "" : `{${labels}}`} ${formatValue(s.value)}\n`;
    }
  }
  return out;
}

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

/** Escapes HELP text: backslash and line feed. */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** What /metrics shows, gathered by the control API. */
export interface MetricsSnapshot {
  version: string;
  /** Process start (ms since epoch). */
  startedAt: number;
  now: number;
  /** Every worker's report (core/stats.ts). */
  workers: WorkerStats[];
  /** Enabled transport plugin names: their open-connection series exist even at zero. */
  transports: string[];
  queuedBytes: number;
  blacklistEntries: number;
  /** Source bans: in force now, and started since the process started by reason. */
  bans?: { active: number; started: Record<string, number> };
  reloads: { succeeded: number; failed: number; lastAt: number; lastErrors: readonly string[] };
  /** Process figures, when available. */
  process?: { cpuSeconds: number; residentBytes: number; heapUsedBytes: number };
  /** The worker pool (restarts, workers up); absent in snapshots made without one. */
  pool?: PoolStatus;
}

/**
 * Counters shown as labelled families (by method, status class) instead of one plain total:
 * the labelled series add up to what the plain counter would say.
 */
const LABELLED: ReadonlySet<CounterName> = new Set<CounterName>([
  "requests_in",
  "responses_in",
  "requests_forwarded",
  "responses_forwarded",
  "local_replies",
]);

/** The families of a snapshot, in page order. */
export function collectMetrics(s: MetricsSnapshot): MetricFamily[] {
  const totals = emptyTables();
  const counters: Record<string, number> = {};
  const states: Record<string, number> = {};
  for (const w of s.workers) {
    addTables(totals, w.tables);
    for (const [k, v] of Object.entries(w.counters)) counters[k] = (counters[k] ?? 0) + v;
    for (const [k, v] of Object.entries(w.connectionStates)) states[k] = (states[k] ?? 0) + v;
  }
  // Open connections of every transport in both directions are always there, zero or not, so
  // that rate() and alerts see a series from the start.
  for (const t of s.transports) {
    for (const d of ["in", "out"]) states[`${t} ${d} open`] ??= 0;
  }
  const byLabel = (label: string, names: readonly string[], values: number[]) =>
    names.map((name, i) => ({ labels: { [label]: name }, value: values[i] ?? 0 }));
  const table = (
    name: string,
    help: string,
    label: string,
    names: readonly string[],
    values: number[],
  ): MetricFamily => ({
    name: `sipedge_${name}`,
    type: "counter",
    help,
    samples: byLabel(label, names, values),
  });
  const gauge = (name: string, help: string, value: number): MetricFamily => ({
    name: `sipedge_${name}`,
    type: "gauge",
    help,
    samples: [{ value }],
  });
  const perWorker = (
    name: string,
    type: MetricType,
    help: string,
    value: (w: WorkerStats) => number,
  ): MetricFamily => ({
    name: `sipedge_worker_${name}`,
    type,
    help,
    samples: s.workers.map((w) => ({ labels: { worker: String(w.worker) }, value: value(w) })),
  });

  const families: MetricFamily[] = [
    {
      name: "sipedge_info",
      type: "gauge",
      help: "sipedge version (always 1)",
      samples: [{ labels: { version: s.version }, value: 1 }],
    },
    gauge("uptime_seconds", "seconds since sipedge started", (s.now - s.startedAt) / 1000),
    gauge("workers", "reader workers configured", s.pool?.configured ?? s.workers.length),
    {
      name: "sipedge_connections",
      type: "gauge",
      help: "connections by transport, direction (in: accepted, out: opened) and state",
      samples: Object.keys(states).sort().map((key) => {
        const [transport, direction, state] = key.split(" ");
        return { labels: { transport, direction, state }, value: states[key] };
      }),
    },
    gauge("queued_bytes", "bytes waiting in write queues, all connections", s.queuedBytes),
    gauge("blacklist_entries", "destinations blacklisted now", s.blacklistEntries),
    gauge("bans", "sources banned now (flood_guard and operators)", s.bans?.active ?? 0),
    {
      name: "sipedge_bans_total",
      type: "counter",
      help: "source bans started, by reason (flood: over its rate; admin: the control API)",
      samples: ["flood", "admin"].map((reason) => ({
        labels: { reason },
        value: s.bans?.started[reason] ?? 0,
      })),
    },
    table(
      "requests_in_total",
      "requests read, by method",
      "method",
      METHOD_LABELS,
      totals.requestsIn,
    ),
    table(
      "responses_in_total",
      "responses read, by status class",
      "class",
      STATUS_CLASSES,
      totals.responsesIn,
    ),
    table(
      "requests_forwarded_total",
      "requests sent on, by method",
      "method",
      METHOD_LABELS,
      totals.requestsOut,
    ),
    table(
      "responses_forwarded_total",
      "responses sent on, by status class",
      "class",
      STATUS_CLASSES,
      totals.responsesOut,
    ),
    table(
      "local_replies_total",
      "responses generated by sipedge (errors, OPTIONS answers, 408/503 for failed sends), " +
        "by status class",
      "class",
      STATUS_CLASSES,
      totals.localReplies,
    ),
    table(
      "send_failures_total",
      "send failures reported (one per failed connection or refused message), by reason",
      "reason",
      FAILURE_REASONS,
      totals.failures,
    ),
  ];
  for (const [name, help] of Object.entries(COUNTER_HELP) as [CounterName, string][]) {
    if (LABELLED.has(name)) continue;
    families.push({
      name: `sipedge_${name}_total`,
      type: "counter",
      help,
      samples: [{ value: counters[name] ?? 0 }],
    });
  }
  families.push(
    {
      name: "sipedge_reloads_total",
      type: "counter",
      help: "configuration reloads (SIGHUP, POST /reload) by result",
      samples: [
        { labels: { result: "success" }, value: s.reloads.succeeded },
        { labels: { result: "failure" }, value: s.reloads.failed },
      ],
    },
    gauge(
      "config_last_reload_successful",
      "1 when the last reload was applied (or there was none), 0 when it was refused",
      s.reloads.lastAt > 0 && s.reloads.lastErrors.length > 0 ? 0 : 1,
    ),
    gauge(
      "config_last_reload_timestamp_seconds",
      "time of the last reload attempt (0: none)",
      s.reloads.lastAt / 1000,
    ),
    perWorker(
      "messages_in_total",
      "counter",
      "SIP messages read by this worker",
      (w) => sum(w.tables.requestsIn) + sum(w.tables.responsesIn),
    ),
    perWorker(
      "messages_out_total",
      "counter",
      "SIP messages sent by this worker (forwarded and local replies)",
      (w) => sum(w.tables.requestsOut) + sum(w.tables.responsesOut) + sum(w.tables.localReplies),
    ),
    perWorker(
      "connections",
      "gauge",
      "open connections owned by this worker",
      (w) => w.connections,
    ),
    perWorker(
      "heap_used_bytes",
      "gauge",
      "JavaScript heap in use in this worker (its own isolate)",
      (w) => w.heapUsedBytes ?? 0,
    ),
  );
  if (s.pool !== undefined) {
    const pool = s.pool;
    const answered = new Set(s.workers.map((w) => w.worker));
    families.push(
      {
        name: "sipedge_worker_up",
        type: "gauge",
        help: "1 when the worker is up and answered this scrape, else 0 (hung, restarting)",
        samples: Array.from({ length: pool.configured }, (_, worker) => ({
          labels: { worker: String(worker) },
          value: pool.up.includes(worker) && answered.has(worker) ? 1 : 0,
        })),
      },
      {
        name: "sipedge_worker_restarts_total",
        type: "counter",
        help: "reader workers replaced, by reason (hang, exit, crash, start_failed)",
        samples: RESTART_REASONS.map((reason) => ({
          labels: { reason },
          value: pool.restarts[reason],
        })),
      },
      {
        name: "sipedge_worker_connections_lost_total",
        type: "counter",
        help: "connections that were open in workers that were replaced",
        samples: [{ value: pool.connectionsLost }],
      },
      gauge(
        "workers_stuck",
        "replaced workers whose thread could not be stopped (see on_stuck_worker)",
        pool.stuck,
      ),
    );
  }
  if (s.process !== undefined) {
    families.push(
      {
        name: "sipedge_process_cpu_seconds_total",
        type: "counter",
        help: "CPU time of the process (user + system, all threads)",
        samples: [{ value: s.process.cpuSeconds }],
      },
      gauge(
        "process_resident_memory_bytes",
        "resident memory of the process",
        s.process.residentBytes,
      ),
      gauge(
        "process_heap_used_bytes",
        "JavaScript heap in use on the supervisor thread",
        s.process.heapUsedBytes,
      ),
      gauge("process_start_time_seconds", "process start (Unix time)", s.startedAt / 1000),
    );
  }
  return families;
}

/** The /metrics page for a snapshot. */
export function renderMetrics(snapshot: MetricsSnapshot): string {
  return formatMetrics(collectMetrics(snapshot));
}

/** Sums of every worker's tables (for /counters). */
export function sumTables(workers: readonly WorkerStats[]): CounterTables {
  const totals = emptyTables();
  for (const w of workers) addTables(totals, w.tables);
  return totals;
}

function sum(values: number[]): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}
