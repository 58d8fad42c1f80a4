/**
 * The `static_router` plugin's worker side: the routes of its table, compiled once per worker,
 * matched per request (see ./static_router.ts for what they mean). Reader workers import this
 * module, not ./static_router.ts (the schema, zod: see docs/decisions.md, "Memory at rest").
 * @module
 */
import type { PluginWorker, Router, RouteRequest, RouteResult } from "../core/plugin/types.ts";
import { type Destination, parseDestination } from "../core/transport/destination.ts";
import type { StaticRouterConfig } from "./static_router.ts";

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

/** The static_router plugin's `worker` hook. */
export const worker: PluginWorker<StaticRouterConfig> = (cfg) => ({ router: compile(cfg) });
