import assert from "node:assert/strict";
import { createHandoffProgress, type Handoff, HandoffChannel } from "./handoff.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const tick = () => new Promise((resolve) => setTimeout(resolve, 20));

Deno.test("HandoffChannel: messages arrive in order, one batch per event, with their fields", async () => {
  const progress = createHandoffProgress(2);
  const channel = new MessageChannel();
  const got: Handoff[] = [];
  const a = new HandoffChannel({
    workerId: 0,
    progress,
    ports: { 1: channel.port1 },
    onHandoff: () => assert.fail("nothing is handed to 0"),
    onLost: () => assert.fail("nothing lost"),
  });
  const b = new HandoffChannel({
    workerId: 1,
    progress,
    ports: { 0: channel.port2 },
    onHandoff: (h) => got.push(h),
    onLost: () => assert.fail("nothing lost"),
  });
  try {
    assert.ok(a.reaches(1));
    assert.ok(!a.reaches(2));
    a.send(1, { connectionId: 257, bytes: bytes("first") });
    a.send(1, {
      connectionId: 513,
      bytes: bytes("second"),
      fallback: { transport: "tcp", host: "192.0.2.1", port: 5060 },
      key: "tcp:192.0.2.1:5060",
    });
    await tick();
    assert.deepEqual(got.map((h) => [h.connectionId, text(h.bytes), h.key]), [
      [257, "first", undefined],
      [513, "second", "tcp:192.0.2.1:5060"],
    ]);
    assert.deepEqual(got[1].fallback, { transport: "tcp", host: "192.0.2.1", port: 5060 });
    // Handled: the receiver's progress says batch 1, and the sender forgets it.
    assert.equal(new Int32Array(progress)[1 * 2 + 0], 1);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("HandoffChannel: what a peer that went away never handled is given back as lost", async () => {
  const progress = createHandoffProgress(2);
  const channel = new MessageChannel(); // nobody handles port2: a hung peer
  const lost: string[] = [];
  const a = new HandoffChannel({
    workerId: 0,
    progress,
    ports: { 1: channel.port1 },
    onHandoff: () => {},
    onLost: (h) => lost.push(text(h.bytes)),
  });
  try {
    a.send(1, { connectionId: 257, bytes: bytes("one") });
    await tick();
    a.send(1, { connectionId: 257, bytes: bytes("two") });
    await tick();
    a.send(1, { connectionId: 257, bytes: bytes("three") }); // not even flushed yet
    a.disconnect(1);
    assert.deepEqual(lost, ["one", "two", "three"]);
    assert.ok(!a.reaches(1));
  } finally {
    a.close();
    channel.port2.close();
  }
});

Deno.test("HandoffChannel: handled batches are not reported lost; a new peer in the same place starts afresh", async () => {
  const progress = createHandoffProgress(2);
  const first = new MessageChannel();
  const lost: string[] = [];
  const a = new HandoffChannel({
    workerId: 0,
    progress,
    ports: { 1: first.port1 },
    onHandoff: () => {},
    onLost: (h) => lost.push(text(h.bytes)),
  });
  const b = new HandoffChannel({
    workerId: 1,
    progress,
    ports: { 0: first.port2 },
    onHandoff: () => {},
    onLost: () => {},
  });
  try {
    a.send(1, { connectionId: 1, bytes: bytes("handled") });
    await tick();
    a.prune();
    b.close(); // peer 1 goes away after handling it
    a.disconnect(1);
    assert.deepEqual(lost, []);
    // Peer 1 replaced (the supervisor resets its progress cells).
    new Int32Array(progress).fill(0);
    const second = new MessageChannel();
    a.connect(1, second.port1);
    a.send(1, { connectionId: 2, bytes: bytes("to the new one") });
    await tick();
    a.disconnect(1);
    assert.deepEqual(lost, ["to the new one"]);
    second.port2.close();
  } finally {
    a.close();
  }
});
