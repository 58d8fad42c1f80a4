/** End-to-end tests of sipedge as a child process: start, ready line, stop, failed start. */

import assert from "node:assert/strict";
import { freePort, startSipedge } from "./support/sipedge_process.ts";

Deno.test("sipedge process: prints its ready line, accepts TCP and stops on SIGTERM", async () => {
  const port = freePort();
  const address = `tcp:127.0.0.1:${port}`;
  await using sipedge = await startSipedge({
    args: [
      "--listen",
      address,
      "--forward",
      "sip:127.0.0.1:9;transport=tcp",
      "--workers",
      "2",
      "--control",
      "off",
    ],
  });
  assert.deepEqual(sipedge.listening, [address], sipedge.readyLine);
  assert.match(sipedge.readyLine, /\(2 workers\)/);

  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.close();

  const status = await sipedge.stop();
  assert.equal(
    status.code,
    0,
    `graceful stop on SIGTERM should exit 0 (got ${status.code}, signal ${status.signal})\n` +
      sipedge.output(),
  );
  // Stopping again just returns the status.
  assert.equal((await sipedge.stop()).code, status.code);
});

Deno.test("sipedge process: a config file is passed with --config and removed afterwards", async () => {
  const port = freePort();
  let configPath = "";
  {
    await using sipedge = await startSipedge({
      config: `[sipedge]\nworkers = 1\nlog_level = "warning"\n\n[[listen]]\n` +
        `address = "tcp:127.0.0.1:${port}"\n\n[plugins.tcp]\n\n[plugins.static_router]\n`,
    });
    assert.deepEqual(sipedge.listening, [`tcp:127.0.0.1:${port}`], sipedge.readyLine);
    const cmdline = await Deno.readTextFile(`/proc/${sipedge.pid}/cmdline`).catch(() => "");
    configPath = cmdline.split("\0").find((a) => a.endsWith(".toml")) ?? "";
    assert.ok(configPath !== "", `--config <file> in the command line: ${cmdline}`);
  }
  assert.equal(await Deno.stat(configPath).then(() => true, () => false), false, configPath);
});

Deno.test("sipedge process: a start that fails rejects with sipedge's output", async () => {
  await assert.rejects(
    () => startSipedge({ args: ["--listen", "bogus:address"] }),
    (err: Error) => {
      assert.match(err.message, /exited \(code [1-9]\d*\) before printing "sipedge ready"/);
      assert.match(err.message, /--- output ---/);
      return true;
    },
  );
});
