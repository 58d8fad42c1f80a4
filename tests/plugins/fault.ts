/**
 * A router plugin with faults on request, for the worker supervision tests: the Request-URI's
 * user part says what to do.
 *
 * - `exit`: the worker closes itself (as a plugin calling `close()` would), after answering 200.
 * - `spin`: the worker's event loop is blocked for `;ms=N` milliseconds, then answers 200.
 * - `spin-forever`: the event loop never comes back (Deno cannot stop such a thread).
 * - anything else: routed to `upstream`.
 *
 * With `marker` set, `worker()` throws while that file exists (a worker that cannot start).
 * @module
 */
import { z } from "zod";
import type { PluginDefinition } from "../../core/plugin/types.ts";
import { parseDestination } from "../../core/transport/destination.ts";

const config = z.strictObject({
  upstream: z.string(),
  marker: z.string().default(""),
});

const plugin: PluginDefinition<z.output<typeof config>> = {
  name: "fault",
  kind: "router",
  description: "Faults on request (tests only).",
  config,
  worker(cfg) {
    if (cfg.marker !== "") {
      let present = false;
      try {
        Deno.statSync(cfg.marker);
        present = true;
      } catch {
        // no marker: start normally
      }
      if (present) throw new Error(`marker ${cfg.marker} present`);
    }
    const upstream = parseDestination(cfg.upstream);
    return {
      router: {
        route(request) {
          const user = request.uri?.user;
          if (user === "exit") {
            setTimeout(() => self.close(), 50);
            return { reply: { status: 200, reason: "Closing" } };
          }
          if (user === "spin") {
            const until = Date.now() + Number(request.uri!.params.get("ms") ?? 1000);
            while (Date.now() < until) {
              // blocks the event loop
            }
            return { reply: { status: 200, reason: "Spun" } };
          }
          if (user === "spin-forever") {
            while (user.length > 0) {
              // never yields
            }
          }
          return { destination: upstream };
        },
      },
    };
  },
};

export default plugin;
