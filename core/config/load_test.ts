/** Tests of config loading: validation, error locations, command-line overrides. */

import assert from "node:assert/strict";
import { ConfigError, DEFAULT_CONFIG_TOML, loadConfig, resolveConfig } from "./load.ts";

const LISTEN = `[[listen]]\naddress = "tcp:127.0.0.1:5060"\n`;

/** The errors `text` is rejected with. */
async function errorsOf(text: string): Promise<string[]> {
  try {
    await resolveConfig(text, "test.toml");
  } catch (error) {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${error}`);
    assert.equal(error.message, error.errors.join("\n"));
    return error.errors;
  }
  assert.fail("config was accepted");
}

/** The one error of `text`; it must start with `test.toml:LINE: KEY: `. */
async function oneError(text: string, line: number | undefined, key: string): Promise<string> {
  const errors = await errorsOf(text);
  assert.equal(errors.length, 1, errors.join("\n"));
  const prefix = `test.toml${line === undefined ? "" : `:${line}`}: ${key}: `;
  assert.ok(
    errors[0].startsWith(prefix),
    `${JSON.stringify(errors[0])} should start with ${prefix}`,
  );
  return errors[0].slice(prefix.length);
}

function pluginConfig(config: { plugins: { name: string; config: unknown }[] }, name: string) {
  const plugin = config.plugins.find((p) => p.name === name);
  assert.ok(plugin, `plugin ${name} not enabled`);
  return plugin.config as Record<string, unknown>;
}

Deno.test("loadConfig: the bundled config.toml is valid", async () => {
  const path = new URL("../../config.toml", import.meta.url).pathname;
  const config = await loadConfig(path);
  assert.equal(config.source, path);
  assert.deepEqual(config.listen, [
    { transport: "tcp", hostname: "127.0.0.1", port: 5060 },
    { transport: "tls", hostname: "127.0.0.1", port: 5061 },
  ]);
  assert.deepEqual(config.plugins.map((p) => [p.name, p.kind]), [
    ["tcp", "transport"],
    ["tls", "transport"],
    ["static_router", "router"],
    ["timeouts", "policy"],
    ["limits", "policy"],
    ["blacklist", "policy"],
  ]);
  assert.equal(config.control.address, "127.0.0.1:8060");
  assert.equal(config.sipedge.workers, 0);
  assert.equal(config.sipedge.log_level, "info");
  assert.equal(pluginConfig(config, "limits").max_message_size, 65535);
  assert.equal(pluginConfig(config, "timeouts").message_read_timeout, 20_000);
  assert.deepEqual(pluginConfig(config, "static_router"), { record_route: false, routes: [] });
  // Plain data: it goes to workers by structured clone.
  assert.deepEqual(structuredClone(config), config);
});

Deno.test("loadConfig: built-in defaults without a file", async () => {
  const config = await loadConfig(undefined);
  assert.equal(config.source, "(built-in defaults)");
  assert.deepEqual(config.listen, [{ transport: "tcp", hostname: "127.0.0.1", port: 5060 }]);
  assert.deepEqual(config.plugins.map((p) => p.name), [
    "tcp",
    "static_router",
    "timeouts",
    "limits",
  ]);
  assert.ok(DEFAULT_CONFIG_TOML.includes("[plugins.static_router]"));
});

Deno.test("loadConfig: an unreadable file names the path", async () => {
  const path = "/nonexistent/sipedge-test/config.toml";
  await assert.rejects(loadConfig(path), (error) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.errors.length, 1);
    assert.ok(error.errors[0].startsWith(`${path}: cannot read: `), error.errors[0]);
    return true;
  });
});

Deno.test("resolveConfig: values and defaults", async () => {
  const config = await resolveConfig(
    `[sipedge]\nworkers = 3\naliases = ["sip.example.com", "10.0.0.1:5060"]\n` +
      `shutdown_timeout = "1.5s"\n[plugins.limits]\nmax_message_size = 4096\n` +
      `[plugins.timeouts]\nmessage_read_timeout = "500ms"\n` +
      `[[listen]]\naddress = "tcp:[::1]:5070"\nadvertise = "edge.example.com:5080"\n` +
      `[plugins.tcp]\nread_buffer_size = 4096\n`,
    "test.toml",
  );
  assert.equal(config.sipedge.workers, 3);
  assert.deepEqual(config.sipedge.aliases, ["sip.example.com", "10.0.0.1:5060"]);
  assert.equal(config.sipedge.shutdown_timeout, 1500);
  assert.equal(pluginConfig(config, "limits").max_message_size, 4096);
  assert.equal(pluginConfig(config, "timeouts").message_read_timeout, 500);
  assert.deepEqual(config.listen, [{
    transport: "tcp",
    hostname: "::1",
    port: 5070,
    advertise: { host: "edge.example.com", port: 5080 },
  }]);
  assert.deepEqual(pluginConfig(config, "tcp"), {
    read_buffer_size: 4096,
    idle_read_buffer_size: 2048,
  });
});

Deno.test("resolveConfig: a built-in transport named by a listener, timeouts and limits are enabled without a table", async () => {
  const config = await resolveConfig(LISTEN, "test.toml");
  assert.deepEqual(config.plugins.map((p) => p.name), ["tcp", "timeouts", "limits"]);
  assert.equal(config.control.address, "");
});

Deno.test("resolveConfig: transports come first, routers in config order", async () => {
  const config = await resolveConfig(
    `[[listen]]\naddress = "tcp:127.0.0.1:5060"\n[plugins.static_router]\n[plugins.tcp]\n`,
    "test.toml",
  );
  assert.deepEqual(config.plugins.map((p) => p.name), [
    "tcp",
    "static_router",
    "timeouts",
    "limits",
  ]);
});

Deno.test("resolveConfig: errors name the source, line and key", async (t) => {
  await t.step("TOML syntax error: line and column", async () => {
    const errors = await errorsOf(`[sipedge]\nworkers = 2\nlog_level = \n`);
    assert.equal(errors.length, 1);
    assert.match(errors[0], /^test\.toml:3:\d+: TOML syntax: /);
  });
  await t.step("unknown key in a plugin table", async () => {
    const message = await oneError(
      `${LISTEN}\n[plugins.static_router]\nrecord_route = true\nrouts = []\n`,
      6,
      "plugins.static_router.routs",
    );
    assert.equal(message, "unknown key");
  });
  await t.step("unknown key at the top level and in a core section", async () => {
    assert.equal(await oneError(`foo = 1\n${LISTEN}`, 1, "foo"), "unknown key");
    assert.equal(
      await oneError(
        `${LISTEN}[plugins.limits]\nmax_mesage_size = 1\n`,
        4,
        "plugins.limits.max_mesage_size",
      ),
      "unknown key",
    );
  });
  await t.step("wrong type", async () => {
    const message = await oneError(`[sipedge]\nworkers = "two"\n\n${LISTEN}`, 2, "sipedge.workers");
    assert.match(message, /number/);
  });
  await t.step("out of range", async () => {
    await oneError(`[sipedge]\nworkers = 1000\n${LISTEN}`, 2, "sipedge.workers");
    await oneError(
      `[plugins.limits]\nmax_message_size = 10\n${LISTEN}`,
      2,
      "plugins.limits.max_message_size",
    );
  });
  await t.step("bad enum value", async () => {
    const message = await oneError(
      `[sipedge]\nlog_level = "loud"\n${LISTEN}`,
      2,
      "sipedge.log_level",
    );
    assert.match(message, /debug/);
  });
  await t.step("bad duration", async () => {
    for (const bad of ["20 seconds", "20", "-1s", "1d", ""]) {
      const message = await oneError(
        `${LISTEN}\n[plugins.timeouts]\nmessage_read_timeout = "${bad}"\n`,
        5,
        "plugins.timeouts.message_read_timeout",
      );
      assert.equal(message, "a duration like 500ms, 10s or 2m");
    }
  });
  await t.step("bad listen address", async () => {
    for (
      const bad of [
        "tcp:127.0.0.1",
        "127.0.0.1:5060",
        "tcp:127.0.0.1:99999",
        "tcp:::1:5060",
        "TCP:h:1",
      ]
    ) {
      const message = await oneError(
        `[[listen]]\naddress = "tcp:127.0.0.1:5060"\n[[listen]]\naddress = "${bad}"\n`,
        4,
        "listen[1].address",
      );
      assert.match(message, /TRANSPORT:HOST:PORT/, bad);
    }
  });
  await t.step("bad advertise", async () => {
    await oneError(`${LISTEN}advertise = "a b"\n`, 3, "listen[0].advertise");
  });
  await t.step("no listen entry", async () => {
    const message = await oneError(`[plugins.tcp]\n`, undefined, "listen");
    assert.match(message, /missing/);
    assert.match(await oneError(`listen = []\n`, 1, "listen"), /at least one/);
  });
  await t.step("bad route destination URI", async () => {
    const message = await oneError(
      `${LISTEN}[plugins.static_router]\n[[plugins.static_router.routes]]\ndomain = "a.example.com"\n` +
        `destination = "sip:a.example.com"\n[[plugins.static_router.routes]]\ndomain = "b.example.com"\n` +
        `destination = "http://b.example.com"\n`,
      9,
      "plugins.static_router.routes[1].destination",
    );
    assert.match(message, /sip: or sips: URI/);
  });
  await t.step("bad default_route", async () => {
    await oneError(
      `${LISTEN}[plugins.static_router]\ndefault_route = "10.0.0.5:5060"\n`,
      4,
      "plugins.static_router.default_route",
    );
  });
  await t.step("unknown built-in plugin", async () => {
    const message = await oneError(`${LISTEN}\n[plugins.nosuch]\n`, 4, "plugins.nosuch");
    assert.match(message, /no built-in plugin named "nosuch"/);
  });
  await t.step("a user plugin module that does not exist", async () => {
    const message = await oneError(
      `${LISTEN}[plugins.mine]\nmodule = "./no/such/plugin.ts"\n`,
      4,
      "plugins.mine.module",
    );
    assert.ok(message.length > 0);
  });
  await t.step("a [[listen]] using a transport with no plugin", async () => {
    const message = await oneError(
      `${LISTEN}[[listen]]\naddress = "sctp:127.0.0.1:5061"\n`,
      4,
      "listen[1].address",
    );
    assert.equal(message, `transport "sctp" is not enabled (add a [plugins.sctp] table)`);
  });
  await t.step("a [[listen]] using a router as its transport", async () => {
    await oneError(
      `${LISTEN}[[listen]]\naddress = "static_router:127.0.0.1:5061"\n`,
      4,
      "listen[1].address",
    );
  });
});

Deno.test("resolveConfig: multiple errors are reported together, in line order", async () => {
  const errors = await errorsOf(
    `[plugins.static_router]\nrouts = 1\n` +
      `[sipedge]\nworkers = "two"\n` +
      `[plugins.timeouts]\nmessage_read_timeout = "x"\n` +
      `[[listen]]\naddress = "sctp:127.0.0.1:5061"\n` +
      `[plugins.nosuch]\n`,
  );
  assert.deepEqual(errors.map((e) => e.split(": ").slice(0, 2).join(": ")), [
    "test.toml:2: plugins.static_router.routs",
    "test.toml:4: sipedge.workers",
    "test.toml:6: plugins.timeouts.message_read_timeout",
    "test.toml:8: listen[0].address",
    "test.toml:9: plugins.nosuch",
  ]);
});

Deno.test("resolveConfig: command-line overrides", async (t) => {
  const file = `[sipedge]\nworkers = 2\n` +
    `[[listen]]\naddress = "tcp:127.0.0.1:5060"\n[[listen]]\naddress = "tcp:127.0.0.1:5062"\n` +
    `[plugins.tcp]\n[plugins.static_router]\nrecord_route = true\n` +
    `[[plugins.static_router.routes]]\ndomain = "example.com"\ndestination = "sip:10.0.0.9"\n`;
  await t.step("no overrides", async () => {
    const config = await resolveConfig(file, "test.toml");
    assert.equal(config.sipedge.workers, 2);
    assert.equal(config.listen.length, 2);
    assert.equal((pluginConfig(config, "static_router").routes as unknown[]).length, 1);
  });
  await t.step("listen replaces every [[listen]] entry", async () => {
    const config = await resolveConfig(file, "test.toml", {
      listen: ["tcp:[::1]:6000", "tcp:0.0.0.0:0"],
    });
    assert.deepEqual(config.listen, [
      { transport: "tcp", hostname: "::1", port: 6000 },
      { transport: "tcp", hostname: "0.0.0.0", port: 0 },
    ]);
  });
  await t.step("an empty listen list keeps the file's", async () => {
    const config = await resolveConfig(file, "test.toml", { listen: [] });
    assert.equal(config.listen.length, 2);
  });
  await t.step("listen makes a file without [[listen]] valid", async () => {
    const config = await resolveConfig(`[plugins.tcp]\n`, "test.toml", {
      listen: ["tcp:127.0.0.1:7000"],
    });
    assert.deepEqual(config.listen, [{ transport: "tcp", hostname: "127.0.0.1", port: 7000 }]);
  });
  await t.step("forward sets static_router's default_route and clears its routes", async () => {
    const config = await resolveConfig(file, "test.toml", {
      forward: "sip:10.0.0.5:5070;transport=tcp",
    });
    assert.deepEqual(pluginConfig(config, "static_router"), {
      record_route: true,
      default_route: "sip:10.0.0.5:5070;transport=tcp",
      routes: [],
    });
  });
  await t.step("forward enables static_router when the file has none", async () => {
    const config = await resolveConfig(LISTEN, "test.toml", { forward: "sip:10.0.0.5" });
    assert.deepEqual(pluginConfig(config, "static_router"), {
      record_route: false,
      default_route: "sip:10.0.0.5",
      routes: [],
    });
  });
  await t.step("workers", async () => {
    const config = await resolveConfig(file, "test.toml", { workers: 7 });
    assert.equal(config.sipedge.workers, 7);
    const zero = await resolveConfig(file, "test.toml", { workers: 0 });
    assert.equal(zero.sipedge.workers, 0);
  });
  await t.step("overrides do not hide errors elsewhere in the file", async () => {
    await assert.rejects(
      resolveConfig(`[sipedge]\nworkers = "two"\n${LISTEN}`, "test.toml", { workers: 2 }),
      ConfigError,
    );
  });
});
