/**
 * `sipedge ctl`: the command-line client of the control API (core/control_api.ts), in the
 * spirit of Kamailio's kamcmd -- plain aligned tables by default, the API's JSON with `--json`.
 *
 * ```sh
 * sipedge ctl status
 * sipedge ctl connections
 * sipedge ctl blacklist add tcp:10.0.0.5:5060 5m
 * sipedge ctl --json stats | jq .failures
 * sipedge ctl reload
 * ```
 *
 * Where it connects: `--url`, else `[control] address` of `--config FILE` or of ./config.toml,
 * else 127.0.0.1:8060. The bearer token: `--token`, else `$SIPEDGE_CONTROL_TOKEN`, else the
 * config's `[control] token`. Exit status: 0 done, 1 the server reported a failure (reload
 * refused, no such entry, TLS not enabled, ...), 2 usage error or no answer from the URL.
 * @module
 */
import type { ConnectionInfo } from "./transport/connection_manager.ts";
import { OptionReader } from "./cli.ts";
import { parse as parseToml } from "smol-toml";
import { COUNTER_HELP } from "./stats.ts";

/** Default control API address (the bundled config.toml's). */
export const DEFAULT_CONTROL_URL = "http://127.0.0.1:8060";

/** Environment variable holding the bearer token. */
export const TOKEN_ENV = "SIPEDGE_CONTROL_TOKEN";

/** `sipedge ctl help` text. */
export const CTL_USAGE = `Usage: sipedge ctl [options] COMMAND [ARGS]

Talks to a running sipedge through its control API.

Commands:
  status                          version, uptime, workers, listeners, gauges, reloads
  connections                     every connection of every worker
  stats                           counters, messages by method and status class, failures
  blacklist [list]                blacklisted destinations
  blacklist add DEST [EXPIRE]     block DEST (tcp:10.0.0.5:5060 or a sip: URI) for EXPIRE
                                  (30s, 5m, 1h; default: the blacklist plugin's expire)
  blacklist delete DEST           unblock DEST
  blacklist clear                 unblock everything
  bans                            banned sources (flood_guard and operators)
  ban add ADDR [TIME]             ban source ADDR (192.0.2.9, 2001:db8::1: its /64) for TIME
                                  (30s, 10m, 1h; default: the flood_guard plugin's ban)
  ban delete ADDR                 lift the ban of ADDR (an address, or the prefix as listed)
  ban clear                       lift every ban
  tls domains                     TLS server and client domains (certificates, expiry)
  plugins [NAME]                  enabled plugins, or what one plugin shows of itself
  reload                          reload the config file (all or nothing; errors listed)
  metrics                         the Prometheus /metrics page, as is
  help                            this text

Options:
  --url URL        control API, e.g. http://127.0.0.1:8060 (default: [control] address
                   of --config FILE or ./config.toml, else 127.0.0.1:8060)
  --config FILE    config file to take the address and token from
  --token TOKEN    bearer token (default: $${TOKEN_ENV}, else the config's [control] token)
  --json           print the API's JSON instead of tables
  --timeout SECS   how long to wait for an answer (default 10; reload 60)

Exit status: 0 done, 1 the server reported a failure, 2 usage error or no answer.
`;

/** What ctl uses from the outside world (tests pass fakes). */
export interface CtlIo {
  fetch: typeof fetch;
  /** Writes to stdout (text ends with a line feed). */
  out(text: string): void;
  /** Writes to stderr. */
  err(text: string): void;
  env(name: string): string | undefined;
  /** Reads a file; throws Deno.errors.NotFound when there is none. */
  readTextFile(path: string): Promise<string>;
}

const encoder = new TextEncoder();

/** The real stdout, stderr, environment, files and network. */
export const DENO_IO: CtlIo = {
  fetch: (input, init) => fetch(input, init),
  out: (text) => void Deno.stdout.writeSync(encoder.encode(text)),
  err: (text) => void Deno.stderr.writeSync(encoder.encode(text)),
  env: (name) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined; // no --allow-env: as if unset
    }
  },
  readTextFile: (path) => Deno.readTextFile(path),
};

/** A usage or connection problem: exit status 2. */
class UsageError extends Error {}

interface CtlOptions {
  url?: string;
  config?: string;
  token?: string;
  json: boolean;
  timeoutMs?: number;
  words: string[];
}

/** Runs `sipedge ctl ARGS`; returns the exit status. */
export async function runCtl(args: string[], io: CtlIo = DENO_IO): Promise<number> {
  let options: CtlOptions;
  try {
    options = parseCtlArgs(args);
  } catch (error) {
    io.err(`sipedge ctl: ${(error as Error).message}\n`);
    return 2;
  }
  const [command = "help", ...rest] = options.words;
  if (command === "help" || command === "--help" || command === "-h") {
    io.out(CTL_USAGE);
    return 0;
  }
  const handler = COMMANDS[command];
  if (handler === undefined) {
    io.err(`sipedge ctl: unknown command "${command}" (see sipedge ctl help)\n`);
    return 2;
  }
  try {
    const client = await connect(options, io);
    return await handler(client, rest);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`sipedge ctl: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

/** Parses options (anywhere on the line) and the command words. */
function parseCtlArgs(args: string[]): CtlOptions {
  const options: CtlOptions = { json: false, words: [] };
  const reader = new OptionReader(args);
  const value = () => reader.value();
  while (reader.next()) {
    if (!reader.arg.startsWith("--") || reader.arg === "--help") {
      options.words.push(reader.arg);
      continue;
    }
    switch (reader.name) {
      case "--url":
        options.url = value();
        break;
      case "--config":
        options.config = value();
        break;
      case "--token":
        options.token = value();
        break;
      case "--json":
        options.json = reader.flag();
        break;
      case "--timeout": {
        const text = value();
        const seconds = Number(text);
        if (!/^[0-9]+(\.[0-9]+)?$/.test(text) || seconds <= 0 || seconds > 3600) {
          throw new Error(`--timeout ${text}: expected seconds, e.g. 10`);
        }
        options.timeoutMs = seconds * 1000;
        break;
      }
      default:
        throw new Error(`unknown option ${reader.arg} (see sipedge ctl help)`);
    }
  }
  return options;
}

// --- the connection ------------------------------------------------------------------------

/** An answer of the control API. */
interface Answer {
  status: number;
  /** Parsed JSON (undefined for /metrics). */
  body: unknown;
  text: string;
}

/** A connected client: requests and output. */
interface Client {
  url: string;
  json: boolean;
  io: CtlIo;
  request(method: string, path: string, body?: unknown): Promise<Answer>;
}

async function connect(options: CtlOptions, io: CtlIo): Promise<Client> {
  const { url, configToken } = await resolveTarget(options, io);
  const token = options.token ?? io.env(TOKEN_ENV) ?? configToken;
  const request = async (method: string, path: string, body?: unknown): Promise<Answer> => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const timeoutMs = options.timeoutMs ?? (path === "/reload" ? 60_000 : 10_000);
    let response: Response;
    try {
      response = await io.fetch(`${url}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const e = error as Error;
      const why = e.name === "TimeoutError" ? `no answer within ${timeoutMs / 1000} s` : causeOf(e);
      throw new UsageError(
        `cannot reach the control API at ${url}: ${why}\n` +
          "  (is sipedge running with [control] address set? see --url and sipedge ctl help)",
      );
    }
    const text = await response.text();
    if (response.status === 401) {
      throw new UsageError(
        `the control API at ${url} refused the request: missing or wrong bearer token ` +
          `(--token, $${TOKEN_ENV} or [control] token)`,
      );
    }
    const isJson = (response.headers.get("content-type") ?? "").includes("application/json");
    let parsed: unknown;
    if (isJson) {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new UsageError(`${url}${path} answered malformed JSON (is it sipedge?)`);
      }
    } else if (path !== "/metrics") {
      throw new UsageError(
        `${url}${path} answered HTTP ${response.status} ${
          response.headers.get("content-type") ?? "without a content type"
        }, not JSON (is it sipedge's control API?)`,
      );
    }
    return { status: response.status, body: parsed, text };
  };
  return { url, json: options.json, io, request };
}

/** The control API URL and the config's token, from the options or the config file. */
async function resolveTarget(
  options: CtlOptions,
  io: CtlIo,
): Promise<{ url: string; configToken?: string }> {
  let configToken: string | undefined;
  let address: string | undefined;
  const path = options.config ?? "config.toml";
  let text: string | undefined;
  try {
    text = await io.readTextFile(path);
  } catch (error) {
    // No ./config.toml is fine (defaults); a --config that cannot be read is not.
    if (options.config !== undefined) {
      throw new UsageError(`cannot read ${path}: ${(error as Error).message}`);
    }
  }
  if (text !== undefined) {
    let control: { address?: unknown; token?: unknown } | undefined;
    try {
      control = (parseToml(text) as { control?: typeof control }).control;
    } catch (error) {
      if (options.url === undefined) {
        throw new UsageError(`${path}: ${(error as Error).message.split("\n")[0]}`);
      }
    }
    if (typeof control?.token === "string" && control.token !== "") configToken = control.token;
    if (typeof control?.address === "string") address = control.address;
    if (options.url === undefined && address === "") {
      throw new UsageError(
        `the control API is off in ${path} ([control] address is empty); ` +
          "pass --url if sipedge was started with --control",
      );
    }
  }
  if (options.url !== undefined) return { url: normalizeUrl(options.url), configToken };
  if (address === undefined) return { url: DEFAULT_CONTROL_URL, configToken };
  const m = /^(\[[^\]]+\]|[^:]+):([0-9]+)$/.exec(address);
  if (m === null) throw new UsageError(`${path}: [control] address ${address}: not HOST:PORT`);
  if (m[2] === "0") {
    throw new UsageError(
      `${path}: [control] address ${address} asks for any free port; pass --url with the ` +
        'address sipedge printed ("sipedge control API: http://...")',
    );
  }
  // A wildcard listen address is reached through loopback.
  const host = m[1] === "0.0.0.0" ? "127.0.0.1" : m[1] === "[::]" ? "[::1]" : m[1];
  return { url: `http://${host}:${m[2]}`, configToken };
}

/** The innermost useful message: fetch says "fetch failed" and puts the reason in `cause`. */
function causeOf(error: Error): string {
  const cause = (error.cause as Error | undefined)?.message ?? error.message;
  // "error sending request for url (...): client error (Connect): tcp connect error: Connection
  // refused (os error 111)" -> "Connection refused".
  const last = cause.split(": ").pop()!.replace(/ \(os error [0-9]+\)$/, "");
  return last || cause;
}

function normalizeUrl(text: string): string {
  const url = /^[a-z]+:\/\//i.test(text) ? text : `http://${text}`;
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error();
    return parsed.origin;
  } catch {
    throw new UsageError(`--url ${text}: expected http://HOST:PORT`);
  }
}

// --- commands --------------------------------------------------------------------------

type Command = (client: Client, args: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  status: simple("/status", renderStatus),
  connections: simple("/connections", renderConnections),
  stats: simple("/counters", renderStats),
  counters: simple("/counters", renderStats),
  blacklist: blacklistCommand,
  bans: simple("/bans", renderBans),
  ban: banCommand,
  tls: async (client, args) => {
    if (args[0] !== "domains" || args.length > 1) throw new UsageError("usage: tls domains");
    return await show(client, await client.request("GET", "/tls/domains"), renderGeneric);
  },
  plugins: async (client, args) => {
    if (args.length > 1) throw new UsageError("usage: plugins [NAME]");
    if (args.length === 0) {
      return await show(client, await client.request("GET", "/plugins"), renderPlugins);
    }
    const answer = await client.request("GET", `/plugins/${encodeURIComponent(args[0])}`);
    return await show(client, answer, renderGeneric);
  },
  reload: async (client, args) => {
    if (args.length > 0) throw new UsageError("usage: reload");
    const answer = await client.request("POST", "/reload");
    if (client.json) return print(client, answer);
    const report = answer.body as {
      ok?: boolean;
      source?: string;
      changes?: string[];
      errors?: string[];
      error?: string;
    };
    if (answer.status === 200 && report.ok) {
      const changes = report.changes ?? [];
      client.io.out(
        `reloaded ${report.source}: ${
          changes.length === 0 ? "no changes" : `${changes.length} change(s)`
        }\n${changes.map((c) => `  ${c}\n`).join("")}`,
      );
      return 0;
    }
    const errors = report.errors ?? [report.error ?? `HTTP ${answer.status}`];
    client.io.err(
      `reload of ${report.source ?? "the config"} refused; the running configuration is ` +
        `unchanged:\n${errors.map((e) => `  ${e}\n`).join("")}`,
    );
    return 1;
  },
  metrics: async (client, args) => {
    if (args.length > 0) throw new UsageError("usage: metrics");
    const answer = await client.request("GET", "/metrics");
    if (answer.status !== 200) return failed(client, answer);
    client.io.out(answer.text);
    return 0;
  },
};

/** What differs between the commands that manage a table of entries (blacklist, bans). */
interface TableCommand {
  /** The control API path: `/blacklist`, `/bans`. */
  path: string;
  /** The key of the added entry in the POST body: `destination`, `address`. */
  field: string;
  render(body: unknown): string;
  added: string;
  notThere: string;
  deleted: string;
  cleared: string;
  usage: string;
}

/** `list | add KEY [EXPIRE] | delete KEY | clear` for a table of entries. */
function tableCommand(spec: TableCommand): Command {
  return async (client, args) => {
    const [sub = "list", ...rest] = args;
    switch (sub) {
      case "list":
      case "show":
        if (rest.length > 0) break;
        return await show(client, await client.request("GET", spec.path), spec.render);
      case "add": {
        if (rest.length < 1 || rest.length > 2) break;
        const body: Record<string, string> = { [spec.field]: rest[0] };
        if (rest[1] !== undefined) body.expire = rest[1];
        const answer = await client.request("POST", spec.path, body);
        return await show(client, answer, (b) => {
          const entry = (b as { added: { key: string; addedAt: number; expiresAt: number } }).added;
          return `${spec.added} ${entry.key} until ${clock(entry.expiresAt)} (${
            duration(entry.expiresAt - entry.addedAt)
          })\n`;
        });
      }
      case "delete":
      case "del":
      case "rm": {
        if (rest.length !== 1) break;
        const answer = await client.request(
          "DELETE",
          `${spec.path}/${encodeURIComponent(rest[0])}`,
        );
        const key = (answer.body as { key?: string }).key;
        if (answer.status === 404 && !client.json && key) {
          client.io.err(`${key} ${spec.notThere}\n`);
          return 1;
        }
        return await show(client, answer, (b) => `${spec.deleted} ${(b as { key: string }).key}\n`);
      }
      case "clear":
        if (rest.length > 0) break;
        return await show(
          client,
          await client.request("DELETE", spec.path),
          () => `${spec.cleared}\n`,
        );
    }
    throw new UsageError(spec.usage);
  };
}

function blacklistCommand(client: Client, args: string[]): Promise<number> {
  return tableCommand(BLACKLIST)(client, args);
}

function banCommand(client: Client, args: string[]): Promise<number> {
  return tableCommand(BANS)(client, args);
}

const BLACKLIST: TableCommand = {
  path: "/blacklist",
  field: "destination",
  render: renderBlacklist,
  added: "added",
  notThere: "is not in the blacklist",
  deleted: "deleted",
  cleared: "blacklist cleared",
  usage: "usage: blacklist [list | add DEST [EXPIRE] | delete DEST | clear]",
};

const BANS: TableCommand = {
  path: "/bans",
  field: "address",
  render: renderBans,
  added: "banned",
  notThere: "is not banned",
  deleted: "lifted the ban of",
  cleared: "bans cleared",
  usage: "usage: ban [list | add ADDR [TIME] | delete ADDR | clear]",
};

/** A GET whose JSON is rendered by `render`. */
function simple(path: string, render: (body: unknown) => string): Command {
  return async (client, args) => {
    if (args.length > 0) throw new UsageError(`unexpected ${args.join(" ")}`);
    return await show(client, await client.request("GET", path), render);
  };
}

/** Prints an answer: the JSON with --json, else the rendering; errors give status 1 or 2. */
function show(client: Client, answer: Answer, render: (body: unknown) => string): number {
  if (client.json) return print(client, answer);
  if (answer.status >= 300) return failed(client, answer);
  client.io.out(render(answer.body));
  return 0;
}

function print(client: Client, answer: Answer): number {
  client.io.out(JSON.stringify(answer.body, null, 2) + "\n");
  return answer.status >= 300 ? exitFor(answer.status) : 0;
}

function failed(client: Client, answer: Answer): number {
  const message = (answer.body as { error?: string } | undefined)?.error ??
    `HTTP ${answer.status}`;
  client.io.err(`sipedge ctl: ${message}\n`);
  return exitFor(answer.status);
}

/** 400: what we sent was wrong (a usage error); anything else is the server's answer. */
function exitFor(status: number): number {
  return status === 400 ? 2 : 1;
}

// --- rendering -------------------------------------------------------------------------

interface BlacklistEntry {
  key: string;
  reason: string;
  addedAt: number;
  expiresAt: number;
}

interface BanRow {
  key: string;
  address: string;
  reason: string;
  rate: number;
  addedAt: number;
  expiresAt: number;
}

type ConnectionRow = ConnectionInfo;

/**
 * Aligned columns, two spaces apart; numbers right-aligned. Without `headers`, a key/value
 * list. No trailing spaces.
 */
export function table(headers: string[] | undefined, rows: unknown[][]): string {
  const cells = rows.map((r) => r.map(cell));
  const all = headers === undefined ? cells : [headers, ...cells];
  if (all.length === 0) return "";
  const columns = Math.max(...all.map((r) => r.length));
  const width = Array.from(
    { length: columns },
    (_, c) => Math.max(...all.map((r) => (r[c] ?? "").length)),
  );
  const right = Array.from(
    { length: columns },
    (_, c) => rows.length > 0 && rows.every((r) => typeof r[c] === "number"),
  );
  return all.map((r) =>
    r.map((text, c) => right[c] ? text.padStart(width[c]) : text.padEnd(width[c]))
      .join("  ").trimEnd() + "\n"
  ).join("");
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return "-";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.map(cell).join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** `450ms`, `12.5s`, `5m12s`, `2h03m`, `3d04h`. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms)) return "-";
  if (ms < 0) return `-${duration(-ms)}`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.floor(s)}s`;
  const two = (n: number) => String(n).padStart(2, "0");
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${two(Math.floor(s % 60))}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${two(m % 60)}m`;
  return `${Math.floor(h / 24)}d${two(h % 24)}h`;
}

/** Local time of day (`14:03:27`), with the date when it is not today. */
function clock(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, "0");
  const time = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${time}`;
}

/** `2 up of 2`, then what is wrong: restarting, not answering, restarts by reason. */
function workersText(w: unknown): string {
  if (typeof w === "number") return String(w); // a sipedge before worker supervision
  const p = w as {
    configured: number;
    up: number;
    restarting: number[];
    unresponsive: number[];
    restarts: Record<string, number>;
    connections_lost: number;
    stuck: number;
  };
  const parts = [`${p.up} up of ${p.configured}`];
  if (p.restarting.length > 0) parts.push(`restarting: ${p.restarting.join(", ")}`);
  if (p.unresponsive.length > 0) parts.push(`not answering: ${p.unresponsive.join(", ")}`);
  const restarts = Object.entries(p.restarts).filter(([, n]) => n > 0);
  if (restarts.length > 0) {
    parts.push(
      `restarts: ${restarts.map(([r, n]) => `${n} ${r}`).join(", ")}; ` +
        `${p.connections_lost} connections lost`,
    );
  }
  if (p.stuck > 0) parts.push(`${p.stuck} stuck`);
  return parts.join("; ");
}

function renderStatus(body: unknown): string {
  const s = body as {
    version: string;
    config?: string;
    workers: number | {
      configured: number;
      up: number;
      restarting: number[];
      unresponsive: number[];
      restarts: Record<string, number>;
      connections_lost: number;
      stuck: number;
    };
    listeners: { transport: string; hostname: string; port: number }[];
    uptime_ms: number;
    connections: number;
    queued_bytes: number;
    blacklist_entries: number;
    bans?: number;
    reloads?: { succeeded: number; failed: number; last_at: string | null; last_errors: string[] };
  };
  const listeners = s.listeners.map((l) =>
    `${l.transport}:${l.hostname.includes(":") ? `[${l.hostname}]` : l.hostname}:${l.port}`
  );
  const rows: unknown[][] = [
    ["version", `sipedge ${s.version}`],
    ["uptime", duration(s.uptime_ms)],
  ];
  if (s.config !== undefined) rows.push(["config", s.config]);
  rows.push(
    ["workers", workersText(s.workers)],
    ["listening", listeners.join(", ") || "-"],
    ["connections", String(s.connections)],
    ["queued bytes", String(s.queued_bytes)],
    ["blacklisted", String(s.blacklist_entries)],
  );
  if (s.bans !== undefined) rows.push(["banned sources", String(s.bans)]);
  if (s.reloads !== undefined) {
    const r = s.reloads;
    let text = `${r.succeeded} applied, ${r.failed} refused`;
    if (r.last_at !== null) {
      text += `; last ${clock(Date.parse(r.last_at))} ${
        r.last_errors.length > 0 ? "refused" : "applied"
      }`;
    }
    rows.push(["reloads", text]);
    for (const e of r.last_errors) rows.push(["", `  ${e}`]);
  }
  return table(undefined, rows.map(([k, v]) => [`${k}${k === "" ? "" : ":"}`, v]));
}

function renderConnections(body: unknown): string {
  const list = (body as { connections: ConnectionRow[] }).connections;
  if (list.length === 0) return "no connections\n";
  // TLS connections carry their handshake's outcome; the columns appear when one is listed.
  const tls = list.some((c) => c.details !== undefined);
  const rows = [...list].sort((a, b) => a.worker - b.worker || a.id - b.id).map((c) => [
    c.id,
    c.worker,
    c.transport,
    c.direction,
    c.state,
    c.local || "-",
    c.remote,
    c.asyncMode ? "async" : "-",
    c.flow ? "flow" : "-",
    c.queuedBytes,
    duration(c.ageMs),
    duration(c.idleMs),
    ...(tls
      ? [
        c.details === undefined ? "-" : `${c.details.tls_version ?? "?"} ${c.details.cipher ?? ""}`,
        c.details?.sni,
        c.details?.peer_certificate,
      ]
      : []),
  ]);
  return table(
    [
      "ID",
      "WORKER",
      "TRANSPORT",
      "DIR",
      "STATE",
      "LOCAL",
      "REMOTE",
      "MODE",
      "FLOW",
      "QUEUED",
      "AGE",
      "IDLE",
      ...(tls ? ["TLS", "SNI", "PEER CERTIFICATE"] : []),
    ],
    rows,
  ) + `${list.length} connection${list.length === 1 ? "" : "s"}\n`;
}

function renderStats(body: unknown): string {
  const b = body as {
    counters: Record<string, number>;
    gauges: Record<string, number>;
    requests_in?: Record<string, number>;
    requests_forwarded?: Record<string, number>;
    responses_in?: Record<string, number>;
    responses_forwarded?: Record<string, number>;
    local_replies?: Record<string, number>;
    failures?: Record<string, number>;
  };
  const help = COUNTER_HELP as Record<string, string>;
  let out = table(
    ["GAUGE", "VALUE"],
    Object.entries(b.gauges).map(([k, v]) => [k, v]),
  );
  out += "\n" + table(
    ["COUNTER", "VALUE", "MEANING"],
    Object.entries(b.counters).map(([k, v]) => [k, v, help[k] ?? ""]),
  );
  if (b.requests_in && b.requests_forwarded) {
    const rows = Object.keys(b.requests_in).map((m) => [
      m,
      b.requests_in![m] ?? 0,
      b.requests_forwarded![m] ?? 0,
    ]).filter((r) => r[1] !== 0 || r[2] !== 0);
    out += "\n" +
      (rows.length === 0
        ? "requests by method: none yet\n"
        : table(["METHOD", "IN", "FORWARDED"], rows));
  }
  if (b.responses_in && b.responses_forwarded && b.local_replies) {
    const rows = Object.keys(b.responses_in).map((c) => [
      c,
      b.responses_in![c] ?? 0,
      b.responses_forwarded![c] ?? 0,
      b.local_replies![c] ?? 0,
    ]).filter((r) => r[1] !== 0 || r[2] !== 0 || r[3] !== 0);
    out += "\n" +
      (rows.length === 0
        ? "responses by status class: none yet\n"
        : table(["STATUS", "IN", "FORWARDED", "LOCAL"], rows));
  }
  if (b.failures) {
    const rows = Object.entries(b.failures).filter(([, v]) => v !== 0);
    out += "\n" +
      (rows.length === 0
        ? "send failures: none\n"
        : table(["FAILURE", "COUNT"], rows.map(([k, v]) => [k, v])));
  }
  return out;
}

function renderBlacklist(body: unknown): string {
  const entries = (body as { entries: BlacklistEntry[] }).entries;
  if (entries.length === 0) return "the blacklist is empty\n";
  const now = Date.now();
  return table(
    ["DESTINATION", "REASON", "EXPIRES IN", "UNTIL", "ADDED"],
    [...entries].sort((a, b) => a.expiresAt - b.expiresAt).map((e) => [
      e.key,
      e.reason,
      duration(e.expiresAt - now),
      clock(e.expiresAt),
      `${duration(now - e.addedAt)} ago`,
    ]),
  ) + `${entries.length} entr${entries.length === 1 ? "y" : "ies"}\n`;
}

function renderBans(body: unknown): string {
  const { bans, tracked_sources: tracked } = body as { bans: BanRow[]; tracked_sources?: number };
  const footer = tracked === undefined ? "" : `; ${tracked} sources tracked`;
  if (bans.length === 0) return `no source is banned${footer}\n`;
  const now = Date.now();
  return table(
    ["SOURCE", "REASON", "RATE SEEN", "EXPIRES IN", "UNTIL", "ADDED"],
    [...bans].sort((a, b) => a.expiresAt - b.expiresAt).map((b) => [
      b.key,
      b.reason,
      b.reason === "flood" ? `${b.rate}/s` : "-",
      duration(b.expiresAt - now),
      clock(b.expiresAt),
      `${duration(now - b.addedAt)} ago`,
    ]),
  ) + `${bans.length} ban${bans.length === 1 ? "" : "s"}${footer}\n`;
}

function renderPlugins(body: unknown): string {
  const plugins = (body as { plugins: { name: string; kind: string; module: string }[] })
    .plugins;
  return table(["NAME", "KIND", "MODULE"], plugins.map((p) => [p.name, p.kind, p.module]));
}

/**
 * Any JSON as text: scalars as aligned `key: value` lines, arrays of objects as tables (one
 * column per key), nested objects indented under their key. For views whose shape ctl does
 * not know (a plugin's inspect, TLS domains).
 */
export function renderGeneric(value: unknown, indent = ""): string {
  if (isRows(value)) return indentLines(rowsTable(value), indent);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return `${indent}${cell(value)}\n`;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return `${indent}(empty)\n`;
  let out = "";
  let scalars: unknown[][] = [];
  const flush = () => {
    if (scalars.length > 0) out += indentLines(table(undefined, scalars), indent);
    scalars = [];
  };
  for (const [key, v] of entries) {
    if (isRows(v)) {
      flush();
      out += `${indent}${key}:\n${indentLines(rowsTable(v), `${indent}  `)}`;
    } else if (Array.isArray(v) && v.length === 0) {
      scalars.push([`${key}:`, "(none)"]);
    } else if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      flush();
      out += `${indent}${key}:\n${renderGeneric(v, `${indent}  `)}`;
    } else {
      scalars.push([`${key}:`, cell(v)]);
    }
  }
  flush();
  return out;
}

function isRows(value: unknown): value is Record<string, unknown>[] {
  return Array.isArray(value) && value.length > 0 &&
    value.every((v) => v !== null && typeof v === "object" && !Array.isArray(v));
}

function rowsTable(rows: Record<string, unknown>[]): string {
  // Rows with nested objects (a TLS domain and its certificate) read better as blocks, one per
  // row, headed by its name, than as a table with JSON in its cells.
  const nested = rows.some((r) =>
    Object.values(r).some((v) => v !== null && typeof v === "object" && !Array.isArray(v))
  );
  if (nested) {
    return rows.map((r, i) => {
      const { name, ...rest } = r;
      return `${typeof name === "string" ? name : `#${i + 1}`}\n${renderGeneric(rest, "  ")}`;
    }).join("");
  }
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return table(keys.map((k) => k.toUpperCase()), rows.map((r) => keys.map((k) => r[k])));
}

function indentLines(text: string, indent: string): string {
  return indent === "" ? text : text.replace(/^(?=.)/gm, indent);
}
