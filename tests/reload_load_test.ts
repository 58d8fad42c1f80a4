/**
 * Reloads under load: SIPp sends OPTIONS through sipedge to a SIPp UAS over one client
 * connection while config.toml is switched between two valid configs (different limits,
 * timeouts, blacklist and routing settings) 20 times, with one invalid config in between.
 * Every transaction must succeed, every reload but the invalid one must apply, and the
 * connections open before the reloads (client side and upstream) must still be open after.
 *
 * @module
 */
import assert from "node:assert/strict";
import { freePort, startSipedge } from "./support/sipedge_process.ts";
import { reloadConfig, type ReloadVariant } from "./support/reload_configs.ts";
import {
  findOnPath,
  optionsUacArgs,
  optionsUasArgs,
  parseSippStats,
  startSipp,
  waitForTcpListen,
} from "./support/sipp.ts";

const CALLS = 3000;
const RATE = 200;
const RELOADS = 20;

function configText(variant: ReloadVariant, ports: { sip: number; control: number }): string {
  return reloadConfig(variant, { sipPort: ports.sip, controlPort: ports.control });
}

interface ConnectionRow {
  id: number;
  direction: string;
  remote: string;
}

async function connections(control: number): Promise<ConnectionRow[]> {
  const response = await fetch(`http://127.0.0.1:${control}/connections`);
  return (await response.json()).connections;
}

Deno.test({
  name: "reload under SIPp load: 20 reloads and an invalid one, no failed transaction",
  ignore: findOnPath("sipp") === undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "sipedge_reload_load_" });
    const ports = { sip: freePort(), control: freePort() };
    const uasPort = freePort();
    const configPath = `${dir}/config.toml`;
    await Deno.writeTextFile(configPath, configText("a", ports));
    await using uas = startSipp({
      cwd: dir,
      killAfterMs: 120_000,
      args: optionsUasArgs(uasPort, CALLS, `${dir}/uas.csv`),
    });
    await waitForTcpListen(uasPort, 10_000, "SIPp UAS");
    await using proxy = await startSipedge({ args: ["--config", configPath] });
    const log = () => proxy.output();
    assert.match(proxy.readyLine, /\(2 workers\)/);
    try {
      await using uac = startSipp({
        cwd: dir,
        killAfterMs: 120_000,
        args: optionsUacArgs({
          proxyPort: ports.sip,
          uasPort,
          localPort: freePort(),
          calls: CALLS,
          rate: RATE,
          limit: 500,
          timeoutSeconds: 60,
          statFile: `${dir}/uac.csv`,
        }),
      });
      // Both the client connection and the upstream connection of some worker are open.
      let before: ConnectionRow[] = [];
      for (let i = 0; i < 100; i++) {
        before = await connections(ports.control);
        if (before.some((c) => c.direction === "in") && before.some((c) => c.direction === "out")) {
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(before.length >= 2, `SIPp connections: ${JSON.stringify(before)}`);

      let applied = 0;
      let inForce = "a";
      let refused = 0;
      for (let i = 0; i < RELOADS + 1; i++) {
        const variant = i === RELOADS / 2 ? "invalid" : i % 2 === 0 ? "b" : "a";
        await Deno.writeTextFile(configPath, configText(variant, ports));
        const response = await fetch(`http://127.0.0.1:${ports.control}/reload`, {
          method: "POST",
        });
        const report = await response.json();
        if (variant === "invalid") {
          assert.equal(report.ok, false, JSON.stringify(report));
          assert.match(report.errors.join("\n"), /plugins\.limits\.conn_wq_max/);
          refused++;
        } else {
          assert.equal(report.ok, true, JSON.stringify(report));
          // a and b differ in every plugin table
          if (variant !== inForce) {
            assert.match(report.changes.join("\n"), /plugins\.limits: conn_wq_max, wq_max/);
          } else {
            assert.deepEqual(report.changes, []);
          }
          inForce = variant;
          applied++;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(applied, RELOADS);
      assert.equal(refused, 1);

      const after = await connections(ports.control);
      const ids = new Set(after.map((c) => c.id));
      for (const c of before) {
        assert.ok(ids.has(c.id), `connection ${c.id} (${c.direction} ${c.remote}) was closed`);
      }

      const result = await uac.done;
      const stats = parseSippStats(await Deno.readTextFile(`${dir}/uac.csv`));
      assert.equal(
        stats.failed,
        0,
        `UAC: ${stats.failed} failed calls\n${result.output.slice(-3000)}`,
      );
      assert.equal(stats.successful, CALLS);
      assert.equal(result.code, 0);
    } catch (error) {
      if (error instanceof Error) {
        error.message += `\n--- sipedge output ---\n${log().slice(-5000)}`;
      }
      throw error;
    } finally {
      await uas.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
