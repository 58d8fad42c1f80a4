/**
 * The flood guard's shared source table and the worker guard: token bucket refill, bans, two
 * views (and two real threads) on one buffer, the eviction bound, IPv6 prefix grouping, CIDR
 * trust, address parsing.
 */
import assert from "node:assert/strict";
import {
  ALLOWED,
  BANNED,
  BANNED_NOW,
  createSourceTableBuffer,
  ENTRY_BYTES,
  MIN_SOURCES,
  SourceTable,
  sourceTableEntries,
} from "./source_table.ts";
import { contains, formatPrefix, parseCidr, parseIp, sourceGroup } from "./ip_prefix.ts";
import { FloodGuard } from "./flood_guard.ts";
import type { BanEntry } from "./ban_table.ts";
import type { FloodGuardSettings } from "./settings.ts";

const T0 = 1_700_000_000_000;
/** rate 10/s: a token is 100 ms of bucket; burst 5: the bucket is 500 ms deep. */
const COST = 100_000;
const WINDOW = 500_000;

function table(workerId?: number, buffer = createSourceTableBuffer(MIN_SOURCES, T0)) {
  return { buffer, view: new SourceTable(buffer, workerId) };
}

function ip(text: string) {
  return parseIp(text)!;
}

Deno.test("source table: a burst passes, the next request bans; the bucket refills at rate", () => {
  const { view } = table(0);
  const a = view.key(ip("192.0.2.1"));
  for (let i = 0; i < 5; i++) assert.equal(view.take(a, COST, WINDOW, 10_000, T0), ALLOWED);
  // 300 ms later three tokens are back.
  const b = view.key(ip("192.0.2.2"));
  for (let i = 0; i < 5; i++) assert.equal(view.take(b, COST, WINDOW, 10_000, T0), ALLOWED);
  for (let i = 0; i < 3; i++) assert.equal(view.take(b, COST, WINDOW, 10_000, T0 + 300), ALLOWED);
  // A full second idle: the bucket is full again (not more than full).
  for (let i = 0; i < 5; i++) assert.equal(view.take(a, COST, WINDOW, 10_000, T0 + 1000), ALLOWED);
  assert.equal(view.take(a, COST, WINDOW, 10_000, T0 + 1000), BANNED_NOW);
  assert.ok(view.lastRate >= 5, `rate seen ${view.lastRate}`);
  // Banned: every later request is dropped without a second report, until the ban ends.
  assert.equal(view.take(a, COST, WINDOW, 10_000, T0 + 1001), BANNED);
  assert.equal(view.take(a, COST, WINDOW, 10_000, T0 + 9000), BANNED);
  assert.ok(view.banned(a, T0 + 5000));
  assert.equal(view.take(a, COST, WINDOW, 10_000, T0 + 12_000), ALLOWED);
  // Another source was never affected.
  assert.equal(view.take(b, COST, WINDOW, 10_000, T0 + 1000), ALLOWED);
});

Deno.test("source table: unban (the supervisor) ends the ban and refills the bucket", () => {
  const { buffer, view } = table(0);
  const supervisor = new SourceTable(buffer);
  const a = view.key(ip("198.51.100.7"));
  while (view.take(a, COST, WINDOW, 60_000, T0) === ALLOWED);
  assert.ok(supervisor.banned(supervisor.key(ip("198.51.100.7")), T0 + 1));
  supervisor.unban(supervisor.key(ip("198.51.100.7")), T0 + 2);
  for (let i = 0; i < 5; i++) assert.equal(view.take(a, COST, WINDOW, 60_000, T0 + 2), ALLOWED);
});

Deno.test("source table: two views of one buffer share one bucket and one ban report", () => {
  const { buffer, view: w0 } = table(0);
  const w1 = new SourceTable(buffer, 1);
  const k0 = w0.key(ip("203.0.113.5"));
  const k1 = w1.key(ip("203.0.113.5"));
  const verdicts: number[] = [];
  for (let i = 0; i < 8; i++) {
    verdicts.push((i % 2 ? w1 : w0).take(i % 2 ? k1 : k0, COST, WINDOW, 60_000, T0));
  }
  assert.deepEqual(verdicts, [
    ALLOWED,
    ALLOWED,
    ALLOWED,
    ALLOWED,
    ALLOWED,
    BANNED_NOW,
    BANNED,
    BANNED,
  ]);
});

Deno.test("source table: two threads taking at once get exactly the burst, one ban report", async () => {
  const buffer = createSourceTableBuffer(MIN_SOURCES, T0);
  const burst = 50_000;
  const run = (workerId: number) =>
    new Promise<{ allowed: number; bannedNow: number }>((resolve, reject) => {
      const worker = new Worker(new URL("./testing/source_table_worker.ts", import.meta.url), {
        type: "module",
      });
      worker.onmessage = (e) => {
        resolve(e.data);
        worker.terminate();
      };
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
        worker.terminate();
      };
      worker.postMessage({
        buffer,
        workerId,
        takes: 60_000,
        cost: 10,
        window: burst * 10,
        now: T0,
      });
    });
  const [a, b] = await Promise.all([run(0), run(1)]);
  assert.equal(a.allowed + b.allowed, burst, `allowed ${a.allowed} + ${b.allowed}`);
  assert.equal(a.bannedNow + b.bannedNow, 1);
});

Deno.test("source table: memory is bounded; the least active unbanned entry is evicted", () => {
  const { view } = table(0);
  assert.equal(view.capacity, sourceTableEntries(MIN_SOURCES));
  assert.equal(sourceTableEntries(65_536) * ENTRY_BYTES, 4 * 1024 * 1024);
  const banned = view.key(ip("10.255.0.1"));
  while (view.take(banned, COST, WINDOW, 3_600_000, T0) === ALLOWED);
  const busy = view.key(ip("10.255.0.2"));
  view.take(busy, COST, WINDOW, 3_600_000, T0);
  for (let i = 0; i < 20 * MIN_SOURCES; i++) {
    const source = view.key(ip(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`));
    // The busy source keeps sending (stays the most active of its buckets).
    if (i % 64 === 0) view.take(busy, 1, WINDOW, 3_600_000, T0 + 1000 + i);
    view.take(source, COST, WINDOW, 3_600_000, T0 + 1000 + i);
  }
  assert.ok(view.count() <= view.capacity);
  assert.ok(view.count() > view.capacity * 0.9, `count ${view.count()}`);
  // The banned source was never evicted; the busy one kept its bucket (4 tokens used).
  assert.equal(view.take(banned, COST, WINDOW, 3_600_000, T0 + 30_000), BANNED);
  assert.ok(view.banned(banned, T0 + 30_000));
});

Deno.test("source table: a replaced worker's half-written entry is freed (reclaim)", () => {
  const { buffer } = table();
  const header = new Int32Array(buffer, 8, 256);
  const cells = new Int32Array(buffer, 1088);
  // Worker 3 died between claiming entry 5 (BUSY) and publishing it.
  cells[5 * 16] = -1;
  header[3] = 5 * 16 + 1;
  new SourceTable(buffer).reclaim(3);
  assert.equal(cells[5 * 16], 0);
  assert.equal(header[3], 0);
});

Deno.test("ip prefixes: parse, format, IPv6 grouping, IPv4-mapped, CIDR errors", () => {
  assert.equal(formatPrefix(ip("192.0.2.9")), "192.0.2.9");
  assert.equal(formatPrefix(ip("::ffff:192.0.2.9")), "192.0.2.9");
  assert.equal(formatPrefix(ip("2001:DB8:0:0:1::1")), "2001:db8::1:0:0:1");
  assert.equal(formatPrefix(ip("::1")), "::1");
  assert.equal(formatPrefix(ip("fe80::1%eth0")), "fe80::1");
  assert.equal(formatPrefix(sourceGroup("2001:db8:1:2:3:4:5:6", 64)!), "2001:db8:1:2::/64");
  assert.equal(formatPrefix(sourceGroup("2001:db8:1:2:3:4:5:6", 48)!), "2001:db8:1::/48");
  assert.equal(formatPrefix(sourceGroup("192.0.2.9", 48)!), "192.0.2.9");
  for (const bad of ["1.2.3", "1.2.3.256", "1:2:3", "1::2::3", "host.example", "", "1.2.3.4.5"]) {
    assert.equal(parseIp(bad), undefined, bad);
  }
  assert.equal(formatPrefix(parseCidr("198.51.100.0/24") as never), "198.51.100.0/24");
  assert.equal(formatPrefix(parseCidr("2001:db8::/32") as never), "2001:db8::/32");
  assert.match(
    parseCidr("198.51.100.1/24") as string,
    /host bits are set \(did you mean 198\.51\.100\.0\/24\?\)/,
  );
  assert.match(
    parseCidr("10.0.0.0/33") as string,
    /"10\.0\.0\.0\/33": prefix length must be 0 to 32/,
  );
  assert.match(parseCidr("2001:db8::/129") as string, /prefix length must be 0 to 128/);
  assert.match(parseCidr("10.0.0.x") as string, /"10\.0\.0\.x": not an IPv4 or IPv6 address/);
  const range = parseCidr("198.51.100.0/24") as never;
  assert.ok(contains(range, ip("198.51.100.200")));
  assert.ok(contains(range, ip("::ffff:198.51.100.200")));
  assert.ok(!contains(range, ip("198.51.101.1")));
  assert.ok(contains(parseCidr("0.0.0.0/0") as never, ip("8.8.8.8")));
  assert.ok(!contains(parseCidr("0.0.0.0/0") as never, ip("2001:db8::1")));
});

const SETTINGS: FloodGuardSettings = {
  rate: 10,
  burst: 5,
  ban: 60_000,
  trusted: ["192.0.2.0/28", "2001:db8:ffff::/48"],
  ipv6_prefix: 64,
  max_sources: MIN_SOURCES,
  weights: { REGISTER: 5, ACK: 0 },
};

function guard(settings: Partial<FloodGuardSettings> = {}) {
  const bans: BanEntry[] = [];
  const g = new FloodGuard({
    table: new SourceTable(createSourceTableBuffer(MIN_SOURCES, T0), 0),
    onBan: (entry) => bans.push(entry),
  });
  g.setSettings({ ...SETTINGS, ...settings });
  return { g, bans };
}

Deno.test("flood guard: IPv6 sources count by their prefix; the ban names the prefix", () => {
  const { g, bans } = guard();
  const sources = ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2:1:2:3:4"];
  let verdicts = "";
  for (let i = 0; i < 6; i++) {
    verdicts += g.check(sources[i % 3], "OPTIONS", T0) === ALLOWED ? "+" : "-";
  }
  assert.equal(verdicts, "+++++-");
  assert.equal(bans.length, 1);
  assert.equal(bans[0].key, "2001:db8:1:2::/64");
  assert.equal(bans[0].reason, "flood");
  assert.equal(bans[0].expiresAt, T0 + 60_000);
  // Another /64 is another source.
  assert.equal(g.check("2001:db8:1:3::1", "OPTIONS", T0), ALLOWED);
  assert.ok(g.isBanned("2001:db8:1:2::77", T0 + 1));
  assert.ok(g.inGroup("2001:db8:1:2::/64", "2001:db8:1:2:9::9"));
  assert.ok(!g.inGroup("2001:db8:1:2::/64", "2001:db8:1:3::1"));
});

Deno.test("flood guard: trusted addresses and ranges are never limited; weights", () => {
  const { g, bans } = guard();
  for (let i = 0; i < 1000; i++) {
    assert.equal(g.check("192.0.2.14", "INVITE", T0), ALLOWED);
    assert.equal(g.check("::ffff:192.0.2.1", "INVITE", T0), ALLOWED);
    assert.equal(g.check("2001:db8:ffff:1::5", "INVITE", T0), ALLOWED);
  }
  assert.equal(bans.length, 0);
  // 192.0.2.16 is just outside the /28.
  for (let i = 0; i < 5; i++) assert.equal(g.check("192.0.2.16", "INVITE", T0), ALLOWED);
  assert.equal(g.check("192.0.2.16", "INVITE", T0), BANNED);
  // A REGISTER takes the whole burst; ACKs are free.
  assert.equal(g.check("192.0.2.17", "REGISTER", T0), ALLOWED);
  for (let i = 0; i < 50; i++) assert.equal(g.check("192.0.2.17", "ACK", T0), ALLOWED);
  assert.equal(g.check("192.0.2.17", "OPTIONS", T0), BANNED);
  assert.deepEqual(bans.map((b) => b.key), ["192.0.2.16", "192.0.2.17"]);
});

Deno.test("flood guard: new settings apply from the next request; bans apply with the plugin off", () => {
  const { g } = guard({ rate: 1000, burst: 1000 });
  for (let i = 0; i < 100; i++) assert.equal(g.check("198.51.100.1", "OPTIONS", T0), ALLOWED);
  g.setSettings({ ...SETTINGS, rate: 1, burst: 2 });
  assert.equal(g.check("198.51.100.1", "OPTIONS", T0 + 10_000), ALLOWED);
  assert.equal(g.check("198.51.100.1", "OPTIONS", T0 + 10_000), ALLOWED);
  assert.equal(g.check("198.51.100.1", "OPTIONS", T0 + 10_000), BANNED);
  g.setSettings(undefined);
  g.apply({
    op: "add",
    entry: {
      key: "203.0.113.9",
      address: "203.0.113.9",
      reason: "admin",
      rate: 0,
      addedAt: T0,
      expiresAt: T0 + 1000,
    },
  });
  assert.equal(g.check("203.0.113.9", "OPTIONS", T0 + 10), BANNED);
  assert.equal(g.check("203.0.113.10", "OPTIONS", T0 + 10), ALLOWED);
  assert.equal(g.check("203.0.113.9", "OPTIONS", T0 + 1000), ALLOWED);
});
