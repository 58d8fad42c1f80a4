/**
 * What can be checked about the single binary on a machine without denort (Deno's runtime
 * binary, which `deno compile` downloads from Deno's server):
 *
 * - scripts/compile.ts embeds exactly the registry's built-in plugins, and bakes in the same
 *   runtime flags as `deno task start`;
 * - a real `deno compile` run (with this deno executable standing in for denort: the embedded
 *   payload and Deno's "Embedded Files" listing are the same, the output just does not run)
 *   embeds every code module sipedge needs: main.ts's graph, the worker's (started by URL, which
 *   deno compile does not follow), every built-in plugin and an extra user plugin;
 * - the check fails for a build that leaves the worker out;
 * - the generated list of embedded user plugins loads them, and the registry in a compiled
 *   binary (`standalone`) uses it instead of importing `module` paths.
 *
 * With `DENORT_BIN` naming a real denort, the binary is also built, run (`--version`) and
 * started and stopped with the example plugin routing a request; otherwise that test is skipped.
 * @module
 */
import assert from "node:assert/strict";
import { resolve } from "node:path";
import {
  builtinPluginFiles,
  commonDir,
  compile,
  MANIFEST,
  manifestSource,
  parseEmbeddedFiles,
  planCompile,
  REPO_ROOT,
  requiredFiles,
  resolveExtraPlugins,
  RUNTIME_FLAGS,
  WORKER_MODULE,
} from "../scripts/compile.ts";
import { BUILTIN_PLUGINS, loadPlugin } from "../core/plugin/registry.ts";
import type { PluginDefinition } from "../core/plugin/types.ts";
import headerRouter from "../examples/header_router.ts";
import { freePort } from "./support/sipedge_process.ts";
import { buildRequest, TestUac, TestUas } from "./support/sip_peer.ts";

const EXAMPLE = `${REPO_ROOT}/examples/header_router.ts`;
const MANIFEST_PATH = resolve(REPO_ROOT, MANIFEST);

/** Runs `body` and puts dist/embedded_plugins.ts back as it was (a developer's build). */
async function keepingManifest(body: () => Promise<void>): Promise<void> {
  const before = await Deno.readTextFile(MANIFEST_PATH).catch(() => undefined);
  try {
    await body();
  } finally {
    if (before === undefined) await Deno.remove(MANIFEST_PATH).catch(() => {});
    else await Deno.writeTextFile(MANIFEST_PATH, before);
  }
}

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sipedge_compile_test_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("compile: the embedded built-in plugins are exactly the registry's", async () => {
  const files = await builtinPluginFiles();
  assert.equal(files.length, Object.keys(BUILTIN_PLUGINS).length);
  const byName = new Map<string, PluginDefinition<unknown>>();
  for (const file of files) {
    const def = (await import(`${REPO_ROOT}/${file}`)).default as PluginDefinition<unknown>;
    assert.ok(!byName.has(def.name), `${file}: plugin name ${def.name} twice`);
    byName.set(def.name, def);
  }
  assert.deepEqual([...byName.keys()].sort(), Object.keys(BUILTIN_PLUGINS).sort());
  for (const [name, loader] of Object.entries(BUILTIN_PLUGINS)) {
    assert.equal((await loader()).default, byName.get(name), `${name}: same module`);
  }
});

Deno.test("compile: the binary gets the same runtime flags as `deno task start`", async () => {
  const denoJson = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}/deno.json`));
  const start: string[] = denoJson.tasks.start.split(/\s+/);
  const flags = start.filter((a) => a.startsWith("--") && a !== "--config");
  assert.deepEqual([...flags].sort(), [...RUNTIME_FLAGS].sort());
  assert.match(denoJson.tasks.compile, /scripts\/compile\.ts/);
});

Deno.test("compile: the manifest lists user plugins by name, paths relative to dist/", async () => {
  const extras = await resolveExtraPlugins([EXAMPLE]);
  assert.deepEqual(extras, [{ name: "header_router", path: EXAMPLE }]);
  assert.match(
    manifestSource(extras),
    /"header_router": \(\) => import\("\.\.\/examples\/header_router\.ts"\),/,
  );
  assert.match(manifestSource([]), /export default \{\n\};/);
  await assert.rejects(
    () => resolveExtraPlugins([`${REPO_ROOT}/plugins/tcp.ts`]),
    /name of a built-in plugin/,
  );
  await assert.rejects(() => resolveExtraPlugins([EXAMPLE, EXAMPLE]), /also the name of/);
  await assert.rejects(() => resolveExtraPlugins(["/nonexistent/plugin.ts"]), /cannot import/);
});

Deno.test("compile: a compiled binary loads user plugins from the manifest, never by path", async () => {
  await keepingManifest(async () => {
    await Deno.mkdir(resolve(MANIFEST_PATH, ".."), { recursive: true });
    await Deno.writeTextFile(MANIFEST_PATH, manifestSource(await resolveExtraPlugins([EXAMPLE])));
    const manifest = (await import(`file://${MANIFEST_PATH}?t=${Date.now()}`)).default;
    assert.deepEqual(Object.keys(manifest), ["header_router"]);
    assert.equal((await manifest.header_router()).default, headerRouter);
    const embedded = manifest;
    // The table's `module` (from a config written for running from source) is not imported.
    const def = await loadPlugin(
      { name: "header_router", moduleUrl: "file:///nowhere/header_router.ts" },
      { standalone: true, embedded },
    );
    assert.equal(def, headerRouter);
    assert.equal(
      await loadPlugin({ name: "header_router" }, { standalone: true, embedded }),
      headerRouter,
    );
    await assert.rejects(
      () =>
        loadPlugin({ name: "other", moduleUrl: `file://${EXAMPLE}` }, {
          standalone: true,
          embedded,
        }),
      /has no plugin "other" embedded \(embedded user plugins: header_router\).*deno task compile --plugin/,
    );
    // Built-in names are never taken from the manifest.
    const tcp = await loadPlugin({ name: "tcp" }, {
      standalone: true,
      embedded: {
        tcp: () => Promise.resolve({ default: headerRouter as PluginDefinition<unknown> }),
      },
    });
    assert.equal(tcp.name, "tcp");
    // From source, `module` is imported by path.
    assert.equal(
      await loadPlugin({ name: "x", moduleUrl: `file://${EXAMPLE}` }, { standalone: false }),
      headerRouter,
    );
  });
});

Deno.test("compile: deno compile embeds every module sipedge needs (worker, plugins, a user plugin)", async () => {
  await keepingManifest(() =>
    withTempDir(async (dir) => {
      const result = await compile([EXAMPLE], `${dir}/sipedge`, {
        check: false,
        env: { DENORT_BIN: Deno.execPath() }, // a stand-in: same payload, does not run
      });
      assert.deepEqual(result.missing, [], result.output);
      const needed = [
        "main.ts",
        WORKER_MODULE,
        "core/worker_engine.ts",
        "core/supervisor.ts",
        "core/plugin/registry.ts",
        MANIFEST,
        "examples/header_router.ts",
        ...result.plan.builtins,
        ...result.plan.builtinWorkers,
      ];
      for (const file of needed) {
        assert.ok(result.required.has(`${REPO_ROOT}/${file}`), `${file} counted as needed`);
        assert.ok(result.embedded.has(`${REPO_ROOT}/${file}`), `${file} embedded`);
      }
    })
  );
});

Deno.test("compile: the check catches a build that leaves the worker out", async () => {
  await keepingManifest(() =>
    withTempDir(async (dir) => {
      await Deno.mkdir(resolve(MANIFEST_PATH, ".."), { recursive: true });
      await Deno.writeTextFile(MANIFEST_PATH, manifestSource([]));
      const plan = await planCompile([], `${dir}/sipedge`, { check: false });
      const at = plan.args.indexOf(WORKER_MODULE);
      assert.equal(plan.args[at - 1], "--include");
      const args = [...plan.args.slice(0, at - 1), ...plan.args.slice(at + 1)];
      const out = await new Deno.Command(Deno.execPath(), {
        args,
        cwd: REPO_ROOT,
        env: { NO_COLOR: "1", DENORT_BIN: Deno.execPath() },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.ok(out.success, text);
      const required = await requiredFiles(plan);
      const embedded = parseEmbeddedFiles(text, commonDir([...required]));
      const missing = [...required].filter((f) => !embedded.has(f));
      assert.ok(missing.includes(`${REPO_ROOT}/${WORKER_MODULE}`), missing.join("\n"));
      assert.ok(embedded.has(`${REPO_ROOT}/main.ts`));
    })
  );
});

Deno.test("compile: parseEmbeddedFiles reads Deno's tree (nesting, collapsed folders, dir/*)", () =>
  withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/lib/all`, { recursive: true });
    await Deno.writeTextFile(`${dir}/lib/all/a.ts`, "");
    await Deno.writeTextFile(`${dir}/lib/all/b.ts`, "");
    const listing = `Compile main.ts\n\nEmbedded Files\n\nsipedge
├─┬ .deno_compile_node_modules (8.74MB - 8.33MB unique)
│ └─┬ localhost (8.74MB - 8.33MB unique)
│   └── zod/4.6.7/* (5.93MB - 5.86MB unique)
├─┬ lib (12KB)
│ ├── all/* (1KB)
│ ├── one.ts (1KB)
│ └─┬ deep (1KB)
│   └── two.ts (1KB)
├── main.ts (10KB)
└── x/y/z.ts (1KB)

Files: 8.82MB
`;
    const files = [...parseEmbeddedFiles(listing, dir)].map((f) => f.slice(dir.length + 1));
    assert.deepEqual(files.sort(), [
      "lib/all/a.ts",
      "lib/all/b.ts",
      "lib/deep/two.ts",
      "lib/one.ts",
      "main.ts",
      "x/y/z.ts",
    ]);
    assert.throws(() => parseEmbeddedFiles("Compile main.ts\n", dir), /no 'Embedded Files'/);
  }));

/** A real denort: set, and not this deno executable (which is only a stand-in). */
const DENORT = Deno.env.get("DENORT_BIN");
const realDenort = DENORT !== undefined && DENORT !== "" &&
  Deno.realPathSync(DENORT) !== Deno.realPathSync(Deno.execPath());

Deno.test({
  name: "compile: the built binary runs (needs DENORT_BIN=/path/to/denort)",
  ignore: !realDenort,
  fn: () =>
    keepingManifest(() =>
      withTempDir(async (dir) => {
        const binary = `${dir}/sipedge`;
        const result = await compile([EXAMPLE], binary, { env: { DENORT_BIN: DENORT! } });
        assert.deepEqual(result.missing, []);
        const version = await new Deno.Command(binary, { args: ["--version"] }).output();
        assert.match(new TextDecoder().decode(version.stdout), /^sipedge \d/);

        await using uas = TestUas.listen();
        const port = freePort();
        await Deno.writeTextFile(
          `${dir}/config.toml`,
          `[sipedge]\nworkers = 2\n[control]\naddress = ""\n[[listen]]\n` +
            `address = "tcp:127.0.0.1:${port}"\n[plugins.tcp]\n[plugins.header_router]\n` +
            `[plugins.header_router.routes]\nacme = ["${uas.uri}"]\n`,
        );
        const child = new Deno.Command(binary, {
          args: ["--config", `${dir}/config.toml`],
          cwd: dir,
          stdout: "piped",
          stderr: "piped",
          env: { NO_COLOR: "1" },
        }).spawn();
        let output = "";
        const pump = async (stream: ReadableStream<Uint8Array>) => {
          for await (const chunk of stream.pipeThrough(new TextDecoderStream())) output += chunk;
        };
        const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
        try {
          const deadline = Date.now() + 15_000;
          while (!output.includes("sipedge ready") && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 50));
          }
          assert.match(output, /sipedge ready/);
          await using uac = await TestUac.connect(port);
          const request = buildRequest({ headers: ["X-Tenant: acme"] });
          await uac.send(request.bytes);
          assert.equal((await uac.nextMessage()).status, 200);
          await uas.waitForCallId(request.callId);
        } finally {
          child.kill("SIGTERM");
          const status = await child.status;
          await pumps;
          assert.equal(status.code, 0, output);
        }
      })
    ),
});
