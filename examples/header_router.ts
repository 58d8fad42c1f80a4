/**
 * `header_router` — an example user plugin (a router): picks the upstream of a request by the
 * value of one of its headers (by default `X-Tenant`), and fails over to the next upstream of
 * the list while sipedge reports sends to the first one failing.
 *
 * ```toml
 * [plugins.header_router]
 * module = "./header_router.ts"          # relative to the config file
 * header = "X-Tenant"
 * down_time = "30s"
 * default = ["sip:10.0.0.9:5060;transport=tcp"]
 *
 * [plugins.header_router.routes]
 * acme = ["sip:10.0.0.5:5060;transport=tcp", "sip:10.0.0.6:5060;transport=tcp"]
 * globex = ["sip:10.0.1.5:5060;transport=tcp"]
 * ```
 *
 * How it behaves:
 *
 * - The header's value (trimmed, compared without case) selects a list in `routes`; a request
 *   without the header, or with a value that is not there, uses `default`; without `default`
 *   the plugin has no opinion and the next router (then the Request-URI) decides.
 * - The first upstream of the list that is not marked down gets the request.
 * - `onSendFailure`: when sipedge reports that a send to one of the plugin's upstreams failed
 *   for a reason in `failover_on` (connect refused, timed out, …), that upstream is marked down
 *   for `down_time`. sipedge is a stateless proxy: the request whose send failed is answered
 *   with 503/408 by sipedge and not retried; the requests after it go to the next upstream.
 * - When every upstream of the list is down, the request is answered `503 Service Unavailable`
 *   with `Retry-After` (seconds until the first one comes back).
 * - Down marks are per reader worker (each worker is a thread with its own copy of this
 *   module's state): every worker finds out on its own, at the cost of one failed request. With
 *   the `blacklist` plugin on, that cost is small: the first failure blacklists the upstream in
 *   every worker, and a send to a blacklisted destination fails at once (reason `blacklisted`,
 *   which is in the default `failover_on`).
 * - `reload`: a changed table is built in phase one and swapped in by the commit function;
 *   down marks of upstreams that are still configured are kept.
 *
 * It imports the core's types and helpers by relative path and zod by the bare `zod`
 * specifier, which sipedge's deno.json maps, so that the schema is the same zod the core
 * validates with. Tests: tests/header_router_test.ts.
 * @module
 */
import { z } from "zod";
import type { Logger } from "@logtape/logtape";
import type {
  PluginDefinition,
  Router,
  RouteRequest,
  RouteResult,
  SendFailureEvent,
  WorkerPlugin,
} from "../core/plugin/types.ts";
import { getHeader } from "../core/sip/head.ts";
import { type Destination, parseDestination } from "../core/transport/destination.ts";
import { positiveDurationSchema, sipUriSchema } from "../core/config/schema.ts";
import type { FailureReason } from "../core/policy/failure.ts";

/** Every reason sipedge reports a send failure for (see core/policy/failure.ts). */
const FAILURE_REASONS = [
  "connect_refused",
  "connect_timeout",
  "connect_failed",
  "send_timeout",
  "queue_full",
  "keepalive_timeout",
  "blacklisted",
  "connection_limit",
  "closed",
  "flow_failed",
] as const satisfies readonly FailureReason[];

/** Reasons that say the upstream itself is unreachable or not reading. */
const DEFAULT_FAILOVER_ON: FailureReason[] = [
  "connect_refused",
  "connect_timeout",
  "connect_failed",
  "send_timeout",
  "keepalive_timeout",
  "blacklisted",
];

/** A header name (RFC 3261 token). */
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

const upstreams = z.array(sipUriSchema).min(1, "at least one upstream URI");

/** The `[plugins.header_router]` table. */
export const configSchema = z.strictObject({
  header: z.string().regex(HEADER_NAME, "a header name like X-Tenant").default("X-Tenant")
    .describe("Header whose value picks the upstream list (name compared without case)."),
  routes: z.record(z.string().min(1), upstreams).default({}).describe(
    "Header value → upstream URIs in order of preference (values compared without case).",
  ),
  default: upstreams.optional().describe(
    "Upstreams for requests without the header or with a value not in `routes`; when absent " +
      "such requests go to the next router.",
  ),
  down_time: positiveDurationSchema.default(30_000).describe(
    "How long an upstream is skipped after a send to it failed.",
  ),
  failover_on: z.array(z.enum(FAILURE_REASONS)).default(DEFAULT_FAILOVER_ON).describe(
    "Send failure reasons that mark an upstream down.",
  ),
  record_route: z.boolean().default(false).describe(
    "Add a Record-Route header to the requests this plugin routes.",
  ),
});

/** The validated config (durations in ms). */
export type HeaderRouterConfig = z.output<typeof configSchema>;

interface Upstream {
  /** `transport:host:port`, as sipedge names destinations in send failure events. */
  key: string;
  result: RouteResult;
}

/** The config compiled for the hot path. */
interface Table {
  header: string;
  routes: Map<string, Upstream[]>;
  fallback: Upstream[] | undefined;
  /** Keys of every upstream this table can route to. */
  known: Set<string>;
  downTime: number;
  failoverOn: Set<FailureReason>;
}

/** `transport:host:port` with the transport's default port filled in. */
function destinationKey(d: Destination): string {
  const port = d.port || (d.transport === "tls" ? 5061 : 5060);
  return `${d.transport}:${d.host}:${port}`;
}

function compile(cfg: HeaderRouterConfig): Table {
  const known = new Set<string>();
  const list = (uris: string[]): Upstream[] =>
    uris.map((uri) => {
      const destination = parseDestination(uri);
      const key = destinationKey(destination);
      known.add(key);
      return { key, result: { destination, recordRoute: cfg.record_route } };
    });
  const routes = new Map<string, Upstream[]>();
  for (const [value, uris] of Object.entries(cfg.routes)) {
    routes.set(value.trim().toLowerCase(), list(uris));
  }
  return {
    header: cfg.header.toLowerCase(),
    routes,
    fallback: cfg.default === undefined ? undefined : list(cfg.default),
    known,
    downTime: cfg.down_time,
    failoverOn: new Set(cfg.failover_on),
  };
}

/** Options for {@link HeaderRouter} (tests use a fake clock). */
export interface HeaderRouterOptions {
  logger?: Logger;
  /** Milliseconds since the epoch (default `Date.now`). */
  now?: () => number;
}

/** One worker's header router: routing table and down marks. */
export class HeaderRouter implements Router {
  #table: Table;
  /** Upstream key → time (ms) until which it is skipped. */
  #downUntil = new Map<string, number>();
  #logger: Logger | undefined;
  #now: () => number;

  constructor(cfg: HeaderRouterConfig, options: HeaderRouterOptions = {}) {
    this.#table = compile(cfg);
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
  }

  route(request: RouteRequest): RouteResult | undefined {
    const table = this.#table;
    const value = getHeader(request.head, table.header);
    const list = value === undefined
      ? table.fallback
      : table.routes.get(value.trim().toLowerCase()) ?? table.fallback;
    if (list === undefined) return undefined;
    if (this.#downUntil.size === 0) return list[0].result;
    const now = this.#now();
    let soonest = Infinity;
    for (const upstream of list) {
      const until = this.#downUntil.get(upstream.key);
      if (until === undefined) return upstream.result;
      if (until <= now) {
        this.#downUntil.delete(upstream.key);
        this.#logger?.info("upstream {upstream} is tried again", { upstream: upstream.key });
        return upstream.result;
      }
      soonest = Math.min(soonest, until);
    }
    const seconds = Math.max(1, Math.ceil((soonest - now) / 1000));
    return {
      reply: {
        status: 503,
        reason: "Service Unavailable",
        headers: [`Retry-After: ${seconds}`, 'Reason: SIP;cause=503;text="no upstream available"'],
      },
    };
  }

  /** Marks the failed destination down when it is one of ours and the reason counts. */
  onSendFailure(event: SendFailureEvent): void {
    const table = this.#table;
    if (!table.failoverOn.has(event.reason) || !table.known.has(event.destination)) return;
    const wasDown = this.isDown(event.destination);
    this.#downUntil.set(event.destination, this.#now() + table.downTime);
    if (!wasDown) {
      this.#logger?.warn("upstream {upstream} marked down for {ms} ms ({reason})", {
        upstream: event.destination,
        ms: table.downTime,
        reason: event.reason,
      });
    }
  }

  /** Whether an upstream (`transport:host:port`) is marked down now. */
  isDown(key: string): boolean {
    const until = this.#downUntil.get(key);
    return until !== undefined && until > this.#now();
  }

  /**
   * Reload phase one: compiles the new table (a bad table throws here, before anything
   * changes) and returns the swap. Down marks of upstreams still in the table are kept.
   */
  prepareReload(cfg: HeaderRouterConfig): () => void {
    const table = compile(cfg);
    return () => {
      this.#table = table;
      for (const key of [...this.#downUntil.keys()]) {
        if (!table.known.has(key)) this.#downUntil.delete(key);
      }
    };
  }
}

/** The plugin definition (the module's default export). */
const plugin: PluginDefinition<HeaderRouterConfig> = {
  name: "header_router",
  kind: "router",
  description: "Routes by a header value (e.g. X-Tenant) to upstream lists, with failover.",
  config: configSchema,
  worker(cfg, context): WorkerPlugin<HeaderRouterConfig> {
    const router = new HeaderRouter(cfg, { logger: context.logger });
    return {
      router,
      onSendFailure: (event) => router.onSendFailure(event),
      reload: (next) => router.prepareReload(next),
    };
  },
};

export default plugin;
