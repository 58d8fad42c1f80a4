/**
 * Reload under high load: the same SIPp OPTIONS load (SIPp UAC → sipedge → SIPp UAS over TCP,
 * one client connection) runs twice side by side in one run — once without reloads, once with
 * RELOADS reloads (`POST /reload`, config.toml alternating between two valid configs, plus one
 * invalid config in the middle) — and prints, as a Markdown table for BENCHMARKS.md: calls
 * answered and failed, SIPp's exit code, sipedge's CPU per 1,000 transactions, and how
 * long a reload takes (request to report).
 *
 *   deno run -A --unstable-net scripts/bench_reload.ts
 *
 * Environment: RATE (transactions/s, default 6000), SECONDS (per run, default 20), RELOADS
 * (default 20), WORKERS (default 2), ROUNDS (baseline/reload pairs, default 1).
 * @module
 */
import { freePort, startSipedge } from "../tests/support/sipedge_process.ts";
import { reloadConfig, type ReloadVariant } from "../tests/support/reload_configs.ts";
import {
  findOnPath,
  optionsUacArgs,
  optionsUasArgs,
  parseSippStats,
  startSipp,
  waitForTcpListen,
} from "../tests/support/sipp.ts";

const RATE = Number(Deno.env.get("RATE") ?? 6000);
const SECONDS = Number(Deno.env.get("SECONDS") ?? 20);
const RELOADS = Number(Deno.env.get("RELOADS") ?? 20);
const WORKERS = Number(Deno.env.get("WORKERS") ?? 2);
const ROUNDS = Number(Deno.env.get("ROUNDS") ?? 1);
const CLK_TCK = 100;

function configText(variant: ReloadVariant, sip: number, control: number): string {
  return reloadConfig(variant, {
    sipPort: sip,
    controlPort: control,
    workers: WORKERS,
    logLevel: "warning",
  });
}

/** utime + stime of a process and all its threads, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

interface RunResult {
  label: string;
  answered: number;
  failed: number;
  cpuPer1000: number;
  exitCode: number;
  reloadMs: number[];
  refused: number;
}

async function run(withReloads: boolean): Promise<RunResult> {
  const dir = await Deno.makeTempDir({ prefix: "sipedge_bench_reload_" });
  const sip = freePort();
  const control = freePort();
  const uasPort = freePort();
  const calls = RATE * SECONDS;
  const configPath = `${dir}/config.toml`;
  await Deno.writeTextFile(configPath, configText("a", sip, control));
  await using uas = startSipp({
    cwd: dir,
    killAfterMs: (SECONDS + 60) * 1000,
    args: optionsUasArgs(uasPort),
  });
  await waitForTcpListen(uasPort, 10_000, "SIPp UAS");
  await using proxy = await startSipedge({ args: ["--config", configPath] });
  try {
    // Warm-up (unmeasured): V8 compiles the hot path.
    const warm = startSipp({
      cwd: dir,
      args: uacArgs(
        sip,
        uasPort,
        Math.min(RATE, 2000) * 3,
        Math.min(RATE, 2000),
        `${dir}/warm.csv`,
      ),
    });
    await warm.done;
    const cpuStart = cpuSeconds(proxy.pid);
    const uac = startSipp({
      cwd: dir,
      killAfterMs: (SECONDS + 60) * 1000,
      args: uacArgs(sip, uasPort, calls, RATE, `${dir}/uac.csv`),
    });
    const reloadMs: number[] = [];
    let refused = 0;
    if (withReloads) {
      const every = (SECONDS * 1000) / (RELOADS + 2);
      for (let i = 0; i <= RELOADS; i++) {
        await new Promise((r) => setTimeout(r, every));
        const variant = i === Math.floor(RELOADS / 2) ? "invalid" : i % 2 === 0 ? "b" : "a";
        await Deno.writeTextFile(configPath, configText(variant, sip, control));
        const t0 = performance.now();
        const response = await fetch(`http://127.0.0.1:${control}/reload`, { method: "POST" });
        const report = await response.json();
        reloadMs.push(performance.now() - t0);
        if (!report.ok) refused++;
      }
    }
    const result = await uac.done;
    const cpu = cpuSeconds(proxy.pid) - cpuStart;
    const stats = parseSippStats(await Deno.readTextFile(`${dir}/uac.csv`));
    return {
      label: withReloads ? `${RELOADS} reloads + 1 invalid` : "no reloads",
      answered: stats.successful,
      failed: stats.failed,
      exitCode: result.code,
      cpuPer1000: (cpu / Math.max(1, stats.successful)) * 1000,
      reloadMs,
      refused,
    };
  } finally {
    await uas.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

function uacArgs(sip: number, uasPort: number, calls: number, rate: number, stf: string) {
  return optionsUacArgs({
    proxyPort: sip,
    uasPort,
    localPort: freePort(),
    calls,
    rate,
    limit: 5000,
    timeoutSeconds: SECONDS + 30,
    statFile: stf,
  });
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

if (import.meta.main) {
  if (findOnPath("sipp") === undefined) {
    console.error("bench_reload: sipp is not on PATH (apt-get install -y sip-tester)");
    Deno.exit(1);
  }
  const cpu = Deno.readTextFileSync("/proc/cpuinfo").match(/model name\s*:\s*(.*)/)?.[1];
  console.log(`# ${new Date().toISOString()} — ${navigator.hardwareConcurrency} × ${cpu}`);
  console.log(
    `# RATE=${RATE} SECONDS=${SECONDS} RELOADS=${RELOADS} WORKERS=${WORKERS} ROUNDS=${ROUNDS}\n`,
  );
  console.log(
    "| run | answered | failed | SIPp exit | sipedge CPU ms / 1,000 tx | reload ms (min / median / max) |",
  );
  console.log("|---|---:|---:|---:|---|---|");
  for (let round = 0; round < ROUNDS; round++) {
    for (const withReloads of [false, true]) {
      const r = await run(withReloads);
      const reload = r.reloadMs.length === 0
        ? "—"
        : `${Math.min(...r.reloadMs).toFixed(0)} / ${median(r.reloadMs).toFixed(0)} / ${
          Math.max(...r.reloadMs).toFixed(0)
        } (${r.refused} refused)`;
      console.log(
        `| ${r.label} | ${r.answered} | ${r.failed} | ${r.exitCode} | ${
          (r.cpuPer1000 * 1000).toFixed(0)
        } | ${reload} |`,
      );
    }
  }
}
