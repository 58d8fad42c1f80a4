/**
 * The control API: JSON over HTTP (Deno.serve) on the supervisor, loopback by default, with
 * an optional bearer token.
 *
 * | method and path              | what                                                   |
 * | ---------------------------- | ------------------------------------------------------ |
 * | GET /status                  | version, config file, workers, listeners, uptime, gauges, reloads |
 * | GET /connections             | every connection of every worker                       |
 * | GET /counters                | counters summed over workers, shared gauges, messages by method / status class, failures by reason |
 * | GET /metrics                 | Prometheus text format (core/metrics.ts)               |
 * | GET /blacklist               | live blacklist entries                                 |
 * | POST /blacklist              | add `{"destination": "tcp:10.0.0.5:5060", "expire": "60s"}` (reason admin) |
 * | DELETE /blacklist/DEST       | remove one entry (`DEST` = `tcp:10.0.0.5:5060`, URL-encoded) |
 * | DELETE /blacklist            | remove every entry                                     |
 * | GET /bans                    | banned sources: address/prefix, remaining time, rate seen, reason (flood, admin) |
 * | POST /bans                   | ban `{"address": "192.0.2.9", "expire": "10m"}` (reason admin) |
 * | DELETE /bans/ADDR            | lift one ban (an address, or the prefix as listed, URL-encoded) |
 * | DELETE /bans                 | lift every ban                                         |
 * | POST /reload                 | reload config.toml: 200 with what changed, 422 with every error (nothing changed) |
 * | GET /plugins                 | enabled plugins: name, kind, module                    |
 * | GET /plugins/NAME            | what the plugin shows of itself (its `inspect`, else its config) |
 * | GET /tls/domains             | the tls plugin's view (server and client domains); 404 when tls is not enabled |
 *
 * `sipedge ctl` (core/ctl.ts) is the command-line client. Errors are `{"error": "..."}` with a
 * 4xx/5xx status.
 * @module
 */
import process from "node:process";
import { getLogger } from "@logtape/logtape";
import { durationSchema, positiveDurationSchema } from "./config/schema.ts";
import { contains, parseCidr, parseIp } from "./policy/ip_prefix.ts";
import { METRICS_CONTENT_TYPE, renderMetrics, sumTables } from "./metrics.ts";
import { inspectPlugin as pluginView } from "./plugin/registry.ts";
import { FAILURE_REASONS, METHOD_LABELS, STATUS_CLASSES } from "./stats.ts";
import { destinationKey, parseDestination } from "./transport/destination.ts";
import type { Supervisor } from "./supervisor.ts";
import { parseHostPort } from "./sip/uri.ts";

const log = getLogger(["sipedge", "control"]);

/** Options for {@link startControlApi}. */
export interface ControlApiOptions {
  hostname: string;
  port: number;
  /** When set, every request needs `Authorization: Bearer <token>`. */
  token?: string;
  version: string;
}

/** A running control API. */
export interface ControlApi {
  /** `http://host:port`. */
  url: string;
  close(): Promise<void>;
}

/** Starts the control API for `supervisor`. */
export function startControlApi(supervisor: Supervisor, options: ControlApiOptions): ControlApi {
  const started = Date.now();
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    onListen: () => {},
  }, async (request) => {
    if (options.token && request.headers.get("authorization") !== `Bearer ${options.token}`) {
      return json({ error: "missing or wrong bearer token" }, 401);
    }
    try {
      return await route(supervisor, request, options, started);
    } catch (error) {
      log.error("control API {method} {url} failed: {error}", {
        method: request.method,
        url: request.url,
        error: (error as Error).message,
      });
      return json({ error: (error as Error).message }, 500);
    }
  });
  const addr = server.addr as Deno.NetAddr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return { url: `http://${host}:${addr.port}`, close: () => server.shutdown() };
}

async function route(
  supervisor: Supervisor,
  request: Request,
  options: ControlApiOptions,
  started: number,
): Promise<Response> {
  const url = new URL(request.url);
  const path = url.pathname.replace(/\/+$/, "") || "/";
  const method = request.method;
  if (method === "GET" && path === "/status") {
    const stats = await supervisor.stats();
    const reloads = supervisor.reloadStats;
    const pool = supervisor.workerStatus();
    return json({
      version: options.version,
      config: supervisor.config.source,
      workers: {
        configured: pool.configured,
        up: pool.up.length,
        restarting: pool.restarting,
        unresponsive: stats.unresponsive,
        restarts: pool.restarts,
        connections_lost: pool.connectionsLost,
        stuck: pool.stuck,
      },
      listeners: supervisor.listeners,
      uptime_ms: Date.now() - started,
      connections: stats.connections,
      queued_bytes: supervisor.sharedCounters.queuedBytes,
      blacklist_entries: supervisor.blacklist().length,
      bans: supervisor.bans().length,
      reloads: {
        succeeded: reloads.succeeded,
        failed: reloads.failed,
        last_at: reloads.lastAt === 0 ? null : new Date(reloads.lastAt).toISOString(),
        last_errors: reloads.lastErrors,
      },
    });
  }
  if (method === "GET" && path === "/connections") {
    return json({ connections: await supervisor.connections() });
  }
  if (method === "GET" && path === "/counters") {
    const stats = await supervisor.stats();
    const t = sumTables(stats.workers);
    const named = (names: readonly string[], values: number[]) =>
      Object.fromEntries(names.map((n, i) => [n, values[i]]));
    return json({
      counters: stats.counters,
      gauges: {
        connections: stats.connections,
        queued_bytes: supervisor.sharedCounters.queuedBytes,
        blacklist_entries: supervisor.blacklist().length,
        bans: supervisor.bans().length,
      },
      requests_in: named(METHOD_LABELS, t.requestsIn),
      requests_forwarded: named(METHOD_LABELS, t.requestsOut),
      responses_in: named(STATUS_CLASSES, t.responsesIn),
      responses_forwarded: named(STATUS_CLASSES, t.responsesOut),
      local_replies: named(STATUS_CLASSES, t.localReplies),
      failures: named(FAILURE_REASONS, t.failures),
    });
  }
  if (method === "GET" && path === "/metrics") {
    const stats = await supervisor.stats();
    const memory = Deno.memoryUsage();
    const cpu = process.cpuUsage();
    const body = renderMetrics({
      version: options.version,
      startedAt: started,
      now: Date.now(),
      workers: stats.workers,
      transports: supervisor.config.plugins.filter((p) => p.kind === "transport").map((p) =>
        p.name
      ),
      queuedBytes: supervisor.sharedCounters.queuedBytes,
      blacklistEntries: supervisor.blacklist().length,
      bans: { active: supervisor.bans().length, started: supervisor.banCounts },
      reloads: supervisor.reloadStats,
      pool: supervisor.workerStatus(),
      process: {
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        residentBytes: memory.rss,
        heapUsedBytes: memory.heapUsed,
      },
    });
    return new Response(body, { headers: { "content-type": METRICS_CONTENT_TYPE } });
  }
  if (method === "POST" && path === "/reload") {
    const report = await supervisor.reload();
    return json(report, report.ok ? 200 : 422);
  }
  if (method === "GET" && path === "/plugins") {
    return json({
      plugins: supervisor.config.plugins.map((p) => ({
        name: p.name,
        kind: p.kind,
        module: p.moduleUrl ?? "built-in",
      })),
    });
  }
  if (method === "GET" && path.startsWith("/plugins/")) {
    const name = decodedTail(path, "/plugins/");
    if (name instanceof Response) return name;
    const view = await inspectPlugin(supervisor, name);
    if (view === undefined) return json({ error: `plugin ${name} is not enabled` }, 404);
    return json(view);
  }
  if (method === "GET" && path === "/tls/domains") {
    const view = await inspectPlugin(supervisor, "tls");
    if (view === undefined) {
      return json({ error: "TLS is not enabled (no [plugins.tls] table in the config)" }, 404);
    }
    return json(view);
  }
  if (path === "/blacklist") {
    if (method === "GET") return json({ entries: supervisor.blacklist() });
    if (method === "DELETE") {
      supervisor.blacklistClear();
      return json({ cleared: true });
    }
    if (method === "POST") return addEntry(supervisor, request);
  }
  if (method === "DELETE" && path.startsWith("/blacklist/")) {
    const raw = decodedTail(path, "/blacklist/");
    if (raw instanceof Response) return raw;
    const key = normalizeKey(raw);
    if (key === undefined) return json({ error: "expected TRANSPORT:HOST:PORT" }, 400);
    const existed = supervisor.blacklistDelete(key);
    return json({ deleted: existed, key }, existed ? 200 : 404);
  }
  if (path === "/bans") {
    if (method === "GET") {
      const now = Date.now();
      return json({
        bans: supervisor.bans().map((b) => ({ ...b, remainingMs: b.expiresAt - now })),
        tracked_sources: supervisor.sourceTable.count(),
        capacity: supervisor.sourceTable.capacity,
      });
    }
    if (method === "DELETE") {
      supervisor.banClear();
      return json({ cleared: true });
    }
    if (method === "POST") return addBan(supervisor, request);
  }
  if (method === "DELETE" && path.startsWith("/bans/")) {
    const raw = decodedTail(path, "/bans/");
    if (raw instanceof Response) return raw;
    // The key as listed (`2001:db8::/64`), or any address in it.
    const key = supervisor.bans().some((b) => b.key === raw) ? raw : supervisor.banKeyOf(raw);
    if (key === undefined) return json({ error: "expected an IPv4 or IPv6 address" }, 400);
    const existed = supervisor.banDelete(key);
    return json({ deleted: existed, key }, existed ? 200 : 404);
  }
  return json({ error: `no route for ${method} ${path}` }, 404);
}

async function addBan(supervisor: Supervisor, request: Request): Promise<Response> {
  let body: { address?: unknown; expire?: unknown };
  try {
    body = await request.json();
  } catch {
    return json({ error: "body must be JSON" }, 400);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return json({ error: "body must be a JSON object" }, 400);
  }
  const address = typeof body.address === "string"
    ? body.address.trim().replace(/^\[(.*)\]$/, "$1")
    : "";
  const key = supervisor.banKeyOf(address);
  if (key === undefined) {
    return json({ error: "address: expected an IPv4 or IPv6 address like 192.0.2.9" }, 400);
  }
  const trusted = supervisor.floodSettings?.trusted.find((t) => inTrusted(t, address));
  if (trusted !== undefined) {
    return json({
      error: `address: ${address} is trusted (plugins.flood_guard.trusted: ${trusted})`,
    }, 400);
  }
  const expire = positiveDurationSchema.safeParse(
    body.expire ?? `${supervisor.floodSettings?.ban ?? 60_000}ms`,
  );
  if (!expire.success) return json({ error: "expire: a duration like 30s or 10m" }, 400);
  const now = Date.now();
  const entry = {
    key,
    address,
    reason: "admin" as const,
    rate: 0,
    addedAt: now,
    expiresAt: now + expire.data,
  };
  supervisor.banAdd(entry);
  return json({ added: entry }, 201);
}

function inTrusted(range: string, address: string): boolean {
  const r = parseCidr(range);
  const ip = parseIp(address);
  return typeof r !== "string" && ip !== undefined && contains(r, ip);
}

/**
 * What a plugin shows of itself: its definition's `inspect(config)`, else its config; secrets
 * redacted either way. Undefined when no plugin of that name is enabled.
 */
async function inspectPlugin(supervisor: Supervisor, name: string): Promise<unknown> {
  const plugin = supervisor.config.plugins.find((p) => p.name === name);
  if (plugin === undefined) return undefined;
  return redact(await pluginView(plugin));
}

const SECRET_KEY = /pass(word|phrase)|secret|token/i;

/**
 * Replaces what must not leave the process: values of keys that name a secret (password,
 * passphrase, secret, token), PEM blocks and raw bytes (a prepared TLS config may carry key
 * material). A plugin's `inspect` should not return them; this is the safety net, for the
 * plain-config fallback above all.
 */
export function redact(value: unknown, key = ""): unknown {
  if (typeof value === "string") {
    if (value.includes("-----BEGIN")) return `(PEM, ${value.length} characters)`;
    return SECRET_KEY.test(key) && value !== "" ? "(redacted)" : value;
  }
  if (value instanceof Uint8Array) return `(${value.length} bytes)`;
  if (Array.isArray(value)) return value.map((v) => redact(v, key));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v, k)]));
  }
  return value;
}

async function addEntry(supervisor: Supervisor, request: Request): Promise<Response> {
  let body: { destination?: unknown; expire?: unknown };
  try {
    body = await request.json();
  } catch {
    return json({ error: "body must be JSON" }, 400);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return json({ error: "body must be a JSON object" }, 400);
  }
  const key = typeof body.destination === "string" ? normalizeKey(body.destination) : undefined;
  if (key === undefined) {
    return json({ error: "destination: expected TRANSPORT:HOST:PORT or a sip: URI" }, 400);
  }
  const expire = durationSchema.safeParse(body.expire ?? defaultExpire(supervisor));
  if (!expire.success) return json({ error: "expire: a duration like 30s or 5m" }, 400);
  const now = Date.now();
  const entry = { key, reason: "admin" as const, addedAt: now, expiresAt: now + expire.data };
  supervisor.blacklistAdd(entry);
  return json({ added: entry }, 201);
}

function defaultExpire(supervisor: Supervisor): string {
  return `${supervisor.blacklistSettings?.expire ?? 60_000}ms`;
}

/** `tcp:10.0.0.5:5060` or `sip:10.0.0.5:5060;transport=tcp` -> the blacklist key. */
function normalizeKey(text: string): string | undefined {
  if (/^sips?:/i.test(text)) {
    try {
      const d = parseDestination(text);
      return destinationKey(d.transport, d.host, d.port || (d.transport === "tls" ? 5061 : 5060));
    } catch {
      return undefined;
    }
  }
  const m = /^([a-z][a-z0-9_]*):(.+)$/.exec(text);
  const hostPort = m && parseHostPort(m[2]);
  if (!m || !hostPort || hostPort.port === 0) return undefined;
  return destinationKey(m[1], hostPort.host.replace(/^\[(.*)\]$/, "$1"), hostPort.port);
}

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** The rest of `path` after `prefix`, percent-decoded, or the 400 answer when it is malformed. */
function decodedTail(path: string, prefix: string): string | Response {
  try {
    return decodeURIComponent(path.slice(prefix.length));
  } catch {
    return json({ error: "malformed percent-encoding in the path" }, 400);
  }
}
