/** Tests of the JSON Lines log format. */

import assert from "node:assert/strict";
import type { LogRecord } from "@logtape/logtape";
import { jsonLinesFormatter } from "./logging.ts";

function record(message: unknown[], properties: Record<string, unknown>): LogRecord {
  return {
    category: ["sipedge", "transport"],
    level: "warning",
    message,
    rawMessage: "",
    timestamp: Date.UTC(2026, 0, 2, 3, 4, 5, 6),
    properties,
  } as LogRecord;
}

Deno.test("jsonLinesFormatter: one JSON object per line, message as in the text format", () => {
  const line = jsonLinesFormatter(record(
    ["send failure ", "send_timeout", " to ", "tcp:10.0.0.5:5060", "; ", 512, " bytes lost"],
    { reason: "send_timeout", bytes: 512, big: 12n, error: new Error("boom") },
  ));
  assert.ok(line.endsWith("\n"));
  assert.equal(line.indexOf("\n"), line.length - 1, "exactly one line");
  assert.deepEqual(JSON.parse(line), {
    "@timestamp": "2026-01-02T03:04:05.006Z",
    level: "WARN",
    logger: "sipedge.transport",
    // Strings bare, like the text format (LogTape's own JSON formatter would quote them).
    message: "send failure send_timeout to tcp:10.0.0.5:5060; 512 bytes lost",
    properties: {
      reason: "send_timeout",
      bytes: 512,
      big: "12",
      error: { name: "Error", message: "boom" },
    },
  });
});

Deno.test("jsonLinesFormatter: line feeds in values stay inside the JSON string", () => {
  const line = jsonLinesFormatter(record(["bad ", "a\nb", ""], { v: "x\ny" }));
  assert.equal(line.split("\n").length, 2);
  assert.equal(JSON.parse(line).message, "bad a\nb");
});
