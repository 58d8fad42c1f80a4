/**
 * Gives memory that the runtime freed back to the system. Native memory freed by Deno's TLS
 * stack stays in glibc's per-thread arenas (measured: RSS 122 -> 649 MB over 48,000 TLS
 * handshakes, 506 MB still held when idle, 123 MB after `malloc_trim(0)`; the JavaScript heaps
 * return theirs by themselves). So the process calls glibc's `malloc_trim`, checked every
 * `intervalMs`: at once when RSS has grown by `growthBytes` since the last trim, and at most once
 * a minute while RSS stays above what it was at start -- because what is left in the arenas
 * after churn does not show as growth once V8 has given its own pages back (measured: a trim
 * during the load, none after it, 36-48 MB left that a trim would have returned). A trim walks
 * the free memory of the arenas: milliseconds, not per message. Needs `--allow-ffi` and glibc;
 * without either it does nothing.
 * @module
 */
import { getLogger } from "@logtape/logtape";

const log = getLogger(["sipedge", "memory"]);

/** At most this often a trim just because RSS is above its start (see the module comment). */
const PERIODIC_MS = 60_000;
const PERIODIC_ABOVE_START = 16 * 1024 * 1024;

/** Options for {@link startMemoryTrim}. */
export interface MemoryTrimOptions {
  /** How often RSS is checked (default 10 s). */
  intervalMs?: number;
  /** RSS growth since the last trim that triggers one (default 64 MiB). */
  growthBytes?: number;
}

/** A running trimmer. */
export interface MemoryTrim {
  /** Trims now; returns the RSS before and after, in bytes. */
  trim(): { before: number; after: number };
  stop(): void;
}

/** Starts trimming, or returns undefined when `malloc_trim` cannot be called here. */
export function startMemoryTrim(options: MemoryTrimOptions = {}): MemoryTrim | undefined {
  let lib: { symbols: { malloc_trim(pad: bigint): number }; close(): void };
  try {
    lib = Deno.dlopen("libc.so.6", { malloc_trim: { parameters: ["usize"], result: "i32" } });
  } catch (error) {
    log.debug("memory trim off: {error}", { error: (error as Error).message });
    return undefined;
  }
  const growth = options.growthBytes ?? 64 * 1024 * 1024;
  const start = rss();
  let base = start;
  let trimmedAt = Date.now();
  const trim = () => {
    const before = rss();
    lib.symbols.malloc_trim(0n);
    base = rss();
    trimmedAt = Date.now();
    log.debug("malloc_trim: RSS {before} -> {after} bytes", { before, after: base });
    return { before, after: base };
  };
  const timer = setInterval(() => {
    const now = rss();
    if (now - base >= growth) trim();
    else if (Date.now() - trimmedAt >= PERIODIC_MS && now - start >= PERIODIC_ABOVE_START) trim();
  }, options.intervalMs ?? 10_000);
  Deno.unrefTimer(timer);
  return {
    trim,
    stop: () => {
      clearInterval(timer);
      lib.close();
    },
  };
}

/** Resident memory of the process in bytes (from /proc; 0 where there is none). */
function rss(): number {
  try {
    const pages = Number(Deno.readTextFileSync("/proc/self/statm").split(" ")[1]);
    return pages * 4096;
  } catch {
    return Deno.memoryUsage().rss;
  }
}
