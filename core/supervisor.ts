/**
 * The supervisor (main thread): starts the reader workers, owns what is global -- the shared
 * counters buffer (queued bytes, connections), the authoritative destination blacklist (copied
 * to every worker) -- gathers counters and connection lists for the control API, and stops the
 * workers. Worker 0 starts first so that listeners asked for on port 0 get a real port that
 * the other workers then share through SO_REUSEPORT.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  ConfigError,
  type ConfigOverrides,
  loadConfig,
  type ResolvedConfig,
  type ResolvedListen,
  type ResolvedPlugin,
} from "./config/load.ts";
import { inspectPlugin } from "./plugin/registry.ts";
import { describeChanges } from "./config/changes.ts";
import { setupLogging } from "./logging.ts";
import type { LogLevel } from "@logtape/logtape";
import { type BlacklistEntry, BlacklistTable } from "./policy/blacklist_table.ts";
import type { BlacklistSettings } from "./policy/settings.ts";
import { createSharedBuffer, SharedCounters } from "./policy/shared_counters.ts";
import { type BanChange, type BanEntry, type BanReason, BanTable } from "./policy/ban_table.ts";
import { banKeyOf, DEFAULT_IPV6_PREFIX, DEFAULT_MAX_BANS } from "./policy/flood_guard.ts";
import type { FloodGuardSettings } from "./policy/settings.ts";
import { parseIp } from "./policy/ip_prefix.ts";
import { createSourceTableBuffer, SourceTable } from "./policy/source_table.ts";
import {
  type BlacklistChange,
  type ConnectionInfo,
  DEFAULT_BLACKLIST_ENTRIES,
} from "./transport/connection_manager.ts";
import { ConnectionDirectory, createDirectoryBuffer } from "./transport/connection_directory.ts";
import { createHandoffProgress } from "./transport/handoff.ts";
import { type PoolStatus, WorkerPool } from "./worker_pool.ts";
import { configKeyHex, type FlowKey, randomKeyHex } from "./proxy/flow_token.ts";
import type { LimitSettings } from "./policy/settings.ts";
import type { WorkerStats } from "./stats.ts";

const log = getLogger(["sipedge", "supervisor"]);

/** A bound listener, as workers report it. */
export interface ListenerInfo {
  transport: string;
  hostname: string;
  port: number;
}

/** What a reload did: applied (with what changed) or refused (with every error). */
export type ReloadReport =
  | { ok: true; source: string; changes: string[] }
  | { ok: false; source: string; errors: string[] };

/** Reload totals, for /status and /metrics. */
export interface ReloadStats {
  succeeded: number;
  failed: number;
  /** Time of the last reload attempt (ms since epoch; 0 when none). */
  lastAt: number;
  /** Errors of the last reload when it failed, else empty. */
  lastErrors: string[];
}

/** Where the config comes from, so that a reload reads it again the same way. */
export interface SupervisorOptions {
  /** The config file; undefined when running on the built-in defaults. */
  path?: string;
  /** Command-line settings (`--listen`, `--forward`, `--workers`, `--control`): kept by reloads. */
  overrides?: ConfigOverrides;
  /** `--log-level`: wins over the file's `log_level`, also after reloads. */
  logLevel?: LogLevel;
  /** `--log-format`: wins over the file's `log_format`, also after reloads. */
  logFormat?: "text" | "json";
  /** A hung worker's thread cannot be stopped and `on_stuck_worker = "exit"`: stop the process. */
  onStuckWorker?: () => void;
}

/** Runs and stops the reader workers; the global state lives here. */
export class Supervisor {
  readonly shared: SharedArrayBuffer;
  readonly sharedCounters: SharedCounters;
  /** The connection directory, sized at start for max_connections over every transport. */
  readonly directory: SharedArrayBuffer;
  /** The flood guard's source table, sized at start for `max_sources`. */
  readonly sources: SharedArrayBuffer;
  readonly sourceTable: SourceTable;
  /** Bans started since the process started, by reason (for /metrics). */
  readonly banCounts: Record<BanReason, number> = { flood: 0, admin: 0 };
  /** This process among sipedge instances (in flow tokens). */
  readonly #instance = crypto.getRandomValues(new Uint32Array(1))[0];
  /** The flow token key used while `flows.key` is empty (for the life of the process). */
  readonly #randomFlowKey = randomKeyHex();
  /** Flow token keys in force: the current one first, then previous ones in their grace. */
  #flowKeys: FlowKey[] = [];
  /** The config in force, as sent to workers (listen ports as bound). */
  #config: ResolvedConfig;
  /** The same, as resolved from the file (listen port 0 kept): what reloads compare with. */
  #configured: ResolvedConfig;
  #options: SupervisorOptions;
  #workerCount: number;
  /** Reloads run one at a time, in order. */
  #reloading: Promise<unknown> = Promise.resolve();
  #pool: WorkerPool;
  #listeners: ListenerInfo[] = [];
  #blacklist: BlacklistTable;
  /** The authoritative ban table (sources); workers hold copies. */
  #bans: BanTable;
  /** Ends bans when they expire, while there are any. */
  #banTimer: ReturnType<typeof setInterval> | undefined;
  /** Reload totals. */
  readonly reloadStats: ReloadStats = { succeeded: 0, failed: 0, lastAt: 0, lastErrors: [] };

  constructor(config: ResolvedConfig, options: SupervisorOptions = {}) {
    this.#configured = config;
    this.#config = this.#withFlowSecrets(config);
    this.#options = options;
    const limits = config.plugins.find((p) => p.name === "limits")?.config as
      | LimitSettings
      | undefined;
    const transports = config.plugins.filter((p) => p.kind === "transport").length;
    this.directory = createDirectoryBuffer((limits?.max_connections ?? 2048) * transports);
    // Fixed at start: a reload that changes `workers` reports it as applying at the next start.
    this.#workerCount = config.sipedge.workers || navigator.hardwareConcurrency || 1;
    this.shared = createSharedBuffer(this.#workerCount);
    this.sharedCounters = new SharedCounters(this.shared);
    this.#blacklist = new BlacklistTable(
      this.blacklistSettings?.max_entries ?? DEFAULT_BLACKLIST_ENTRIES,
    );
    // Sized once: a larger max_sources applies at the next start.
    this.sources = createSourceTableBuffer(this.floodSettings?.max_sources ?? DEFAULT_MAX_BANS);
    this.sourceTable = new SourceTable(this.sources);
    this.#bans = new BanTable(this.floodSettings?.max_sources ?? DEFAULT_MAX_BANS);
    this.#pool = new WorkerPool({
      count: this.#workerCount,
      shared: this.shared,
      counters: this.sharedCounters,
      directory: this.directory,
      directoryView: new ConnectionDirectory(this.directory),
      handoffProgress: createHandoffProgress(this.#workerCount),
      config: () => this.#config,
      blacklist: () => this.#blacklist.list(Date.now()),
      onBlacklisted: (entry, from) => this.blacklistAdd(entry, from),
      sources: this.sources,
      sourcesView: this.sourceTable,
      bans: () => this.#bans.list(Date.now()),
      onFlooded: (entry, from) => this.#flooded(entry, from),
      serialize: (task) => this.#serialize(task),
      onStuckExit: () => this.#options.onStuckWorker?.(),
    });
  }

  /** The workers: configured, up, restarting, restarts by reason, connections lost. */
  workerStatus(): PoolStatus {
    return this.#pool.status();
  }

  /** Runs `task` after the reloads and worker restarts queued before it. */
  #serialize<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#reloading.then(task);
    this.#reloading = run.catch(() => {});
    return run;
  }

  /** Number of reader workers (resolving `workers = 0` to the CPU count). */
  get workerCount(): number {
    return this.#workerCount;
  }

  /** Bound listeners (after start). */
  get listeners(): readonly ListenerInfo[] {
    return this.#listeners;
  }

  /** The blacklist plugin's settings, or undefined when it is not enabled. */
  get blacklistSettings(): BlacklistSettings | undefined {
    return this.#config.plugins.find((p) => p.name === "blacklist")?.config as
      | BlacklistSettings
      | undefined;
  }

  /** The flood_guard plugin's settings, or undefined when it is not enabled. */
  get floodSettings(): FloodGuardSettings | undefined {
    return this.#config.plugins.find((p) => p.name === "flood_guard")?.config as
      | FloodGuardSettings
      | undefined;
  }

  /** Starts every worker; rejects (after stopping those started) if one fails. */
  async start(): Promise<void> {
    let config = this.#config;
    try {
      for (let id = 0; id < this.workerCount; id++) {
        const listeners = await this.#pool.start(id, config);
        if (id === 0) {
          this.#listeners = listeners;
          // Port 0 -> the port worker 0 got, so every worker listens on the same one.
          config = {
            ...config,
            listen: config.listen.map((l, i) => ({ ...l, port: listeners[i].port })),
          };
          this.#config = config;
        }
      }
    } catch (error) {
      await this.stop(0);
      throw error;
    }
  }

  /** The config in force. */
  get config(): ResolvedConfig {
    return this.#config;
  }

  /**
   * Reloads the config file (SIGHUP, `POST /reload`): parse -> validate -> build -> swap in every
   * worker -> report. Never throws; a refused reload changes nothing.
   */
  reload(): Promise<ReloadReport> {
    return this.#serialize(() => this.#reload());
  }

  async #reload(): Promise<ReloadReport> {
    const source = this.#config.source;
    this.reloadStats.lastAt = Date.now();
    // 1. parse, validate, build what the supervisor builds (plugins' prepare: certificates...)
    let configured: ResolvedConfig;
    try {
      configured = await loadConfig(this.#options.path, this.#options.overrides, {
        reloading: true,
      });
    } catch (error) {
      if (!(error instanceof ConfigError)) log.error("reload failed: {error}", { error });
      return this.#refused(
        source,
        error instanceof ConfigError ? error.errors : [
          (error as Error).message,
        ],
      );
    }
    if (this.#options.logLevel !== undefined) {
      configured.sipedge.log_level = this.#options.logLevel;
    }
    if (this.#options.logFormat !== undefined) {
      configured.sipedge.log_format = this.#options.logFormat;
    }
    // 2. build in every worker (worker 0 first: a new port-0 listener gets its port there)
    const flowKeys = this.#flowKeys;
    let next: ResolvedConfig = this.#withFlowSecrets({
      ...configured,
      listen: this.#keepPorts(configured.listen),
    });
    let bound: ListenerInfo[] = [];
    const prepared: Worker[] = [];
    // Workers being replaced now start later with the config in force then (restarts wait for
    // this reload): every worker ends up on the same config.
    const workers = this.#pool.up().map((w) => w.worker);
    try {
      for (const [i, worker] of workers.entries()) {
        const reply = await this.#pool.request(worker, { type: "prepare", config: next }, 30_000);
        if (reply.type !== "prepared") throw new Error(`unexpected worker reply ${reply.type}`);
        prepared.push(worker);
        if (i === 0) {
          bound = reply.listeners;
          next = { ...next, listen: next.listen.map((l, j) => ({ ...l, port: bound[j].port })) };
        }
      }
    } catch (error) {
      await Promise.all(
        prepared.map((w) =>
          this.#pool.request(w, { type: "abort" }, 10_000).catch((e) =>
            log.error("reload: worker did not abort: {error}", { error: (e as Error).message })
          )
        ),
      );
      this.#flowKeys = flowKeys;
      return this.#refused(source, [(error as Error).message]);
    }
    // 3. swap everywhere (synchronous in each worker; nothing can fail any more but a crash)
    await Promise.all(
      workers.map((w) =>
        this.#pool.request(w, { type: "commit" }, 10_000).catch((e) =>
          log.error("reload: worker did not commit: {error}", { error: (e as Error).message })
        )
      ),
    );
    const views = new Map<ResolvedPlugin, unknown>();
    for (const p of [...this.#configured.plugins, ...configured.plugins]) {
      views.set(p, await inspectPlugin(p));
    }
    const changes = describeChanges(this.#configured, configured, (p) => views.get(p));
    const levelChanged = next.sipedge.log_level !== this.#config.sipedge.log_level ||
      next.sipedge.log_format !== this.#config.sipedge.log_format;
    this.#configured = configured;
    this.#config = next;
    this.#listeners = bound;
    this.#blacklist.maxEntries = this.blacklistSettings?.max_entries ?? DEFAULT_BLACKLIST_ENTRIES;
    this.#floodReloaded();
    if (levelChanged) await setupLogging(next.sipedge.log_level, next.sipedge.log_format);
    // 4. report
    this.reloadStats.succeeded++;
    this.reloadStats.lastErrors = [];
    log.info("reload of {source} applied: {changes}", {
      source,
      changes: changes.length === 0 ? "no changes" : changes.join("; "),
    });
    return { ok: true, source, changes };
  }

  #refused(source: string, errors: string[]): ReloadReport {
    this.reloadStats.failed++;
    this.reloadStats.lastErrors = errors;
    log.error("reload of {source} refused, the running configuration is unchanged", { source });
    // One record per problem: readable in text logs, one field each in JSON logs.
    for (const error of errors) log.error("reload refused: {error}", { error });
    return { ok: false, source, errors };
  }

  /**
   * The config with the flow token keys in force: the configured key (or the process's random
   * one), and the previous key until its grace period ends when it changed.
   */
  #withFlowSecrets(config: ResolvedConfig): ResolvedConfig {
    const now = Date.now();
    const hex = config.flows.key === "" ? this.#randomFlowKey : configKeyHex(config.flows.key);
    const current = this.#flowKeys[0];
    if (current?.hex !== hex) {
      const previous = this.#flowKeys.map((k) =>
        k.validUntil === 0 ? { hex: k.hex, validUntil: now + config.flows.key_grace } : k
      );
      this.#flowKeys = [{ hex, validUntil: 0 }, ...previous];
    }
    this.#flowKeys = this.#flowKeys.filter((k, i) =>
      (k.validUntil === 0 || k.validUntil > now) &&
      this.#flowKeys.findIndex((o) => o.hex === k.hex) === i
    );
    return { ...config, flowSecrets: { instance: this.#instance, keys: this.#flowKeys } };
  }

  /** Listeners that stay get the port they are bound to (port 0 means "the one we got"). */
  #keepPorts(listen: ResolvedListen[]): ResolvedListen[] {
    const taken = new Set<number>();
    return listen.map((l) => {
      if (l.port !== 0) return l;
      const i = this.#configured.listen.findIndex((c, j) =>
        !taken.has(j) && c.port === 0 && c.transport === l.transport &&
        c.hostname === l.hostname
      );
      if (i < 0) return l;
      taken.add(i);
      return { ...l, port: this.#config.listen[i].port };
    });
  }

  /** Stops every worker: listeners close, queued data gets up to `timeoutMs` to go out. */
  async stop(timeoutMs: number): Promise<void> {
    clearInterval(this.#banTimer);
    this.#banTimer = undefined;
    await this.#pool.stop(timeoutMs);
  }

  /**
   * Sums the counters of the workers that answer within a second; `unresponsive` names the
   * others (a hung worker never holds up the control API).
   */
  async stats(): Promise<{
    counters: Record<string, number>;
    connections: number;
    workers: WorkerStats[];
    unresponsive: number[];
  }> {
    const up = this.#pool.up();
    const replies = await Promise.allSettled(
      up.map((w) => this.#pool.request(w.worker, { type: "stats" }, 1000)),
    );
    const counters: Record<string, number> = {};
    let connections = 0;
    // Per worker as well, for /metrics (per-worker load, tables by method and reason).
    const workers: WorkerStats[] = [];
    const unresponsive: number[] = [];
    replies.forEach((result, i) => {
      const worker = up[i].id;
      const r = result.status === "fulfilled" ? result.value : undefined;
      if (r?.type !== "stats") return void unresponsive.push(worker);
      connections += r.connections;
      for (const [k, v] of Object.entries(r.counters)) counters[k] = (counters[k] ?? 0) + v;
      const { counters: c, connections: n, tables, connectionStates, heapUsedBytes } = r;
      workers.push({
        worker,
        counters: c,
        connections: n,
        tables,
        connectionStates,
        heapUsedBytes,
      });
    });
    return { counters, connections, workers, unresponsive };
  }

  /** Every connection of every worker that answers within a second. */
  async connections(): Promise<ConnectionInfo[]> {
    const replies = await Promise.allSettled(
      this.#pool.up().map((w) => this.#pool.request(w.worker, { type: "connections" }, 1000)),
    );
    return replies.flatMap((r) =>
      r.status === "fulfilled" && r.value.type === "connections" ? r.value.connections : []
    );
  }

  /** Live blacklist entries. */
  blacklist(): BlacklistEntry[] {
    return this.#blacklist.list(Date.now());
  }

  /** Adds a blacklist entry (control API: reason `admin`) and copies it to every worker. */
  blacklistAdd(entry: BlacklistEntry, from?: Worker): void {
    this.#blacklist.add(entry);
    this.#broadcast({ op: "add", entry }, from);
  }

  /** Removes one entry everywhere; false when there was none. */
  blacklistDelete(key: string): boolean {
    const existed = this.#blacklist.delete(key);
    this.#broadcast({ op: "delete", key });
    return existed;
  }

  /** Removes every entry everywhere. */
  blacklistClear(): void {
    this.#blacklist.clear();
    this.#broadcast({ op: "clear" });
  }

  #broadcast(change: BlacklistChange, except?: Worker): void {
    this.#pool.broadcast({ type: "blacklist", change }, except);
  }

  // --- bans (flood_guard) ------------------------------------------------------------------

  /** Live bans, soonest expiry first. */
  bans(): BanEntry[] {
    return this.#bans.list(Date.now());
  }

  /** The ban key of an address (its group under the settings in force), or undefined. */
  banKeyOf(address: string): string | undefined {
    return banKeyOf(address, this.floodSettings?.ipv6_prefix ?? DEFAULT_IPV6_PREFIX);
  }

  /** Adds a ban (control API: reason `admin`), logs it and copies it to every worker. */
  banAdd(entry: BanEntry): void {
    this.#banStarted(entry);
    this.#banBroadcast({ op: "add", entry });
  }

  /** Lifts one ban everywhere; false when there was none. */
  banDelete(key: string): boolean {
    const entry = this.#bans.get(key, Date.now());
    this.#bans.delete(key);
    if (entry !== undefined) this.#banEnded(entry, "lifted by an operator");
    this.#banBroadcast({ op: "delete", key });
    return entry !== undefined;
  }

  /** Lifts every ban everywhere. */
  banClear(): void {
    for (const entry of this.#bans.list(Date.now())) this.#banEnded(entry, "lifted by an operator");
    this.#bans.clear();
    this.#banBroadcast({ op: "clear" });
  }

  /** A worker banned a source: the first report of a ban starts it (one log line). */
  #flooded(entry: BanEntry, from: Worker): void {
    if (this.#bans.get(entry.key, Date.now()) !== undefined) return;
    this.#banStarted(entry);
    this.#banBroadcast({ op: "add", entry }, from);
  }

  #banStarted(entry: BanEntry): void {
    this.#bans.add(entry);
    this.banCounts[entry.reason]++;
    const duration = formatMs(entry.expiresAt - entry.addedAt);
    if (entry.reason === "flood") {
      const s = this.floodSettings;
      log.warn(
        "flood: source {source} banned for {duration}: {seen} requests/s seen (rate {rate}/s, burst {burst})",
        { source: entry.key, duration, seen: entry.rate, rate: s?.rate, burst: s?.burst },
      );
    } else {
      log.info("ban of {source} added by an operator for {duration}", {
        source: entry.key,
        duration,
      });
    }
    this.#banTimer ??= setInterval(() => this.#expireBans(), 250);
  }

  #banEnded(entry: BanEntry, how: string): void {
    const key = this.sourceKeyOf(entry.key);
    if (key !== undefined) this.sourceTable.unban(key);
    log.info("ban of {source} ({reason}) {how}", { source: entry.key, reason: entry.reason, how });
  }

  /** The shared table's key of a ban key (`192.0.2.9`, `2001:db8::/64`). */
  sourceKeyOf(banKey: string) {
    const slash = banKey.indexOf("/");
    const ip = parseIp(slash < 0 ? banKey : banKey.slice(0, slash));
    if (ip === undefined) return undefined;
    return this.sourceTable.key(slash < 0 ? ip : { ...ip, bits: Number(banKey.slice(slash + 1)) });
  }

  #expireBans(): void {
    for (const entry of this.#bans.purge(Date.now())) {
      this.#banEnded(entry, "ended");
      this.#banBroadcast({ op: "delete", key: entry.key });
    }
    if (this.#bans.size === 0) {
      clearInterval(this.#banTimer);
      this.#banTimer = undefined;
    }
  }

  /** After a reload: the ban table's cap, and IPv6 bans re-keyed when `ipv6_prefix` changed. */
  #floodReloaded(): void {
    const s = this.floodSettings;
    this.#bans.maxEntries = s?.max_sources ?? DEFAULT_MAX_BANS;
    if (s !== undefined && s.max_sources > this.sourceTable.capacity) {
      log.warn(
        "plugins.flood_guard.max_sources = {wanted} applies at the next start (the source table holds {capacity})",
        { wanted: s.max_sources, capacity: this.sourceTable.capacity },
      );
    }
    for (const entry of this.#bans.list(Date.now())) {
      const key = this.banKeyOf(entry.address);
      if (key === undefined || key === entry.key) continue;
      this.#bans.delete(entry.key);
      this.#banBroadcast({ op: "delete", key: entry.key });
      const moved = { ...entry, key };
      this.#bans.add(moved);
      this.#banBroadcast({ op: "add", entry: moved });
    }
  }

  #banBroadcast(change: BanChange, except?: Worker): void {
    this.#pool.broadcast({ type: "bans", change }, except);
  }
}

/** `90s` -> `1m30s`-like text for log lines (whole seconds, or ms under a second). */
function formatMs(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  return s % 60 === 0 ? `${s / 60}m` : `${Math.floor(s / 60)}m${s % 60}s`;
}
