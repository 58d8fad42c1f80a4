/**
 * Tests of a worker's connection manager: reuse, connects, limits, the timer sweep, the
 * blacklist and failure reporting, with a fake transport and an injected clock.
 */

import assert from "node:assert/strict";
import { configure, reset } from "@logtape/logtape";
import {
  type BlacklistChange,
  ConnectionManager,
  DROP_LOG_INTERVAL_MS,
} from "./connection_manager.ts";
import { MAX_WORKERS } from "./connection_directory.ts";
import type { EffectivePolicy } from "./connection_manager.ts";
import type { FailHandler } from "./connection.ts";
import type { Destination } from "./destination.ts";
import { createSharedBuffer, SharedCounters } from "../policy/shared_counters.ts";
import type { BlacklistEntry } from "../policy/blacklist_table.ts";
import type { FailureReason } from "../policy/failure.ts";
import type { BlacklistSettings, LimitSettings, TimeoutSettings } from "../policy/settings.ts";
import type { SendFailureEvent } from "../plugin/types.ts";
import { Counters } from "../stats.ts";
import timeoutsPlugin from "../../plugins/timeouts.ts";
import limitsPlugin from "../../plugins/limits.ts";
import blacklistPlugin from "../../plugins/blacklist.ts";
import {
  bytes,
  FakeClock,
  FakeSocket,
  FakeTransport,
  text,
  tick,
  timeoutError,
} from "./testing/fake_stream.ts";

const WORKER = 3;
const D1: Destination = { transport: "tcp", host: "10.0.0.1", port: 5060 };
const D2: Destination = { transport: "tcp", host: "10.0.0.2", port: 5070 };
const KEY1 = "tcp:10.0.0.1:5060";
const KEY2 = "tcp:10.0.0.2:5070";

interface SetupOptions {
  timeouts?: Partial<TimeoutSettings>;
  limits?: Partial<LimitSettings>;
  /** Blacklist settings (defaults filled in); omitted: the blacklist plugin is off. */
  blacklist?: Partial<BlacklistSettings>;
  listeners?: ((event: SendFailureEvent) => void)[];
  shared?: SharedCounters;
}

function setup(options: SetupOptions = {}) {
  const transport = new FakeTransport();
  const shared = options.shared ?? new SharedCounters(createSharedBuffer());
  const counters = new Counters();
  const events: SendFailureEvent[] = [];
  const blacklisted: BlacklistEntry[] = [];
  const frames: { id: number; frame: string }[] = [];
  const policy: EffectivePolicy = {
    timeouts: { ...timeoutsPlugin.config.parse({}), ...options.timeouts },
    limits: { ...limitsPlugin.config.parse({}), ...options.limits },
    blacklist: options.blacklist === undefined
      ? undefined
      : { ...blacklistPlugin.config.parse({}), ...options.blacklist },
  };
  const manager = new ConnectionManager({
    workerId: WORKER,
    transports: new Map([["tcp", transport]]),
    shared,
    counters,
    policy,
    onFrame: (c, frame) =>
      frames.push({ id: c.id, frame: frame.type === "message" ? text(frame.bytes) : frame.type }),
    onBlacklisted: (entry) => blacklisted.push(entry),
    failureListeners: options.listeners ?? [(e) => events.push(e)],
  });
  /** Failure handler calls, as `name:reason`. */
  const failures: string[] = [];
  const onFail = (name: string): FailHandler => (reason: FailureReason) =>
    failures.push(`${name}:${reason}`);
  /** Non-zero counters. */
  const nonZero = () =>
    Object.fromEntries(Object.entries(counters.values).filter(([, v]) => v !== 0));
  return {
    transport,
    shared,
    counters,
    events,
    blacklisted,
    frames,
    policy,
    manager,
    failures,
    onFail,
    nonZero,
  };
}

/** An inbound socket from `ip`. */
function inbound(ip = "198.51.100.7", port = 40000): FakeSocket {
  return new FakeSocket({
    remote: { hostname: ip, port },
    local: { hostname: "192.0.2.10", port: 5060 },
  });
}

/** Everything taken by a socket, as text. */
const takenOf = (socket: FakeSocket) => socket.takenText;

const MESSAGE = "OPTIONS sip:bob@example.com SIP/2.0\r\n" +
  "Via: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK1\r\n" +
  "Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

Deno.test("ConnectionManager: connection reuse", async (t) => {
  await t.step("one connection per destination", async () => {
    using _clock = new FakeClock();
    const s = setup();
    s.manager.sendTo(D1, bytes("m1|"));
    assert.equal(s.transport.connects.length, 1);
    const c = s.transport.connects[0];
    assert.equal(c.options.hostname, "10.0.0.1");
    assert.equal(c.options.port, 5060);
    assert.ok(c.options.signal instanceof AbortSignal);
    assert.equal(c.options.signal.aborted, false);
    const socket = c.resolve();
    socket.autoWrite = true;
    await tick();
    s.manager.sendTo(D1, bytes("m2|"));
    s.manager.sendTo({ ...D1, port: 0 }, bytes("m3")); // port 0: the transport's default, 5060
    await tick();
    assert.equal(s.transport.connects.length, 1, "reused");
    assert.equal(takenOf(socket), "m1|m2|m3");
    s.manager.sendTo(D2, bytes("other"));
    assert.equal(s.transport.connects.length, 2, "another destination, another connection");
    assert.equal(s.transport.connects[1].options.port, 5070);
    assert.equal(s.manager.size, 2);
    assert.equal(s.counters.values.connections_opened, 2);
    assert.equal(s.shared.connections(0), 2);
  });

  await t.step("ids are sequence * MAX_WORKERS + workerId", () => {
    using _clock = new FakeClock();
    const s = setup();
    s.manager.sendTo(D1, bytes("a"));
    s.manager.sendTo(D2, bytes("b"));
    const ids = s.manager.list().map((c) => c.id);
    assert.deepEqual(ids, [1 * MAX_WORKERS + WORKER, 2 * MAX_WORKERS + WORKER]);
    assert.ok(s.manager.get(ids[0]) !== undefined);
    assert.equal(s.manager.get(12345), undefined);
  });

  await t.step("one connect at a time: sends while connecting queue on it", async () => {
    using _clock = new FakeClock();
    const s = setup();
    s.manager.sendTo(D1, bytes("INVITE|"), s.onFail("1"));
    s.manager.sendTo(D1, bytes("ACK|"), s.onFail("2"));
    s.manager.sendTo(D1, bytes("BYE"), s.onFail("3"));
    assert.equal(s.transport.connects.length, 1);
    const [info] = s.manager.list();
    assert.equal(info.state, "connecting");
    assert.equal(info.queuedBytes, 14);
    assert.equal(s.shared.queuedBytes, 14);
    const socket = s.transport.connects[0].resolve();
    await tick();
    assert.equal(socket.writes.length, 1, "what queued during the connect goes in one write");
    assert.equal(text(socket.writes[0].data), "INVITE|ACK|BYE");
    socket.complete();
    await tick();
    assert.equal(s.shared.queuedBytes, 0);
    assert.deepEqual(s.failures, []);
  });

  await t.step("an accepted connection is reused for sends to its address", async () => {
    using _clock = new FakeClock();
    const s = setup();
    const socket = inbound("198.51.100.7", 40000);
    socket.autoWrite = true;
    s.manager.accept("tcp", socket);
    assert.equal(s.counters.values.connections_accepted, 1);
    s.manager.sendTo({ transport: "tcp", host: "198.51.100.7", port: 40000 }, bytes("resp"));
    await tick();
    assert.equal(s.transport.connects.length, 0);
    assert.equal(takenOf(socket), "resp");
  });

  await t.step("frames read go to onFrame with their connection", () => {
    using _clock = new FakeClock();
    const s = setup();
    const socket = inbound();
    s.manager.accept("tcp", socket);
    socket.push(MESSAGE + "\r\n\r\n");
    const id = s.manager.list()[0].id;
    assert.deepEqual(s.frames, [{ id, frame: MESSAGE }, { id, frame: "ping" }]);
  });

  await t.step("sendOn and reply by connection", async () => {
    using _clock = new FakeClock();
    const s = setup();
    const socket = inbound();
    socket.autoWrite = true;
    s.manager.accept("tcp", socket);
    const id = s.manager.list()[0].id;
    assert.equal(s.manager.sendOn(id, bytes("a")), true);
    assert.equal(s.manager.sendOn(id + MAX_WORKERS, bytes("x")), false, "no such connection");
    assert.equal(s.manager.reply(s.manager.get(id)!, bytes("b")), true);
    await tick();
    assert.equal(takenOf(socket), "ab");
    s.manager.get(id)!.close("x");
    assert.equal(s.manager.sendOn(id, bytes("c")), false);
  });

  await t.step("an unknown transport fails at once with connect_failed", () => {
    using _clock = new FakeClock();
    const s = setup();
    s.manager.sendTo(
      { transport: "sctp", host: "10.0.0.1", port: 5060 },
      bytes("x"),
      s.onFail("x"),
    );
    assert.deepEqual(s.failures, ["x:connect_failed"]);
    assert.equal(s.transport.connects.length, 0);
  });
});

Deno.test("ConnectionManager: connect failures", async (t) => {
  await t.step("refused: connect_refused to every queued handler, counter, blacklist", async () => {
    using clock = new FakeClock(1_000_000);
    const s = setup({ blacklist: { expire: 60_000 } });
    s.manager.sendTo(D1, bytes("aaa"), s.onFail("1"));
    s.manager.sendTo(D1, bytes("bb"), s.onFail("2"));
    s.manager.sendTo(D1, bytes("c"));
    const id = s.manager.list()[0].id;
    s.transport.connects[0].reject(new Deno.errors.ConnectionRefused("Connection refused"));
    await tick();
    assert.deepEqual(s.failures, ["1:connect_refused", "2:connect_refused"]);
    assert.deepEqual(s.nonZero(), {
      connections_opened: 1,
      connections_closed: 1,
      connect_failed: 1,
    });
    const entry = {
      key: KEY1,
      reason: "connect_refused",
      addedAt: 1_000_000,
      expiresAt: 1_060_000,
    };
    assert.deepEqual(s.blacklisted, [entry]);
    assert.deepEqual(s.manager.blacklist.list(clock.now), [entry]);
    assert.deepEqual(s.events, [{
      destination: KEY1,
      reason: "connect_refused",
      connectionId: id,
      bytesLost: 6,
      messagesLost: 3,
      blacklisted: true,
    }]);
    assert.equal(s.manager.size, 0);
    assert.equal(s.shared.connections(0), 0);
    assert.equal(s.shared.queuedBytes, 0);

    // Blacklisted: the next send fails at once, without a connect.
    s.manager.sendTo(D1, bytes("d"), s.onFail("3"));
    assert.deepEqual(s.failures.slice(2), ["3:blacklisted"]);
    assert.equal(s.transport.connects.length, 1);
    assert.equal(s.counters.values.blacklisted_sends, 1);
    assert.deepEqual(s.events[1], {
      destination: KEY1,
      reason: "blacklisted",
      connectionId: undefined,
      bytesLost: 0,
      messagesLost: 1,
      blacklisted: false,
    });
    // Other destinations are not affected.
    s.manager.sendTo(D2, bytes("e"));
    assert.equal(s.transport.connects.length, 2);
    // The entry expires.
    clock.advance(60_000);
    s.manager.sendTo(D1, bytes("f"), s.onFail("4"));
    assert.equal(s.transport.connects.length, 3);
    assert.equal(s.transport.connects[2].options.hostname, "10.0.0.1");
  });

  await t.step(
    "a handler may send to the same destination: it is blacklisted already",
    async () => {
      using _clock = new FakeClock();
      const s = setup({ blacklist: {} });
      s.manager.sendTo(D1, bytes("a"), (reason) => {
        s.failures.push(`a:${reason}`);
        s.manager.sendTo(D1, bytes("retry"), s.onFail("retry"));
      });
      s.transport.connects[0].reject(new Deno.errors.ConnectionRefused("refused"));
      await tick();
      assert.deepEqual(s.failures, ["a:connect_refused", "retry:blacklisted"]);
      assert.equal(s.transport.connects.length, 1);
    },
  );

  await t.step("without blacklist settings nothing is blacklisted", async () => {
    using _clock = new FakeClock();
    const s = setup();
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    s.transport.connects[0].reject(new Deno.errors.ConnectionRefused("refused"));
    await tick();
    assert.deepEqual(s.failures, ["a:connect_refused"]);
    assert.deepEqual(s.blacklisted, []);
    assert.equal(s.events[0].blacklisted, false);
    s.manager.sendTo(D1, bytes("b"), s.onFail("b"));
    assert.equal(s.transport.connects.length, 2, "connects again");
  });

  await t.step("only reasons listed in `reasons` blacklist", async () => {
    using _clock = new FakeClock();
    const s = setup({ blacklist: { reasons: ["connect_timeout"] } });
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    s.transport.connects[0].reject(new Deno.errors.ConnectionRefused("refused"));
    await tick();
    assert.equal(s.blacklisted.length, 0);
    s.manager.sendTo(D1, bytes("b"), s.onFail("b"));
    assert.equal(s.transport.connects.length, 2);
    s.transport.connects[1].reject(timeoutError());
    await tick();
    assert.deepEqual(s.failures, ["a:connect_refused", "b:connect_timeout"]);
    assert.deepEqual(s.blacklisted.map((e) => [e.key, e.reason]), [[KEY1, "connect_timeout"]]);
  });

  await t.step("a rejection named TimeoutError → connect_timeout", async () => {
    using _clock = new FakeClock();
    const s = setup({ blacklist: {} });
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    s.transport.connects[0].reject(new DOMException("Signal timed out.", "TimeoutError"));
    await tick();
    assert.deepEqual(s.failures, ["a:connect_timeout"]);
    assert.equal(s.counters.values.connect_failed, 1);
    assert.equal(s.events[0].reason, "connect_timeout");
    assert.equal(s.blacklisted[0].reason, "connect_timeout");
  });

  await t.step("the connect's signal aborts after connect_timeout", async () => {
    using _clock = new FakeClock();
    const s = setup({ timeouts: { connect_timeout: 20 } });
    s.transport.honorSignal = true;
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    await s.transport.connects[0].done;
    await tick();
    assert.deepEqual(s.failures, ["a:connect_timeout"]);
  });

  await t.step("any other error → connect_failed", async () => {
    using _clock = new FakeClock();
    const s = setup({ blacklist: {} });
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    s.transport.connects[0].reject(new Deno.errors.NotFound("no such host"));
    await tick();
    assert.deepEqual(s.failures, ["a:connect_failed"]);
    assert.equal(s.counters.values.connect_failed, 1);
    assert.equal(s.blacklisted[0].reason, "connect_failed");
  });

  await t.step("a connect that succeeds after its connection closed is closed", async () => {
    using _clock = new FakeClock();
    const s = setup();
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    s.manager.list();
    s.manager.get(s.manager.list()[0].id)!.close("gone");
    assert.deepEqual(s.failures, ["a:closed"]);
    const socket = s.transport.connects[0].resolve();
    await tick();
    assert.equal(socket.closed, true);
    assert.equal(socket.started, false);
    assert.equal(s.shared.connections(0), 0);
  });
});

Deno.test("ConnectionManager: sweep", async (t) => {
  /** An open outbound connection to D1 (socket not auto-writing). */
  async function open(s: ReturnType<typeof setup>, first = "hello") {
    s.manager.sendTo(D1, bytes(first), s.onFail(first));
    const socket = s.transport.connects.at(-1)!.resolve();
    await tick();
    const connection = s.manager.list().at(-1)!;
    return { socket, id: connection.id };
  }

  await t.step("send_timeout: no write progress while data is queued", async () => {
    using clock = new FakeClock();
    const s = setup({ timeouts: { send_timeout: 10_000 }, blacklist: {} });
    const { socket, id } = await open(s, "A");
    s.manager.sendTo(D1, bytes("B"), s.onFail("B"));
    clock.advance(10_000);
    s.manager.sweep(clock.now);
    assert.equal(s.manager.size, 1, "not before send_timeout has passed");
    clock.advance(1);
    s.manager.sweep(clock.now);
    assert.equal(s.manager.size, 0);
    assert.equal(socket.closed, true);
    await tick();
    assert.deepEqual(s.failures.sort(), ["A:send_timeout", "B:send_timeout"]);
    assert.equal(s.counters.values.send_timeouts, 1);
    assert.deepEqual(s.blacklisted.map((e) => [e.key, e.reason]), [[KEY1, "send_timeout"]]);
    assert.deepEqual(s.events, [{
      destination: KEY1,
      reason: "send_timeout",
      connectionId: id,
      bytesLost: 2,
      messagesLost: 2,
      blacklisted: true,
    }]);
    assert.equal(s.shared.queuedBytes, 0);
    assert.equal(s.shared.connections(0), 0);
  });

  await t.step("send_timeout counts from the last progress, not the first write", async () => {
    using clock = new FakeClock();
    const s = setup({ timeouts: { send_timeout: 10_000 } });
    const { socket } = await open(s, "0123456789");
    clock.advance(8_000);
    socket.complete(5);
    await tick();
    clock.advance(8_000);
    s.manager.sweep(clock.now);
    assert.equal(s.manager.size, 1);
    clock.advance(2_001);
    s.manager.sweep(clock.now);
    assert.equal(s.manager.size, 0);
  });

  await t.step("message read timeout: an incomplete message", () => {
    using clock = new FakeClock();
    const s = setup({ timeouts: { message_read_timeout: 20_000 } });
    const socket = inbound();
    s.manager.accept("tcp", socket);
    socket.push(MESSAGE.slice(0, 30));
    clock.advance(20_000);
    s.manager.sweep(clock.now);
    assert.equal(s.manager.size, 1);
    clock.advance(1);
    s.manager.sweep(clock.now);
    assert.equal(s.manager.size, 0);
    assert.equal(socket.closed, true);
    assert.equal(s.counters.values.read_timeouts, 1);
    assert.deepEqual(s.events, [], "not a send failure");
  });

  // Messages that each arrive within a second, in reads that end mid-message (a busy peer
  // streaming messages): no message takes longer than message_read_timeout, so the connection
  // must stay open.
  await t.step("message read timeout: measured per message, not per run of reads", () => {
    using clock = new FakeClock();
    const s = setup({ timeouts: { message_read_timeout: 20_000, idle_timeout: 120_000 } });
    const socket = inbound();
    s.manager.accept("tcp", socket);
    const half = 40;
    socket.push(MESSAGE.slice(0, half));
    let seconds = 0;
    while (seconds < 30 && !socket.closed) {
      clock.advance(1000);
      seconds++;
      socket.push(MESSAGE.slice(half) + MESSAGE.slice(0, half)); // one ends, the next starts
      s.manager.sweep(clock.now);
    }
    assert.equal(
      s.counters.values.read_timeouts,
      0,
      `closed after ${seconds} s, ${s.frames.length} messages`,
    );
    assert.equal(s.frames.length, 30);
    assert.equal(s.manager.size, 1);
  });

  await t.step("idle timeout", () => {
    using clock = new FakeClock();
    const s = setup({ timeouts: { idle_timeout: 120_000 } });
    const socket = inbound();
    s.manager.accept("tcp", socket);
    clock.advance(60_000);
    socket.push("\r\n\r\n"); // activity
    clock.advance(120_000);
    s.manager.sweep(clock.now);
    assert.equal(s.manager.size, 1);
    clock.advance(1);
    s.manager.sweep(clock.now);
    assert.equal(s.manager.size, 0);
    assert.equal(s.counters.values.idle_closed, 1);
    assert.equal(s.shared.connectionsFrom("198.51.100.7"), 0);
  });

  const KEEPALIVE = { keepalive_interval: 30_000, keepalive_timeout: 10_000, idle_timeout: 1e9 };

  await t.step(
    "keepalive: a ping after keepalive_interval without reads, outbound only",
    async () => {
      using clock = new FakeClock();
      const s = setup({ timeouts: KEEPALIVE });
      const { socket } = await open(s, "hello");
      socket.autoWrite = true;
      socket.complete();
      const inSocket = inbound();
      s.manager.accept("tcp", inSocket);
      await tick();
      clock.advance(30_000);
      s.manager.sweep(clock.now);
      await tick();
      assert.equal(socket.writes.length, 1, "not before keepalive_interval has passed");
      clock.advance(1);
      s.manager.sweep(clock.now);
      await tick();
      assert.deepEqual(socket.writes.map((w) => text(w.data)), ["hello", "\r\n\r\n"]);
      assert.equal(inSocket.writes.length, 0, "inbound connections are not pinged");
      s.manager.sweep(clock.now);
      await tick();
      assert.equal(socket.writes.length, 2, "one ping until it is answered");
      // Answered: the next ping comes keepalive_interval after the pong.
      clock.advance(5_000);
      socket.push("\r\n");
      clock.advance(30_000);
      s.manager.sweep(clock.now);
      await tick();
      assert.equal(socket.writes.length, 2);
      clock.advance(1);
      s.manager.sweep(clock.now);
      await tick();
      assert.equal(socket.writes.length, 3);
      assert.equal(s.manager.size, 2);
    },
  );

  await t.step(
    "keepalive: unanswered after data was sent → keepalive_timeout failure",
    async () => {
      using clock = new FakeClock();
      const s = setup({ timeouts: KEEPALIVE, blacklist: {} });
      const { socket, id } = await open(s, "INVITE");
      socket.autoWrite = true;
      socket.complete();
      await tick();
      clock.advance(30_001);
      s.manager.sweep(clock.now);
      await tick();
      clock.advance(10_000);
      s.manager.sweep(clock.now);
      assert.equal(s.manager.size, 1, "not before keepalive_timeout has passed");
      clock.advance(1);
      s.manager.sweep(clock.now);
      assert.equal(s.manager.size, 0);
      assert.equal(s.counters.values.keepalive_timeouts, 1);
      assert.equal(s.counters.values.keepalive_closed, 0);
      assert.deepEqual(s.blacklisted.map((e) => [e.key, e.reason]), [[KEY1, "keepalive_timeout"]]);
      assert.deepEqual(s.events, [{
        destination: KEY1,
        reason: "keepalive_timeout",
        connectionId: id,
        bytesLost: 0,
        // The INVITE was written and never answered: its sender is failed back (408).
        messagesLost: 1,
        blacklisted: true,
      }]);
      assert.deepEqual(s.failures, ["INVITE:keepalive_timeout"]);
    },
  );

  await t.step("keepalive: unanswered on an idle connection → a quiet close", async () => {
    using clock = new FakeClock();
    const s = setup({ timeouts: KEEPALIVE, blacklist: {} });
    const { socket } = await open(s, "OPTIONS");
    socket.autoWrite = true;
    socket.complete();
    await tick();
    socket.push("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"); // the peer spoke after our data
    clock.advance(30_001);
    s.manager.sweep(clock.now);
    await tick();
    clock.advance(10_001);
    s.manager.sweep(clock.now);
    assert.equal(s.manager.size, 0);
    assert.equal(socket.closed, true);
    assert.equal(s.counters.values.keepalive_closed, 1);
    assert.equal(s.counters.values.keepalive_timeouts, 0);
    assert.deepEqual(s.blacklisted, []);
    assert.deepEqual(s.events, []);
  });

  await t.step("keepalive: data sent after the ping makes it a failure", async () => {
    using clock = new FakeClock();
    const s = setup({ timeouts: KEEPALIVE });
    const { socket } = await open(s, "OPTIONS");
    socket.autoWrite = true;
    socket.complete();
    await tick();
    socket.push("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    clock.advance(30_001);
    s.manager.sweep(clock.now);
    await tick();
    s.manager.sendTo(D1, bytes("INVITE"));
    await tick();
    clock.advance(10_001);
    s.manager.sweep(clock.now);
    assert.equal(s.counters.values.keepalive_timeouts, 1);
    assert.equal(s.events[0].reason, "keepalive_timeout");
  });

  await t.step("keepalive: a pong in time keeps the connection", async () => {
    using clock = new FakeClock();
    const s = setup({ timeouts: KEEPALIVE });
    const { socket } = await open(s, "INVITE");
    socket.autoWrite = true;
    socket.complete();
    await tick();
    clock.advance(30_001);
    s.manager.sweep(clock.now);
    await tick();
    clock.advance(9_000);
    socket.push("\r\n");
    clock.advance(2_000);
    s.manager.sweep(clock.now);
    assert.equal(s.manager.size, 1);
    assert.equal(s.counters.values.keepalive_timeouts + s.counters.values.keepalive_closed, 0);
  });

  await t.step("keepalive_interval 0: no pings", async () => {
    using clock = new FakeClock();
    const s = setup({ timeouts: { ...KEEPALIVE, keepalive_interval: 0 } });
    const { socket } = await open(s, "INVITE");
    socket.complete();
    await tick();
    clock.advance(1_000_000);
    s.manager.sweep(clock.now);
    await tick();
    assert.equal(socket.writes.length, 1);
    assert.equal(s.manager.size, 1);
  });

  await t.step("no ping while a write is pending", async () => {
    using clock = new FakeClock();
    const s = setup({ timeouts: { ...KEEPALIVE, send_timeout: 1e9 } });
    const { socket } = await open(s, "INVITE");
    clock.advance(30_001);
    s.manager.sweep(clock.now);
    await tick();
    assert.equal(socket.writes.length, 1);
  });

  await t.step("blacklist entries are purged by the sweep", async () => {
    using clock = new FakeClock();
    const s = setup({ blacklist: { expire: 1000 } });
    s.manager.sendTo(D1, bytes("a"));
    s.transport.connects[0].reject(new Deno.errors.ConnectionRefused("refused"));
    await tick();
    assert.equal(s.manager.blacklist.size, 1);
    clock.advance(1000);
    s.manager.sweep(clock.now);
    assert.equal(s.manager.blacklist.size, 0);
  });
});

/**
 * Sends "first" to D1 and lets the kernel take one byte of it: the connection is in async mode,
 * the rest of its write pending. Returns its socket and id.
 */
async function inAsyncMode(s: ReturnType<typeof setup>) {
  s.manager.sendTo(D1, bytes("first"), s.onFail("first"));
  const socket = s.transport.connects[0].resolve();
  await tick(); // "first" in flight
  socket.complete(1); // the kernel takes 1 byte: async mode
  await tick(); // the rest pending
  return { socket, id: s.manager.list()[0].id };
}

Deno.test("ConnectionManager: queue limits", async (t) => {
  await t.step('on_queue_full "close": the connection fails with queue_full', async () => {
    using _clock = new FakeClock();
    const s = setup({ limits: { conn_wq_max: 1024, on_queue_full: "close" }, blacklist: {} });
    const { socket, id } = await inAsyncMode(s);
    s.manager.sendTo(D1, new Uint8Array(1000), s.onFail("q1"));
    s.manager.sendTo(D1, new Uint8Array(24), s.onFail("q2"));
    s.manager.sendTo(D1, new Uint8Array(1), s.onFail("over"));
    assert.deepEqual(s.failures, ["over:queue_full", "q1:queue_full", "q2:queue_full"]);
    assert.equal(socket.closed, true);
    await tick();
    assert.deepEqual(s.failures.slice(3), ["first:queue_full"]);
    assert.equal(s.counters.values.queue_full, 1);
    assert.deepEqual(s.blacklisted.map((e) => [e.key, e.reason]), [[KEY1, "queue_full"]]);
    assert.equal(s.events.length, 1);
    assert.equal(s.events[0].reason, "queue_full");
    assert.equal(s.events[0].connectionId, id);
    assert.equal(s.events[0].blacklisted, true);
    assert.equal(s.manager.size, 0);
    assert.equal(s.shared.queuedBytes, 0);
  });

  await t.step('on_queue_full "drop": only the message fails', async () => {
    using _clock = new FakeClock();
    const s = setup({ limits: { conn_wq_max: 1024, on_queue_full: "drop" }, blacklist: {} });
    const { socket, id } = await inAsyncMode(s);
    s.manager.sendTo(D1, new Uint8Array(1024), s.onFail("q1"));
    s.manager.sendTo(D1, new Uint8Array(1), s.onFail("over"));
    assert.deepEqual(s.failures, ["over:queue_full"]);
    assert.equal(socket.closed, false);
    assert.equal(s.counters.values.queue_full, 1);
    assert.deepEqual(s.blacklisted, []);
    assert.deepEqual(s.events, [{
      destination: KEY1,
      reason: "queue_full",
      connectionId: id,
      bytesLost: 0,
      messagesLost: 1,
      blacklisted: false,
    }]);
    socket.complete();
    await tick();
    socket.complete();
    await tick();
    assert.equal(socket.taken.length, 5 + 1024);
    assert.equal(s.shared.queuedBytes, 0);
  });

  await t.step(
    'on_queue_full "drop": one log line a second per connection, every drop counted',
    async () => {
      using clock = new FakeClock();
      const lines: string[] = [];
      await configure({
        reset: true,
        sinks: { test: (record) => lines.push(record.message.map(String).join("")) },
        loggers: [{ category: ["sipedge", "transport"], lowestLevel: "info", sinks: ["test"] }],
      });
      try {
        const s = setup({ limits: { conn_wq_max: 1024, on_queue_full: "drop" } });
        const { id } = await inAsyncMode(s);
        s.manager.sendTo(D1, new Uint8Array(1024), s.onFail("q1"));
        const drop = (n: number) => {
          for (let i = 0; i < n; i++) s.manager.sendTo(D1, new Uint8Array(1), s.onFail("over"));
        };
        const dropLines = () => lines.filter((l) => l.includes("queue_full"));
        const first = `send failure queue_full to ${KEY1} on connection ${id}: message dropped`;

        drop(6); // the first at once, the other 5 counted
        assert.deepEqual(dropLines(), [first]);
        s.manager.sweep(clock.advance(500));
        assert.equal(dropLines().length, 1, "not before the interval");
        s.manager.sweep(clock.advance(DROP_LOG_INTERVAL_MS - 500));
        assert.deepEqual(dropLines().slice(1), [
          `send failure queue_full to ${KEY1} on connection ${id}: 5 more messages dropped in the last ${DROP_LOG_INTERVAL_MS} ms`,
        ]);
        // A quiet interval forgets the connection: its next drop is logged at once again.
        s.manager.sweep(clock.advance(DROP_LOG_INTERVAL_MS));
        assert.equal(dropLines().length, 2);
        drop(3);
        assert.deepEqual(dropLines().slice(2), [first]);
        // Counted drops are logged when the connection closes.
        s.manager.get(id)!.close("test");
        await tick();
        assert.deepEqual(dropLines().slice(3), [
          `send failure queue_full to ${KEY1} on connection ${id}: 2 more messages dropped in the last 0 ms`,
        ]);
        // Every drop was counted and reported to its sender and the listeners.
        assert.equal(s.counters.values.queue_full, 9);
        assert.equal(s.failures.filter((f) => f === "over:queue_full").length, 9);
        assert.equal(s.events.filter((e) => e.reason === "queue_full").length, 9);
        s.manager.sweep(clock.advance(DROP_LOG_INTERVAL_MS));
        assert.equal(dropLines().length, 4, "nothing left to log");
      } finally {
        await reset();
      }
    },
  );

  await t.step("queue_full on sendOn / reply is reported (no handler)", async () => {
    using _clock = new FakeClock();
    const s = setup({ limits: { conn_wq_max: 1024, on_queue_full: "drop" } });
    const socket = inbound();
    s.manager.accept("tcp", socket);
    const id = s.manager.list()[0].id;
    s.manager.sendOn(id, bytes("ab"));
    await tick();
    socket.complete(1); // the kernel takes 1 byte: async mode
    await tick();
    assert.equal(s.manager.sendOn(id, new Uint8Array(2000)), true);
    assert.equal(s.manager.sendOn(id, new Uint8Array(1)), true, "reported, not another path");
    assert.equal(s.manager.reply(s.manager.get(id)!, new Uint8Array(1)), false);
    assert.equal(s.counters.values.queue_full, 2);
    assert.equal(s.events.length, 2);
    s.manager.get(id)!.close("x");
    await tick();
    assert.equal(s.shared.queuedBytes, 0);
  });

  // wq_max is full (another destination's queue): the message to a new destination cannot be
  // queued on its new connection. Its sender must hear about it (queue_full → 503).
  await t.step("wq_max full when a new connection is opened: the send is reported", () => {
    using _clock = new FakeClock();
    const s = setup({ limits: { wq_max: 1024, on_queue_full: "drop" } });
    s.manager.sendTo(D1, new Uint8Array(1000), s.onFail("d1")); // waits for its connect
    assert.equal(s.shared.queuedBytes, 1000);
    s.manager.sendTo(D2, new Uint8Array(100), s.onFail("d2"));
    assert.deepEqual(s.failures, ["d2:queue_full"]);
    assert.equal(s.counters.values.queue_full, 1);
  });
});

Deno.test("ConnectionManager: connection limits", async (t) => {
  await t.step("max_connections: accept refuses, sendTo fails with connection_limit", async () => {
    using _clock = new FakeClock();
    const s = setup({ limits: { max_connections: 2 } });
    const in1 = inbound("198.51.100.7", 1);
    s.manager.accept("tcp", in1);
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    assert.equal(s.shared.connections(0), 2);
    const in2 = inbound("198.51.100.8", 2);
    s.manager.accept("tcp", in2);
    assert.equal(in2.closed, true);
    assert.equal(in2.started, false);
    assert.equal(s.counters.values.connections_refused, 1);
    assert.equal(s.shared.connectionsFrom("198.51.100.8"), 0, "the per-IP count is given back");
    s.manager.sendTo(D2, bytes("b"), s.onFail("b"));
    assert.deepEqual(s.failures, ["b:connection_limit"]);
    assert.equal(s.transport.connects.length, 1);
    assert.equal(s.counters.values.connection_limit, 1);
    assert.deepEqual(s.events, [{
      destination: KEY2,
      reason: "connection_limit",
      connectionId: undefined,
      bytesLost: 0,
      messagesLost: 1,
      blacklisted: false,
    }]);
    assert.equal(s.shared.connections(0), 2);
    // One closes: room again.
    in1.end();
    await tick();
    assert.equal(s.shared.connections(0), 1);
    s.manager.sendTo(D2, bytes("c"), s.onFail("c"));
    assert.equal(s.transport.connects.length, 2);
  });

  await t.step("max_connections is shared by managers over one buffer", () => {
    using _clock = new FakeClock();
    const shared = new SharedCounters(createSharedBuffer());
    const a = setup({ shared, limits: { max_connections: 1 } });
    const b = setup({ shared, limits: { max_connections: 1 } });
    a.manager.sendTo(D1, bytes("a"));
    b.manager.sendTo(D1, bytes("b"), b.onFail("b"));
    assert.deepEqual(b.failures, ["b:connection_limit"]);
    const socket = inbound();
    b.manager.accept("tcp", socket);
    assert.equal(socket.closed, true);
  });

  await t.step("max_connections_per_ip counts inbound connections per source IP", async () => {
    using _clock = new FakeClock();
    const s = setup({ limits: { max_connections_per_ip: 2 } });
    const sockets = [1, 2, 3].map((port) => inbound("198.51.100.7", port));
    for (const socket of sockets) s.manager.accept("tcp", socket);
    assert.deepEqual(sockets.map((x) => x.closed), [false, false, true]);
    assert.equal(s.shared.connectionsFrom("198.51.100.7"), 2);
    assert.equal(s.shared.connections(0), 2, "the transport slot is given back");
    const other = inbound("203.0.113.9", 1);
    s.manager.accept("tcp", other);
    assert.equal(other.closed, false);
    // Outbound connections do not count per IP.
    s.manager.sendTo({ transport: "tcp", host: "198.51.100.7", port: 5060 }, bytes("x"));
    assert.equal(s.transport.connects.length, 1);
    assert.equal(s.shared.connectionsFrom("198.51.100.7"), 2);
    sockets[0].end();
    await tick();
    assert.equal(s.shared.connectionsFrom("198.51.100.7"), 1);
    const again = inbound("198.51.100.7", 4);
    s.manager.accept("tcp", again);
    assert.equal(again.closed, false);
  });

  await t.step("every counter returns to 0 when everything has closed", async () => {
    using _clock = new FakeClock();
    const s = setup({ blacklist: {} });
    const ins = [1, 2, 3].map((port) => inbound("198.51.100.7", port));
    for (const socket of ins) s.manager.accept("tcp", socket);
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    s.manager.sendTo(D2, bytes("b"), s.onFail("b"));
    s.manager.sendTo({ ...D2, port: 5071 }, bytes("c"), s.onFail("c"));
    s.transport.connects[0].resolve();
    s.transport.connects[1].reject(new Deno.errors.ConnectionRefused("refused"));
    await tick();
    s.manager.sendOn(s.manager.list()[0].id, bytes("reply"));
    assert.equal(s.shared.connections(0), 5);
    ins[0].end();
    ins[1].error();
    s.manager.get(s.manager.list().find((c) => c.direction === "in")!.id)!.close("x");
    await s.manager.stop(10);
    assert.equal(s.manager.size, 0);
    assert.equal(s.shared.connections(0), 0);
    assert.equal(s.shared.connectionsFrom("198.51.100.7"), 0);
    assert.equal(s.shared.queuedBytes, 0);
    assert.equal(s.counters.values.connections_closed, 6);
  });
});

Deno.test("ConnectionManager: blacklist changes from elsewhere", async (t) => {
  const entry = (key: string, expiresAt = Date.now() + 60_000): BlacklistEntry => ({
    key,
    reason: "admin",
    addedAt: Date.now(),
    expiresAt,
  });

  await t.step("add / delete / clear", () => {
    using _clock = new FakeClock();
    const s = setup({ blacklist: {} });
    const changes: BlacklistChange[] = [
      { op: "add", entry: entry(KEY1) },
      { op: "add", entry: entry(KEY2) },
    ];
    for (const change of changes) s.manager.applyBlacklist(change);
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    s.manager.sendTo(D2, bytes("b"), s.onFail("b"));
    assert.deepEqual(s.failures, ["a:blacklisted", "b:blacklisted"]);
    assert.equal(s.transport.connects.length, 0);
    assert.deepEqual(s.blacklisted, [], "a change from elsewhere is not sent back");
    s.manager.applyBlacklist({ op: "delete", key: KEY1 });
    s.manager.sendTo(D1, bytes("a"), s.onFail("a2"));
    assert.equal(s.transport.connects.length, 1);
    s.manager.sendTo(D2, bytes("b"), s.onFail("b2"));
    assert.deepEqual(s.failures.slice(2), ["b2:blacklisted"]);
    s.manager.applyBlacklist({ op: "clear" });
    assert.equal(s.manager.blacklist.size, 0);
    s.manager.sendTo(D2, bytes("b"), s.onFail("b3"));
    assert.equal(s.transport.connects.length, 2);
  });

  await t.step("keys as the control API writes them match the destinations sent to", () => {
    using _clock = new FakeClock();
    const s = setup({ blacklist: {} });
    // POST /blacklist {"destination": "tcp:10.0.0.5:5060"} and "tcp:[::1]:5070".
    s.manager.applyBlacklist({ op: "add", entry: entry("tcp:10.0.0.5:5060") });
    s.manager.applyBlacklist({ op: "add", entry: entry("tcp:::1:5070") });
    s.manager.sendTo({ transport: "tcp", host: "10.0.0.5", port: 0 }, bytes("a"), s.onFail("a"));
    s.manager.sendTo({ transport: "tcp", host: "::1", port: 5070 }, bytes("b"), s.onFail("b"));
    assert.deepEqual(s.failures, ["a:blacklisted", "b:blacklisted"]);
    assert.equal(s.transport.connects.length, 0);
  });

  // The control API adds entries (reason "admin") whether or not the blacklist plugin is
  // enabled; without it the table is created with max_entries 1, so each entry evicts the last.
  await t.step("without the blacklist plugin, every admin entry still applies", () => {
    using _clock = new FakeClock();
    const s = setup();
    s.manager.applyBlacklist({ op: "add", entry: entry(KEY1) });
    s.manager.applyBlacklist({ op: "add", entry: entry(KEY2) });
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    s.manager.sendTo(D2, bytes("b"), s.onFail("b"));
    assert.deepEqual(s.failures, ["a:blacklisted", "b:blacklisted"]);
  });

  await t.step("an expired entry no longer blocks", () => {
    using clock = new FakeClock();
    const s = setup({ blacklist: {} });
    s.manager.applyBlacklist({ op: "add", entry: entry(KEY1, clock.now + 10) });
    clock.advance(10);
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    assert.equal(s.transport.connects.length, 1);
  });
});

Deno.test("ConnectionManager: onSendFailure listeners", async (t) => {
  await t.step("one event per failure; a throwing listener breaks nothing", async () => {
    using _clock = new FakeClock();
    const seen: SendFailureEvent[] = [];
    let thrown = 0;
    const s = setup({
      blacklist: {},
      listeners: [
        () => {
          thrown++;
          throw new Error("plugin bug");
        },
        (e) => seen.push(e),
      ],
    });
    s.manager.sendTo(D1, bytes("a"), s.onFail("a"));
    s.transport.connects[0].reject(new Deno.errors.ConnectionRefused("refused"));
    await tick();
    s.manager.sendTo(D1, bytes("b"), s.onFail("b"));
    assert.deepEqual(s.failures, ["a:connect_refused", "b:blacklisted"]);
    assert.equal(thrown, 2);
    assert.deepEqual(seen.map((e) => e.reason), ["connect_refused", "blacklisted"]);
    assert.equal(s.manager.size, 0);
    assert.equal(s.shared.connections(0), 0);
    // The manager still works.
    s.manager.sendTo(D2, bytes("c"), s.onFail("c"));
    const socket = s.transport.connects[1].resolve();
    socket.autoWrite = true;
    await tick();
    assert.equal(socket.takenText, "c");
  });

  await t.step("a close without data lost is not an event", async () => {
    using _clock = new FakeClock();
    const s = setup();
    const socket = inbound();
    s.manager.accept("tcp", socket);
    socket.end();
    await tick();
    assert.deepEqual(s.events, []);
  });
});

Deno.test("ConnectionManager: peer closes an outbound connection with data queued", async (t) => {
  await t.step("never-written data goes again on a new connection, once", async () => {
    using _clock = new FakeClock();
    const s = setup();
    s.manager.sendTo(D1, bytes("A"), s.onFail("A"));
    const first = s.transport.connects[0].resolve();
    await tick(); // A in flight, pending
    s.manager.sendTo(D1, bytes("B"), s.onFail("B"));
    first.end();
    await tick();
    assert.deepEqual(s.failures, []);
    assert.equal(s.transport.connects.length, 2, "a new connection");
    const second = s.transport.connects[1].resolve();
    await tick();
    assert.equal(second.writes.length, 1);
    // Peer closes again: the messages were sent again once already.
    second.end();
    await tick();
    assert.deepEqual(s.failures.sort(), ["A:closed", "B:closed"]);
    assert.equal(s.transport.connects.length, 2);
    assert.equal(s.shared.queuedBytes, 0);
    assert.equal(s.shared.connections(0), 0);
  });
});

Deno.test("ConnectionManager: stop", async (t) => {
  await t.step("waits for queued data to drain, then closes everything", async () => {
    using _clock = new FakeClock();
    const s = setup();
    s.manager.sendTo(D1, bytes("A"), s.onFail("A"));
    const socket = s.transport.connects[0].resolve();
    const inSocket = inbound();
    s.manager.accept("tcp", inSocket);
    await tick();
    let stopped = false;
    const stopping = s.manager.stop(60_000).then(() => stopped = true);
    await tick();
    assert.equal(stopped, false);
    assert.equal(socket.closed, false);
    socket.complete();
    await stopping;
    assert.equal(socket.closed, true);
    assert.equal(inSocket.closed, true);
    assert.deepEqual(s.failures, []);
    assert.equal(s.manager.size, 0);
    assert.equal(socket.takenText, "A");
    // No new connections after stop.
    s.manager.sendTo(D2, bytes("late"), s.onFail("late"));
    assert.deepEqual(s.failures, ["late:closed"]);
    assert.equal(s.transport.connects.length, 1);
  });

  await t.step("after the timeout, what is still queued is reported closed", async () => {
    using _clock = new FakeClock();
    const s = setup();
    s.manager.sendTo(D1, bytes("A"), s.onFail("A"));
    s.transport.connects[0].resolve();
    await tick();
    s.manager.sendTo(D1, bytes("B"), s.onFail("B"));
    await s.manager.stop(5);
    await tick();
    assert.deepEqual(s.failures, ["B:closed", "A:closed"]);
    assert.equal(s.manager.size, 0);
    assert.equal(s.shared.queuedBytes, 0);
    assert.equal(s.shared.connections(0), 0);
  });
});
