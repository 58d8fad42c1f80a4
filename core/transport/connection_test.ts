/** Tests of a stream connection's write path (async mode, limits, failures) and read side. */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  Connection,
  type FailHandler,
  type LostData,
  type QueueLimits,
  type UnsentData,
} from "./connection.ts";
import { createSharedBuffer, SharedCounters } from "../policy/shared_counters.ts";
import type { FailureReason } from "../policy/failure.ts";
import type { Frame } from "../sip/stream_framer.ts";
import {
  bytes,
  concatBytes,
  FakeClock,
  FakeSocket,
  FakeTransport,
  text,
  tick,
} from "./testing/fake_stream.ts";

const PING = "\r\n\r\n";

interface Closed {
  reason: string;
  failure: FailureReason;
  lost: LostData;
}

interface HarnessOptions {
  direction?: "in" | "out";
  /** Attach a socket at once (default true); false leaves the connection connecting. */
  attach?: boolean;
  limits?: Partial<QueueLimits>;
  shared?: SharedCounters;
  id?: number;
}

/** A connection with recording hooks and (unless `attach: false`) an attached fake socket. */
function harness(options: HarnessOptions = {}) {
  const shared = options.shared ?? new SharedCounters(createSharedBuffer());
  const limits: QueueLimits = { connWqMax: 1 << 20, wqMax: 1 << 24, ...options.limits };
  const frames: string[] = [];
  const closes: Closed[] = [];
  const unsent: { chunks: string[]; handlers: UnsentData["handlers"] }[] = [];
  const conn = new Connection({
    id: options.id ?? 1,
    transportName: "tcp",
    transport: new FakeTransport(),
    direction: options.direction ?? "out",
    remote: { hostname: "198.51.100.1", port: 5060 },
    maxMessageSize: 65535,
    shared,
    limits: () => limits,
    hooks: {
      onFrame: (_c, frame: Frame) => {
        frames.push(frame.type === "message" ? text(frame.bytes) : frame.type);
      },
      onClose: (c, reason, failure, lost) => {
        assert.equal(c, conn);
        closes.push({ reason, failure, lost });
      },
      onUnsent: (c, data) => {
        assert.equal(c, conn);
        unsent.push({ chunks: data.chunks.map(text), handlers: data.handlers });
      },
    },
  });
  const socket = new FakeSocket({ remote: { hostname: "198.51.100.1", port: 5060 } });
  if (options.attach ?? true) conn.attach(socket);
  /** Failure handler calls, as `name:reason`. */
  const failures: string[] = [];
  const onFail = (name: string): FailHandler => (reason) => failures.push(`${name}:${reason}`);
  return { conn, socket, shared, limits, frames, closes, unsent, failures, onFail };
}

/** `n` bytes of `c`. */
function filled(c: string, n: number): Uint8Array {
  return bytes(c.repeat(n));
}

function writesOf(socket: FakeSocket): string[] {
  return socket.writes.map((w) => text(w.data));
}

const MESSAGE = "OPTIONS sip:bob@example.com SIP/2.0\r\n" +
  "Via: SIP/2.0/TCP 198.51.100.1:5060;branch=z9hG4bK1\r\n" +
  "Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";

Deno.test("Connection: direct send", async (t) => {
  await t.step("one write, on the next microtask", async () => {
    const h = harness();
    assert.equal(h.conn.state, "open");
    assert.equal(h.socket.started, true);
    assert.equal(h.conn.send(bytes("hello")), "queued");
    assert.equal(h.socket.writes.length, 0, "written on the next microtask, not inside send()");
    assert.equal(h.conn.queuedBytes, 5);
    assert.equal(h.shared.queuedBytes, 5);
    await tick();
    assert.deepEqual(writesOf(h.socket), ["hello"]);
    h.socket.complete();
    await tick();
    assert.equal(h.conn.queuedBytes, 0);
    assert.equal(h.shared.queuedBytes, 0);
    assert.equal(h.conn.asyncMode, false);
    assert.deepEqual(h.failures, []);
  });

  await t.step("after the queue empties, the next send is direct again", async () => {
    const h = harness();
    h.socket.autoWrite = true;
    h.conn.send(bytes("one"));
    await tick();
    assert.equal(h.conn.asyncMode, false);
    h.conn.send(bytes("two"));
    await tick();
    assert.deepEqual(writesOf(h.socket), ["one", "two"]);
    assert.equal(h.shared.queuedBytes, 0);
  });

  await t.step("several sends in one tick → one coalesced write, in order", async () => {
    const h = harness();
    for (const m of ["INVITE-1|", "ACK-2|", "BYE-3"]) {
      assert.equal(h.conn.send(bytes(m), h.onFail(m)), "queued");
    }
    assert.equal(h.conn.queuedBytes, 20);
    assert.equal(h.shared.queuedBytes, 20);
    await tick();
    assert.deepEqual(writesOf(h.socket), ["INVITE-1|ACK-2|BYE-3"]);
    h.socket.complete();
    await tick();
    assert.equal(h.socket.writes.length, 1);
    assert.equal(h.shared.queuedBytes, 0);
    assert.deepEqual(h.failures, []);
  });

  await t.step("a send on a closed connection → closed, handler not called", () => {
    const h = harness();
    h.conn.close("test");
    assert.equal(h.conn.send(bytes("x"), h.onFail("x")), "closed");
    assert.deepEqual(h.failures, []);
    assert.equal(h.shared.queuedBytes, 0);
  });
});

Deno.test("Connection: async mode", async (t) => {
  await t.step("data queues behind a pending write, in order, and goes in one write", async () => {
    const h = harness();
    h.conn.send(bytes("first"));
    await tick();
    assert.equal(h.socket.pending.length, 1);
    assert.equal(h.conn.writePending, true);
    assert.equal(h.conn.asyncMode, false, "the kernel has not refused anything yet");
    h.conn.send(bytes("-second"));
    h.conn.send(bytes("-third"));
    await tick();
    assert.deepEqual(writesOf(h.socket), ["first"], "nothing more while the write is pending");
    assert.equal(h.conn.queuedBytes, 18);
    assert.equal(h.shared.queuedBytes, 18);
    h.socket.complete();
    await tick();
    assert.deepEqual(writesOf(h.socket), ["first", "-second-third"]);
    assert.equal(h.conn.queuedBytes, 13);
    assert.equal(h.shared.queuedBytes, 13);
    assert.equal(h.conn.writePending, true);
    h.socket.complete();
    await tick();
    assert.equal(h.conn.writePending, false);
    assert.equal(h.conn.queuedBytes, 0);
    assert.equal(h.shared.queuedBytes, 0);
    assert.equal(h.socket.takenText, "first-second-third");
  });

  await t.step("partial writes are continued with the rest (async mode)", async () => {
    const h = harness();
    h.conn.send(bytes("0123456789"));
    await tick();
    h.socket.complete(4);
    await tick();
    assert.equal(h.conn.asyncMode, true, "the kernel did not take everything");
    assert.deepEqual(writesOf(h.socket), ["0123456789", "456789"]);
    assert.equal(h.conn.queuedBytes, 6);
    assert.equal(h.shared.queuedBytes, 6);
    h.conn.send(bytes("AB"));
    assert.equal(h.conn.queuedBytes, 8);
    assert.equal(h.shared.queuedBytes, 8);
    h.socket.complete(1);
    await tick();
    assert.deepEqual(writesOf(h.socket).slice(2), ["56789"]);
    assert.equal(h.conn.queuedBytes, 7);
    h.socket.complete();
    await tick();
    assert.deepEqual(writesOf(h.socket).slice(3), ["AB"]);
    assert.equal(h.conn.queuedBytes, 2);
    assert.equal(h.shared.queuedBytes, 2);
    h.socket.complete();
    await tick();
    assert.equal(h.socket.takenText, "0123456789AB");
    assert.equal(h.conn.queuedBytes, 0);
    assert.equal(h.shared.queuedBytes, 0);
    assert.equal(h.conn.asyncMode, false, "the queue drained: async mode ends");
  });

  await t.step("progressAt moves with every write that makes progress", async () => {
    using clock = new FakeClock(5_000);
    const h = harness();
    h.conn.send(bytes("0123456789"));
    assert.equal(h.conn.progressAt, 5_000);
    await tick();
    clock.advance(300);
    h.socket.complete(3);
    await tick();
    assert.equal(h.conn.progressAt, 5_300);
    assert.equal(h.conn.lastActivity, 5_300);
    clock.advance(300);
    await tick();
    assert.equal(h.conn.progressAt, 5_300, "no progress, no change");
  });
});

Deno.test("Connection: queue limits", async (t) => {
  await t.step("conn_wq_max bounds what waits in async mode", async () => {
    const h = harness({ limits: { connWqMax: 1024 } });
    h.conn.send(filled("a", 100));
    await tick();
    assert.equal(h.socket.pending.length, 1);
    // Behind a write the kernel is taking, a burst is not refused by conn_wq_max…
    assert.equal(h.conn.send(filled("z", 1500)), "queued");
    h.socket.complete(50); // …but now the kernel took only part: async mode
    await tick();
    assert.equal(h.conn.asyncMode, true);
    h.socket.complete(); // the rest of "a" and the 1500 "z" go; "z" is pending
    await tick();
    h.socket.complete(10);
    await tick();
    assert.equal(h.conn.asyncMode, true);
    // A lone message larger than conn_wq_max is still accepted…
    assert.equal(h.conn.send(filled("b", 2000), h.onFail("b")), "queued");
    // …but nothing more behind it.
    assert.equal(h.conn.send(filled("c", 1), h.onFail("c")), "queue_full");
    assert.deepEqual(h.failures, [], "queue_full is returned, the handler is not called");
    assert.equal(h.conn.queuedBytes, 1490 + 2000);
    assert.equal(h.shared.queuedBytes, 1490 + 2000);
    h.socket.complete();
    await tick();
    // The 2000 bytes are in flight now: the queue behind them is empty again.
    assert.equal(h.conn.send(filled("d", 1000)), "queued");
    assert.equal(h.conn.send(filled("e", 24)), "queued", "exactly conn_wq_max is allowed");
    assert.equal(h.conn.send(filled("f", 1)), "queue_full");
    h.socket.complete();
    await tick();
    h.socket.complete();
    await tick();
    assert.equal(
      h.socket.takenText,
      "a".repeat(100) + "z".repeat(1500) + "b".repeat(2000) + "d".repeat(1000) + "e".repeat(24),
    );
    assert.equal(h.shared.queuedBytes, 0);
    assert.equal(h.conn.asyncMode, false);
  });

  await t.step("the limits are read on every send (a reload applies at once)", async () => {
    const h = harness({ limits: { connWqMax: 1024 } });
    h.conn.send(filled("a", 10));
    await tick();
    h.socket.complete(1); // async mode
    await tick();
    h.conn.send(filled("b", 1000));
    assert.equal(h.conn.send(filled("c", 100)), "queue_full");
    h.limits.connWqMax = 4096;
    assert.equal(h.conn.send(filled("c", 100)), "queued");
    h.conn.close("test");
    await tick();
  });

  await t.step(
    "data waiting for a connect: bound by conn_wq_max (a lone message excepted) and wq_max",
    async () => {
      const h = harness({ attach: false, limits: { connWqMax: 3000, wqMax: 4096 } });
      assert.equal(h.conn.state, "connecting");
      for (let i = 0; i < 3; i++) assert.equal(h.conn.send(filled(String(i), 1000)), "queued");
      assert.equal(h.conn.send(filled("x", 1), h.onFail("x")), "queue_full", "conn_wq_max");
      assert.deepEqual(h.failures, []);
      assert.equal(h.shared.queuedBytes, 3000);
      assert.equal(h.conn.queuedBytes, 3000);
      assert.equal(h.conn.asyncMode, false, "no write in flight while connecting");
      h.conn.attach(h.socket);
      await tick();
      assert.equal(h.socket.writes.length, 1, "everything queued while connecting in one write");
      assert.equal(
        text(h.socket.writes[0].data),
        "0".repeat(1000) + "1".repeat(1000) + "2".repeat(1000),
      );
      h.socket.complete();
      await tick();
      assert.equal(h.shared.queuedBytes, 0);
    },
  );

  await t.step("wq_max is shared by two connections over one buffer", async () => {
    const shared = new SharedCounters(createSharedBuffer());
    const limits = { connWqMax: 1 << 20, wqMax: 2048 };
    const a = harness({ shared, limits, id: 1 });
    const b = harness({ shared, limits, id: 2 });
    a.conn.send(filled("a", 100));
    b.conn.send(filled("b", 100));
    await tick();
    assert.equal(shared.queuedBytes, 200);
    assert.equal(a.conn.send(filled("A", 1000)), "queued");
    assert.equal(shared.queuedBytes, 1200);
    assert.equal(b.conn.send(filled("B", 900)), "queue_full", "1200 + 900 > 2048");
    assert.equal(b.conn.send(filled("B", 848)), "queued", "1200 + 848 = 2048");
    assert.equal(a.conn.send(filled("A", 1)), "queue_full");
    assert.equal(shared.queuedBytes, 2048);
    assert.equal(a.conn.queuedBytes + b.conn.queuedBytes, 2048);
    // A direct send (no write in flight) is counted but never refused.
    const c = harness({ shared, limits, id: 3 });
    assert.equal(c.conn.send(filled("c", 500)), "queued");
    assert.equal(shared.queuedBytes, 2548);
    await tick();
    c.socket.complete();
    await tick();
    assert.equal(shared.queuedBytes, 2048);
    // The other connection's write completes: room again.
    a.socket.complete();
    await tick();
    assert.equal(shared.queuedBytes, 1948);
    assert.equal(b.conn.send(filled("B", 100)), "queued");
    a.socket.complete();
    b.socket.complete();
    await tick();
    b.socket.complete();
    await tick();
    assert.equal(shared.queuedBytes, 0);
    assert.equal(a.conn.queuedBytes + b.conn.queuedBytes + c.conn.queuedBytes, 0);
  });

  // Sends made in one tick, before the writer started, are "direct" (module docs: "every
  // message produced while handling one read goes out in a single coalesced write()"; in
  // send(): "Direct: … counted, never refused"). No write is pending, so conn_wq_max — "what
  // waits behind a pending write" — has nothing to bound yet.
  await t.step(
    "sends in one tick with no write pending are not refused by conn_wq_max",
    async () => {
      const h = harness({ limits: { connWqMax: 1024 } });
      const results = [0, 1, 2].map((i) => h.conn.send(filled(String(i), 600), h.onFail(`m${i}`)));
      assert.deepEqual(results, ["queued", "queued", "queued"]);
      await tick();
      assert.equal(h.socket.writes.length, 1);
      assert.equal(h.socket.writes[0].data.length, 1800);
      h.socket.complete();
      await tick();
      assert.equal(h.shared.queuedBytes, 0);
    },
  );
});

Deno.test("Connection: close and fail", async (t) => {
  await t.step("close(): every queued message's handler once, with closed", async () => {
    const h = harness();
    h.conn.send(bytes("AAAA"), h.onFail("A"));
    h.conn.send(bytes("BB"), h.onFail("B"));
    await tick(); // A and B in flight, pending
    h.conn.send(bytes("CCC"), h.onFail("C"));
    h.conn.send(bytes("D"), h.onFail("D"));
    h.conn.close("bye");
    assert.equal(h.conn.state, "closed");
    assert.equal(h.socket.closed, true);
    assert.deepEqual(h.failures, ["C:closed", "D:closed"], "queued ones at once");
    assert.deepEqual(h.closes, [{
      reason: "bye",
      failure: "closed",
      lost: { bytes: 10, messages: 4 },
    }]);
    await tick();
    assert.deepEqual(h.failures, ["C:closed", "D:closed", "A:closed", "B:closed"]);
    assert.equal(h.conn.queuedBytes, 0);
    assert.equal(h.shared.queuedBytes, 0);
    h.conn.close("again");
    assert.deepEqual(h.conn.fail("again", "send_timeout"), { bytes: 0, messages: 0 });
    await tick();
    assert.equal(h.closes.length, 1, "onClose once");
    assert.equal(h.failures.length, 4, "handlers once");
  });

  await t.step("fail(): handlers get the failure; lost is returned", async () => {
    const h = harness();
    h.conn.send(bytes("0123456789"), h.onFail("A"));
    await tick();
    h.socket.complete(4);
    await tick();
    h.conn.send(bytes("BBB"), h.onFail("B"));
    const lost = h.conn.fail("no progress", "send_timeout");
    assert.deepEqual(lost, { bytes: 9, messages: 2 }, "6 unwritten of A in flight + 3 of B");
    assert.deepEqual(h.closes, [{ reason: "no progress", failure: "send_timeout", lost }]);
    assert.deepEqual(h.failures, ["B:send_timeout"]);
    await tick();
    assert.deepEqual(
      h.failures,
      ["B:send_timeout", "A:send_timeout"],
      "the pending write, rejected by the close, reports the close's failure",
    );
    assert.equal(h.conn.queuedBytes, 0);
    assert.equal(h.shared.queuedBytes, 0);
  });

  await t.step("fail() while connecting", () => {
    const h = harness({ attach: false });
    h.conn.send(bytes("AA"), h.onFail("A"));
    h.conn.send(bytes("B"), h.onFail("B"));
    const lost = h.conn.fail("refused", "connect_refused");
    assert.deepEqual(lost, { bytes: 3, messages: 2 });
    assert.deepEqual(h.failures, ["A:connect_refused", "B:connect_refused"]);
    assert.equal(h.shared.queuedBytes, 0);
  });

  await t.step("close() between send and the writer's microtask: nothing written", async () => {
    const h = harness();
    h.conn.send(bytes("x"), h.onFail("x"));
    h.conn.close("now");
    await tick();
    assert.equal(h.socket.writes.length, 0);
    assert.deepEqual(h.failures, ["x:closed"]);
    assert.equal(h.shared.queuedBytes, 0);
  });

  await t.step("a message without a handler is counted in lost", async () => {
    const h = harness();
    h.conn.send(bytes("abc"));
    assert.deepEqual(h.conn.fail("x", "queue_full"), { bytes: 3, messages: 1 });
    await tick();
    assert.equal(h.shared.queuedBytes, 0);
  });
});

Deno.test("Connection: peer close and write errors", async (t) => {
  await t.step("outbound, peer closes: never-written data goes to onUnsent", async () => {
    const h = harness({ direction: "out" });
    h.conn.send(bytes("B1"), h.onFail("B1"));
    h.conn.send(bytes("B2"));
    h.socket.end();
    assert.deepEqual(h.failures, [], "handlers are not called: the owner sends it again");
    assert.equal(h.unsent.length, 1);
    assert.deepEqual(h.unsent[0].chunks, ["B1", "B2"]);
    assert.equal(h.unsent[0].handlers.length, 2);
    assert.equal(typeof h.unsent[0].handlers[0], "function");
    assert.equal(h.unsent[0].handlers[1], undefined);
    h.unsent[0].handlers[0]!("closed");
    assert.deepEqual(h.failures, ["B1:closed"], "the handlers handed over are the sender's");
    assert.equal(h.closes.length, 1);
    assert.equal(h.closes[0].reason, "closed by peer");
    assert.equal(h.closes[0].failure, "closed");
    await tick();
    assert.equal(h.socket.writes.length, 0);
    assert.equal(h.shared.queuedBytes, 0);
  });

  await t.step("outbound, peer closes during a pending write: that batch to onUnsent", async () => {
    const h = harness({ direction: "out" });
    h.conn.send(bytes("A"), h.onFail("A"));
    await tick();
    h.socket.end();
    await tick();
    assert.deepEqual(h.failures, []);
    assert.deepEqual(h.unsent.map((u) => u.chunks), [["A"]]);
    assert.equal(h.shared.queuedBytes, 0);
  });

  await t.step("outbound, peer resets (read error): same as a close", async () => {
    const h = harness({ direction: "out" });
    h.conn.send(bytes("B"), h.onFail("B"));
    h.socket.error(new Deno.errors.ConnectionReset("reset"));
    assert.deepEqual(h.unsent.map((u) => u.chunks), [["B"]]);
    assert.equal(h.closes[0].reason, "read error: reset");
    assert.deepEqual(h.failures, []);
    await tick();
    assert.equal(h.shared.queuedBytes, 0);
  });

  await t.step("outbound, written and never answered, peer closes: failed back", async () => {
    const h = harness({ direction: "out" });
    h.conn.send(bytes("R1"), h.onFail("R1"));
    h.conn.send(bytes("R2"));
    await tick();
    h.socket.complete();
    await tick();
    h.socket.error(new Error("alert certificate required"));
    assert.deepEqual(h.failures, ["R1:closed"], "the sender hears of it (503), not a timeout");
    assert.deepEqual(h.unsent, [], "not sent again: the peer may have processed it");
    assert.equal(h.closes[0].lost.messages, 1);
  });

  await t.step("outbound, written and answered, then the peer closes: nothing failed", async () => {
    const h = harness({ direction: "out" });
    h.conn.send(bytes("R1"), h.onFail("R1"));
    await tick();
    h.socket.complete();
    await tick();
    h.socket.push("SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n");
    h.socket.end();
    assert.deepEqual(h.failures, []);
    assert.equal(h.closes[0].lost.messages, 0);
  });

  await t.step("outbound, we close an unanswered connection: not reported as lost", async () => {
    const h = harness({ direction: "out" });
    h.conn.send(bytes("R1"), h.onFail("R1"));
    await tick();
    h.socket.complete();
    await tick();
    h.conn.close("idle timeout");
    assert.deepEqual(h.failures, []);
  });

  await t.step(
    "outbound, a failure (keepalive timeout) fails what was never answered",
    async () => {
      const h = harness({ direction: "out" });
      h.conn.send(bytes("R1"), h.onFail("R1"));
      await tick();
      h.socket.complete();
      await tick();
      h.conn.send(bytes("R2"), h.onFail("R2"));
      const lost = h.conn.fail("keepalive_timeout: no answer", "keepalive_timeout");
      await tick();
      assert.deepEqual(h.failures.sort(), ["R1:keepalive_timeout", "R2:keepalive_timeout"]);
      assert.equal(lost.messages, 2);
    },
  );

  await t.step("inbound, peer closes: queued data is reported closed", async () => {
    const h = harness({ direction: "in" });
    h.conn.send(bytes("A"), h.onFail("A"));
    await tick();
    h.conn.send(bytes("B"), h.onFail("B"));
    h.socket.end();
    assert.deepEqual(h.failures, ["B:closed"]);
    await tick();
    assert.deepEqual(h.failures, ["B:closed", "A:closed"]);
    assert.deepEqual(h.unsent, []);
    assert.equal(h.shared.queuedBytes, 0);
  });

  await t.step(
    "outbound, write error: the batch and the queue go to onUnsent, in order",
    async () => {
      const h = harness({ direction: "out" });
      h.conn.send(bytes("A1"), h.onFail("A1"));
      h.conn.send(bytes("A2"), h.onFail("A2"));
      await tick();
      h.conn.send(bytes("B"), h.onFail("B"));
      h.socket.failWrite(new Deno.errors.BrokenPipe("Broken pipe"));
      await tick();
      assert.deepEqual(h.failures, []);
      assert.deepEqual(h.unsent.map((u) => u.chunks), [["A1", "A2", "B"]]);
      assert.equal(h.unsent[0].handlers.length, 3);
      assert.equal(h.closes.length, 1);
      assert.equal(h.closes[0].reason, "write error: Broken pipe");
      assert.equal(h.closes[0].failure, "closed");
      assert.deepEqual(h.closes[0].lost, { bytes: 0, messages: 0 }, "handed over, not lost");
      assert.equal(h.conn.state, "closed");
      assert.equal(h.socket.closed, true);
      assert.equal(h.conn.queuedBytes, 0);
      assert.equal(h.shared.queuedBytes, 0);
    },
  );

  await t.step("outbound, write error after a partial write: counters balance", async () => {
    const h = harness({ direction: "out" });
    h.conn.send(bytes("0123456789"), h.onFail("A"));
    await tick();
    h.socket.complete(3);
    await tick();
    h.socket.failWrite();
    await tick();
    assert.equal(h.unsent.length, 1);
    assert.equal(h.conn.queuedBytes, 0);
    assert.equal(h.shared.queuedBytes, 0);
  });

  await t.step("inbound, write error: the batch and the queue are reported closed", async () => {
    const h = harness({ direction: "in" });
    h.conn.send(bytes("A"), h.onFail("A"));
    await tick();
    h.conn.send(bytes("B"), h.onFail("B"));
    h.socket.failWrite();
    await tick();
    assert.deepEqual(h.failures, ["A:closed", "B:closed"]);
    assert.deepEqual(h.unsent, []);
    assert.equal(h.closes.length, 1);
    assert.deepEqual(h.closes[0].lost, { bytes: 2, messages: 2 });
    assert.equal(h.shared.queuedBytes, 0);
  });

  // A (older, in flight) and B (newer, queued behind it) were both not delivered when the peer
  // closed. B is handed over at once, A only when its write rejects: the owner sends them on a
  // new connection as B, A — the order of the messages is inverted (e.g. a CANCEL before its
  // INVITE).
  await t.step("outbound, peer close: unsent data keeps its order (in flight first)", async () => {
    const h = harness({ direction: "out" });
    h.conn.send(bytes("A"), h.onFail("A"));
    await tick();
    h.conn.send(bytes("B"), h.onFail("B"));
    h.socket.end();
    await tick();
    assert.deepEqual(h.unsent.flatMap((u) => u.chunks), ["A", "B"]);
  });
});

Deno.test("Connection: closeAfterFlush and drained", async (t) => {
  await t.step("closeAfterFlush with nothing queued closes at once", () => {
    const h = harness();
    h.conn.closeAfterFlush();
    assert.equal(h.conn.state, "closed");
    assert.deepEqual(h.closes.map((c) => [c.reason, c.failure]), [[
      "closed after error response",
      "closed",
    ]]);
  });

  await t.step("closeAfterFlush writes what is queued, then closes", async () => {
    const h = harness();
    h.conn.send(bytes("SIP/2.0 400 Bad Request\r\n\r\n"), h.onFail("r"));
    h.conn.closeAfterFlush();
    assert.equal(h.conn.state, "open");
    await tick();
    assert.equal(h.conn.state, "open", "still writing");
    h.socket.complete(10);
    await tick();
    assert.equal(h.conn.state, "open");
    h.socket.complete();
    await tick();
    assert.equal(h.conn.state, "closed");
    assert.equal(h.socket.takenText, "SIP/2.0 400 Bad Request\r\n\r\n");
    assert.deepEqual(h.failures, []);
    assert.deepEqual(h.closes[0].lost, { bytes: 0, messages: 0 });
    assert.equal(h.shared.queuedBytes, 0);
  });

  await t.step("drained(): at once when idle, after the last write otherwise", async () => {
    const h = harness();
    let drained = false;
    await h.conn.drained();
    h.conn.send(bytes("abc"));
    h.conn.drained().then(() => drained = true);
    await tick();
    assert.equal(drained, false);
    h.conn.send(bytes("def"));
    h.socket.complete();
    await tick();
    assert.equal(drained, false, "more was queued behind the first write");
    h.socket.complete();
    await tick();
    assert.equal(drained, true);
  });

  await t.step("drained(): resolves when the connection closes", async () => {
    const h = harness();
    let drained = false;
    h.conn.send(bytes("abc"));
    await tick();
    h.conn.drained().then(() => drained = true);
    h.conn.close("x");
    await tick();
    assert.equal(drained, true);
    await h.conn.drained();
  });

  await t.step("drained(): waits for a connect with queued data", async () => {
    const h = harness({ attach: false });
    let drained = false;
    h.conn.send(bytes("abc"));
    h.conn.drained().then(() => drained = true);
    await tick();
    assert.equal(drained, false);
    h.socket.autoWrite = true;
    h.conn.attach(h.socket);
    await tick();
    assert.equal(drained, true);
  });
});

Deno.test("Connection: keepalive and read state", async (t) => {
  await t.step("ping(): sets pingSentAt; a ping does not set wroteSinceRead", async () => {
    using clock = new FakeClock(10_000);
    const h = harness({ direction: "out" });
    h.socket.autoWrite = true;
    assert.equal(h.conn.pingSentAt, 0);
    clock.advance(30_000);
    h.conn.ping();
    assert.equal(h.conn.pingSentAt, 40_000);
    await tick();
    assert.deepEqual(writesOf(h.socket), [PING]);
    assert.equal(h.conn.wroteSinceRead, false);
    assert.equal(h.conn.lastActivity, 40_000, "a ping is write activity");
    assert.equal(h.conn.lastRead, 10_000);
  });

  await t.step("data sets wroteSinceRead; a read resets it and pingSentAt", async () => {
    using clock = new FakeClock(10_000);
    const h = harness({ direction: "out" });
    h.socket.autoWrite = true;
    h.conn.ping();
    h.conn.send(bytes("x"));
    await tick();
    assert.deepEqual(writesOf(h.socket), [PING + "x"]);
    assert.equal(h.conn.wroteSinceRead, true, "a ping batched with data is data");
    clock.advance(500);
    h.socket.push("\r\n"); // pong
    assert.equal(h.conn.pingSentAt, 0);
    assert.equal(h.conn.wroteSinceRead, false);
    assert.equal(h.conn.lastRead, 10_500);
    assert.equal(h.conn.lastActivity, 10_500);
    h.conn.send(bytes("y"));
    await tick();
    assert.equal(h.conn.wroteSinceRead, true);
  });

  await t.step("ping() on a closed connection does nothing", () => {
    const h = harness();
    h.conn.close("x");
    h.conn.ping();
    assert.equal(h.conn.pingSentAt, 0);
  });

  await t.step("partialSince marks an incomplete message", () => {
    using clock = new FakeClock(50_000);
    const h = harness({ direction: "in" });
    assert.equal(h.conn.partialSince, 0);
    h.socket.push(MESSAGE.slice(0, 20));
    assert.equal(h.conn.partialSince, 50_000);
    clock.advance(1000);
    h.socket.push(MESSAGE.slice(20, 60));
    assert.equal(h.conn.partialSince, 50_000, "from the first byte of the message");
    assert.equal(h.conn.lastRead, 51_000);
    clock.advance(1000);
    h.socket.push(MESSAGE.slice(60) + MESSAGE.slice(0, 5));
    assert.deepEqual(h.frames, [MESSAGE]);
    assert.equal(h.conn.partialSince, 52_000, "the next message started");
    h.socket.push(MESSAGE.slice(5));
    assert.equal(h.conn.partialSince, 0);
    assert.deepEqual(h.frames, [MESSAGE, MESSAGE]);
  });

  await t.step("pings from the peer are frames", () => {
    const h = harness({ direction: "in" });
    h.socket.push("\r\n\r\n");
    assert.deepEqual(h.frames, ["ping"]);
    assert.equal(h.conn.partialSince, 0);
  });
});

// --- property ----------------------------------------------------------------------------

type Step =
  | { op: "send"; size: number }
  | { op: "write"; fraction: number }
  | { op: "tick" }
  | { op: "close" };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constant("send" as const), size: fc.integer({ min: 1, max: 40 }) }),
  fc.record({
    op: fc.constant("write" as const),
    fraction: fc.double({ min: 0, max: 1, noNaN: true }),
  }),
  fc.record({ op: fc.constant("tick" as const) }),
);

Deno.test("Connection: property: written bytes are a prefix of what was sent; counters return to 0", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(stepArb, { maxLength: 40 }),
      fc.option(fc.nat({ max: 40 })),
      fc.integer({ min: 10, max: 120 }),
      fc.boolean(),
      fc.constantFrom("in" as const, "out" as const),
      async (steps, closeAt, connWqMax, startConnecting, direction) => {
        const all = [...steps];
        if (closeAt !== null) all.splice(Math.min(closeAt, all.length), 0, { op: "close" });
        const h = harness({
          direction,
          attach: !startConnecting,
          limits: { connWqMax, wqMax: connWqMax * 3 },
        });
        const sent: Uint8Array[] = [];
        const calls = new Map<number, FailureReason[]>();
        let next = 0;
        let closed = false;
        for (const step of all) {
          if (step.op === "send") {
            const data = new Uint8Array(step.size);
            for (let i = 0; i < data.length; i++) data[i] = (next++) % 251;
            const index = sent.length;
            const result = h.conn.send(
              data,
              (r) => calls.set(index, [...calls.get(index) ?? [], r]),
            );
            if (result === "queued") sent.push(data);
            else next -= step.size;
          } else if (step.op === "write") {
            if (h.conn.state === "connecting") h.conn.attach(h.socket);
            const w = h.socket.pending[0];
            if (w !== undefined) w.resolve(Math.max(1, Math.round(step.fraction * w.data.length)));
          } else if (step.op === "tick") {
            await tick();
          } else {
            h.conn.close("test");
            closed = true;
          }
          assert.ok(h.shared.queuedBytes >= 0);
          assert.equal(h.shared.queuedBytes, h.conn.queuedBytes);
        }
        // Let everything settle: the kernel takes all the rest.
        if (h.conn.state === "connecting") h.conn.attach(h.socket);
        h.socket.autoWrite = true;
        for (let i = 0; i < 5; i++) {
          await tick();
          for (const w of h.socket.pending) w.resolve(w.data.length);
        }
        await tick();
        const expected = concatBytes(sent);
        const taken = h.socket.taken;
        assert.ok(taken.length <= expected.length);
        assert.deepEqual(taken, expected.subarray(0, taken.length), "a prefix, in order");
        if (!closed) {
          assert.equal(taken.length, expected.length, "everything written");
          assert.equal(calls.size, 0, "no failure without a close");
        }
        for (const [index, reasons] of calls) {
          assert.deepEqual(reasons, ["closed"], `message ${index}: one failure call`);
        }
        // Every message not completely written was reported.
        let end = 0;
        sent.forEach((m, i) => {
          end += m.length;
          if (end > taken.length) assert.ok(calls.has(i), `message ${i} lost but not reported`);
        });
        assert.equal(h.shared.queuedBytes, 0);
        assert.equal(h.conn.queuedBytes, 0);
      },
    ),
    { numRuns: 200 },
  );
});
