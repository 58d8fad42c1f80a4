/**
 * The `static_router` plugin: routes from config.toml. A route matches on the Request-URI's
 * domain (exact, or `*.example.com` for subdomains), user prefix and method; the first match
 * gives the destination. Otherwise `default_route`, if set — except for requests that come
 * from the default route's own address (host and port: over the connection sipedge opened to
 * it, or from its listening port), which go by their Request-URI, so that an edge proxy in
 * front of one upstream also carries the upstream's requests out to clients. Otherwise the core
 * routes by Request-URI. Requests with a Route header never get here (loose routing first).
 * @module
 */
import { z } from "zod";
import type { PluginDefinition, Router, RouteRequest, RouteResult } from "../core/plugin/types.ts";
import { type Destination, parseDestination } from "../core/transport/destination.ts";
import { sipUriSchema } from "../core/config/schema.ts";

const route = z.strictObject({
  domain: z.string().regex(
    /^(\*\.)?[A-Za-z0-9.\-[\]:]+$/,
    "a domain like example.com or *.example.com",
  )
    .optional().describe("Request-URI host to match; `*.example.com` matches subdomains."),
  user_prefix: z.string().min(1).optional().describe("Request-URI user part must start with this."),
  methods: z.array(z.string().regex(/^[A-Za-z]+$/, "a SIP method name")).optional()
    .describe("Methods to match (all when absent)."),
  destination: sipUriSchema.describe("Next hop URI, e.g. `sip:10.0.0.5:5060;transport=tcp`."),
  record_route: z.boolean().optional().describe("Overrides the plugin's `record_route`."),
});

const config = z.strictObject({
  record_route: z.boolean().default(false).describe(
    "Add a Record-Route header (with `;lr`) to requests routed by this plugin.",
  ),
  default_route: sipUriSchema.optional().describe(
    "Next hop for requests no route matches; `--forward` sets it.",
  ),
  routes: z.array(route).default([]).describe("Routes, tried in order."),
});

type StaticRouterConfig = z.infer<typeof config>;

interface CompiledRoute {
  domain: string | undefined;
  wildcard: boolean;
  userPrefix: string | undefined;
  methods: Set<string> | undefined;
  result: RouteResult;
}

function compile(cfg: StaticRouterConfig): Router {
  const routes: CompiledRoute[] = cfg.routes.map((r) => ({
    domain: r.domain?.toLowerCase().replace(/^\*\./, ""),
    wildcard: r.domain?.startsWith("*.") ?? false,
    userPrefix: r.user_prefix,
    methods: r.methods && new Set(r.methods.map((m) => m.toUpperCase())),
    result: {
      destination: parseDestination(r.destination),
      recordRoute: r.record_route ?? cfg.record_route,
    },
  }));
  const fallback: Destination | undefined = cfg.default_route === undefined
    ? undefined
    : parseDestination(cfg.default_route);
  const fallbackResult: RouteResult | undefined = fallback && {
    destination: fallback,
    recordRoute: cfg.record_route,
  };
  return {
    route(request: RouteRequest): RouteResult | undefined {
      for (const r of routes) if (matches(r, request)) return r.result;
      if (fallback === undefined || fromFallback(request, fallback)) return undefined;
      return fallbackResult;
    },
  };
}

/** Whether the request came from the default route's own address (host and port). */
function fromFallback(request: RouteRequest, fallback: Destination): boolean {
  const port = fallback.port || (fallback.transport === "tls" ? 5061 : 5060);
  return request.source.hostname === fallback.host && request.source.port === port;
}

function matches(route: CompiledRoute, request: RouteRequest): boolean {
  if (route.methods !== undefined && !route.methods.has(request.method)) return false;
  const uri = request.uri;
  if (route.domain !== undefined) {
    if (uri === undefined) return false;
    const host = uri.host;
    const ok = route.wildcard
      ? host.endsWith(route.domain) && host.charCodeAt(host.length - route.domain.length - 1) === 46
      : host === route.domain;
    if (!ok) return false;
  }
  if (route.userPrefix !== undefined) {
    if (uri === undefined || !uri.user.startsWith(route.userPrefix)) return false;
  }
  return true;
}

/** The static router plugin. */
const plugin: PluginDefinition<StaticRouterConfig> = {
  name: "static_router",
  kind: "router",
  description: "Routes requests by Request-URI domain, user prefix and method (from config).",
  config,
  worker: (cfg) => ({ router: compile(cfg) }),
};

export default plugin;
