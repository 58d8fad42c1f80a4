/** Tests of how send failures are answered: 408 for timeouts, 503 otherwise (RFC 3261 §16.7). */

import assert from "node:assert/strict";
import { BLACKLIST_REASONS, type FailureReason, failureReply, reasonHeader } from "./failure.ts";

const ALL: FailureReason[] = [
  "connect_refused",
  "connect_timeout",
  "connect_failed",
  "send_timeout",
  "queue_full",
  "keepalive_timeout",
  "blacklisted",
  "connection_limit",
  "closed",
];

Deno.test("failureReply: 408 for connect, send and keepalive timeouts", () => {
  for (const reason of ["connect_timeout", "send_timeout", "keepalive_timeout"] as const) {
    const reply = failureReply(reason);
    assert.equal(reply.status, 408, reason);
    assert.equal(reply.reason, "Request Timeout");
  }
});

Deno.test("failureReply: 503 for everything else", () => {
  const others = ALL.filter((r) => !r.endsWith("_timeout"));
  assert.equal(others.length, 6);
  for (const reason of others) {
    const reply = failureReply(reason);
    assert.equal(reply.status, 503, reason);
    assert.equal(reply.reason, "Service Unavailable");
  }
});

Deno.test("failureReply: Reason text for every reason", () => {
  assert.deepEqual(Object.fromEntries(ALL.map((r) => [r, failureReply(r).text])), {
    connect_refused: "connect refused",
    connect_timeout: "connect timeout",
    connect_failed: "connect failed",
    send_timeout: "send timeout",
    queue_full: "queue full",
    keepalive_timeout: "keepalive timeout",
    blacklisted: "destination blacklisted",
    connection_limit: "connection limit",
    closed: "connection closed",
  });
});

Deno.test("reasonHeader: RFC 3326 Reason header line", async (t) => {
  await t.step("timeouts", () => {
    assert.equal(reasonHeader("send_timeout"), 'Reason: SIP;cause=408;text="send timeout"');
    assert.equal(reasonHeader("connect_timeout"), 'Reason: SIP;cause=408;text="connect timeout"');
  });
  await t.step("others", () => {
    assert.equal(reasonHeader("connect_refused"), 'Reason: SIP;cause=503;text="connect refused"');
    assert.equal(
      reasonHeader("blacklisted"),
      'Reason: SIP;cause=503;text="destination blacklisted"',
    );
  });
  await t.step("every line is a valid header: token name, quoted text without quotes", () => {
    for (const reason of ALL) {
      assert.match(reasonHeader(reason), /^Reason: SIP;cause=(408|503);text="[a-z ]+"$/);
    }
  });
});

Deno.test("BLACKLIST_REASONS: the failures of a destination, not of sipedge", () => {
  assert.deepEqual([...BLACKLIST_REASONS], [
    "connect_refused",
    "connect_timeout",
    "connect_failed",
    "send_timeout",
    "queue_full",
    "keepalive_timeout",
  ]);
  for (const r of ["blacklisted", "connection_limit", "closed"]) {
    assert.ok(!(BLACKLIST_REASONS as readonly string[]).includes(r), r);
  }
});
