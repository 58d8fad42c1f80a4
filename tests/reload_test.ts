/**
 * Live reload, as an operator does it: edit config.toml, send SIGHUP, read the log. A reload
 * applies in every worker or in none; open connections survive; a refused reload (bad key,
 * a listener that cannot bind, a plugin that fails) changes nothing and says why.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  freePort,
  type SipedgeProcess,
  startSipedge,
  withOutput,
} from "./support/sipedge_process.ts";
import { buildRequest, TestUac, TestUas, waitUntil } from "./support/sip_peer.ts";

/** A config file in a temp folder that the test rewrites between reloads. */
class ConfigFile {
  readonly dir = Deno.makeTempDirSync({ prefix: "sipedge_reload_" });
  readonly path = `${this.dir}/config.toml`;
  write(text: string): void {
    Deno.writeTextFileSync(this.path, text);
  }
  [Symbol.dispose](): void {
    Deno.removeSync(this.dir, { recursive: true });
  }
}

/** Sends SIGHUP and waits for the reload's outcome line; returns the log from there on. */
async function reload(proxy: SipedgeProcess): Promise<string> {
  const before = proxy.output().length;
  Deno.kill(proxy.pid, "SIGHUP");
  await waitUntil(() => {
    const out = proxy.output().slice(before);
    return /reload of .* (applied|refused)/.test(out) ? out : undefined;
  }, 10_000);
  // A refusal is followed by one line per error.
  await new Promise((r) => setTimeout(r, 200));
  return proxy.output().slice(before);
}

function config(options: { ports: number[]; forward: string; extra?: string }): string {
  return `[sipedge]
workers = 2

${options.ports.map((p) => `[[listen]]\naddress = "tcp:127.0.0.1:${p}"\n`).join("\n")}
[plugins.static_router]
default_route = "${options.forward}"
${options.extra ?? ""}
`;
}

/** Sends one OPTIONS on `uac` and returns the status of the answer. */
async function ask(uac: TestUac): Promise<number> {
  await uac.send(buildRequest({ method: "OPTIONS" }).bytes);
  return (await uac.nextMessage(5000)).status!;
}

Deno.test("reload: a new route applies to the next request on an open connection", async () => {
  using file = new ConfigFile();
  await using uas1 = TestUas.listen({ status: 200 });
  await using uas2 = TestUas.listen({ status: 202 });
  const port = freePort();
  file.write(config({ ports: [port], forward: uas1.uri }));
  await using proxy = await startSipedge({ args: ["--config", file.path] });
  await using uac = await TestUac.connect(port);
  await withOutput(proxy, async () => {
    assert.equal(await ask(uac), 200);

    file.write(config({ ports: [port], forward: uas2.uri }));
    const log = await reload(proxy);
    assert.match(log, /reload of .* applied: plugins\.static_router: default_route/);
    assert.equal(await ask(uac), 202, "the same client connection, the new route");
    assert.equal(uac.isClosed, false);

    // A refused reload: the error names file, line and key; the route in force stays.
    file.write(config({ ports: [port], forward: uas1.uri, extra: "bogus_key = 1" }));
    const refused = await reload(proxy);
    assert.match(refused, /refused/);
    assert.match(refused, /config\.toml:\d+: plugins\.static_router\.bogus_key: unknown key/);
    assert.equal(await ask(uac), 202);

    // Nothing changed in the file: the reload applies and says so.
    file.write(config({ ports: [port], forward: uas2.uri }));
    assert.match(await reload(proxy), /applied: no changes/);
  });
});

Deno.test("reload: listeners are added and removed; connections on a removed one stay", async () => {
  using file = new ConfigFile();
  await using uas = TestUas.listen();
  const [port1, port2] = [freePort(), freePort()];
  file.write(config({ ports: [port1], forward: uas.uri }));
  await using proxy = await startSipedge({ args: ["--config", file.path] });
  await using early = await TestUac.connect(port1);
  await withOutput(proxy, async () => {
    assert.equal(await ask(early), 200);

    file.write(config({ ports: [port1, port2], forward: uas.uri }));
    assert.match(await reload(proxy), /applied: listen: added tcp:127\.0\.0\.1:\d+/);
    await using second = await TestUac.connect(port2);
    assert.equal(await ask(second), 200);

    file.write(config({ ports: [port2], forward: uas.uri }));
    assert.match(await reload(proxy), /applied: listen: removed tcp:127\.0\.0\.1:\d+/);
    await assert.rejects(TestUac.connect(port1), Deno.errors.ConnectionRefused);
    assert.equal(await ask(early), 200, "a connection accepted on the removed listener");
    assert.equal(await ask(second), 200);
  });
});

Deno.test("reload: a listener that cannot bind refuses the whole reload", async () => {
  using file = new ConfigFile();
  await using uas1 = TestUas.listen({ status: 200 });
  await using uas2 = TestUas.listen({ status: 202 });
  const port = freePort();
  file.write(config({ ports: [port], forward: uas1.uri }));
  await using proxy = await startSipedge({ args: ["--config", file.path] });
  // A socket without SO_REUSEPORT holds this port: sipedge cannot bind it.
  using blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const taken = (blocker.addr as Deno.NetAddr).port;
  await using uac = await TestUac.connect(port);
  await withOutput(proxy, async () => {
    file.write(config({ ports: [port, taken], forward: uas2.uri }));
    const log = await reload(proxy);
    assert.match(log, /refused/);
    assert.match(log, new RegExp(`cannot listen on tcp:127\\.0\\.0\\.1:${taken}`));
    assert.equal(await ask(uac), 200, "the old route is still in force");
    assert.doesNotMatch(log, /applied/);
  });
});

Deno.test("reload: an edited user plugin module is loaded again", async () => {
  using file = new ConfigFile();
  const plugin = `${file.dir}/reply_plugin.ts`;
  const core = new URL("../core/plugin/types.ts", import.meta.url).href;
  const writePlugin = (status: number) =>
    Deno.writeTextFileSync(
      plugin,
      `import { z } from "npm:zod@^4.6.7";
import type { PluginDefinition } from "${core}";
const plugin: PluginDefinition<Record<string, never>> = {
  name: "reply_plugin",
  kind: "router",
  description: "answers every request",
  config: z.strictObject({}),
  worker: () => ({
    router: { route: () => ({ reply: { status: ${status}, reason: "Version ${status}" } }) },
  }),
};
export default plugin;
`,
    );
  writePlugin(486);
  const port = freePort();
  const text = `[[listen]]
address = "tcp:127.0.0.1:${port}"

[plugins.reply_plugin]
module = "./reply_plugin.ts"
`;
  file.write(text);
  await using proxy = await startSipedge({ args: ["--config", file.path, "--workers", "1"] });
  await using uac = await TestUac.connect(port);
  await withOutput(proxy, async () => {
    assert.equal(await ask(uac), 486);
    writePlugin(488);
    // mtime is the version: make sure it moves even on a coarse clock.
    const later = new Date(Date.now() + 2000);
    Deno.utimeSync(plugin, later, later);
    assert.match(await reload(proxy), /applied: plugins\.reply_plugin: new module version/);
    assert.equal(await ask(uac), 488);
  });
});

Deno.test("reload: command-line --listen and --forward stay in force (port 0 keeps its port)", async () => {
  using file = new ConfigFile();
  await using uas1 = TestUas.listen({ status: 200 });
  await using uas2 = TestUas.listen({ status: 202 });
  file.write(config({ ports: [freePort()], forward: uas2.uri }));
  await using proxy = await startSipedge({
    args: ["--config", file.path, "--listen", "tcp:127.0.0.1:0", "--forward", uas1.uri],
  });
  const port = Number(proxy.listening[0].split(":").at(-1));
  await using uac = await TestUac.connect(port);
  await withOutput(proxy, async () => {
    assert.equal(await ask(uac), 200);
    file.write(config({ ports: [freePort()], forward: uas2.uri, extra: "record_route = true" }));
    assert.match(await reload(proxy), /applied: plugins\.static_router: record_route$/m);
    await using again = await TestUac.connect(port);
    assert.equal(await ask(again), 200, "--forward still wins over the file's default_route");
    assert.equal(await ask(uac), 200);
  });
});
