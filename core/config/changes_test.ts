import assert from "node:assert/strict";
import { describeChanges } from "./changes.ts";
import type { ResolvedConfig } from "./load.ts";

function config(overrides: Partial<ResolvedConfig> = {}): ResolvedConfig {
  return {
    source: "config.toml",
    sipedge: {
      workers: 2,
      log_level: "info",
      log_format: "text",
      aliases: [],
      shutdown_timeout: 5000,
    },
    control: { address: "127.0.0.1:8060", token: "" },
    flows: { register: "outbound", record_route: true, key: "", key_grace: 3_600_000 },
    listen: [{ transport: "tcp", hostname: "127.0.0.1", port: 5060 }],
    plugins: [
      { name: "tcp", kind: "transport", config: { read_buffer_size: 16384 } },
      { name: "limits", kind: "policy", config: { conn_wq_max: 1, wq_max: 2 } },
    ],
    ...overrides,
  } as ResolvedConfig;
}

Deno.test("describeChanges: nothing changed", () => {
  assert.deepEqual(describeChanges(config(), config()), []);
});

Deno.test("describeChanges: one line per change, secrets not shown", () => {
  const before = config();
  const after = config({
    sipedge: { ...before.sipedge, log_level: "debug", workers: 4 },
    control: { address: "127.0.0.1:8060", token: "s3cret" },
    flows: { ...before.flows, register: "all", key: "a new key of 16+ chars" },
    listen: [{ transport: "tls", hostname: "::1", port: 5061 }],
    plugins: [
      { name: "limits", kind: "policy", config: { conn_wq_max: 5, wq_max: 2 } },
      { name: "mine", kind: "router", moduleUrl: "file:///p.ts", version: "1", config: {} },
    ],
  });
  assert.deepEqual(describeChanges(before, after), [
    "sipedge.workers: 2 -> 4 (applies at the next start)",
    'sipedge.log_level: "info" -> "debug"',
    "control.token: changed (applies at the next start)",
    'flows.register: "outbound" -> "all"',
    "flows.key: changed",
    "listen: added tls:[::1]:5061",
    "listen: removed tcp:127.0.0.1:5060 (its connections stay open)",
    "plugins.limits: conn_wq_max",
    "plugins.mine: added",
    "plugins.tcp: removed",
  ]);
});

Deno.test("describeChanges: a plugin's view names the entries that changed", () => {
  const domains = (fingerprint: string) => ({
    server_domains: [{ name: "a", fp: "1" }, { name: "b", fp: fingerprint }],
    handshake_timeout_ms: 10,
  });
  const before = config({ plugins: [{ name: "tls", kind: "transport", config: "old" }] });
  const after = config({ plugins: [{ name: "tls", kind: "transport", config: "new" }] });
  const view = (p: { config: unknown }) => domains(p.config === "old" ? "2" : "3");
  assert.deepEqual(describeChanges(before, after, view), ["plugins.tls: server_domains[b]"]);
});

Deno.test("describeChanges: a new module version", () => {
  const plugin = { name: "mine", kind: "router" as const, moduleUrl: "file:///p.ts", config: {} };
  assert.deepEqual(
    describeChanges(
      config({ plugins: [{ ...plugin, version: "1" }] }),
      config({ plugins: [{ ...plugin, version: "2" }] }),
    ),
    ["plugins.mine: new module version"],
  );
});
