/**
 * The `static_router` plugin: routes from config.toml. A route matches on the Request-URI's
 * domain (exact, or `*.example.com` for subdomains), user prefix and method; the first match
 * gives the destination. Otherwise `default_route`, if set -- except for requests that come
 * from the default route's own address (host and port: over the connection sipedge opened to
 * it, or from its listening port), which go by their Request-URI, so that an edge proxy in
 * front of one upstream also carries the upstream's requests out to clients. Otherwise the core
 * routes by Request-URI. Requests with a Route header never get here (loose routing first).
 * The router itself, which reader workers import, is ./static_router_worker.ts.
 * @module
 */
import { z } from "zod";
import type { PluginDefinition } from "../core/plugin/types.ts";
import { sipUriSchema } from "../core/config/schema.ts";
import { worker } from "./static_router_worker.ts";

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

/** The validated `[plugins.static_router]` table. */
export type StaticRouterConfig = z.infer<typeof config>;

/** The static router plugin. */
const plugin: PluginDefinition<StaticRouterConfig> = {
  name: "static_router",
  kind: "router",
  description: "Routes requests by Request-URI domain, user prefix and method (from config).",
  config,
  worker,
};

export default plugin;
