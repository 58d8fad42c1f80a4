/**
 * One instance of each per-message class, kept for as long as the isolate runs.
 *
 * V8 gives objects of a class their hidden class (a "map") by transitions from the class's
 * initial map as the constructor adds fields, and holds those transitions weakly: a map with no
 * object left is freed by a garbage collection that reduces memory (V8 retains no maps then), and
 * every function compiled against it is deoptimized. Objects made per message (a request's edit
 * list, its Via parameters, a frame, a source) are all dead between messages, so each such
 * collection threw away the optimized hot path -- `forwardRequest`, the framer, the Via parser,
 * the edit builder -- and the worker ran it in lower tiers while V8 compiled it again. Under
 * `--optimize-for-size`, which sipedge ran with until the fifth pass of issue 11, every major
 * collection reduces memory (measured: 62 such deoptimizations and 87 optimizing compiles in 30 s
 * at 10,000 tx/s; none with one instance of each class kept); with the present flags V8's memory
 * reducer still runs some (docs/decisions.md).
 * @module
 */

const kept: object[] = [];

/** Keeps `instance` (and so its class's map) alive; returns it. */
export function keepShapeOf<T extends object>(instance: T): T {
  kept.push(instance);
  return instance;
}
