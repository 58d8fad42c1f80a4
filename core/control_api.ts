/**
 * The control API: JSON over HTTP (Deno.serve) on the supervisor, loopback by default, with
 * an optional bearer token.
 *
 * | method and path              | what                                                   |
 * | ---------------------------- | ------------------------------------------------------ |
 * | GET /status                  | version, workers, listeners, uptime, gauges            |
 * | GET /connections             | every connection of every worker                       |
 * | GET /counters                | counters summed over workers, plus shared gauges       |
 * | GET /blacklist               | live blacklist entries                                 |
 * | POST /blacklist              | add `{"destination": "tcp:10.0.0.5:5060", "expire": "60s"}` (reason admin) |
 * | DELETE /blacklist/DEST       | remove one entry (`DEST` = `tcp:10.0.0.5:5060`, URL-encoded) |
 * | DELETE /blacklist            | remove every entry                                     |
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { durationSchema } from "./config/schema.ts";
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
    return json({
      version: options.version,
      workers: supervisor.workerCount,
      listeners: supervisor.listeners,
      uptime_ms: Date.now() - started,
      connections: stats.connections,
      queued_bytes: supervisor.sharedCounters.queuedBytes,
      blacklist_entries: supervisor.blacklist().length,
    });
  }
  if (method === "GET" && path === "/connections") {
    return json({ connections: await supervisor.connections() });
  }
  if (method === "GET" && path === "/counters") {
    const stats = await supervisor.stats();
    return json({
      counters: stats.counters,
      gauges: {
        connections: stats.connections,
        queued_bytes: supervisor.sharedCounters.queuedBytes,
        blacklist_entries: supervisor.blacklist().length,
      },
    });
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
    let raw: string;
    try {
      raw = decodeURIComponent(path.slice("/blacklist/".length));
    } catch {
      return json({ error: "malformed percent-encoding in the path" }, 400);
    }
    const key = normalizeKey(raw);
    if (key === undefined) return json({ error: "expected TRANSPORT:HOST:PORT" }, 400);
    const existed = supervisor.blacklistDelete(key);
    return json({ deleted: existed, key }, existed ? 200 : 404);
  }
  return json({ error: `no route for ${method} ${path}` }, 404);
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

/** `tcp:10.0.0.5:5060` or `sip:10.0.0.5:5060;transport=tcp` → the blacklist key. */
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
