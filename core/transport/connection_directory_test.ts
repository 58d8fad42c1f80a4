import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ConnectionDirectory,
  createDirectoryBuffer,
  MAX_WORKERS,
  MIN_DIRECTORY_ENTRIES,
  ownerOf,
} from "./connection_directory.ts";

Deno.test("ConnectionDirectory: ids name their owner and are never given twice", () => {
  const buffer = createDirectoryBuffer(100);
  const a = new ConnectionDirectory(buffer);
  const ids = [a.nextId(3), a.nextId(3), a.nextId(0)];
  assert.deepEqual(ids, [MAX_WORKERS + 3, 2 * MAX_WORKERS + 3, MAX_WORKERS]);
  assert.deepEqual(ids.map(ownerOf), [3, 3, 0]);
  // A worker started again in place 3 (another view of the same buffer) goes on from there.
  const replaced = new ConnectionDirectory(buffer);
  assert.equal(replaced.nextId(3), 3 * MAX_WORKERS + 3);
});

Deno.test("ConnectionDirectory: publish, look up from another view, unpublish", () => {
  const buffer = createDirectoryBuffer(100);
  const owner = new ConnectionDirectory(buffer);
  const reader = new ConnectionDirectory(buffer);
  const id = owner.nextId(1);
  const entry = owner.publish("tcp:192.0.2.1:40000", id);
  assert.ok(entry >= 0);
  assert.equal(reader.lookup("tcp:192.0.2.1:40000"), id);
  assert.equal(reader.lookup("tcp:192.0.2.1:40001"), undefined);
  assert.equal(reader.lookup("tls:192.0.2.1:40000"), undefined);
  // Only the entry with this id is removed.
  owner.unpublish(entry, id + MAX_WORKERS);
  assert.equal(reader.lookup("tcp:192.0.2.1:40000"), id);
  owner.unpublish(entry, id);
  assert.equal(reader.lookup("tcp:192.0.2.1:40000"), undefined);
});

Deno.test("ConnectionDirectory: ids above 2^32 survive the round trip", () => {
  const d = new ConnectionDirectory(createDirectoryBuffer(10));
  const id = 2 ** 40 * MAX_WORKERS + 7;
  d.publish("tcp:[::1]:5060", id);
  assert.equal(d.lookup("tcp:[::1]:5060"), id);
});

Deno.test("ConnectionDirectory: filled to capacity and emptied again, every key is found", () => {
  const d = new ConnectionDirectory(createDirectoryBuffer(MIN_DIRECTORY_ENTRIES / 2));
  const entries = new Map<string, { id: number; entry: number }>();
  let full = 0;
  for (let i = 0; i < d.capacity; i++) {
    const key = `tcp:10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:${5060 + (i % 7)}`;
    const id = d.nextId(i % 4);
    const entry = d.publish(key, id);
    if (entry < 0) full++;
    else entries.set(key, { id, entry });
  }
  // Two choices of 8-way buckets fill most of the table before a key finds both full.
  assert.ok(entries.size > d.capacity * 0.9, `${entries.size} of ${d.capacity} placed`);
  for (const [key, { id }] of entries) assert.equal(d.lookup(key), id, key);
  for (const { id, entry } of entries.values()) d.unpublish(entry, id);
  for (const key of entries.keys()) assert.equal(d.lookup(key), undefined);
  assert.ok(full >= 0);
});

Deno.test("ConnectionDirectory: purgeWorker removes only that worker's entries", () => {
  const d = new ConnectionDirectory(createDirectoryBuffer(100));
  d.publish("tcp:192.0.2.1:1", d.nextId(0));
  d.publish("tcp:192.0.2.1:2", d.nextId(1));
  d.publish("tcp:192.0.2.1:3", d.nextId(1));
  assert.equal(d.purgeWorker(1), 2);
  assert.notEqual(d.lookup("tcp:192.0.2.1:1"), undefined);
  assert.equal(d.lookup("tcp:192.0.2.1:2"), undefined);
  assert.equal(d.lookup("tcp:192.0.2.1:3"), undefined);
});

Deno.test("ConnectionDirectory: any set of published keys is found (property)", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })), { maxLength: 200 }),
      (addresses) => {
        const d = new ConnectionDirectory(createDirectoryBuffer(200));
        const ids = addresses.map(([ip, port]) => {
          const id = d.nextId(port % 8);
          assert.ok(d.publish(`tcp:${ip}:${port}`, id) >= 0);
          return id;
        });
        addresses.forEach(([ip, port], i) => assert.equal(d.lookup(`tcp:${ip}:${port}`), ids[i]));
      },
    ),
    { numRuns: 50 },
  );
});
