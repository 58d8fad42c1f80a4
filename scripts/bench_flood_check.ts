/**
 * `deno bench scripts/bench_flood_check.ts`: the flood guard's per-request check
 * (core/policy/flood_guard.ts) in isolation — the guard off, one busy source, many sources,
 * a trusted source, and the shared table's take alone.
 * @module
 */
import { FloodGuard } from "../core/policy/flood_guard.ts";
import { createSourceTableBuffer, SourceTable } from "../core/policy/source_table.ts";
import { parseIp } from "../core/policy/ip_prefix.ts";
import type { FloodGuardSettings } from "../core/policy/settings.ts";

const SETTINGS: FloodGuardSettings = {
  rate: 1e6,
  burst: 1e6,
  ban: 60_000,
  trusted: ["10.0.0.0/8", "2001:db8:ffff::/48"],
  ipv6_prefix: 64,
  max_sources: 65_536,
  weights: { REGISTER: 4 },
};

function guard(settings: FloodGuardSettings | undefined): FloodGuard {
  const g = new FloodGuard({
    table: new SourceTable(createSourceTableBuffer(65_536), 0),
    onBan: () => {},
  });
  g.setSettings(settings);
  return g;
}

const off = guard(undefined);
const on = guard(SETTINGS);
const many = guard(SETTINGS);
const sources = Array.from(
  { length: 30_000 },
  (_, i) => `198.${51 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
);
const v6 = Array.from({ length: 1000 }, (_, i) => `2001:db8:${i.toString(16)}::${i}`);
let i = 0;
// A clock that advances 10 µs per request, so that the one busy source is never banned (its
// bucket refills at 1e6 tokens/s): the allowed path, every time.
let clock = Date.now();

Deno.bench("guard off (no [plugins.flood_guard])", { group: "check", baseline: true }, () => {
  off.check("192.0.2.9", "OPTIONS");
});
Deno.bench("one source, allowed", { group: "check" }, () => {
  on.check("192.0.2.9", "OPTIONS", clock += 0.01);
});
Deno.bench("trusted source", { group: "check" }, () => {
  on.check("10.1.2.3", "INVITE");
});
Deno.bench(
  "30,000 IPv4 sources in turn (parse cache 16,384: all misses)",
  { group: "check" },
  () => {
    many.check(sources[i++ % sources.length], "OPTIONS", clock += 0.01);
  },
);
Deno.bench("1,000 IPv6 sources in turn (cached)", { group: "check" }, () => {
  many.check(v6[i++ % v6.length], "REGISTER", clock += 0.01);
});

const table = new SourceTable(createSourceTableBuffer(65_536), 0);
const key = table.key(parseIp("192.0.2.9")!);
Deno.bench("SourceTable.take alone (lookup + CAS)", { group: "table" }, () => {
  table.take(key, 1, 1e9, 60_000, clock += 0.01);
});
Deno.bench("Date.now() (for scale: the check reads the clock once)", { group: "table" }, () => {
  Date.now();
});
