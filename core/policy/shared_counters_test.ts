/**
 * Tests of the shared counters (SharedArrayBuffer + Atomics): queued bytes, connections per
 * transport slot, inbound connections per source IP; reservations never exceed their limit,
 * within one thread and across workers.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  createSharedBuffer,
  heartbeatInterval,
  MAX_TRANSPORTS,
  SharedCounters,
} from "./shared_counters.ts";

Deno.test("SharedCounters: queued bytes", async (t) => {
  await t.step("a fresh buffer is all zero", () => {
    const s = new SharedCounters(createSharedBuffer());
    assert.equal(s.queuedBytes, 0);
    for (let slot = 0; slot < MAX_TRANSPORTS; slot++) assert.equal(s.connections(slot), 0);
    assert.equal(s.connectionsFrom("10.0.0.1"), 0);
  });

  await t.step("reserve up to the limit (inclusive), refuse beyond it, release", () => {
    const s = new SharedCounters(createSharedBuffer());
    assert.equal(s.reserveQueued(600, 1000), true);
    assert.equal(s.reserveQueued(400, 1000), true);
    assert.equal(s.queuedBytes, 1000);
    assert.equal(s.reserveQueued(1, 1000), false);
    assert.equal(s.queuedBytes, 1000, "a refused reservation leaves no trace");
    s.releaseQueued(300);
    assert.equal(s.queuedBytes, 700);
    assert.equal(s.reserveQueued(301, 1000), false);
    assert.equal(s.reserveQueued(300, 1000), true);
    s.releaseQueued(1000);
    assert.equal(s.queuedBytes, 0);
  });

  await t.step("an unlimited reservation always succeeds and is counted", () => {
    const s = new SharedCounters(createSharedBuffer());
    assert.equal(s.reserveQueued(5000, 1000), false);
    assert.equal(s.reserveQueued(5000, Infinity), true);
    assert.equal(s.queuedBytes, 5000);
    assert.equal(s.reserveQueued(1, 1000), false, "over the limit: bounded sends are refused");
  });

  await t.step("release(0) is a no-op; a reservation of 0 fits a full counter", () => {
    const s = new SharedCounters(createSharedBuffer());
    s.reserveQueued(10, 10);
    s.releaseQueued(0);
    assert.equal(s.queuedBytes, 10);
    assert.equal(s.reserveQueued(0, 10), true);
  });

  await t.step("two views of one buffer see the same counters", () => {
    const buffer = createSharedBuffer();
    const a = new SharedCounters(buffer);
    const b = new SharedCounters(buffer);
    a.reserveQueued(700, 1000);
    assert.equal(b.queuedBytes, 700);
    assert.equal(b.reserveQueued(400, 1000), false);
    b.releaseQueued(700);
    assert.equal(a.queuedBytes, 0);
  });
});

Deno.test("SharedCounters: connections per transport slot", () => {
  const s = new SharedCounters(createSharedBuffer());
  assert.equal(s.reserveConnection(0, 2), true);
  assert.equal(s.reserveConnection(0, 2), true);
  assert.equal(s.reserveConnection(0, 2), false);
  assert.equal(s.connections(0), 2);
  assert.equal(s.reserveConnection(1, 2), true, "slots are independent");
  assert.equal(s.connections(1), 1);
  assert.equal(s.reserveConnection(MAX_TRANSPORTS - 1, 1), true);
  assert.equal(s.connections(MAX_TRANSPORTS - 1), 1);
  assert.equal(s.queuedBytes, 0, "slots do not touch the queued bytes");
  assert.equal(s.connectionsFrom("10.0.0.1"), 0);
  s.releaseConnection(0);
  assert.equal(s.reserveConnection(0, 2), true);
  s.releaseConnection(0);
  s.releaseConnection(0);
  s.releaseConnection(1);
  s.releaseConnection(MAX_TRANSPORTS - 1);
  for (let slot = 0; slot < MAX_TRANSPORTS; slot++) assert.equal(s.connections(slot), 0);
});

Deno.test("SharedCounters: inbound connections per source IP", async (t) => {
  await t.step("each IP has its own limit", () => {
    const s = new SharedCounters(createSharedBuffer());
    const a = "198.51.100.7";
    const b = "203.0.113.9";
    assert.equal(s.reserveFrom(a, 2), true);
    assert.equal(s.connectionsFrom(b), 0, "test IPs must not share a bucket");
    assert.equal(s.reserveFrom(a, 2), true);
    assert.equal(s.reserveFrom(a, 2), false);
    assert.equal(s.connectionsFrom(a), 2);
    assert.equal(s.reserveFrom(b, 2), true);
    assert.equal(s.connectionsFrom(b), 1);
    s.releaseFrom(a);
    assert.equal(s.connectionsFrom(a), 1);
    assert.equal(s.reserveFrom(a, 2), true);
    s.releaseFrom(a);
    s.releaseFrom(a);
    s.releaseFrom(b);
    assert.equal(s.connectionsFrom(a), 0);
    assert.equal(s.connectionsFrom(b), 0);
    assert.equal(s.connections(0), 0);
    assert.equal(s.queuedBytes, 0);
  });

  await t.step("IPv6 and IPv4 addresses", () => {
    const s = new SharedCounters(createSharedBuffer());
    assert.equal(s.reserveFrom("2001:db8::1", 1), true);
    assert.equal(s.reserveFrom("2001:db8::1", 1), false);
    assert.equal(s.connectionsFrom("2001:db8::2"), 0);
    assert.equal(s.reserveFrom("2001:db8::2", 1), true);
  });

  await t.step("buckets spread: 1000 addresses use many buckets", () => {
    const s = new SharedCounters(createSharedBuffer());
    let shared = 0;
    for (let i = 0; i < 1000; i++) {
      const ip = `10.${(i >> 8) & 255}.${i & 255}.1`;
      if (s.connectionsFrom(ip) > 0) shared++;
      s.reserveFrom(ip, 1_000_000);
    }
    assert.ok(shared < 50, `${shared} of 1000 addresses shared a bucket`);
  });
});

Deno.test("SharedCounters: property: matches a model, never over the limit", () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant("reserve" as const), n: fc.integer({ min: 0, max: 400 }) }),
    fc.record({ kind: fc.constant("release" as const), index: fc.nat() }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1000 }), fc.array(op, { maxLength: 60 }), (max, ops) => {
      const s = new SharedCounters(createSharedBuffer());
      const held: number[] = [];
      let model = 0;
      for (const o of ops) {
        if (o.kind === "reserve") {
          const ok = s.reserveQueued(o.n, max);
          assert.equal(ok, model + o.n <= max);
          if (ok) {
            held.push(o.n);
            model += o.n;
          }
        } else if (held.length > 0) {
          const [n] = held.splice(o.index % held.length, 1);
          s.releaseQueued(n);
          model -= n;
        }
        assert.equal(s.queuedBytes, model);
        assert.ok(model <= max);
      }
      for (const n of held) s.releaseQueued(n);
      assert.equal(s.queuedBytes, 0);
    }),
    { numRuns: 500 },
  );
});

Deno.test("SharedCounters: property: per-IP and per-slot counts match a model", () => {
  const ips = ["10.0.0.1", "10.0.0.2", "192.0.2.77", "2001:db8::5"];
  const op = fc.record({
    reserve: fc.boolean(),
    ip: fc.constantFrom(...ips),
    slot: fc.nat({ max: 2 }),
  });
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 4 }), fc.array(op, { maxLength: 60 }), (max, ops) => {
      const s = new SharedCounters(createSharedBuffer());
      const byIp = new Map<string, number>();
      const bySlot = [0, 0, 0];
      for (const o of ops) {
        if (o.reserve) {
          const ipOk = s.reserveFrom(o.ip, max);
          assert.equal(ipOk, (byIp.get(o.ip) ?? 0) < max);
          if (ipOk) byIp.set(o.ip, (byIp.get(o.ip) ?? 0) + 1);
          const slotOk = s.reserveConnection(o.slot, max);
          assert.equal(slotOk, bySlot[o.slot] < max);
          if (slotOk) bySlot[o.slot]++;
        } else {
          if ((byIp.get(o.ip) ?? 0) > 0) {
            s.releaseFrom(o.ip);
            byIp.set(o.ip, byIp.get(o.ip)! - 1);
          }
          if (bySlot[o.slot] > 0) {
            s.releaseConnection(o.slot);
            bySlot[o.slot]--;
          }
        }
        for (const ip of ips) assert.equal(s.connectionsFrom(ip), byIp.get(ip) ?? 0);
        bySlot.forEach((n, slot) => assert.equal(s.connections(slot), n));
      }
    }),
    { numRuns: 300 },
  );
});

/**
 * Workers hammer one counter: each loops reserve → (count holders) → release. A second cell
 * counts the holders of a successful reservation; it must never exceed the limit, and
 * everything must balance to zero at the end.
 */
Deno.test("SharedCounters: across workers, successful reservations never exceed the limit", async () => {
  const WORKERS = 4;
  const ROUNDS = 20_000;
  const LIMIT = 3;
  const buffer = createSharedBuffer();
  const check = new Int32Array(new SharedArrayBuffer(8)); // [holders now, most holders seen]
  const moduleUrl = new URL("./shared_counters.ts", import.meta.url).href;
  const code = `
    import { SharedCounters } from ${JSON.stringify(moduleUrl)};
    self.onmessage = ({ data }) => {
      const s = new SharedCounters(data.buffer);
      const check = data.check;
      let ok = 0;
      for (let i = 0; i < data.rounds; i++) {
        const kind = i % 3;
        const reserved = kind === 0
          ? s.reserveConnection(2, data.limit)
          : kind === 1
          ? s.reserveFrom("198.51.100.7", data.limit)
          : s.reserveQueued(100, data.limit * 100);
        if (!reserved) continue;
        ok++;
        if (kind === 0) {
          const now = Atomics.add(check, 0, 1) + 1;
          let seen = Atomics.load(check, 1);
          while (now > seen && Atomics.compareExchange(check, 1, seen, now) !== seen) {
            seen = Atomics.load(check, 1);
          }
          Atomics.sub(check, 0, 1);
          s.releaseConnection(2);
        } else if (kind === 1) {
          s.releaseFrom("198.51.100.7");
        } else {
          s.releaseQueued(100);
        }
      }
      self.postMessage(ok);
    };
  `;
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  const workers = Array.from({ length: WORKERS }, () => new Worker(url, { type: "module" }));
  try {
    const results = await Promise.all(workers.map((w) =>
      new Promise<number>((resolve, reject) => {
        w.onmessage = (e) => resolve(e.data as number);
        w.onerror = (e) => {
          e.preventDefault();
          reject(new Error(e.message));
        };
        w.postMessage({ buffer, check, rounds: ROUNDS, limit: LIMIT });
      })
    ));
    assert.ok(results.every((n) => n > 0), `every worker got reservations: ${results}`);
    assert.ok(Atomics.load(check, 1) <= LIMIT, `${Atomics.load(check, 1)} holders at once`);
    const s = new SharedCounters(buffer);
    assert.equal(s.connections(2), 0);
    assert.equal(s.connectionsFrom("198.51.100.7"), 0);
    assert.equal(s.queuedBytes, 0);
  } finally {
    for (const w of workers) w.terminate();
    URL.revokeObjectURL(url);
  }
});

Deno.test("heartbeatInterval: a fifth of the hang timeout, between 100 ms and 1 s", () => {
  assert.equal(heartbeatInterval(5000), 1000); // the default timeout: one wake-up a second
  assert.equal(heartbeatInterval(60_000), 1000);
  assert.equal(heartbeatInterval(2000), 400);
  assert.equal(heartbeatInterval(1000), 200); // the shortest timeout the config accepts
  assert.equal(heartbeatInterval(300), 100);
  // A missing or broken setting must not become a zero-delay timer.
  assert.equal(heartbeatInterval(Number.NaN), 1000);
  assert.equal(heartbeatInterval(0), 1000);
  // Seen within the timeout plus two periods: never more than 1.4 × the timeout.
  for (const timeout of [1000, 1500, 5000, 7000, 60_000]) {
    assert.ok(timeout + 2 * heartbeatInterval(timeout) <= 1.4 * timeout);
  }
});
