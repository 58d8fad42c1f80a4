/**
 * Helpers for end-to-end tests that run sipedge as a real child process:
 * `deno run --unstable-net -A main.ts ...`.
 *
 * ```ts
 * await using proxy = await startSipedge({
 *   args: ["--listen", `tcp:127.0.0.1:${freePort()}`, "--workers", "2"],
 * });
 * // ... talk to it ...
 * const status = await proxy.stop();
 * ```
 *
 * @module
 */

/** The repository root (the folder holding main.ts), found from this module's location. */
export const REPO_ROOT: string = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** The text sipedge prints on one line once every listener accepts connections. */
export const READY_MARKER = "sipedge ready";

/** How long {@linkcode startSipedge} waits for the ready line. */
export const READY_TIMEOUT_MS = 15_000;

/** How long {@linkcode SipedgeProcess.stop} waits after the signal before it sends SIGKILL. */
export const STOP_TIMEOUT_MS = 10_000;

/**
 * Children and temp files still alive, so that a test process that ends without stopping them
 * (a forgotten `stop()`, an uncaught error) does not leave them behind: on `unload` the children
 * get SIGKILL and the files are removed. A killed test process cannot clean up.
 */
const live = new Map<Deno.ChildProcess, string[]>();
globalThis.addEventListener("unload", () => {
  for (const [child, files] of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    for (const path of files) {
      try {
        Deno.removeSync(path);
      } catch {
        // Already removed.
      }
    }
  }
  live.clear();
});

/** Collected output above this size keeps only its first and last parts. */
const MAX_OUTPUT_CHARS = 8 * 1024 * 1024;

/**
 * Finds a free TCP port on 127.0.0.1: listens on port 0, reads the port the kernel chose and
 * closes the listener. Another process may take the port before the caller binds it; tests
 * accept that small race.
 *
 * @returns a TCP port number that was free a moment ago
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  try {
    return (listener.addr as Deno.NetAddr).port;
  } finally {
    listener.close();
  }
}

/** Options for {@linkcode startSipedge}. */
export interface StartSipedgeOptions {
  /** Arguments after `main.ts`, e.g. `["--listen", "tcp:127.0.0.1:5060"]`. */
  args?: string[];
  /**
   * TOML text of a sipedge config. It is written to a temporary file that is passed as
   * `--config <file>` and removed when the process ends.
   */
  config?: string;
  /** Extra environment variables for the child (the parent's environment is inherited). */
  env?: Record<string, string>;
  /**
   * The child's working folder (default: the repository root, whose config.toml sipedge reads
   * when no `--config` is given).
   */
  cwd?: string;
  /** How long to wait for the ready line, in ms (default {@linkcode READY_TIMEOUT_MS}). */
  readyTimeoutMs?: number;
}

/** A running sipedge child process, as returned by {@linkcode startSipedge}. */
export interface SipedgeProcess extends AsyncDisposable {
  /** The child's process id. */
  readonly pid: number;
  /** The line that contained {@linkcode READY_MARKER}. */
  readonly readyLine: string;
  /** The listening addresses parsed from the ready line, e.g. `["tcp:127.0.0.1:5060"]`. */
  readonly listening: string[];
  /** The child's stdout and stderr so far, interleaved in the order the chunks arrived. */
  output(): string;
  /** Resolves with the exit status once the process has exited (does not signal it). */
  readonly status: Promise<Deno.CommandStatus>;
  /**
   * Sends `signal` (default SIGTERM), waits for the process to exit and sends SIGKILL if it is
   * still running after {@linkcode STOP_TIMEOUT_MS}. Calling it after the exit just returns the
   * status. Temporary files are removed.
   */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/**
 * Parses the addresses of a ready line such as
 * `sipedge ready: listening on tcp:127.0.0.1:5060, tls:127.0.0.1:5061 (2 workers)`.
 *
 * @param line the ready line
 * @returns the addresses, in order; empty if the line has no `listening on` part
 */
export function parseReadyLine(line: string): string[] {
  const match = /listening on (.*?)(?:\s*\(|$)/.exec(line);
  if (!match) return [];
  return match[1].split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * Starts sipedge (`Deno.execPath() run --unstable-net -A <repo>/main.ts ...args`) and resolves
 * once it prints a line containing `sipedge ready`. Rejects, with the collected output in the
 * error message, if the process exits first or is not ready within 15 s; the process is then
 * killed and its temporary files removed.
 *
 * @param options arguments, config text and environment
 * @returns the running process
 */
export async function startSipedge(options: StartSipedgeOptions = {}): Promise<SipedgeProcess> {
  const tempFiles: string[] = [];
  // The runtime flags of `deno task start` (deno.json), with -A.
  const args = [
    "run",
    "--unstable-net",
    "-A",
    "--no-code-cache",
    "--v8-flags=--max-semi-space-size=1",
    `${REPO_ROOT}/main.ts`,
    ...(options.args ?? []),
  ];
  if (options.config !== undefined) {
    const path = await Deno.makeTempFile({ prefix: "sipedge_test_", suffix: ".toml" });
    tempFiles.push(path);
    await Deno.writeTextFile(path, options.config);
    args.push("--config", path);
  } else if (!args.includes("--control") && !args.includes("--config")) {
    // The bundled config.toml (picked up from the repo root) puts the control API on a fixed
    // port; tests that do not ask for it run without, so that several can run at once.
    args.push("--control", "off");
  }
  const removeTempFiles = async () => {
    for (const path of tempFiles.splice(0)) {
      await Deno.remove(path).catch(() => {});
    }
  };

  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: options.cwd ?? REPO_ROOT,
      env: { NO_COLOR: "1", ...options.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    await removeTempFiles();
    throw err;
  }

  let collected = "";
  let dropped = 0;
  const append = (text: string) => {
    collected += text;
    if (collected.length > MAX_OUTPUT_CHARS) {
      const keep = MAX_OUTPUT_CHARS / 4;
      dropped += collected.length - 2 * keep;
      collected = collected.slice(0, keep) + collected.slice(collected.length - keep);
    }
  };
  const output = () =>
    dropped === 0 ? collected : `${collected}\n[... ${dropped} characters of output dropped ...]`;

  let readyLine: string | undefined;
  let onReady: (() => void) | undefined;
  const ready = new Promise<void>((resolve) => onReady = resolve);

  /** Drains one stream into `collected` and watches its complete lines for the ready marker. */
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    let partial = "";
    const scan = (text: string, final: boolean) => {
      if (readyLine !== undefined) return;
      partial += text;
      const lines = partial.split("\n");
      partial = final ? "" : lines.pop()!;
      for (const line of lines) {
        if (line.includes(READY_MARKER)) {
          readyLine = line.replace(/\r$/, "");
          onReady!();
          return;
        }
      }
    };
    try {
      for await (const chunk of stream) {
        const text = decoder.decode(chunk, { stream: true });
        append(text);
        scan(text, false);
      }
    } catch {
      // The stream errors only when the process is gone; the status promise reports that.
    }
    const rest = decoder.decode();
    append(rest);
    scan(rest, true);
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  live.set(child, tempFiles);
  // The status resolves after both streams are drained, so output() is complete by then.
  const status = child.status.then(async (s) => {
    await pumps;
    await removeTempFiles();
    live.delete(child);
    return s;
  });

  let exited = false;
  status.then(() => exited = true);

  const stop = async (signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> => {
    if (!exited) {
      try {
        child.kill(signal);
      } catch {
        // Already exited between the check and the kill.
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const killed = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch {
            // Already gone.
          }
          resolve();
        }, STOP_TIMEOUT_MS);
      });
      await Promise.race([status, killed]);
      clearTimeout(timer);
    }
    return await status;
  };

  const timeoutMs = options.readyTimeoutMs ?? READY_TIMEOUT_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    ready.then(() => "ready" as const),
    status.then(() => "exited" as const),
    new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), timeoutMs)),
  ]);
  clearTimeout(timer);

  if (outcome !== "ready") {
    const why = outcome === "timeout"
      ? `printed no "${READY_MARKER}" line within ${timeoutMs} ms`
      : `exited (code ${(await status).code}) before printing "${READY_MARKER}"`;
    await stop("SIGKILL");
    throw new Error(
      `sipedge ${why}\ncommand: ${Deno.execPath()} ${args.join(" ")}\n--- output ---\n${output()}`,
    );
  }

  return {
    pid: child.pid,
    readyLine: readyLine!,
    listening: parseReadyLine(readyLine!),
    output,
    status,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/**
 * Runs `check`; when it fails, sipedge's output so far is appended to the error's message (what
 * sipedge logged is usually what explains the failure).
 *
 * @param proxy the sipedge process under test
 * @param check the assertions
 */
export async function withOutput(proxy: SipedgeProcess, check: () => Promise<void>): Promise<void> {
  try {
    await check();
  } catch (error) {
    if (error instanceof Error) error.message += `\n--- sipedge output ---\n${proxy.output()}`;
    throw error;
  }
}
