/** Tests of the per-worker counters and message classification. */

import assert from "node:assert/strict";
import {
  addTables,
  Counters,
  emptyTables,
  FAILURE_REASONS,
  messageKind,
  METHOD_LABELS,
  NOT_SIP,
  RESPONSE_KIND,
  SIP_METHODS,
} from "./stats.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

Deno.test("messageKind: every known method, other methods, status classes, non-SIP", () => {
  SIP_METHODS.forEach((m, i) => assert.deepEqual(messageKind(bytes(`${m} sip:a SIP/2.0\r\n`)), i));
  const other = METHOD_LABELS.indexOf("other");
  assert.deepEqual(messageKind(bytes("FOO sip:a SIP/2.0\r\n")), other);
  assert.deepEqual(messageKind(bytes("invite sip:a SIP/2.0\r\n")), other); // case-sensitive
  assert.deepEqual(messageKind(bytes("INVITEX sip:a SIP/2.0\r\n")), other);
  assert.deepEqual(messageKind(bytes("INV sip:a SIP/2.0\r\n")), other);
  assert.deepEqual(messageKind(bytes("AVERYLONGMETHODNAMEINDEED sip:a SIP/2.0\r\n")), other);
  for (let c = 1; c <= 6; c++) {
    assert.deepEqual(messageKind(bytes(`SIP/2.0 ${c}23 X\r\n`)), RESPONSE_KIND + c - 1);
  }
  assert.deepEqual(messageKind(bytes("SIP/2.0 700 X\r\n")), NOT_SIP);
  assert.deepEqual(messageKind(bytes("SIP/12.0 404 X\r\n")), RESPONSE_KIND + 3); // not 2.0
  assert.deepEqual(messageKind(bytes("SIP/2.0200 OK\r\n")), NOT_SIP);
  assert.deepEqual(messageKind(bytes("ACKX sip:a SIP/2.0\r\n")), other);
  assert.deepEqual(messageKind(bytes("SUBSCRIBEX sip:a SIP/2.0\r\n")), other);
  assert.deepEqual(messageKind(bytes("SUBSCRIPE sip:a SIP/2.0\r\n")), other);
  assert.deepEqual(messageKind(bytes("INVITE")), other);
  assert.deepEqual(messageKind(bytes("\x01BC sip:a SIP/2.0\r\n")), NOT_SIP);
  assert.deepEqual(messageKind(bytes("SIP/2.0")), NOT_SIP);
  assert.deepEqual(messageKind(bytes("\r\n")), NOT_SIP);
  assert.deepEqual(messageKind(bytes("\r\n\r\n")), NOT_SIP);
  assert.deepEqual(messageKind(bytes(" INVITE x")), NOT_SIP);
});

Deno.test("Counters tables: in, forwarded, local, failures; snapshots are copies", () => {
  const c = new Counters();
  c.countIn(bytes("INVITE sip:a SIP/2.0\r\n"));
  c.countIn(bytes("SIP/2.0 180 Ringing\r\n"));
  c.countForwarded(bytes("BYE sip:a SIP/2.0\r\n"));
  c.countForwarded(bytes("SIP/2.0 200 OK\r\n"));
  c.countLocal(bytes("SIP/2.0 503 Service Unavailable\r\n"));
  c.countLocal(bytes("\r\n")); // a pong is not a reply
  c.countFailure("send_timeout");
  c.countFailure("closed");
  const s = c.snapshotTables();
  assert.deepEqual(s.requestsIn[0], 1);
  assert.deepEqual(s.responsesIn, [1, 0, 0, 0, 0, 0]);
  assert.deepEqual(s.requestsOut[SIP_METHODS.indexOf("BYE")], 1);
  assert.deepEqual(s.responsesOut, [0, 1, 0, 0, 0, 0]);
  assert.deepEqual(s.localReplies, [0, 0, 0, 0, 1, 0]);
  assert.deepEqual(s.failures[FAILURE_REASONS.indexOf("send_timeout")], 1);
  assert.deepEqual(s.failures[FAILURE_REASONS.indexOf("closed")], 1);
  c.countIn(bytes("INVITE sip:a SIP/2.0\r\n"));
  assert.deepEqual(s.requestsIn[0], 1);
  const total = emptyTables();
  addTables(total, s);
  addTables(total, c.snapshotTables());
  assert.deepEqual(total.requestsIn[0], 3);
});
