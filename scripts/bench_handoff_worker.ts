/**
 * Worker side of `scripts/bench_handoff.ts`: one module that plays either the sender or the
 * receiver of a worker→worker SIP message hand-off, over a transferred MessagePort or a
 * SharedArrayBuffer ring. Each message carries its send time (`timeOrigin + now()`, float64,
 * native byte order) in its first 8 bytes; 0 marks a warm-up message, which is not measured.
 * @module
 */
/// <reference lib="deno.worker" />

/** Hand-off channel under test. */
export type Variant = "mp-batch" | "mp-single" | "mp-transfer" | "sab-ring";

/** Configuration posted by the main thread to both workers. */
export interface BenchConfig {
  /** Which side this worker plays. */
  role: "sender" | "receiver";
  /** Channel under test. */
  variant: Variant;
  /** `burst`: `batch` messages per macrotask, flow-controlled; `paced`: open-loop `rate`/s. */
  mode: "burst" | "paced";
  /** Messages per macrotask (burst mode). */
  batch: number;
  /** Messages per second (paced mode). */
  rate: number;
  /** How long the sender produces. */
  durationMs: number;
  /** Int32Array[1] = messages received so far (burst-mode flow control window). */
  flow: SharedArrayBuffer;
  /** MessagePort variants: this worker's end of the channel. */
  port?: MessagePort;
  /** Ring variant: record storage. */
  ring?: SharedArrayBuffer;
  /** Ring variant: Int32Array control words (see WRITE, READ, SLEEP, DONE). */
  ctl?: SharedArrayBuffer;
}

/** Report the sender posts to the main thread when it has finished. */
export interface SenderReport {
  /** Messages accepted by the channel. */
  sent: number;
  /** Messages refused (ring full). */
  lost: number;
  /** Macrotasks in which the burst flow-control window stopped production. */
  blocked: number;
  /** `Atomics.notify` calls made (ring variant). */
  notifies: number;
}

/** Report the receiver posts to the main thread when it saw the end of the stream. */
export interface ReceiverReport {
  /** Messages received. */
  received: number;
  /** Times the receiver was woken (message events, or waitAsync resolutions). */
  wakes: number;
  /** One-way latency percentiles and minimum, in microseconds. */
  p50: number;
  /** 99th percentile latency (µs). */
  p99: number;
  /** Smallest latency seen (µs); negative means the worker clocks disagree. */
  min: number;
  /** Messages with a latency below -1 µs (the worker clocks disagree). */
  negative: number;
  /** Sum of touched bytes (keeps the reads observable). */
  checksum: number;
}

const WRITE = 0, READ = 1, SLEEP = 2, DONE = 3; // ring control words
const WRAP = -1; // record length marking "continue at offset 0"
const WINDOW = 8192; // burst mode: max messages in flight
const POOL = 512; // distinct message templates; also the per-tick production cap
const MAX_MESSAGES = 20_000_000; // hard bound on messages per run
const HIST_US = 1_000_000; // latency histogram: 1 µs buckets up to 1 s
/** Warm-up (JIT, caches) before measuring; the sender posts "warm" to the main thread at its end. */
export const WARMUP_MS = 500;

/** Bytes a record of `len` payload bytes occupies: 8-byte header, payload padded to 8. */
const recordSize = (len: number): number => 8 + ((len + 7) & ~7);

function writeRecord(u8: Uint8Array, i32: Int32Array, off: number, msg: Uint8Array): number {
  i32[off >> 2] = msg.length;
  u8.set(msg, off + 8);
  return off + recordSize(msg.length);
}

const wallNow = (): number => performance.timeOrigin + performance.now();
const stampF64 = new Float64Array(1);
const stampU8 = new Uint8Array(stampF64.buffer);

self.onmessage = (e: MessageEvent<BenchConfig>) => {
  self.onmessage = null;
  if (e.data.role === "sender") runSender(e.data);
  else runReceiver(e.data);
  self.postMessage("ready");
};

/** SIP-looking payloads of 300..900 bytes (deterministic). */
function makePool(): Uint8Array[] {
  const line = new TextEncoder().encode(
    "Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK-0123;rport\r\n",
  );
  const pool: Uint8Array[] = [];
  for (let i = 0; i < POOL; i++) {
    const m = new Uint8Array(300 + ((i * 7919) % 601));
    for (let j = 8; j < m.length; j++) m[j] = line[j % line.length];
    pool.push(m);
  }
  return pool;
}

function runSender(cfg: BenchConfig): void {
  const flow = new Int32Array(cfg.flow);
  const pool = makePool();
  const report: SenderReport = { sent: 0, lost: 0, blocked: 0, notifies: 0 };
  let next = 0, total = 0, warm = true; // total: accepted including warm-up (flow control)
  let send: (msg: Uint8Array) => boolean;
  let end: () => void;

  if (cfg.variant === "sab-ring") {
    const ctl = new Int32Array(cfg.ctl!);
    const u8 = new Uint8Array(cfg.ring!), i32 = new Int32Array(cfg.ring!);
    const cap = u8.length;
    let w = 0; // only the producer moves the write offset; it stays <= cap - 8
    const wake = () => {
      if (Atomics.load(ctl, SLEEP) === 1 && Atomics.compareExchange(ctl, SLEEP, 1, 0) === 1) {
        Atomics.notify(ctl, SLEEP, 1);
        report.notifies++;
      }
    };
    send = (msg) => {
      const need = recordSize(msg.length);
      const r = Atomics.load(ctl, READ);
      let at = w;
      if (r > w) {
        if (w + need >= r) return false; // would reach the reader: full
      } else if (w + need + 8 > cap) { // does not fit before the end: wrap to 0
        if (need >= r) return false;
        i32[w >> 2] = WRAP;
        at = 0;
      }
      w = writeRecord(u8, i32, at, msg);
      Atomics.store(ctl, WRITE, w);
      wake();
      return true;
    };
    end = () => {
      Atomics.store(ctl, DONE, 1);
      wake();
    };
  } else {
    const port = cfg.port!;
    let pending: Uint8Array[] = [];
    let bytes = 0;
    const flush = () => {
      if (cfg.variant === "mp-batch") port.postMessage(pending);
      else {
        const buf = new ArrayBuffer(bytes);
        const u8 = new Uint8Array(buf), i32 = new Int32Array(buf);
        let off = 0;
        for (const m of pending) off = writeRecord(u8, i32, off, m);
        port.postMessage(buf, [buf]);
      }
      pending = [];
      bytes = 0;
    };
    send = (msg) => {
      if (cfg.variant === "mp-single") port.postMessage(msg);
      else {
        if (pending.length === 0) queueMicrotask(flush);
        pending.push(msg);
        bytes += recordSize(msg.length);
      }
      return true;
    };
    end = () => port.postMessage("end");
  }

  const produce = () => {
    const msg = pool[next++ % POOL]; // ≤ POOL per macrotask, so a pending template is not reused
    stampF64[0] = warm ? 0 : wallNow();
    msg.set(stampU8, 0);
    if (!send(msg)) return void report.lost++;
    total++;
    report.sent++;
  };
  const finish = () => {
    end();
    self.postMessage(report);
  };

  self.onmessage = () => { // "start"
    const t0 = performance.now();
    const over = () => {
      const t = performance.now() - t0;
      if (warm && t >= WARMUP_MS) {
        warm = false;
        Object.assign(report, { sent: 0, lost: 0, blocked: 0, notifies: 0 });
        self.postMessage("warm");
      }
      return t >= WARMUP_MS + cfg.durationMs || next >= MAX_MESSAGES;
    };
    if (cfg.mode === "paced") {
      const id = setInterval(() => {
        if (over()) {
          clearInterval(id);
          return finish();
        }
        const due = Math.floor((performance.now() - t0) * cfg.rate / 1000) - next;
        for (let i = 0; i < Math.min(due, POOL); i++) produce();
      }, 1);
      return;
    }
    const loop = new MessageChannel(); // zero-delay macrotask (nested setTimeout is clamped)
    const tick = () => {
      if (over()) {
        loop.port1.close();
        return finish();
      }
      for (let i = 0; i < cfg.batch; i++) {
        if (total - Atomics.load(flow, 0) >= WINDOW) {
          report.blocked++;
          return void setTimeout(tick, 1);
        }
        produce();
      }
      loop.port2.postMessage(null);
    };
    loop.port1.onmessage = tick;
    tick();
  };
}

function runReceiver(cfg: BenchConfig): void {
  const flow = new Int32Array(cfg.flow);
  const hist = new Uint32Array(HIST_US);
  let taken = 0; // including warm-up messages (flow control)
  const rep: ReceiverReport = {
    received: 0,
    wakes: 0,
    p50: 0,
    p99: 0,
    min: Infinity,
    negative: 0,
    checksum: 0,
  };

  const consume = (u8: Uint8Array, off: number, len: number) => {
    for (let i = 0; i < 8; i++) stampU8[i] = u8[off + i];
    taken++;
    rep.checksum += u8[off + 8] + u8[off + (len >> 1)] + u8[off + len - 1];
    if (stampF64[0] === 0) return;
    if (rep.received === 0) rep.wakes = 1; // count wake-ups from the first measured message on
    const us = (wallNow() - stampF64[0]) * 1000;
    if (us < rep.min) rep.min = us;
    if (us < -1) rep.negative++;
    hist[Math.max(0, Math.min(HIST_US - 1, Math.floor(us)))]++;
    rep.received++;
  };
  const finish = () => {
    const rank = (q: number) => {
      const target = Math.ceil(rep.received * q);
      for (let i = 0, seen = 0; i < HIST_US; i++) if ((seen += hist[i]) >= target) return i;
      return HIST_US;
    };
    rep.p50 = rank(0.5);
    rep.p99 = rank(0.99);
    self.postMessage(rep);
  };

  if (cfg.variant !== "sab-ring") {
    cfg.port!.onmessage = ({ data }) => {
      rep.wakes++;
      if (data === "end") return finish();
      if (data instanceof ArrayBuffer) { // mp-transfer: packed records, read in place
        const u8 = new Uint8Array(data), i32 = new Int32Array(data);
        for (let off = 0; off < u8.length; off += recordSize(i32[off >> 2])) {
          consume(u8, off + 8, i32[off >> 2]);
        }
      } else if (Array.isArray(data)) { for (const m of data) consume(m, 0, m.length); }
      else consume(data, 0, data.length);
      Atomics.store(flow, 0, taken);
    };
    return;
  }

  const ctl = new Int32Array(cfg.ctl!);
  const u8 = new Uint8Array(cfg.ring!), i32 = new Int32Array(cfg.ring!);
  let r = 0;
  const drain = (): number => { // everything published so far; copies each record out
    const w = Atomics.load(ctl, WRITE);
    let n = 0;
    while (r !== w) {
      const len = i32[r >> 2];
      if (len === WRAP) {
        r = 0;
        continue;
      }
      const msg = u8.slice(r + 8, r + 8 + len);
      consume(msg, 0, len);
      r += recordSize(len);
      if ((++n & 63) === 0) Atomics.store(ctl, READ, r);
    }
    Atomics.store(ctl, READ, r);
    Atomics.store(flow, 0, taken);
    return n;
  };
  const wake = () => {
    rep.wakes++;
    Atomics.store(ctl, SLEEP, 0);
    const until = performance.now() + 50; // bound one wake-up; then yield to the event loop
    while (performance.now() < until) {
      if (drain() > 0) continue;
      if (Atomics.load(ctl, DONE) === 1) { // DONE is stored after the last WRITE
        if (drain() === 0) return finish();
        continue;
      }
      Atomics.store(ctl, SLEEP, 1); // announce sleep, then re-check to avoid a lost wake-up
      if (Atomics.load(ctl, WRITE) !== r || Atomics.load(ctl, DONE) === 1) {
        Atomics.store(ctl, SLEEP, 0);
        continue;
      }
      const res = Atomics.waitAsync(ctl, SLEEP, 1, 100);
      if (!res.async) continue; // the producer already cleared SLEEP
      res.value.then(wake);
      return;
    }
    setTimeout(wake, 0);
  };
  wake();
}
