/**
 * Run by tests/shape_retention_test.ts under `--optimize-for-size --expose-gc --trace-deopt
 * --allow-natives-syntax`: frames and forwards a request many times over (so that V8 optimizes
 * the path), then forces memory-reducing collections between further runs, and prints whether
 * forwardRequest is optimized before them. A class made the same way but
 * not kept (`Unkept`) is the control: its code must be deoptimized by those collections, which
 * shows the mechanism is there to be avoided.
 * @module
 */
import { StreamFramer } from "../../core/sip/stream_framer.ts";
import { forwardRequest } from "../../core/proxy/forward_request.ts";
import { OPTIONS_REQUEST } from "../../scripts/hot_path_messages.ts";
import { HOT_PATH_SOURCE, hotPathHost } from "../../scripts/hot_path_host.ts";

const sent = { bytes: 0 };
const host = hotPathHost(sent);
const source = HOT_PATH_SOURCE;

/** The control: a per-call object of a class nobody keeps. */
class Unkept {
  readonly text: string;
  readonly at: number;
  constructor(text: string, at: number) {
    this.text = text;
    this.at = at;
  }
  unkeptLength(): number {
    return this.text.length + this.at;
  }
}

function unkeptWork(i: number): number {
  return new Unkept("x", i).unkeptLength();
}

const framer = new StreamFramer({ maxMessageSize: 65535 });
let control = 0;
const run = (times: number) => {
  for (let i = 0; i < times; i++) {
    framer.feed(OPTIONS_REQUEST, (frame) => {
      if (frame.type === "message") forwardRequest(host, source, frame);
    });
    control += unkeptWork(i);
  }
};
const gc = (globalThis as unknown as { gc: () => void }).gc;
/** V8's optimization status bits of a function (--allow-natives-syntax): 32 Maglev, 64 TurboFan. */
const optimizationStatus = new Function("f", "return %GetOptimizationStatus(f);") as (
  f: unknown,
) => number;
run(200_000);
console.log(`PROBE OPTIMIZED ${(optimizationStatus(forwardRequest) & (32 | 64)) !== 0}`);
for (let round = 0; round < 3; round++) {
  gc();
  run(20_000);
}
console.log(`PROBE DONE sent=${sent.bytes} control=${control}`);
