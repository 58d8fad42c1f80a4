/**
 * A plugin cannot take sipedge down: a router that throws costs the request a 500 (logged with
 * the plugin's name, counted), an `onSendFailure` that throws is logged with the plugin's name,
 * a `worker()` that throws stops the start with a message naming the plugin, and a plugin
 * module that does not load (missing, syntax error, throws at import, bad default export) makes
 * the config invalid at `plugins.NAME.module`, at start and on reload.
 * @module
 */
import assert from "node:assert/strict";
import { forwardRequest } from "../core/proxy/forward_request.ts";
import { FakeHost, FakeSource, framed } from "../core/proxy/testing/fake_host.ts";
import { failureListenerOf, tagPlugin } from "../core/plugin/owners.ts";
import type { Router, SendFailureEvent } from "../core/plugin/types.ts";
import { ConfigError, resolveConfig } from "../core/config/load.ts";
import { parseHead } from "../core/sip/parse_head.ts";
import { getHeader } from "../core/sip/head.ts";
import { COUNTER_HELP } from "../core/stats.ts";
import { freePort, REPO_ROOT, startSipedge } from "./support/sipedge_process.ts";
import { buildRequest, TestUac, TestUas, waitUntil } from "./support/sip_peer.ts";

const REQUEST = "OPTIONS sip:bob@example.com SIP/2.0\r\n" +
  "Via: SIP/2.0/TCP 198.51.100.7:5070;branch=z9hG4bKabc\r\n" +
  "Max-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.com>\r\n" +
  "Call-ID: c1@198.51.100.7\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

/** A plugin module in the temp folder `dir`; returns its file name. */
async function writeModule(dir: string, name: string, text: string): Promise<string> {
  await Deno.writeTextFile(`${dir}/${name}`, text);
  return name;
}

/** A plugin definition without zod: a config schema that accepts any table. */
function definition(name: string, worker: string): string {
  return `const config = { safeParse: (v) => ({ success: true, data: v }) };
export default { name: ${JSON.stringify(name)}, kind: "router", description: "test", config,
  worker: ${worker} };
`;
}

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sipedge_plugin_errors_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("plugin errors: the plugin_errors counter exists", () => {
  assert.ok("plugin_errors" in COUNTER_HELP);
});

Deno.test("plugin errors: a router that throws → 500 naming the plugin, counted, next router not asked", () => {
  let asked = 0;
  const throwing: Router = tagPlugin({
    route() {
      throw new TypeError("cannot read properties of undefined");
    },
  }, "tenant_router");
  const next: Router = {
    route() {
      asked++;
      return undefined;
    },
  };
  const host = new FakeHost({ routers: [throwing, next] });
  const source = new FakeSource();
  forwardRequest(host, source, framed(REQUEST));
  assert.equal(host.sent.length, 0);
  assert.equal(source.replies.length, 1);
  const head = parseHead(source.replies[0]);
  assert.equal(head.status, 500);
  assert.equal(
    getHeader(head, "reason"),
    'SIP;cause=500;text="router plugin tenant_router failed"',
  );
  assert.equal(host.counters.get("plugin_errors"), 1);
  assert.equal(host.counters.get("requests_rejected"), 1);
  assert.equal(asked, 0);
  // The next request (router fine this time) is routed normally: nothing is left broken.
});

Deno.test("plugin errors: a throwing router is never answered for an ACK, still counted", () => {
  const router: Router = tagPlugin({
    route() {
      throw "a string";
    },
  }, "r");
  const host = new FakeHost({ routers: [router] });
  const source = new FakeSource();
  forwardRequest(host, source, framed(REQUEST.replaceAll("OPTIONS", "ACK")));
  assert.equal(source.replies.length, 0);
  assert.equal(host.sent.length, 0);
  assert.equal(host.counters.get("plugin_errors"), 1);
});

Deno.test("plugin errors: onSendFailure that throws comes out naming the plugin", () => {
  const seen: SendFailureEvent[] = [];
  const instance = {
    marker: 7,
    onSendFailure(this: { marker: number }, event: SendFailureEvent) {
      assert.equal(this.marker, 7, "called on its instance");
      seen.push(event);
      throw new Error("boom");
    },
  };
  const listener = failureListenerOf("failover", instance);
  const event: SendFailureEvent = {
    destination: "tcp:127.0.0.1:5070",
    reason: "connect_refused",
    connectionId: 1,
    bytesLost: 10,
    messagesLost: 1,
    blacklisted: false,
  };
  assert.throws(() => listener(event), /^Error: plugin failover: onSendFailure\(\) threw: boom$/);
  assert.equal(seen.length, 1);
});

Deno.test("plugin errors: modules that do not load make the config invalid at plugins.NAME.module", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, string | undefined, RegExp][] = [
      ["missing", undefined, /Module not found|No such file|not found/i],
      [
        "syntax",
        "export default {\n  name: 'x',,\n};\n",
        /Expression expected|SyntaxError|Unexpected/i,
      ],
      ["throws", "throw new Error('no licence key');\nexport default {};\n", /no licence key/],
      ["nodefault", "export const x = 1;\n", /not a plugin definition/],
      [
        "badkind",
        definition("badkind", "() => ({})").replace('"router"', '"filter"'),
        /not a plugin definition/,
      ],
    ];
    let toml = "";
    for (const [name, text] of cases) {
      if (text !== undefined) await writeModule(dir, `${name}.ts`, text);
      toml += `[plugins.${name}]\nmodule = "./${name}.ts"\n\n`;
    }
    const path = `${dir}/config.toml`;
    await Deno.writeTextFile(path, toml);
    const error = await resolveConfig(toml, path, {}, path).then(
      () => assert.fail("config accepted"),
      (e) => e,
    );
    assert.ok(error instanceof ConfigError, String(error));
    const lines = toml.split("\n");
    for (const [name, , pattern] of cases) {
      const line = lines.indexOf(`module = "./${name}.ts"`) + 1;
      const message = error.errors.find((e) => e.includes(`plugins.${name}.module:`));
      assert.ok(message !== undefined, `${name}: ${error.errors.join("\n")}`);
      assert.ok(message.startsWith(`${path}:${line}: plugins.${name}.module: `), message);
      assert.match(message, pattern, message);
    }
  });
});

Deno.test("plugin errors: end to end — a throwing route() gets a 500, sipedge keeps going; worker() throwing stops the start", async () => {
  await withTempDir(async (dir) => {
    await using uas = TestUas.listen();
    const dead = freePort();
    // A router: "X-Boom" → throws; "X-Dead" → a refused port (and its onSendFailure throws);
    // else → the UAS.
    await writeModule(
      dir,
      "flaky.ts",
      definition(
        "flaky",
        `(cfg) => ({
    router: {
      route(request) {
        const boom = request.head.headers.some((h) => h.name === "x-boom");
        if (boom) throw new Error("kaboom");
        const dead = request.head.headers.some((h) => h.name === "x-dead");
        return { destination: { transport: "tcp", host: "127.0.0.1", port: dead ? cfg.dead : cfg.up } };
      },
    },
    onSendFailure() { throw new Error("listener kaboom"); },
  })`,
      ),
    );
    const port = freePort();
    const path = `${dir}/config.toml`;
    await Deno.writeTextFile(
      path,
      `[sipedge]\nworkers = 1\n[control]\naddress = ""\n[[listen]]\naddress = "tcp:127.0.0.1:${port}"\n` +
        `[plugins.tcp]\n[plugins.flaky]\nmodule = "./flaky.ts"\nup = ${uas.port}\ndead = ${dead}\n`,
    );
    await using proxy = await startSipedge({ args: ["--config", path] });
    try {
      await using uac = await TestUac.connect(port);
      await uac.send(buildRequest({ headers: ["X-Boom: 1"] }).bytes);
      const failed = await uac.nextMessage();
      assert.equal(failed.status, 500);
      assert.equal(failed.header("reason"), 'SIP;cause=500;text="router plugin flaky failed"');
      const fine = buildRequest();
      await uac.send(fine.bytes);
      assert.equal((await uac.nextMessage()).status, 200);
      await uas.waitForCallId(fine.callId);
      await uac.send(buildRequest({ headers: ["X-Dead: 1"] }).bytes);
      assert.equal((await uac.nextMessage()).status, 503, "the core's failure reply still goes");
      await waitUntil(
        () =>
          /plugin flaky: onSendFailure\(\) threw: listener kaboom/.test(proxy.output()) ||
          undefined,
        3000,
        "the onSendFailure error in the log",
      );
      assert.match(proxy.output(), /plugin flaky: route\(\) threw: kaboom/);
      // Still serving after both.
      const again = buildRequest();
      await uac.send(again.bytes);
      assert.equal((await uac.nextMessage()).status, 200);
    } catch (error) {
      (error as Error).message += `\n--- sipedge output ---\n${proxy.output()}`;
      throw error;
    }

    // worker() throws: sipedge does not start, and says which plugin.
    await writeModule(
      dir,
      "broken.ts",
      definition("broken", "() => { throw new Error('no upstreams file'); }"),
    );
    const brokenPath = `${dir}/broken.toml`;
    await Deno.writeTextFile(
      brokenPath,
      `[control]\naddress = ""\n[[listen]]\naddress = "tcp:127.0.0.1:${freePort()}"\n[plugins.tcp]\n` +
        `[plugins.broken]\nmodule = "./broken.ts"\n`,
    );
    const result = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--unstable-net", "-A", `${REPO_ROOT}/main.ts`, "--config", brokenPath],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const out = new TextDecoder().decode(result.stdout) + new TextDecoder().decode(result.stderr);
    assert.equal(result.code, 1, out);
    assert.match(out, /plugin broken: worker\(\) threw: no upstreams file/, out);
  });
});

Deno.test("plugin errors: a plugin module that stops loading makes the reload fail; sipedge keeps running", async () => {
  await withTempDir(async (dir) => {
    await using uas = TestUas.listen();
    await writeModule(
      dir,
      "fixed.ts",
      definition(
        "fixed",
        "(cfg) => ({ router: { route: () => ({ destination: { transport: 'tcp', host: '127.0.0.1', port: cfg.up } }) } })",
      ),
    );
    const port = freePort();
    const path = `${dir}/config.toml`;
    await Deno.writeTextFile(
      path,
      `[sipedge]\nworkers = 1\n[control]\naddress = ""\n[[listen]]\naddress = "tcp:127.0.0.1:${port}"\n` +
        `[plugins.tcp]\n[plugins.fixed]\nmodule = "./fixed.ts"\nup = ${uas.port}\n`,
    );
    await using proxy = await startSipedge({ args: ["--config", path] });
    try {
      // Break the module (a syntax error; a new mtime so that it is imported afresh).
      await Deno.writeTextFile(`${dir}/fixed.ts`, "export default {,};\n");
      const later = new Date(Date.now() + 5000);
      await Deno.utime(`${dir}/fixed.ts`, later, later);
      Deno.kill(proxy.pid, "SIGHUP");
      await waitUntil(
        () => /plugins\.fixed\.module/.test(proxy.output()) || undefined,
        5000,
        "the reload error naming plugins.fixed.module",
      );
      // The running config is unchanged: requests still go to the UAS.
      await using uac = await TestUac.connect(port);
      const request = buildRequest();
      await uac.send(request.bytes);
      assert.equal((await uac.nextMessage()).status, 200);
      await uas.waitForCallId(request.callId);
    } catch (error) {
      (error as Error).message += `\n--- sipedge output ---\n${proxy.output()}`;
      throw error;
    }
  });
});

Deno.test("plugin errors: an exception nothing catches (a plugin's timer, a stray rejection) is contained; the worker keeps its connections", async () => {
  await withTempDir(async (dir) => {
    await using uas = TestUas.listen();
    // "X-Later" → the request is routed, and later a timer throws and a promise rejects with
    // nobody awaiting it: both would end the worker if nothing caught them.
    await writeModule(
      dir,
      "sloppy.ts",
      definition(
        "sloppy",
        `(cfg) => ({
    router: {
      route(request) {
        if (request.head.headers.some((h) => h.name === "x-later")) {
          setTimeout(() => { throw new Error("timer kaboom"); }, 10);
          setTimeout(() => { Promise.reject(new Error("stray rejection")); }, 20);
        }
        return { destination: { transport: "tcp", host: "127.0.0.1", port: cfg.up } };
      },
    },
  })`,
      ),
    );
    const port = freePort();
    const control = freePort();
    const path = `${dir}/config.toml`;
    await Deno.writeTextFile(
      path,
      `[sipedge]\nworkers = 1\n[control]\naddress = "127.0.0.1:${control}"\n` +
        `[[listen]]\naddress = "tcp:127.0.0.1:${port}"\n` +
        `[plugins.tcp]\n[plugins.sloppy]\nmodule = "./sloppy.ts"\nup = ${uas.port}\n`,
    );
    await using proxy = await startSipedge({ args: ["--config", path] });
    try {
      await using uac = await TestUac.connect(port);
      await uac.send(buildRequest({ headers: ["X-Later: 1"] }).bytes);
      assert.equal((await uac.nextMessage()).status, 200);
      await waitUntil(
        () => /contained: .*stray rejection/s.test(proxy.output()) || undefined,
        3000,
        "both errors in the log",
      );
      assert.match(proxy.output(), /uncaught error in reader worker 0, contained: .*timer kaboom/);
      // The same connection is still served by the same worker.
      await uac.send(buildRequest().bytes);
      assert.equal((await uac.nextMessage()).status, 200);
      const counters = await (await fetch(`http://127.0.0.1:${control}/counters`)).json();
      assert.equal(counters.counters.uncaught_errors, 2);
    } catch (error) {
      (error as Error).message += `\n--- sipedge output ---\n${proxy.output()}`;
      throw error;
    }
  });
});
