/**
 * `deno task compile [--plugin FILE]... [--output FILE] [--verify-only]`: builds sipedge as one
 * executable (`dist/sipedge` by default) with `deno compile`, embedding what a compiled binary
 * cannot find on its own:
 *
 * - the reader worker's module (`core/worker.ts`: started with `new Worker(new URL(...))`,
 *   which `deno compile` does not follow),
 * - every built-in plugin and its worker module (the modules `BUILTIN_PLUGINS` and
 *   `BUILTIN_WORKERS` in core/plugin/registry.ts import, read from Deno's own module graph, so
 *   a new built-in plugin is embedded without a change here),
 * - the user plugins given with `--plugin`, listed by name in a generated module
 *   (`dist/embedded_plugins.ts`) that the registry reads in the binary: a compiled binary
 *   cannot import a module that was not embedded (deno issue 18327).
 *
 * `deno compile` needs Deno's runtime binary, `denort`. It downloads it from Deno's server
 * unless `DENORT_BIN` names a local copy (the `denort` of the same Deno version).
 *
 * After building, the embedded files Deno lists are checked against the code modules sipedge
 * needs (the `deno info` graph of main.ts, the worker and every plugin, type-only imports left
 * out); a missing one fails the build. `--verify-only` does just that with a stand-in for
 * denort (this deno executable: the payload and listing are the same, the output does not run
 * and is deleted): what CI can check without denort.
 * @module
 */
import { dirname, relative, resolve } from "node:path";
import { BUILTIN_PLUGINS, BUILTIN_WORKERS, loadPlugin } from "../core/plugin/registry.ts";

/** The repository root (holds main.ts and deno.json). */
export const REPO_ROOT: string = resolve(new URL("..", import.meta.url).pathname);

/** The generated list of embedded user plugins (read by core/plugin/registry.ts). */
export const MANIFEST = "dist/embedded_plugins.ts";

/** The reader worker's entry module (started by URL from core/supervisor.ts). */
export const WORKER_MODULE = "core/worker.ts";

/** Runtime flags baked into the binary: the same as `deno task start`. */
export const RUNTIME_FLAGS: readonly string[] = [
  "--unstable-net",
  "--allow-net",
  "--allow-read",
  "--allow-env",
  "--allow-ffi",
  "--no-code-cache",
  "--v8-flags=--max-semi-space-size=1",
];

/** Default output. */
export const DEFAULT_OUTPUT = "dist/sipedge";

/** A user plugin to embed. */
export interface ExtraPlugin {
  /** The plugin's name (its definition's `name`): the `[plugins.NAME]` table in the binary. */
  name: string;
  /** Absolute path of its module. */
  path: string;
}

/** What `deno compile` gets. */
export interface CompilePlan {
  /** Repo-relative paths (or absolute ones outside the repo) passed with `--include`. */
  includes: string[];
  /** Built-in plugin modules (definitions), repo-relative. */
  builtins: string[];
  /** The built-in plugins' worker modules, repo-relative. */
  builtinWorkers: string[];
  extras: ExtraPlugin[];
  /** Arguments after `deno`. */
  args: string[];
}

interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
}

/** `deno info --json` of a module (absolute path). */
async function denoInfo(path: string): Promise<{ roots: string[]; modules: InfoModule[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", path],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno info ${path} failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/**
 * The local files a module needs at run time: itself and what it imports (statically or by
 * a dynamic import with a literal specifier), transitively; type-only imports are left out
 * (they are erased and `deno compile` does not embed them). Absolute paths.
 */
export async function codeClosure(path: string): Promise<Set<string>> {
  const info = await denoInfo(path);
  const byUrl = new Map(info.modules.map((m) => [m.specifier, m]));
  const out = new Set<string>();
  const queue = [...info.roots];
  while (queue.length > 0) {
    const url = queue.pop()!;
    if (!url.startsWith("file:")) continue;
    const file = decodeURIComponent(new URL(url).pathname);
    if (out.has(file)) continue;
    out.add(file);
    for (const dep of byUrl.get(url)?.dependencies ?? []) {
      if (dep.code !== undefined) queue.push(dep.code.specifier);
    }
  }
  return out;
}

/** The dynamic imports of core/plugin/registry.ts under plugins/, repo-relative, sorted. */
async function registryPluginImports(): Promise<string[]> {
  const info = await denoInfo(`${REPO_ROOT}/core/plugin/registry.ts`);
  const registry = info.modules.find((m) => m.specifier === info.roots[0]);
  return (registry?.dependencies ?? [])
    .map((d) => d.code?.specifier)
    .filter((s): s is string => s !== undefined && s.startsWith("file:"))
    .map((s) => relative(REPO_ROOT, decodeURIComponent(new URL(s).pathname)))
    .filter((p) => p.startsWith("plugins/"))
    .sort();
}

/** Whether a module is a built-in plugin's worker side (`plugins/NAME_worker.ts`). */
function isWorkerModule(file: string): boolean {
  return file.endsWith("_worker.ts");
}

/**
 * The built-in plugin modules (definitions), repo-relative: the dynamic imports of
 * core/plugin/registry.ts under plugins/ that are not worker modules. Throws when their number
 * differs from `BUILTIN_PLUGINS` (an import Deno cannot see, which the binary would lack).
 */
export async function builtinPluginFiles(): Promise<string[]> {
  const files = (await registryPluginImports()).filter((f) => !isWorkerModule(f));
  const names = Object.keys(BUILTIN_PLUGINS);
  if (files.length !== names.length) {
    throw new Error(
      `core/plugin/registry.ts has ${names.length} built-in plugins (${names.join(", ")}) but ` +
        `Deno sees ${files.length} plugin imports (${files.join(", ")}): every built-in ` +
        'plugin must be imported with a literal specifier (import("../../plugins/x.ts"))',
    );
  }
  return files;
}

/**
 * The built-in plugins' worker modules (`plugins/NAME_worker.ts`, what reader workers load),
 * repo-relative, read from Deno's graph of core/plugin/registry.ts like
 * {@link builtinPluginFiles}. Throws when they are not one per name of `BUILTIN_WORKERS`.
 */
export async function builtinWorkerFiles(): Promise<string[]> {
  const files = (await registryPluginImports()).filter(isWorkerModule);
  const expected = Object.keys(BUILTIN_WORKERS).map((n) => `plugins/${n}_worker.ts`).sort();
  if (JSON.stringify(files) !== JSON.stringify(expected)) {
    throw new Error(
      `core/plugin/registry.ts: BUILTIN_WORKERS should import ${expected.join(", ")} but Deno ` +
        `sees ${files.join(", ") || "none"}: every worker module must be imported with a ` +
        'literal specifier (import("../../plugins/x_worker.ts"))',
    );
  }
  return files;
}

/** Imports each `--plugin` module to check it and read its name. */
export async function resolveExtraPlugins(paths: string[]): Promise<ExtraPlugin[]> {
  const extras: ExtraPlugin[] = [];
  for (const given of paths) {
    const path = resolve(given);
    const def = await loadPlugin(
      { name: `(--plugin ${given})`, moduleUrl: new URL(`file://${path}`).href },
      { standalone: false, embedded: {} },
    );
    if (def.name in BUILTIN_PLUGINS) {
      throw new Error(`--plugin ${given}: "${def.name}" is the name of a built-in plugin`);
    }
    if (!/^[A-Za-z0-9_-]+$/.test(def.name)) {
      throw new Error(`--plugin ${given}: plugin name "${def.name}" is not a plain TOML key`);
    }
    const twin = extras.find((e) => e.name === def.name);
    if (twin !== undefined) {
      throw new Error(`--plugin ${given}: "${def.name}" is also the name of ${twin.path}`);
    }
    extras.push({ name: def.name, path });
  }
  return extras;
}

/** The text of dist/embedded_plugins.ts: name → loader, with paths relative to dist/. */
export function manifestSource(extras: readonly ExtraPlugin[]): string {
  const dir = dirname(resolve(REPO_ROOT, MANIFEST));
  const lines = extras.map((e) => {
    let specifier = relative(dir, e.path);
    if (!specifier.startsWith(".")) specifier = `./${specifier}`;
    return `  ${JSON.stringify(e.name)}: () => import(${JSON.stringify(specifier)}),`;
  });
  return `// Generated by scripts/compile.ts: the user plugins embedded in one build of sipedge.\n` +
    `// A compiled binary loads [plugins.NAME] from here (core/plugin/registry.ts).\n` +
    `export default {\n${lines.join("\n")}${lines.length > 0 ? "\n" : ""}};\n`;
}

/** The `deno compile` arguments for a build. */
export async function planCompile(
  extras: readonly ExtraPlugin[],
  output: string,
  options: { check?: boolean } = {},
): Promise<CompilePlan> {
  const builtins = await builtinPluginFiles();
  const builtinWorkers = await builtinWorkerFiles();
  const extraIncludes = extras.map((e) => {
    const rel = relative(REPO_ROOT, e.path);
    return rel.startsWith("..") ? e.path : rel;
  });
  const includes = [WORKER_MODULE, ...builtins, ...builtinWorkers, MANIFEST, ...extraIncludes];
  const args = [
    "compile",
    ...(options.check === false ? ["--no-check"] : []),
    ...RUNTIME_FLAGS,
    ...includes.flatMap((i) => ["--include", i]),
    "--output",
    output,
    "main.ts",
  ];
  return { includes, builtins, builtinWorkers, extras: [...extras], args };
}

/** Every code module the binary needs, absolute paths. */
export async function requiredFiles(plan: CompilePlan): Promise<Set<string>> {
  const roots = [
    "main.ts",
    WORKER_MODULE,
    ...plan.builtins,
    ...plan.builtinWorkers,
    MANIFEST,
    ...plan.extras.map((e) => e.path),
  ];
  const out = new Set<string>();
  for (const root of roots) {
    for (const file of await codeClosure(resolve(REPO_ROOT, root))) out.add(file);
  }
  return out;
}

/**
 * The files in `deno compile`'s "Embedded Files" tree, as absolute paths under `root` (the
 * folder the tree is relative to: the common folder of the embedded files). `dir/*` (every
 * file of that folder is embedded) is expanded from the disk; npm packages are left out.
 */
export function parseEmbeddedFiles(listing: string, root: string): Set<string> {
  const lines = listing.replace(new RegExp("\u001b\\[[0-9;]*m", "g"), "").split("\n");
  const start = lines.findIndex((l) => l.trim() === "Embedded Files");
  if (start < 0) throw new Error("no 'Embedded Files' listing in the deno compile output");
  const out = new Set<string>();
  const stack: string[] = [];
  for (const line of lines.slice(start + 1)) {
    const match = /^([│├└─┬ ]*?)([├└]─[─┬] )(.+?)(?: \(.*\)| --> .*)?$/.exec(line);
    if (match === null) {
      if (stack.length > 0 && line.trim() === "") break;
      continue;
    }
    const depth = match[1].length / 2;
    const name = match[3];
    stack.length = depth;
    stack.push(name);
    if (stack[0] === ".deno_compile_node_modules") continue;
    const path = `${root}/${stack.join("/")}`;
    if (name.endsWith("/*")) {
      for (const file of walk(path.slice(0, -2))) out.add(file);
    } else if (match[2] === "├── " || match[2] === "└── ") {
      out.add(path);
    }
  }
  return out;
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...walk(path));
    else out.push(path);
  }
  return out;
}

/** The deepest folder holding every path. */
export function commonDir(paths: Iterable<string>): string {
  let common: string[] | undefined;
  for (const p of paths) {
    const parts = dirname(p).split("/");
    if (common === undefined) common = parts;
    else {
      let i = 0;
      while (i < common.length && i < parts.length && common[i] === parts[i]) i++;
      common = common.slice(0, i);
    }
  }
  return (common ?? [""]).join("/") || "/";
}

/** Result of {@link compile}. */
export interface CompileResult {
  plan: CompilePlan;
  /** `deno compile`'s output. */
  output: string;
  /** Needed files that are not embedded (empty when the build is good). */
  missing: string[];
  embedded: Set<string>;
  required: Set<string>;
}

/**
 * Writes the manifest, runs `deno compile` (in the repo root, environment inherited:
 * `DENORT_BIN`), and checks the embedded files. Throws when `deno compile` fails.
 */
export async function compile(
  pluginPaths: string[],
  output: string,
  options: { check?: boolean; env?: Record<string, string> } = {},
): Promise<CompileResult> {
  const extras = await resolveExtraPlugins(pluginPaths);
  const manifest = resolve(REPO_ROOT, MANIFEST);
  await Deno.mkdir(dirname(manifest), { recursive: true });
  await Deno.writeTextFile(manifest, manifestSource(extras));
  const plan = await planCompile(extras, resolve(output), options);
  await Deno.mkdir(dirname(resolve(output)), { recursive: true });
  const out = await new Deno.Command(Deno.execPath(), {
    args: plan.args,
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1", ...options.env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`deno ${plan.args.join(" ")} failed:\n${text}`);
  const required = await requiredFiles(plan);
  const embedded = parseEmbeddedFiles(text, commonDir([...required, `${REPO_ROOT}/deno.json`]));
  const missing = [...required].filter((f) => !embedded.has(f)).sort();
  return { plan, output: text, missing, embedded, required };
}

const USAGE = `usage: deno task compile [--plugin FILE]... [--output FILE] [--verify-only]

  --plugin FILE   also embed this user plugin (repeatable); enable it in config.toml with a
                  [plugins.NAME] table, NAME being the plugin's name
  --output FILE   the executable to write (default ${DEFAULT_OUTPUT})
  --verify-only   build with this deno as a stand-in for denort into a temporary file, check
                  that every module sipedge needs is embedded, delete it (no denort needed)

deno compile needs denort (Deno's runtime binary, same version as this deno); without
DENORT_BIN=/path/to/denort it downloads it from Deno's server.`;

async function main(args: string[]): Promise<number> {
  const plugins: string[] = [];
  let output = DEFAULT_OUTPUT;
  let verifyOnly = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--plugin" && i + 1 < args.length) plugins.push(args[++i]);
    else if (arg.startsWith("--plugin=")) plugins.push(arg.slice(9));
    else if ((arg === "--output" || arg === "-o") && i + 1 < args.length) output = args[++i];
    else if (arg === "--verify-only") verifyOnly = true;
    else if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      return 0;
    } else {
      console.error(`compile: unknown argument ${arg}\n${USAGE}`);
      return 2;
    }
  }
  const env: Record<string, string> = {};
  let temp: string | undefined;
  if (verifyOnly) {
    temp = await Deno.makeTempDir({ prefix: "sipedge_compile_" });
    output = `${temp}/sipedge`;
    env.DENORT_BIN = Deno.execPath();
  } else if (Deno.env.get("DENORT_BIN") === undefined) {
    console.error(
      "compile: DENORT_BIN is not set: deno compile will download denort from Deno's server " +
        "(set DENORT_BIN=/path/to/denort on a machine that cannot reach it)",
    );
  }
  try {
    const result = await compile(plugins, output, { check: !verifyOnly, env });
    console.log(result.output.trim());
    if (result.missing.length > 0) {
      console.error(
        `compile: the binary lacks modules sipedge needs:\n  ${result.missing.join("\n  ")}`,
      );
      return 1;
    }
    console.log(
      `compile: every module sipedge needs is embedded (${result.required.size} files: ` +
        `worker, built-in plugins ${result.plan.builtins.length}, user plugins ` +
        `${result.plan.extras.map((e) => e.name).join(", ") || "none"})`,
    );
    if (verifyOnly) return 0;
    const version = await new Deno.Command(resolve(output), { args: ["--version"] }).output()
      .then((o) => new TextDecoder().decode(o.stdout).trim(), (e) => `(${e.message})`);
    if (!version.startsWith("sipedge ")) {
      console.error(
        `compile: ${output} --version printed ${JSON.stringify(version)}, not sipedge's ` +
          "version: DENORT_BIN must be denort, not the deno command",
      );
      return 1;
    }
    console.log(`compile: built ${output}: ${version}`);
    return 0;
  } catch (error) {
    console.error(`compile: ${(error as Error).message}`);
    return 1;
  } finally {
    if (temp !== undefined) await Deno.remove(temp, { recursive: true });
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
