/** Tests of the static_router plugin. */

import assert from "node:assert/strict";
import plugin from "./static_router.ts";
import type { Router, RouteRequest, RouteResult } from "../core/plugin/types.ts";
import { parseHead } from "../core/sip/parse_head.ts";
import { parseSipUri } from "../core/sip/uri.ts";
import { getLogger } from "@logtape/logtape";

async function router(config: unknown): Promise<Router> {
  const parsed = plugin.config.safeParse(config);
  assert.ok(parsed.success, parsed.success ? "" : parsed.error.message);
  const worker = await plugin.worker!(parsed.data, {
    workerId: 0,
    logger: getLogger(["test"]),
    transport: () => undefined,
  });
  assert.ok(worker.router);
  return worker.router;
}

function req(
  uri: string,
  method = "INVITE",
  source: RouteRequest["source"] = { transport: "tcp", hostname: "198.51.100.7", port: 40000 },
): RouteRequest {
  const head = parseHead(
    `${method} ${uri} SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n`,
  );
  return { head, method, uri: parseSipUri(uri), source };
}

/** The destination host a request goes to, or undefined when the router passes. */
function hostFor(r: Router, request: RouteRequest): string | undefined {
  const result = r.route(request);
  if (result === undefined) return undefined;
  assert.ok("destination" in result);
  return result.destination.host;
}

const route = (destinationHost: string, extra: Record<string, unknown> = {}) => ({
  destination: `sip:${destinationHost};transport=tcp`,
  ...extra,
});

Deno.test("static_router: plugin definition", () => {
  assert.equal(plugin.name, "static_router");
  assert.equal(plugin.kind, "router");
});

Deno.test("static_router: no routes and no default → passes every request", async () => {
  const r = await router({});
  assert.equal(r.route(req("sip:bob@example.com")), undefined);
});

Deno.test("static_router: exact domain (case-insensitive)", async () => {
  const r = await router({ routes: [route("10.0.0.1", { domain: "Example.COM" })] });
  assert.equal(hostFor(r, req("sip:bob@example.com")), "10.0.0.1");
  assert.equal(hostFor(r, req("sip:bob@EXAMPLE.com:5070;transport=tcp")), "10.0.0.1");
  assert.equal(hostFor(r, req("sip:bob@sub.example.com")), undefined);
  assert.equal(hostFor(r, req("sip:bob@example.com.evil.net")), undefined);
  assert.equal(hostFor(r, req("sip:bob@xexample.com")), undefined);
  assert.equal(hostFor(r, req("tel:+15551234")), undefined);
});

Deno.test("static_router: wildcard domain matches subdomains only", async () => {
  const r = await router({ routes: [route("10.0.0.2", { domain: "*.example.com" })] });
  assert.equal(hostFor(r, req("sip:bob@a.example.com")), "10.0.0.2");
  assert.equal(hostFor(r, req("sip:bob@a.b.Example.com")), "10.0.0.2");
  assert.equal(hostFor(r, req("sip:bob@example.com")), undefined);
  assert.equal(hostFor(r, req("sip:bob@badexample.com")), undefined);
  assert.equal(hostFor(r, req("sip:bob@a.example.com.net")), undefined);
});

Deno.test("static_router: user_prefix", async () => {
  const r = await router({ routes: [route("10.0.0.3", { user_prefix: "+44" })] });
  assert.equal(hostFor(r, req("sip:+442071234567@gw.example.com;user=phone")), "10.0.0.3");
  assert.equal(hostFor(r, req("sip:+44@gw.example.com")), "10.0.0.3");
  assert.equal(hostFor(r, req("sip:+33123@gw.example.com")), undefined);
  assert.equal(hostFor(r, req("sip:4420@gw.example.com")), undefined);
  assert.equal(hostFor(r, req("sip:gw.example.com")), undefined);
  assert.equal(hostFor(r, req("tel:+442071234567")), undefined);
});

Deno.test("static_router: methods", async () => {
  const r = await router({ routes: [route("10.0.0.4", { methods: ["invite", "MESSAGE"] })] });
  assert.equal(hostFor(r, req("sip:bob@example.com", "INVITE")), "10.0.0.4");
  assert.equal(hostFor(r, req("sip:bob@example.com", "MESSAGE")), "10.0.0.4");
  assert.equal(hostFor(r, req("sip:bob@example.com", "REGISTER")), undefined);
  assert.equal(hostFor(r, req("sip:bob@example.com", "BYE")), undefined);
  // A route with only methods matches any URI, tel: included.
  assert.equal(hostFor(r, req("tel:+15551234", "INVITE")), "10.0.0.4");
});

Deno.test("static_router: every condition of a route must hold", async () => {
  const r = await router({
    routes: [
      route("10.0.0.5", { domain: "example.com", user_prefix: "sales", methods: ["INVITE"] }),
    ],
  });
  assert.equal(hostFor(r, req("sip:sales-1@example.com", "INVITE")), "10.0.0.5");
  assert.equal(hostFor(r, req("sip:sales-1@example.com", "BYE")), undefined);
  assert.equal(hostFor(r, req("sip:support@example.com", "INVITE")), undefined);
  assert.equal(hostFor(r, req("sip:sales-1@example.org", "INVITE")), undefined);
});

Deno.test("static_router: first match wins", async () => {
  const r = await router({
    routes: [
      route("10.0.0.6", { domain: "example.com", methods: ["REGISTER"] }),
      route("10.0.0.7", { domain: "example.com" }),
      route("10.0.0.8", { domain: "*.example.com" }),
      route("10.0.0.9", {}),
    ],
  });
  assert.equal(hostFor(r, req("sip:example.com", "REGISTER")), "10.0.0.6");
  assert.equal(hostFor(r, req("sip:bob@example.com", "INVITE")), "10.0.0.7");
  assert.equal(hostFor(r, req("sip:bob@a.example.com", "INVITE")), "10.0.0.8");
  assert.equal(hostFor(r, req("sip:bob@other.net", "INVITE")), "10.0.0.9");
});

Deno.test("static_router: destinations and record_route", async () => {
  const r = await router({
    record_route: true,
    routes: [
      { domain: "a.example.com", destination: "sip:10.0.0.1:5070;transport=tcp" },
      { domain: "b.example.com", destination: "sips:secure.example.net", record_route: false },
      { domain: "c.example.com", destination: "sip:[2001:db8::1]:5080" },
    ],
  });
  assert.deepEqual(
    r.route(req("sip:x@a.example.com")),
    {
      destination: { transport: "tcp", host: "10.0.0.1", port: 5070 },
      recordRoute: true,
    } satisfies RouteResult,
  );
  assert.deepEqual(r.route(req("sip:x@b.example.com")), {
    destination: { transport: "tls", host: "secure.example.net", port: 0 },
    recordRoute: false,
  });
  assert.deepEqual(r.route(req("sip:x@c.example.com")), {
    destination: { transport: "tcp", host: "2001:db8::1", port: 5080 },
    recordRoute: true,
  });
});

Deno.test("static_router: default_route", async (t) => {
  const r = await router({
    default_route: "sip:10.0.0.5:5070;transport=tcp",
    routes: [route("10.0.0.1", { domain: "example.com" })],
  });
  await t.step("used when no route matches", () => {
    assert.deepEqual(r.route(req("sip:bob@other.net")), {
      destination: { transport: "tcp", host: "10.0.0.5", port: 5070 },
      recordRoute: false,
    });
    assert.equal(hostFor(r, req("tel:+15551234")), "10.0.0.5");
  });
  await t.step("routes still come first", () => {
    assert.equal(hostFor(r, req("sip:bob@example.com")), "10.0.0.1");
  });
  await t.step("not applied to requests from the default route's own host:port", () => {
    const fromUpstream = { transport: "tcp", hostname: "10.0.0.5", port: 5070 };
    assert.equal(r.route(req("sip:bob@other.net", "INVITE", fromUpstream)), undefined);
    // Routes still apply to them.
    assert.equal(hostFor(r, req("sip:bob@example.com", "INVITE", fromUpstream)), "10.0.0.1");
  });
  await t.step("applied to the same host from another port, and another host on that port", () => {
    const otherPort = { transport: "tcp", hostname: "10.0.0.5", port: 40001 };
    assert.equal(hostFor(r, req("sip:bob@other.net", "INVITE", otherPort)), "10.0.0.5");
    const otherHost = { transport: "tcp", hostname: "10.0.0.6", port: 5070 };
    assert.equal(hostFor(r, req("sip:bob@other.net", "INVITE", otherHost)), "10.0.0.5");
  });
});

Deno.test("static_router: default_route without a port uses the transport's default port", async () => {
  const tcp = await router({ default_route: "sip:10.0.0.5" });
  const source = (port: number) => ({ transport: "tcp", hostname: "10.0.0.5", port });
  assert.equal(tcp.route(req("sip:bob@other.net", "INVITE", source(5060))), undefined);
  assert.equal(hostFor(tcp, req("sip:bob@other.net", "INVITE", source(5061))), "10.0.0.5");
  const tls = await router({ default_route: "sips:10.0.0.5" });
  assert.equal(tls.route(req("sip:bob@other.net", "INVITE", source(5061))), undefined);
  assert.equal(hostFor(tls, req("sip:bob@other.net", "INVITE", source(5060))), "10.0.0.5");
});

Deno.test("static_router: default_route IPv6 host matches a bare source address", async () => {
  const r = await router({ default_route: "sip:[2001:db8::5]:5070" });
  const source = { transport: "tcp", hostname: "2001:db8::5", port: 5070 };
  assert.equal(r.route(req("sip:bob@other.net", "INVITE", source)), undefined);
});

Deno.test("static_router: config validation", async (t) => {
  const invalid: [string, unknown][] = [
    ["unknown key", { routs: [] }],
    ["bad domain", { routes: [{ domain: "exa mple.com", destination: "sip:a" }] }],
    ["bad destination", { routes: [{ destination: "http://a" }] }],
    ["missing destination", { routes: [{ domain: "example.com" }] }],
    ["bad method", { routes: [{ methods: ["IN VITE"], destination: "sip:a" }] }],
    ["empty user_prefix", { routes: [{ user_prefix: "", destination: "sip:a" }] }],
    ["unknown route key", { routes: [{ destination: "sip:a", domian: "x" }] }],
    ["bad default_route", { default_route: "10.0.0.5:5060" }],
    ["record_route not a boolean", { record_route: "yes" }],
  ];
  for (const [name, config] of invalid) {
    await t.step(name, () => assert.equal(plugin.config.safeParse(config).success, false));
  }
  await t.step("defaults", () => {
    assert.deepEqual(plugin.config.parse({}), { record_route: false, routes: [] });
  });
});
