/**
 * zod and smol-toml stay out of the reader workers (issue 11, memory at rest): the supervisor
 * validates the config, workers get plain data, and each built-in plugin's `worker` hook lives in
 * a module of its own (plugins/NAME_worker.ts) that imports no schema. zod costs ≈7 MB of RSS in
 * every worker isolate that loads it.
 *
 * - The static graph of the worker entry (core/worker.ts) and of every built-in worker module
 *   (what `deno info --json` lists as code imports, type-only and dynamic imports left out: the
 *   registry's definition loaders are dynamic and a worker never calls them for a built-in) has
 *   no `npm:zod` and no `npm:smol-toml`.
 * - Each built-in definition's `worker` is the very function of its worker module.
 * - In a real Web Worker, building every built-in plugin as a reader worker does leaves zod
 *   unloaded.
 * @module
 */
import assert from "node:assert/strict";
import { builtinWorkerFiles, REPO_ROOT, WORKER_MODULE } from "../scripts/compile.ts";
import { BUILTIN_PLUGINS, BUILTIN_WORKERS } from "../core/plugin/registry.ts";
import { resolveConfig } from "../core/config/load.ts";

/** Packages a reader worker must not load. */
const FORBIDDEN = /^npm:\/?(zod|smol-toml)@/;

interface InfoDependency {
  code?: { specifier: string };
  type?: { specifier: string };
  isDynamic?: boolean;
}

/**
 * The modules `root` (repo-relative) loads when it is evaluated: its static code imports,
 * transitively (type-only and dynamic imports left out), npm packages by their resolved
 * specifier (`npm:/zod@4.6.7`). Each maps to the module that imports it (the root: to "").
 */
async function staticGraph(root: string): Promise<Map<string, string>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `${REPO_ROOT}/${root}`],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: { specifier: string; dependencies?: InfoDependency[] }[];
    redirects: Record<string, string>;
  };
  const byUrl = new Map(info.modules.map((m) => [m.specifier, m]));
  const importer = new Map<string, string>();
  const queue: [string, string][] = info.roots.map((r) => [r, ""]);
  while (queue.length > 0) {
    const [given, from] = queue.pop()!;
    const url = info.redirects[given] ?? given;
    if (importer.has(url)) continue;
    importer.set(url, from);
    for (const dep of byUrl.get(url)?.dependencies ?? []) {
      if (dep.code !== undefined && !dep.isDynamic) queue.push([dep.code.specifier, url]);
    }
  }
  return importer;
}

/** The forbidden packages in a graph, each with the chain of imports that brings it in. */
function forbiddenIn(graph: Map<string, string>): string[] {
  const short = (url: string) => url.replace(`file://${REPO_ROOT}/`, "");
  return [...graph.keys()].filter((url) => FORBIDDEN.test(url)).map((url) => {
    const chain = [url];
    for (let at = graph.get(url); at; at = graph.get(at)) chain.push(at);
    return chain.map(short).join(" ← ");
  });
}

Deno.test("worker graph: no zod or smol-toml in what a reader worker imports", async () => {
  const roots = [WORKER_MODULE, ...await builtinWorkerFiles()];
  assert.equal(roots.length, 1 + Object.keys(BUILTIN_PLUGINS).length);
  const found: string[] = [];
  for (const root of roots) found.push(...forbiddenIn(await staticGraph(root)));
  assert.deepEqual(found, [], `imported in reader workers:\n${found.join("\n")}`);
});

Deno.test("worker graph: the check sees zod and smol-toml where they are", async () => {
  assert.match(
    forbiddenIn(await staticGraph("plugins/tcp.ts")).join("\n"),
    /zod@.* ← plugins\/tcp\.ts$/m,
  );
  assert.match(
    forbiddenIn(await staticGraph("core/config/load.ts")).join("\n"),
    /smol-toml@.* ← core\/config\/load\.ts$/m,
  );
});

Deno.test("worker graph: each built-in definition's worker is its worker module's", async () => {
  assert.deepEqual(Object.keys(BUILTIN_WORKERS).sort(), Object.keys(BUILTIN_PLUGINS).sort());
  for (const [name, load] of Object.entries(BUILTIN_PLUGINS)) {
    const def = (await load()).default;
    const { worker } = await BUILTIN_WORKERS[name]();
    assert.equal(typeof worker, "function", name);
    assert.equal(
      def.worker,
      worker,
      `${name}: the definition's worker is plugins/${name}_worker.ts's`,
    );
  }
});

Deno.test("worker graph: a Web Worker builds every built-in plugin without loading zod", async () => {
  const config = await resolveConfig(
    // Listeners are not bound here: building plugins binds nothing.
    [
      '[[listen]]\naddress = "tcp:127.0.0.1:0"',
      ...Object.keys(BUILTIN_PLUGINS).map((name) => `[plugins.${name}]`),
    ].join("\n"),
    "probe.toml",
  );
  const names = config.plugins.map((p) => p.name);
  assert.deepEqual([...names].sort(), Object.keys(BUILTIN_PLUGINS).sort());
  const worker = new Worker(new URL("./support/zod_probe_worker.ts", import.meta.url), {
    type: "module",
  });
  const reply = await new Promise<Record<string, unknown>>((resolve, reject) => {
    worker.onmessage = (event) => resolve(event.data);
    worker.onerror = (event) => {
      event.preventDefault();
      reject(new Error(event.message));
    };
    worker.postMessage({ plugins: config.plugins });
  });
  worker.terminate();
  assert.equal(reply.error, undefined, String(reply.error));
  assert.deepEqual(reply.built, names);
  assert.equal(reply.afterBuild, false, "zod was loaded by building the built-in plugins");
  assert.equal(reply.afterDefinition, true, "the probe sees zod once a definition is imported");
});
