/**
 * Which channel is cheapest for handing SIP messages (300..900 byte Uint8Arrays) from one Web
 * Worker to another? Starts a sender and a receiver worker per run and compares a transferred
 * MessagePort (batched per macrotask, unbatched, batched into one transferred ArrayBuffer) with
 * a SharedArrayBuffer ring woken through `Atomics.waitAsync`, under unpaced bursts and paced
 * open-loop rates. Prints a markdown table: throughput, whole-process CPU per message (both
 * workers included), one-way latency p50/p99.
 *
 * `deno run --allow-read --allow-env scripts/bench_handoff.ts [--runs=3] [--scale=0.2] [variant...]`
 * @module
 */
import process from "node:process";
import type { BenchConfig, ReceiverReport, SenderReport, Variant } from "./bench_handoff_worker.ts";

/** All channels, in table order. */
export const VARIANTS: Variant[] = ["mp-batch", "mp-single", "mp-transfer", "sab-ring"];

/** One load point: unpaced bursts of `batch` per macrotask, or an open-loop `rate`. */
export interface Load {
  /** Label printed in the table. */
  label: string;
  /** See {@link BenchConfig.mode}. */
  mode: "burst" | "paced";
  /** Messages per macrotask (burst). */
  batch: number;
  /** Messages per second (paced). */
  rate: number;
  /** Sender run time. */
  durationMs: number;
}

/** Load points measured for every variant. */
export const LOADS: Load[] = [
  ...[1, 8, 32].map((batch) => ({
    label: `burst ×${batch}`,
    mode: "burst" as const,
    batch,
    rate: 0,
    durationMs: 2000,
  })),
  ...[1_000, 10_000, 50_000].map((rate) => ({
    label: `${rate / 1000}k/s`,
    mode: "paced" as const,
    batch: 0,
    rate,
    durationMs: 3000,
  })),
];

/** Result of one variant × load run. */
export interface RunResult {
  /** Sender side counters. */
  sender: SenderReport;
  /** Receiver side counters and latency. */
  receiver: ReceiverReport;
  /** Wall time from the end of the warm-up to the receiver's report. */
  elapsedMs: number;
  /** Whole-process user+system CPU over the same interval. */
  cpuUs: number;
}

const RING_BYTES = 8 << 20;
const WORKER_URL = new URL("./bench_handoff_worker.ts", import.meta.url);

function next<T>(w: Worker): Promise<T> {
  return new Promise((resolve) =>
    w.addEventListener("message", (e) => resolve(e.data), { once: true })
  );
}

/** Runs one variant at one load with two fresh workers, which are terminated afterwards. */
export async function runOne(variant: Variant, load: Load): Promise<RunResult> {
  const sender = new Worker(WORKER_URL, { type: "module" });
  const receiver = new Worker(WORKER_URL, { type: "module" });
  try {
    const base = { variant, ...load, flow: new SharedArrayBuffer(4) };
    const toSender: BenchConfig = { ...base, role: "sender" };
    const toReceiver: BenchConfig = { ...base, role: "receiver" };
    const transfer: [Transferable[], Transferable[]] = [[], []];
    if (variant === "sab-ring") {
      toSender.ring = toReceiver.ring = new SharedArrayBuffer(RING_BYTES);
      toSender.ctl = toReceiver.ctl = new SharedArrayBuffer(16);
    } else {
      const { port1, port2 } = new MessageChannel();
      [toSender.port, toReceiver.port, transfer[0][0], transfer[1][0]] = [
        port1,
        port2,
        port1,
        port2,
      ];
    }
    const ready = Promise.all([next(sender), next(receiver)]);
    sender.postMessage(toSender, transfer[0]);
    receiver.postMessage(toReceiver, transfer[1]);
    await ready;

    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("run timed out")), load.durationMs + 20_000);
    });
    const receiverDone = next<ReceiverReport>(receiver);
    const warm = next(sender);
    sender.postMessage("start");
    await Promise.race([warm, timeout]); // measure from the end of the warm-up
    const senderDone = next<SenderReport>(sender);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const [s, r] = await Promise.race([Promise.all([senderDone, receiverDone]), timeout]);
    clearTimeout(timer);
    const elapsedMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    return { sender: s, receiver: r, elapsedMs, cpuUs: cpu.user + cpu.system };
  } finally {
    sender.terminate();
    receiver.terminate();
  }
}

/** Table cells for one run: msgs/s, CPU µs/msg, p50 µs, p99 µs, lost, msgs/wake. */
export function cells(res: RunResult): number[] {
  const { sender: s, receiver: r } = res;
  return [
    r.received / (res.elapsedMs / 1000),
    res.cpuUs / Math.max(1, r.received),
    r.p50,
    r.p99,
    s.lost + (s.sent - r.received),
    r.received / Math.max(1, r.wakes),
  ];
}

const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[xs.length >> 1];
const fmt = [
  (x: number) => Math.round(x).toLocaleString("en-US"),
  (x: number) => x.toFixed(2),
  (x: number) => (x >= 1_000_000 ? ">1s" : String(x)),
  (x: number) => (x >= 1_000_000 ? ">1s" : String(x)),
  String,
  (x: number) => x.toFixed(1),
];

if (import.meta.main) {
  const opt = (name: string, dflt: number) =>
    Number(Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? dflt);
  const scale = opt("scale", 1), runs = Math.max(1, opt("runs", 1));
  const picked = Deno.args.filter((a) => !a.startsWith("--")) as Variant[];
  const variants = picked.length ? VARIANTS.filter((v) => picked.includes(v)) : VARIANTS;
  console.log(
    `${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, median of ${runs}`,
  );

  // Baseline: sender ticking setInterval(1) with nothing to send, receiver idle.
  const idle = {
    label: "idle",
    mode: "paced" as const,
    batch: 0,
    rate: 0,
    durationMs: 3000 * scale,
  };
  const base = await runOne("mp-batch", idle);
  console.log(
    `baseline (timer ticks only, no messages): ${
      (base.cpuUs / base.elapsedMs).toFixed(0)
    } µs CPU/ms\n`,
  );

  console.log("| variant | load | msgs/s | CPU µs/msg | p50 µs | p99 µs | lost | msgs/wake |");
  console.log("|---|---|---:|---:|---:|---:|---:|---:|");
  const warnings: string[] = [];
  let minLatency = Infinity;
  for (const variant of variants) {
    for (const l of LOADS) {
      const load = { ...l, durationMs: Math.round(l.durationMs * scale) };
      const results: RunResult[] = [];
      for (let i = 0; i < runs; i++) results.push(await runOne(variant, load));
      const table = results.map(cells);
      const row = fmt.map((f, c) => f(median(table.map((t) => t[c]))));
      console.log(`| ${variant} | ${load.label} | ${row.join(" | ")} |`);
      for (const { receiver: r } of results) {
        minLatency = Math.min(minLatency, r.min);
        if (r.negative > 0) {
          warnings.push(`${variant} ${load.label}: ${r.negative} negative latencies`);
        }
        if (r.checksum === 0) warnings.push(`${variant} ${load.label}: zero checksum`);
      }
    }
  }
  console.log(`\nclock check: smallest one-way latency ${minLatency.toFixed(1)} µs`);
  if (warnings.length) console.log(`WARNING: ${warnings.join("; ")}`);
}
