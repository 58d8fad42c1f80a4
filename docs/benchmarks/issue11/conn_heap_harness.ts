// Per-connection heap harness (issue 11, per_connection_breakdown.md): sipedge's WorkerEngine
// (the code a reader worker runs: listeners, ConnectionManager, Connection, the tcp and tls
// plugins) in the main isolate of one process, with no supervisor and no Web Worker, so that
// `gc()` can be forced before the heap is read.
//
//   deno run -A --unstable-net --v8-flags=--expose-gc,--optimize-for-size \
//     --config SRC/deno.json conn_heap_harness.ts SRC CONFIG.toml
//
// SRC: the sipedge tree to load (so that two trees can be compared). On SIGUSR1 it runs gc()
// twice and prints `MEM conns=… heapUsed=… heapTotal=… external=… rss=…`. On SIGUSR2 it writes
// a heap snapshot to `$SNAPSHOT_PREFIX-<n>.heapsnapshot` (n = 1, 2, …; see heap_diff.py).
const [src, config] = Deno.args;
const { loadConfig } = await import(`${src}/core/config/load.ts`);
const { WorkerEngine } = await import(`${src}/core/worker_engine.ts`);
const { createSharedBuffer } = await import(`${src}/core/policy/shared_counters.ts`);

import v8 from "node:v8";

const resolved = await loadConfig(config);
const engine = new WorkerEngine({ config: resolved, workerId: 0, shared: createSharedBuffer(1) });
const bound = await engine.start();
console.log(`READY ${JSON.stringify(bound)}`);

const gc = (globalThis as { gc?: () => void }).gc;
Deno.addSignalListener("SIGUSR1", () => {
  gc?.();
  gc?.();
  const m = Deno.memoryUsage();
  console.log(
    `MEM conns=${engine.connections.size} heapUsed=${m.heapUsed} heapTotal=${m.heapTotal} ` +
      `external=${m.external} rss=${m.rss}`,
  );
});

let snapshots = 0;
Deno.addSignalListener("SIGUSR2", () => {
  const file = `${Deno.env.get("SNAPSHOT_PREFIX") ?? "/tmp/harness"}-${++snapshots}.heapsnapshot`;
  console.log(`SNAPSHOT ${v8.writeHeapSnapshot(file)}`);
});
