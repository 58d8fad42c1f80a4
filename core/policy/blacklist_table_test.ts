/** Tests of the destination blacklist table: expiry, size cap, eviction order. */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type BlacklistEntry, BlacklistTable } from "./blacklist_table.ts";

function entry(key: string, addedAt: number, expiresAt: number): BlacklistEntry {
  return { key, reason: "connect_refused", addedAt, expiresAt };
}

Deno.test("BlacklistTable: add and get", async (t) => {
  await t.step("a live entry is found", () => {
    const table = new BlacklistTable(10);
    const e = entry("tcp:10.0.0.1:5060", 1000, 2000);
    table.add(e);
    assert.equal(table.size, 1);
    assert.deepEqual(table.get("tcp:10.0.0.1:5060", 1999), e);
    assert.equal(table.get("tcp:10.0.0.2:5060", 1999), undefined);
  });

  await t.step("an expired entry is not found and is removed", () => {
    const table = new BlacklistTable(10);
    table.add(entry("k", 1000, 2000));
    assert.equal(table.get("k", 2000), undefined, "expiresAt itself is expired");
    assert.equal(table.size, 0);
  });

  await t.step("adding the same key replaces the entry", () => {
    const table = new BlacklistTable(10);
    table.add(entry("k", 1000, 2000));
    const newer = { ...entry("k", 1500, 9000), reason: "admin" as const };
    table.add(newer);
    assert.equal(table.size, 1);
    assert.deepEqual(table.get("k", 5000), newer);
  });

  await t.step("a replacement can shorten an entry", () => {
    const table = new BlacklistTable(10);
    table.add(entry("k", 1000, 9000));
    table.add(entry("k", 1000, 1500));
    assert.equal(table.get("k", 2000), undefined);
  });
});

Deno.test("BlacklistTable: size cap", async (t) => {
  await t.step("when full, the entry closest to expiry makes room", () => {
    const table = new BlacklistTable(2);
    table.add(entry("a", 0, 100));
    table.add(entry("b", 0, 300));
    table.add(entry("c", 10, 200));
    assert.equal(table.size, 2);
    assert.equal(table.get("a", 50), undefined);
    assert.ok(table.get("b", 50));
    assert.ok(table.get("c", 50));
  });

  await t.step("a new entry that expires soonest still goes in", () => {
    const table = new BlacklistTable(2);
    table.add(entry("a", 0, 500));
    table.add(entry("b", 0, 300));
    table.add(entry("c", 10, 100));
    assert.deepEqual(table.list(20).map((e) => e.key), ["c", "a"]);
  });

  await t.step("expired entries are dropped first, so nothing live is evicted", () => {
    const table = new BlacklistTable(2);
    table.add(entry("a", 0, 100));
    table.add(entry("b", 0, 300));
    table.add(entry("c", 150, 400));
    assert.deepEqual(table.list(150).map((e) => e.key), ["b", "c"]);
  });

  await t.step("replacing a key in a full table evicts nothing", () => {
    const table = new BlacklistTable(2);
    table.add(entry("a", 0, 100));
    table.add(entry("b", 0, 300));
    table.add(entry("a", 10, 500));
    assert.deepEqual(table.list(20).map((e) => e.key), ["b", "a"]);
  });

  await t.step("a smaller cap applies at the next add", () => {
    const table = new BlacklistTable(5);
    for (const [i, k] of ["a", "b", "c", "d"].entries()) table.add(entry(k, 0, 100 + i));
    table.maxEntries = 2;
    assert.equal(table.size, 4);
    table.add(entry("e", 0, 1000));
    assert.deepEqual(table.list(0).map((e) => e.key), ["d", "e"]);
  });

  await t.step("a cap of one keeps the last entry", () => {
    const table = new BlacklistTable(1);
    table.add(entry("a", 0, 1000));
    table.add(entry("b", 0, 500));
    assert.deepEqual(table.list(0).map((e) => e.key), ["b"]);
  });
});

Deno.test("BlacklistTable: delete, clear, purge, list", async (t) => {
  await t.step("delete says whether the key was there", () => {
    const table = new BlacklistTable(10);
    table.add(entry("a", 0, 100));
    assert.equal(table.delete("a"), true);
    assert.equal(table.delete("a"), false);
    assert.equal(table.size, 0);
  });

  await t.step("clear", () => {
    const table = new BlacklistTable(10);
    table.add(entry("a", 0, 100));
    table.add(entry("b", 0, 100));
    table.clear();
    assert.equal(table.size, 0);
    assert.deepEqual(table.list(0), []);
  });

  await t.step("purge removes expired entries only", () => {
    const table = new BlacklistTable(10);
    table.add(entry("a", 0, 100));
    table.add(entry("b", 0, 200));
    table.add(entry("c", 0, 300));
    table.purge(200);
    assert.equal(table.size, 1);
    assert.ok(table.get("c", 200));
  });

  await t.step("list: live entries, soonest expiry first", () => {
    const table = new BlacklistTable(10);
    table.add(entry("x", 0, 300));
    table.add(entry("y", 0, 100));
    table.add(entry("z", 0, 200));
    table.add(entry("w", 0, 50));
    assert.deepEqual(table.list(60).map((e) => e.key), ["y", "z", "x"]);
    assert.equal(table.size, 3, "list purges");
  });
});

Deno.test("BlacklistTable: property: never over the cap; the latest entry per key wins", () => {
  const op = fc.record({
    key: fc.constantFrom("a", "b", "c", "d", "e", "f"),
    dt: fc.nat({ max: 50 }),
    ttl: fc.integer({ min: 1, max: 200 }),
  });
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 4 }), fc.array(op, { maxLength: 40 }), (max, ops) => {
      const table = new BlacklistTable(max);
      const latest = new Map<string, BlacklistEntry>();
      let now = 0;
      for (const { key, dt, ttl } of ops) {
        now += dt;
        const e = entry(key, now, now + ttl);
        table.add(e);
        latest.set(key, e);
        assert.ok(table.size <= max, `size ${table.size} > ${max}`);
        assert.deepEqual(table.get(key, now), e, "the entry just added is there");
        const listed = table.list(now);
        for (const l of listed) {
          assert.deepEqual(l, latest.get(l.key), "only the latest entry of a key");
          assert.ok(l.expiresAt > now);
        }
        for (let i = 1; i < listed.length; i++) {
          assert.ok(listed[i - 1].expiresAt <= listed[i].expiresAt, "sorted by expiry");
        }
      }
    }),
    { numRuns: 500 },
  );
});
