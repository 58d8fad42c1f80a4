/**
 * Tests of the example user plugin examples/header_router.ts: routing and failover logic as
 * unit tests (fake clock), the config schema, and end to end: a real sipedge process whose
 * config.toml loads the plugin by a path relative to the config file, with a dead first
 * upstream (a refused port) and a test UAS as the second.
 * @module
 */
import assert from "node:assert/strict";
import { relative } from "node:path";
import { getLogger } from "@logtape/logtape";
import plugin, { HeaderRouter, type HeaderRouterConfig } from "../examples/header_router.ts";
import type { RouteRequest, RouteResult, SendFailureEvent } from "../core/plugin/types.ts";
import { parseHead } from "../core/sip/parse_head.ts";
import { parseSipUri } from "../core/sip/uri.ts";
import { resolveConfig } from "../core/config/load.ts";
import { freePort, REPO_ROOT, startSipedge } from "./support/sipedge_process.ts";
import { buildRequest, TestUac, TestUas } from "./support/sip_peer.ts";

const A = "sip:10.0.0.5:5060;transport=tcp";
const B = "sip:10.0.0.6;transport=tcp";
const D = "sip:10.0.0.9:5080;transport=tcp";

function config(table: Record<string, unknown>): HeaderRouterConfig {
  const parsed = plugin.config.safeParse(table);
  assert.ok(parsed.success, parsed.success ? "" : parsed.error.message);
  return parsed.data;
}

function req(headers: string[] = []): RouteRequest {
  const uri = "sip:bob@example.com";
  const head = parseHead(
    `INVITE ${uri} SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n${
      headers.map((h) => `${h}\r\n`).join("")
    }Content-Length: 0\r\n\r\n`,
  );
  return {
    head,
    method: "INVITE",
    uri: parseSipUri(uri),
    source: { transport: "tcp", hostname: "198.51.100.7", port: 40000 },
  };
}

/** `host:port` of the destination, or the reply status, or undefined. */
function where(result: RouteResult | undefined): string | number | undefined {
  if (result === undefined) return undefined;
  if ("reply" in result) return result.reply.status;
  return `${result.destination.host}:${result.destination.port}`;
}

function failure(destination: string, reason: SendFailureEvent["reason"]): SendFailureEvent {
  return {
    destination,
    reason,
    connectionId: 1,
    bytesLost: 100,
    messagesLost: 1,
    blacklisted: false,
  };
}

function clock() {
  const c = { t: 1_000_000, now: () => c.t };
  return c;
}

const acmeConfig = { routes: { acme: [A, B] }, default: [D], down_time: "10s" };

Deno.test("header_router: plugin definition and defaults", () => {
  assert.equal(plugin.name, "header_router");
  assert.equal(plugin.kind, "router");
  const cfg = config({});
  assert.equal(cfg.header, "X-Tenant");
  assert.equal(cfg.down_time, 30_000);
  assert.deepEqual(cfg.routes, {});
  assert.equal(cfg.default, undefined);
  assert.ok(cfg.failover_on.includes("connect_refused"));
  assert.ok(!cfg.failover_on.includes("queue_full"));
});

Deno.test("header_router: config errors name the key", () => {
  const cases: [Record<string, unknown>, (string | number)[]][] = [
    [{ routes: { acme: [] } }, ["routes", "acme"]],
    [{ routes: { acme: ["http://x"] } }, ["routes", "acme", 0]],
    [{ header: "X Tenant" }, ["header"]],
    [{ down_time: "0s" }, ["down_time"]],
    [{ failover_on: ["exploded"] }, ["failover_on", 0]],
    [{ rutes: {} }, []],
  ];
  for (const [table, path] of cases) {
    const parsed = plugin.config.safeParse(table);
    assert.ok(!parsed.success, JSON.stringify(table));
    assert.deepEqual(parsed.error.issues[0].path, path, JSON.stringify(table));
  }
});

Deno.test("header_router: routes by header value, default otherwise, passes without default", () => {
  const r = new HeaderRouter(config(acmeConfig));
  assert.equal(where(r.route(req(["X-Tenant: acme"]))), "10.0.0.5:5060");
  assert.equal(where(r.route(req(["x-tenant:   ACME  "]))), "10.0.0.5:5060", "case, spaces");
  assert.equal(where(r.route(req(["X-Tenant: other"]))), "10.0.0.9:5080", "unknown → default");
  assert.equal(where(r.route(req())), "10.0.0.9:5080", "no header → default");
  const noDefault = new HeaderRouter(config({ routes: { acme: [A] } }));
  assert.equal(noDefault.route(req(["X-Tenant: other"])), undefined);
  assert.equal(noDefault.route(req()), undefined);
  const byOther = new HeaderRouter(config({ header: "X-Customer", routes: { acme: [B] } }));
  assert.equal(where(byOther.route(req(["X-Customer: acme"]))), "10.0.0.6:0");
  assert.equal(byOther.route(req(["X-Tenant: acme"])), undefined);
});

Deno.test("header_router: record_route is passed on", () => {
  const r = new HeaderRouter(config({ ...acmeConfig, record_route: true }));
  const result = r.route(req(["X-Tenant: acme"]));
  assert.ok(result !== undefined && "destination" in result);
  assert.equal(result.recordRoute, true);
});

Deno.test("header_router: a failed upstream is skipped for down_time, then tried again", () => {
  const c = clock();
  const r = new HeaderRouter(config(acmeConfig), { now: c.now });
  r.onSendFailure(failure("tcp:10.0.0.5:5060", "connect_refused"));
  assert.ok(r.isDown("tcp:10.0.0.5:5060"));
  assert.equal(where(r.route(req(["X-Tenant: acme"]))), "10.0.0.6:0", "fails over to B");
  c.t += 9_999;
  assert.equal(where(r.route(req(["X-Tenant: acme"]))), "10.0.0.6:0");
  c.t += 1;
  assert.equal(where(r.route(req(["X-Tenant: acme"]))), "10.0.0.5:5060", "A again");
  assert.ok(!r.isDown("tcp:10.0.0.5:5060"));
});

Deno.test("header_router: default ports in failure keys (B has no port: 5060)", () => {
  const c = clock();
  const r = new HeaderRouter(config(acmeConfig), { now: c.now });
  r.onSendFailure(failure("tcp:10.0.0.5:5060", "connect_timeout"));
  r.onSendFailure(failure("tcp:10.0.0.6:5060", "blacklisted"));
  const result = r.route(req(["X-Tenant: acme"]));
  assert.ok(result !== undefined && "reply" in result, "every upstream down → reply");
  assert.equal(result.reply.status, 503);
  assert.ok(result.reply.headers?.includes("Retry-After: 10"), String(result.reply.headers));
  c.t += 4_500;
  const later = r.route(req(["X-Tenant: acme"]));
  assert.ok(later !== undefined && "reply" in later);
  assert.ok(later.reply.headers?.includes("Retry-After: 6"), String(later.reply.headers));
  // The default list is not affected.
  assert.equal(where(r.route(req())), "10.0.0.9:5080");
});

Deno.test("header_router: failures it does not own or reasons not in failover_on are ignored", () => {
  const c = clock();
  const r = new HeaderRouter(config(acmeConfig), { now: c.now });
  r.onSendFailure(failure("tcp:10.0.0.77:5060", "connect_refused"));
  r.onSendFailure(failure("tcp:10.0.0.5:5060", "queue_full"));
  r.onSendFailure(failure("tls:10.0.0.5:5060", "connect_refused"));
  assert.equal(where(r.route(req(["X-Tenant: acme"]))), "10.0.0.5:5060");
  const strict = new HeaderRouter(config({ ...acmeConfig, failover_on: ["queue_full"] }), {
    now: c.now,
  });
  strict.onSendFailure(failure("tcp:10.0.0.5:5060", "queue_full"));
  assert.equal(where(strict.route(req(["X-Tenant: acme"]))), "10.0.0.6:0");
});

Deno.test("header_router: repeated failures extend the down time", () => {
  const c = clock();
  const r = new HeaderRouter(config(acmeConfig), { now: c.now });
  r.onSendFailure(failure("tcp:10.0.0.5:5060", "connect_refused"));
  c.t += 8_000;
  r.onSendFailure(failure("tcp:10.0.0.5:5060", "blacklisted"));
  c.t += 8_000;
  assert.ok(r.isDown("tcp:10.0.0.5:5060"));
  c.t += 2_000;
  assert.ok(!r.isDown("tcp:10.0.0.5:5060"));
});

Deno.test("header_router: reload builds first, swaps on commit, keeps marks of kept upstreams", async () => {
  const instance = await plugin.worker!(config(acmeConfig), {
    workerId: 0,
    logger: getLogger(["test"]),
    transport: () => undefined,
  });
  const router = instance.router as HeaderRouter;
  assert.ok(router instanceof HeaderRouter);
  instance.onSendFailure!(failure("tcp:10.0.0.5:5060", "connect_refused"));
  instance.onSendFailure!(failure("tcp:10.0.0.9:5080", "connect_refused"));
  const commit = await instance.reload!(
    config({ routes: { acme: [A, B], globex: [B] }, default: ["sip:10.0.0.10;transport=tcp"] }),
  );
  // Nothing changed before the commit: globex is unknown, the default (D) is down.
  assert.equal(where(router.route(req(["X-Tenant: globex"]))), 503);
  commit();
  assert.equal(where(router.route(req(["X-Tenant: globex"]))), "10.0.0.6:0");
  assert.equal(where(router.route(req(["X-Tenant: acme"]))), "10.0.0.6:0", "A still down");
  assert.equal(where(router.route(req())), "10.0.0.10:0");
  assert.ok(!router.isDown("tcp:10.0.0.9:5080"), "removed upstream's mark dropped");
});

Deno.test("header_router: loaded by path from a config file (module relative to it)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sipedge_header_router_" });
  try {
    const module = relative(dir, `${REPO_ROOT}/examples/header_router.ts`);
    const text = `[[listen]]
address = "tcp:127.0.0.1:5060"
[plugins.tcp]
[plugins.header_router]
module = "${module}"
[plugins.header_router.routes]
acme = ["${A}"]
`;
    const resolved = await resolveConfig(text, `${dir}/config.toml`, {}, `${dir}/config.toml`);
    const p = resolved.plugins.find((p) => p.name === "header_router");
    assert.ok(p !== undefined);
    assert.equal(p.kind, "router");
    assert.equal(p.moduleUrl, `file://${REPO_ROOT}/examples/header_router.ts`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("header_router: examples/header_router.toml is a valid config", async () => {
  const path = `${REPO_ROOT}/examples/header_router.toml`;
  const resolved = await resolveConfig(await Deno.readTextFile(path), path, {}, path);
  const p = resolved.plugins.find((p) => p.name === "header_router");
  assert.ok(p !== undefined);
  const cfg = p.config as HeaderRouterConfig;
  assert.equal(cfg.routes.acme.length, 2);
});

Deno.test("header_router end to end: the first upstream refuses, requests reach the second", async () => {
  await using uasDefault = TestUas.listen();
  await using uasSecond = TestUas.listen();
  const dead = freePort(); // nothing listens there: connect refused
  const dir = await Deno.makeTempDir({ prefix: "sipedge_header_router_" });
  const configPath = `${dir}/config.toml`;
  const port = freePort();
  await Deno.writeTextFile(
    configPath,
    `[sipedge]
workers = 2
log_level = "info"

[control]
address = ""

[[listen]]
address = "tcp:127.0.0.1:${port}"

[plugins.tcp]

[plugins.header_router]
module = "${relative(dir, `${REPO_ROOT}/examples/header_router.ts`)}"
default = ["${uasDefault.uri}"]
down_time = "1m"

[plugins.header_router.routes]
acme = ["sip:127.0.0.1:${dead};transport=tcp", "${uasSecond.uri}"]
`,
  );
  try {
    await using proxy = await startSipedge({ args: ["--config", configPath] });
    try {
      await using uac = await TestUac.connect(port);
      // 1: to the dead upstream; sipedge answers 503 (stateless: no retry) and reports it.
      await uac.send(
        buildRequest({ uri: "sip:bob@example.com", headers: ["X-Tenant: acme"] }).bytes,
      );
      const first = await uac.nextMessage();
      assert.equal(first.status, 503);
      assert.match(first.header("reason") ?? "", /connect refused/);
      // 2, 3: the plugin marked it down; the second upstream gets them.
      for (let i = 0; i < 2; i++) {
        const request = buildRequest({ uri: "sip:bob@example.com", headers: ["X-Tenant: acme"] });
        await uac.send(request.bytes);
        const response = await uac.nextMessage();
        assert.equal(response.status, 200);
        const got = await uasSecond.waitForCallId(request.callId);
        assert.equal(got.message.header("x-tenant"), "acme");
      }
      // No header: the default upstream.
      const plain = buildRequest({ uri: "sip:bob@example.com" });
      await uac.send(plain.bytes);
      assert.equal((await uac.nextMessage()).status, 200);
      await uasDefault.waitForCallId(plain.callId);
      assert.equal(uasSecond.requests.length, 2);
      assert.equal(uasDefault.requests.length, 1);
      assert.match(proxy.output(), /upstream tcp:127\.0\.0\.1:\d+ marked down/);
    } catch (error) {
      (error as Error).message += `\n--- sipedge output ---\n${proxy.output()}`;
      throw error;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
