/** Tests of the policy plugins' config tables: timeouts, limits, blacklist. */

import assert from "node:assert/strict";
import timeouts from "./timeouts.ts";
import limits from "./limits.ts";
import blacklist from "./blacklist.ts";
import { ConfigError, resolveConfig } from "../core/config/load.ts";
import { BLACKLIST_REASONS } from "../core/policy/failure.ts";
import type { PluginDefinition } from "../core/plugin/types.ts";

const LISTEN = `[[listen]]\naddress = "tcp:127.0.0.1:5060"\n`;

/** The messages a plugin's schema rejects `config` with. */
function rejected<C>(plugin: PluginDefinition<C>, config: unknown): string[] {
  const result = plugin.config.safeParse(config);
  assert.equal(result.success, false, `accepted: ${JSON.stringify(config)}`);
  return result.error!.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

/** The errors resolveConfig reports for `text`. */
async function configErrors(text: string): Promise<string[]> {
  try {
    await resolveConfig(text, "test.toml");
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.errors;
  }
  assert.fail("config was accepted");
}

Deno.test("policy plugins: definitions", () => {
  for (
    const [plugin, name] of [[timeouts, "timeouts"], [limits, "limits"], [
      blacklist,
      "blacklist",
    ]] as const
  ) {
    assert.equal(plugin.name, name);
    assert.equal(plugin.kind, "policy");
    assert.ok(plugin.description.length > 0);
  }
});

Deno.test("timeouts plugin: config", async (t) => {
  await t.step("defaults, in milliseconds", () => {
    assert.deepEqual(timeouts.config.parse({}), {
      connect_timeout: 10_000,
      send_timeout: 10_000,
      idle_timeout: 120_000,
      message_read_timeout: 20_000,
      keepalive_interval: 30_000,
      keepalive_timeout: 10_000,
    });
  });

  await t.step("durations with units", () => {
    const cfg = timeouts.config.parse({
      connect_timeout: "500ms",
      send_timeout: "1.5s",
      idle_timeout: "2m",
      message_read_timeout: "1h",
      keepalive_interval: "0s",
      keepalive_timeout: "250ms",
    });
    assert.deepEqual(cfg, {
      connect_timeout: 500,
      send_timeout: 1500,
      idle_timeout: 120_000,
      message_read_timeout: 3_600_000,
      keepalive_interval: 0,
      keepalive_timeout: 250,
    });
  });

  await t.step("bad values are rejected with readable messages", () => {
    const DURATION = "a duration like 500ms, 10s or 2m";
    for (const bad of ["10", "10 s", "-1s", "10d", "", "s", "1e3ms"]) {
      assert.deepEqual(rejected(timeouts, { send_timeout: bad }), [`send_timeout: ${DURATION}`]);
    }
    const [number] = rejected(timeouts, { idle_timeout: 120 });
    assert.match(number, /^idle_timeout: .*expected string, received number/);
  });

  await t.step("unknown keys are rejected", () => {
    const issues = timeouts.config.safeParse({ send_timeuot: "1s" });
    assert.equal(issues.success, false);
    assert.equal(issues.error!.issues[0].code, "unrecognized_keys");
  });

  // AbortSignal.timeout (and setTimeout) take at most 2^31-1 ms (≈ 24.8 days); a longer delay
  // fires at once (measured: AbortSignal.timeout(2 ** 31 + 1000) aborts after ≈ 1 ms), so
  // every connect would fail with connect_timeout and blacklist its destination.
  await t.step("connect_timeout beyond the timer range (600h) is rejected", () => {
    assert.ok(600 * 3_600_000 > 2 ** 31 - 1);
    assert.equal(timeouts.config.safeParse({ connect_timeout: "600h" }).success, false);
  });

  // "0s" turns keepalive pings off; for the other timeouts it cannot work: connect_timeout 0
  // aborts every connect, idle_timeout 0 closes every connection at the next sweep, and so on.
  await t.step("0s is rejected where it cannot work", () => {
    for (
      const key of [
        "connect_timeout",
        "send_timeout",
        "idle_timeout",
        "message_read_timeout",
        "keepalive_timeout",
      ]
    ) {
      assert.equal(timeouts.config.safeParse({ [key]: "0s" }).success, false, `${key} = "0s"`);
    }
  });
});

Deno.test("limits plugin: config", async (t) => {
  await t.step("defaults", () => {
    assert.deepEqual(limits.config.parse({}), {
      conn_wq_max: 256 * 1024,
      wq_max: 10 * 1024 * 1024,
      on_queue_full: "drop",
      max_connections: 2048,
      max_connections_per_ip: 1024,
      max_message_size: 65535,
    });
  });

  await t.step("values", () => {
    const cfg = limits.config.parse({
      conn_wq_max: 1024,
      wq_max: 1 << 30,
      on_queue_full: "drop",
      max_connections: 1,
      max_connections_per_ip: 1_000_000,
      max_message_size: 16 * 1024 * 1024,
    });
    assert.equal(cfg.on_queue_full, "drop");
    assert.equal(cfg.wq_max, 1 << 30);
  });

  await t.step("bad values are rejected with readable messages", () => {
    assert.deepEqual(rejected(limits, { conn_wq_max: 100 }), [
      "conn_wq_max: Too small: expected number to be >=1024",
    ]);
    assert.deepEqual(rejected(limits, { wq_max: 2 ** 31 }), [
      "wq_max: Too big: expected number to be <=1073741824",
    ]);
    assert.match(rejected(limits, { max_connections: 1.5 })[0], /^max_connections: .*int/);
    assert.match(
      rejected(limits, { max_connections: "10" })[0],
      /expected number, received string/,
    );
    assert.deepEqual(rejected(limits, { on_queue_full: "block" }), [
      'on_queue_full: Invalid option: expected one of "drop"|"close"',
    ]);
    assert.match(rejected(limits, { max_connections_per_ip: 0 })[0], />=1/);
    assert.match(rejected(limits, { max_message_size: 100 })[0], />=1024/);
  });

  await t.step("unknown keys are rejected", () => {
    const r = limits.config.safeParse({ max_conections: 5 });
    assert.equal(r.success, false);
    assert.equal(r.error!.issues[0].code, "unrecognized_keys");
  });
});

Deno.test("blacklist plugin: config", async (t) => {
  await t.step("defaults", () => {
    assert.deepEqual(blacklist.config.parse({}), {
      expire: 60_000,
      max_entries: 10_000,
      reasons: [...BLACKLIST_REASONS],
    });
  });

  await t.step("values", () => {
    assert.deepEqual(
      blacklist.config.parse({ expire: "5m", max_entries: 1, reasons: ["send_timeout"] }),
      { expire: 300_000, max_entries: 1, reasons: ["send_timeout"] },
    );
    assert.deepEqual(blacklist.config.parse({ reasons: [] }).reasons, [], "nothing blacklists");
  });

  await t.step("bad values are rejected with readable messages", () => {
    const [closed] = rejected(blacklist, { reasons: ["closed"] });
    assert.equal(
      closed,
      "reasons.0: Invalid option: expected one of " +
        BLACKLIST_REASONS.map((r) => `"${r}"`).join("|"),
    );
    assert.equal(rejected(blacklist, { reasons: ["blacklisted"] }).length, 1);
    assert.match(rejected(blacklist, { reasons: "connect_refused" })[0], /expected array/);
    assert.match(rejected(blacklist, { max_entries: 0 })[0], /^max_entries: .*>=1/);
    assert.deepEqual(rejected(blacklist, { expire: "60" }), [
      "expire: a duration like 500ms, 10s or 2m",
    ]);
  });

  await t.step("unknown keys are rejected", () => {
    const r = blacklist.config.safeParse({ expiry: "1m" });
    assert.equal(r.success, false);
    assert.equal(r.error!.issues[0].code, "unrecognized_keys");
  });
});

Deno.test("resolveConfig: policy plugins", async (t) => {
  const config = (c: Awaited<ReturnType<typeof resolveConfig>>, name: string) =>
    c.plugins.find((p) => p.name === name)?.config;

  await t.step("timeouts and limits are enabled without a table, blacklist is not", async () => {
    const c = await resolveConfig(LISTEN, "test.toml");
    assert.deepEqual(c.plugins.map((p) => [p.name, p.kind]), [
      ["tcp", "transport"],
      ["timeouts", "policy"],
      ["limits", "policy"],
    ]);
    assert.deepEqual(config(c, "timeouts"), timeouts.config.parse({}));
    assert.deepEqual(config(c, "limits"), limits.config.parse({}));
    assert.equal(config(c, "blacklist"), undefined);
  });

  await t.step("an empty [plugins.blacklist] table enables it with defaults", async () => {
    const c = await resolveConfig(`${LISTEN}[plugins.blacklist]\n`, "test.toml");
    assert.deepEqual(config(c, "blacklist"), blacklist.config.parse({}));
  });

  await t.step("values from the tables, durations in ms", async () => {
    const c = await resolveConfig(
      `${LISTEN}[plugins.timeouts]\nsend_timeout = "2s"\nkeepalive_interval = "0s"\n` +
        `[plugins.limits]\non_queue_full = "drop"\n` +
        `[plugins.blacklist]\nexpire = "90s"\nreasons = ["connect_refused"]\n`,
      "test.toml",
    );
    const t1 = config(c, "timeouts") as Record<string, unknown>;
    assert.equal(t1.send_timeout, 2000);
    assert.equal(t1.keepalive_interval, 0);
    assert.equal(t1.connect_timeout, 10_000);
    assert.equal((config(c, "limits") as Record<string, unknown>).on_queue_full, "drop");
    assert.deepEqual(config(c, "blacklist"), {
      expire: 90_000,
      max_entries: 10_000,
      reasons: ["connect_refused"],
    });
    assert.deepEqual(structuredClone(c), c);
  });

  await t.step("errors name the file, line and key", async () => {
    const errors = await configErrors(
      `${LISTEN}[plugins.timeouts]\nsend_timeout = 10\nidle = "1s"\n` +
        `[plugins.limits]\non_queue_full = "block"\nconn_wq_max = 100\n` +
        `[plugins.blacklist]\nreasons = ["closed"]\n`,
    );
    assert.deepEqual(errors, [
      "test.toml:4: plugins.timeouts.send_timeout: expected string, received number",
      "test.toml:5: plugins.timeouts.idle: unknown key",
      'test.toml:7: plugins.limits.on_queue_full: expected one of "drop"|"close"',
      "test.toml:8: plugins.limits.conn_wq_max: Too small: expected number to be >=1024",
      "test.toml:10: plugins.blacklist.reasons[0]: expected one of " +
      BLACKLIST_REASONS.map((r) => `"${r}"`).join("|"),
    ]);
  });
});
