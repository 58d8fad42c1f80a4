/**
 * The soak test (scripts/soak.sh) in a 2-minute version: steady TCP/TLS load, TLS churn, idle
 * waves, RST / slowloris / stalled-upstream faults, reloads and one forced hang of worker 1; it
 * must PASS (exit status 0). The chart is drawn only when gnuplot is installed. On failure the
 * markdown summary and the tail of the run's output are in the assertion message.
 *
 * soak.sh runs in its own session (setsid) so that a run that overstays its time is ended with
 * its whole process group, and its output folder is removed in every case.
 */
import assert from "node:assert/strict";
import { REPO_ROOT } from "./support/sipedge_process.ts";

/** The run is 2 minutes; start-up, the end's quiescence and the report take about 10 s more. */
const LIMIT_MS = 210_000;

function hasCommand(name: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "soak (2 minutes): load, faults, reloads and a hung worker; the edge stays up",
  ignore: Deno.build.os !== "linux" || !hasCommand("setsid"),
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const out = await Deno.makeTempDir({ prefix: "sipedge_soak_smoke_" });
  const args = ["bash", `${REPO_ROOT}/scripts/soak.sh`, "--minutes", "2", "--out", out];
  if (!hasCommand("gnuplot")) args.push("--no-chart");
  const child = new Deno.Command("setsid", {
    args,
    cwd: REPO_ROOT,
    env: { DENO: Deno.execPath(), NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
  };
  const pumps = Promise.all([collect(child.stdout), collect(child.stderr)]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  try {
    const status = await Promise.race([
      child.status,
      new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), LIMIT_MS)),
    ]);
    if (status === undefined) {
      timedOut = true;
      // SIGTERM lets soak.sh stop what it started; then the whole session goes.
      try {
        Deno.kill(-child.pid, "SIGTERM");
      } catch {
        // gone
      }
      const ended = await Promise.race([
        child.status,
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20_000)),
      ]);
      if (ended === undefined) {
        try {
          Deno.kill(-child.pid, "SIGKILL");
        } catch {
          // gone
        }
      }
    }
    const final = await child.status;
    await pumps;
    let summary = "";
    try {
      summary = await Deno.readTextFile(`${out}/summary.md`);
    } catch {
      summary = "(no summary.md)";
    }
    assert.ok(!timedOut, `soak.sh did not finish within ${LIMIT_MS} ms\n${output.slice(-4000)}`);
    assert.equal(
      final.code,
      0,
      `soak.sh exit status ${final.code}\n--- summary ---\n${summary}\n--- output (tail) ---\n${
        output.slice(-3000)
      }`,
    );
  } finally {
    clearTimeout(timer);
    await Deno.remove(out, { recursive: true }).catch(() => {});
  }
});
