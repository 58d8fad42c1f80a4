import assert from "node:assert/strict";
import type { ResolvedPlugin } from "../config/load.ts";
import { buildWorkerPlugins } from "./worker_plugins.ts";

/** Events the test plugin records (module state is shared by every instance in this thread). */
declare global {
  var workerPluginsTestEvents: string[] | undefined;
}

/** A user plugin module in a temp folder: records worker/reload/commit/close per instance. */
function writeRecorder(dir: string, options: { reload: boolean; failOn?: number }): string {
  const path = `${dir}/recorder_${options.reload ? "r" : "n"}_${options.failOn ?? 0}.ts`;
  Deno.writeTextFileSync(
    path,
    `import { z } from "npm:zod@^4.6.7";
let next = 0;
const events = () => (globalThis.workerPluginsTestEvents ??= []);
export default {
  name: "recorder",
  kind: "router",
  description: "records its life cycle",
  config: z.strictObject({ n: z.number() }),
  worker: (cfg) => {
    if (cfg.n === ${options.failOn ?? -1}) throw new Error("n is unlucky");
    const id = ++next;
    events().push("worker " + id + " n=" + cfg.n);
    return {
      router: { route: () => undefined },
      ${
      options.reload
        ? `reload: (c) => {
        if (c.n === ${options.failOn ?? -1}) throw new Error("cannot reload to " + c.n);
        events().push("reload " + id + " n=" + c.n);
        return () => events().push("commit " + id + " n=" + c.n);
      },`
        : ""
    }
      close: () => events().push("close " + id),
    };
  },
};
`,
  );
  return new URL(`file://${path}`).href;
}

function plugin(name: string, config: unknown, moduleUrl?: string): ResolvedPlugin {
  return { name, kind: "router", moduleUrl, config };
}

Deno.test("worker plugins: kept, reloaded, replaced, added and removed", async (t) => {
  const dir = Deno.makeTempDirSync({ prefix: "sipedge_worker_plugins_" });
  const events = () => globalThis.workerPluginsTestEvents ??= [];
  try {
    const withReload = writeRecorder(dir, { reload: true, failOn: 13 });
    const withoutReload = writeRecorder(dir, { reload: false });

    await t.step("a changed plugin with reload() is reloaded in two phases", async () => {
      events().length = 0;
      const first = await buildWorkerPlugins([plugin("a", { n: 1 }, withReload)], [], 0);
      first.commit();
      assert.deepEqual(events(), ["worker 1 n=1"]);
      const second = await buildWorkerPlugins(
        [plugin("a", { n: 2 }, withReload)],
        first.plugins,
        0,
      );
      assert.deepEqual(second.changes, new Map([["a", "reloaded"]]));
      assert.deepEqual(events(), ["worker 1 n=1", "reload 1 n=2"], "nothing applied yet");
      second.commit();
      assert.deepEqual(events().at(-1), "commit 1 n=2");
      assert.equal(second.plugins[0].instance, first.plugins[0].instance, "same instance");

      const same = await buildWorkerPlugins([plugin("a", { n: 2 }, withReload)], second.plugins, 0);
      assert.deepEqual(same.changes, new Map([["a", "kept"]]));
      same.commit();
      assert.equal(events().length, 3, "an unchanged plugin is not touched");
    });

    await t.step("a failing reload() rejects the build and names the plugin", async () => {
      const first = await buildWorkerPlugins([plugin("a", { n: 1 }, withReload)], [], 0);
      first.commit();
      await assert.rejects(
        buildWorkerPlugins([plugin("a", { n: 13 }, withReload)], first.plugins, 0),
        /plugin a: reload\(\) threw: cannot reload to 13/,
      );
    });

    await t.step("without reload(): a new instance; the old one closes on commit", async () => {
      events().length = 0;
      const first = await buildWorkerPlugins([plugin("b", { n: 1 }, withoutReload)], [], 0);
      first.commit();
      const second = await buildWorkerPlugins(
        [plugin("b", { n: 2 }, withoutReload)],
        first.plugins,
        0,
      );
      assert.deepEqual(second.changes, new Map([["b", "replaced"]]));
      assert.deepEqual(events(), ["worker 1 n=1", "worker 2 n=2"]);
      second.commit();
      await new Promise((r) => setTimeout(r, 0));
      assert.deepEqual(events().at(-1), "close 1");
    });

    await t.step("abort closes what the build made and leaves the running ones", async () => {
      events().length = 0;
      const first = await buildWorkerPlugins([plugin("b", { n: 1 }, withoutReload)], [], 0);
      first.commit();
      const second = await buildWorkerPlugins(
        [plugin("b", { n: 1 }, withoutReload), plugin("c", { n: 5 }, withoutReload)],
        first.plugins,
        0,
      );
      assert.deepEqual(second.changes, new Map([["b", "kept"], ["c", "added"]]));
      await second.abort();
      assert.deepEqual(events(), ["worker 3 n=1", "worker 4 n=5", "close 4"]);
    });

    await t.step("a removed plugin closes on commit", async () => {
      events().length = 0;
      const first = await buildWorkerPlugins([plugin("b", { n: 1 }, withoutReload)], [], 0);
      first.commit();
      const second = await buildWorkerPlugins([], first.plugins, 0);
      assert.deepEqual(second.changes, new Map([["b", "removed"]]));
      assert.deepEqual(events(), ["worker 5 n=1"]);
      second.commit();
      await new Promise((r) => setTimeout(r, 0));
      assert.deepEqual(events(), ["worker 5 n=1", "close 5"]);
    });

    await t.step("a new module version is a new instance even with reload()", async () => {
      const first = await buildWorkerPlugins([plugin("a", { n: 1 }, withReload)], [], 0);
      first.commit();
      const next = { ...plugin("a", { n: 1 }, withReload), version: "2" };
      const second = await buildWorkerPlugins([next], first.plugins, 0);
      assert.deepEqual(second.changes, new Map([["a", "replaced"]]));
      await second.abort();
    });

    await t.step(
      "a worker() that throws fails the build; instances made before close",
      async () => {
        const failing = writeRecorder(dir, { reload: false, failOn: 7 });
        events().length = 0;
        await assert.rejects(
          buildWorkerPlugins(
            [plugin("ok", { n: 1 }, withoutReload), plugin("bad", { n: 7 }, failing)],
            [],
            0,
          ),
          /plugin bad: worker\(\) threw: n is unlucky/,
        );
        assert.deepEqual(events(), ["worker 6 n=1", "close 6"]);
      },
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
