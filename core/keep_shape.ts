/**
 * One instance of each per-message class, kept for as long as the isolate runs.
 *
 * V8 gives objects of a class their hidden class (a "map") by transitions from the class's
 * initial map as the constructor adds fields, and holds those transitions weakly: a map with no
 * object left is freed by a garbage collection that reduces memory, and every function compiled
 * against it is deoptimized. With `--optimize-for-size` (the runtime flag sipedge runs with, for
 * its memory: docs/decisions.md) every major collection reduces memory and V8 retains no maps
 * then. Objects made per message (a request's edit list, its Via parameters, a frame, a source)
 * are all dead between messages, so each major collection threw away the optimized hot path —
 * `forwardRequest`, the framer, the Via parser, the edit builder — and the worker ran it in
 * lower tiers while V8 compiled it again (measured: 62 such deoptimizations and 87 optimizing
 * compiles in 30 s at 10,000 tx/s; none with one instance of each class kept).
 * @module
 */

const kept: object[] = [];

/** Keeps `instance` (and so its class's map) alive; returns it. */
export function keepShapeOf<T extends object>(instance: T): T {
  kept.push(instance);
  return instance;
}
