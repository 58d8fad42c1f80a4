/** Tests of the test harness itself: summary parsing, SIPp log parsing, ports. */

import assert from "node:assert/strict";
import {
  buildTestArgs,
  formatSummary,
  parseDenoTestSummary,
  TEST_DIRS,
} from "../scripts/run_tests.ts";
import { freePort, parseReadyLine } from "./support/sipedge_process.ts";
import { isTcpListening, parseSippMessageLog, parseSippStats } from "./support/sipp.ts";

Deno.test("run_tests: parses deno test summary lines", () => {
  assert.deepEqual(
    parseDenoTestSummary(
      "running 3 tests\n\nok | 12 passed (3 steps) | 0 failed | 1 ignored (2s)\n",
    ),
    { passed: 12, failed: 0, ignored: 1 },
  );
  assert.deepEqual(
    parseDenoTestSummary("FAILED | 3 passed | 1 failed (1s)\n\nerror: Test failed"),
    {
      passed: 3,
      failed: 1,
      ignored: 0,
    },
  );
  assert.deepEqual(
    parseDenoTestSummary(
      "\x1b[0m\x1b[32mok\x1b[0m | 1 passed | 0 failed | 2 filtered out \x1b[0m\x1b[38;5;245m(2s)\x1b[0m",
    ),
    { passed: 1, failed: 0, ignored: 0 },
  );
  assert.equal(parseDenoTestSummary("error: Type checking failed.\n"), undefined);
  // A test's own output that merely looks similar is not taken when a real summary follows.
  assert.deepEqual(
    parseDenoTestSummary("ok | 99 passed | 0 failed\nFAILED | 1 passed | 2 failed (3s)\n"),
    { passed: 1, failed: 2, ignored: 0 },
  );
});

Deno.test("run_tests: formats the final line", () => {
  assert.equal(formatSummary({ passed: 12, failed: 0, ignored: 0 }), "12 passed, 0 failed");
  assert.equal(
    formatSummary({ passed: 3, failed: 1, ignored: 2 }),
    "3 passed, 1 failed, 2 skipped",
  );
});

Deno.test("run_tests: builds deno test arguments", () => {
  const all = (_: string) => true;
  const fixed = ["test", "--unstable-net", "-A", "--no-check=remote"];
  assert.deepEqual(buildTestArgs([], all), [...fixed, ...TEST_DIRS]);
  assert.deepEqual(buildTestArgs([], (p) => p === "tests/"), [...fixed, "tests/"]);
  // A flag's value is not a path, even when a file of that name exists.
  assert.deepEqual(buildTestArgs(["--filter", "tests"], all), [
    ...fixed,
    "--filter",
    "tests",
    ...TEST_DIRS,
  ]);
  // Paths replace the default folders.
  assert.deepEqual(buildTestArgs(["tests/harness_test.ts"], all), [
    ...fixed,
    "tests/harness_test.ts",
  ]);
  // Arguments after -- go to the test programs, at the end.
  assert.deepEqual(buildTestArgs(["--fail-fast", "--", "x"], all), [
    ...fixed,
    "--fail-fast",
    ...TEST_DIRS,
    "--",
    "x",
  ]);
});

Deno.test("sipedge_process: parses the ready line", () => {
  assert.deepEqual(
    parseReadyLine("sipedge ready: listening on tcp:127.0.0.1:5060 (2 workers)"),
    ["tcp:127.0.0.1:5060"],
  );
  assert.deepEqual(
    parseReadyLine(
      "2026-11-27 INFO sipedge ready: listening on tcp:127.0.0.1:5060, tls:[::1]:5061 (1 worker)",
    ),
    ["tcp:127.0.0.1:5060", "tls:[::1]:5061"],
  );
  assert.deepEqual(parseReadyLine("sipedge ready"), []);
});

Deno.test("sipedge_process: freePort returns a port that can be bound", () => {
  const port = freePort();
  assert.ok(port > 0 && port < 65536);
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  try {
    assert.ok(isTcpListening(port) || !Deno.statSync("/proc/net/tcp").isFile);
  } finally {
    listener.close();
  }
  assert.equal(isTcpListening(port), false);
});

Deno.test("sipp: parses -trace_stat files", () => {
  const header =
    "StartTime;CurrentTime;IncomingCall(C);OutgoingCall(C);SuccessfulCall(C);FailedCall(C)";
  const stats = parseSippStats(
    `${header}\n2026-11-27\t03:55:09;x;0;0;0;0;\n2026-11-27\t03:55:11;y;0;1000;998;2;\n`,
  );
  assert.equal(stats.successful, 998);
  assert.equal(stats.failed, 2);
  assert.equal(stats.created, 1000);
  assert.throws(() => parseSippStats(header));
});

Deno.test("sipp: splits -trace_msg logs", () => {
  const log = `----------------------------------------------- 2026-11-27 03:55:50.141090
TCP message received [10] bytes :

INVITE sip:a@b SIP/2.0
Record-Route: <sip:127.0.0.1:5060;transport=tcp;lr>
Content-Length: 0


----------------------------------------------- 2026-11-27 03:55:50.141377
TCP message sent (394 bytes):

SIP/2.0 180 Ringing
Content-Length: 0

`;
  const messages = parseSippMessageLog(log);
  assert.equal(messages.length, 2);
  assert.equal(messages[0].direction, "received");
  assert.ok(messages[0].message.startsWith("INVITE sip:a@b SIP/2.0\nRecord-Route:"));
  assert.equal(messages[1].direction, "sent");
  assert.ok(messages[1].message.startsWith("SIP/2.0 180 Ringing"));
});
