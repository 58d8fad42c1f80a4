/**
 * The `deno task test` entry: runs `deno test` over the project's test folders, streams its
 * output live, and prints as the very last line a plain summary:
 *
 * ```
 * 12 passed, 0 failed
 * 11 passed, 1 failed, 2 skipped
 * ```
 *
 * (skipped = Deno's "ignored" count, shown only when it is not 0). The exit code is deno test's;
 * it is non-zero when no summary line can be found.
 *
 * Extra arguments go to `deno test`, e.g. `deno task test --filter interop`. Arguments that name
 * existing files or folders replace the default folders (core/, plugins/, tests/).
 *
 * @module
 */

/** Counts parsed from Deno's test summary line. */
export interface TestSummary {
  /** Tests that passed (steps not counted). */
  passed: number;
  /** Tests that failed. */
  failed: number;
  /** Tests that were ignored (skipped). */
  ignored: number;
}

/** The folders searched for tests, in this order, when they exist. */
export const TEST_DIRS: readonly string[] = ["core/", "plugins/", "tests/"];

/** `deno test` flags that take a value as the next argument. */
const FLAGS_WITH_VALUE = new Set([
  "--filter",
  "--reporter",
  "--junit-path",
  "--coverage",
  "--seed",
  "--shuffle",
  "--parallel",
  "--location",
  "--config",
  "-c",
  "--import-map",
  "--lock",
  "--env-file",
  "--cert",
  "--v8-flags",
  "--inspect",
  "--inspect-brk",
  "--inspect-wait",
]);

/**
 * Removes terminal colour and cursor escape sequences.
 *
 * @param text text with ANSI escapes
 * @returns plain text
 */
export function stripAnsi(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
}

/**
 * Finds Deno's test summary in `deno test` output: the last line like
 * `ok | 12 passed (3 steps) | 0 failed | 1 ignored (2s)` or `FAILED | 3 passed | 1 failed (1s)`.
 *
 * @param output deno test's stdout (may contain ANSI escapes)
 * @returns the counts, or `undefined` when there is no summary line
 */
export function parseDenoTestSummary(output: string): TestSummary | undefined {
  const lines = stripAnsi(output).split(/\r?\n/);
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i].trim();
    if (!/^(ok|FAILED)\s*\|/.test(line)) continue;
    const count = (word: string) => {
      const match = new RegExp(`(\\d+) ${word}\\b`).exec(line);
      return match ? Number(match[1]) : undefined;
    };
    const passed = count("passed");
    const failed = count("failed");
    if (passed === undefined || failed === undefined) continue;
    return { passed, failed, ignored: count("ignored") ?? 0 };
  }
  return undefined;
}

/**
 * Formats the final summary line.
 *
 * @param summary the counts
 * @returns e.g. `12 passed, 0 failed` or `12 passed, 0 failed, 1 skipped`
 */
export function formatSummary(summary: TestSummary): string {
  const base = `${summary.passed} passed, ${summary.failed} failed`;
  return summary.ignored > 0 ? `${base}, ${summary.ignored} skipped` : base;
}

/**
 * Builds the `deno test` argument list: fixed flags, the user's arguments, then the default
 * test folders that exist, unless the user named files or folders of their own.
 *
 * @param userArgs arguments given to this script
 * @param exists tells whether a path exists (relative to the repository root)
 * @returns arguments for `deno`
 */
export function buildTestArgs(userArgs: string[], exists: (path: string) => boolean): string[] {
  const separator = userArgs.indexOf("--");
  const ownArgs = separator < 0 ? userArgs : userArgs.slice(0, separator);
  const scriptArgs = separator < 0 ? [] : userArgs.slice(separator);
  let namesPaths = false;
  for (let i = 0; i < ownArgs.length; i++) {
    const arg = ownArgs[i];
    if (arg.startsWith("-")) {
      if (FLAGS_WITH_VALUE.has(arg)) i++; // skip its value
      continue;
    }
    if (exists(arg)) namesPaths = true;
  }
  const dirs = namesPaths ? [] : TEST_DIRS.filter(exists);
  return [
    "test",
    "--unstable-net",
    "-A",
    "--no-check=remote",
    ...ownArgs,
    ...dirs,
    ...scriptArgs,
  ];
}

/** Copies a child's stream to ours as it arrives and keeps the last part of it as text. */
async function relay(
  stream: ReadableStream<Uint8Array>,
  out: { write(p: Uint8Array): Promise<number> },
  keep: { text: string },
): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    let written = 0;
    while (written < chunk.length) written += await out.write(chunk.subarray(written));
    keep.text += decoder.decode(chunk, { stream: true });
    if (keep.text.length > 256 * 1024) keep.text = keep.text.slice(-128 * 1024);
  }
  keep.text += decoder.decode();
}

/** Runs deno test and returns the exit code to use. */
async function main(): Promise<number> {
  const root = new URL("../", import.meta.url).pathname;
  const exists = (path: string) => {
    try {
      Deno.statSync(path.startsWith("/") ? path : `${root}${path}`);
      return true;
    } catch {
      return false;
    }
  };
  const args = buildTestArgs(Deno.args, exists);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  const forward = (signal: Deno.Signal) => () => {
    try {
      child.kill(signal);
    } catch {
      // Already exited.
    }
  };
  const onInt = forward("SIGINT");
  const onTerm = forward("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);

  const stdout = { text: "" };
  const stderr = { text: "" };
  const [status] = await Promise.all([
    child.status,
    relay(child.stdout, Deno.stdout, stdout),
    relay(child.stderr, Deno.stderr, stderr),
  ]);
  Deno.removeSignalListener("SIGINT", onInt);
  Deno.removeSignalListener("SIGTERM", onTerm);

  const summary = parseDenoTestSummary(stdout.text) ?? parseDenoTestSummary(stderr.text);
  const encoder = new TextEncoder();
  if (summary === undefined) {
    await Deno.stderr.write(encoder.encode(
      `\nrun_tests: no test summary in the output of deno ${args.join(" ")} ` +
        `(exit code ${status.code}); counting the run as 1 failed\n`,
    ));
    await Deno.stdout.write(encoder.encode("0 passed, 1 failed\n"));
    return status.code === 0 ? 1 : status.code;
  }
  await Deno.stdout.write(encoder.encode(`\n${formatSummary(summary)}\n`));
  return status.code;
}

if (import.meta.main) {
  Deno.exit(await main());
}
