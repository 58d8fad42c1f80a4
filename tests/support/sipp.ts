/**
 * Helpers to run SIPp (Debian `sip-tester`) as a test peer: find it, run a UAC to completion, run
 * a UAS in the background, read its `-trace_stat` statistics and wait until a port listens.
 *
 * @module
 */

/** The folder with the project's SIPp scenario files. */
export const SCENARIO_DIR: string = new URL("../sipp/", import.meta.url).pathname.replace(
  /\/$/,
  "",
);

/**
 * Finds an executable on PATH.
 *
 * @param name the program name, e.g. `"sipp"`
 * @returns its full path, or `undefined` if it is not on PATH
 */
export function findOnPath(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    const path = `${dir}/${name}`;
    try {
      const info = Deno.statSync(path);
      if (info.isFile && info.mode !== null && (info.mode & 0o111) !== 0) return path;
    } catch {
      // Not in this folder.
    }
  }
  return undefined;
}

/** Statistics of one SIPp run, from the last row of its `-trace_stat` CSV file. */
export interface SippStats {
  /** Every column of the last row, by its header name (e.g. `"FailedCall(C)"`). */
  columns: Record<string, string>;
  /** `SuccessfulCall(C)`: calls that ended successfully. */
  successful: number;
  /** `FailedCall(C)`: calls that failed, for any reason. */
  failed: number;
  /** `OutgoingCall(C)` + `IncomingCall(C)`: calls created. */
  created: number;
}

/**
 * Parses a SIPp `-trace_stat` CSV file (`;`-separated, one header row, one row per dump; the
 * last row is written when SIPp exits).
 *
 * @param text the file's content
 * @returns the cumulative counters of the last row
 */
export function parseSippStats(text: string): SippStats {
  const rows = text.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
  if (rows.length < 2) throw new Error(`SIPp statistics file has no data row:\n${text}`);
  const header = rows[0].split(";");
  const values = rows[rows.length - 1].split(";");
  const columns: Record<string, string> = {};
  header.forEach((name, i) => columns[name] = values[i] ?? "");
  const num = (name: string) => {
    const value = Number(columns[name]);
    if (!Number.isFinite(value)) {
      throw new Error(`SIPp statistics: no numeric column ${name}:\n${text}`);
    }
    return value;
  };
  return {
    columns,
    successful: num("SuccessfulCall(C)"),
    failed: num("FailedCall(C)"),
    created: num("OutgoingCall(C)") + num("IncomingCall(C)"),
  };
}

/**
 * Checks whether a TCP socket listens on 127.0.0.1:`port` by reading /proc/net/tcp (no
 * connection is made, so the listener sees nothing).
 *
 * @param port the TCP port
 * @returns true if a listening socket on 127.0.0.1 or 0.0.0.0 has that port; `undefined` when
 *   /proc/net/tcp cannot be read
 */
export function isTcpListening(port: number): boolean | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  let table: string;
  try {
    table = Deno.readTextFileSync("/proc/net/tcp");
  } catch {
    return undefined;
  }
  for (const line of table.split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4 || fields[3] !== "0A") continue; // 0A = LISTEN
    const [ip, p] = fields[1].split(":");
    if (p === hexPort && (ip === "0100007F" || ip === "00000000")) return true;
  }
  return false;
}

/** Whether a TCP connection to 127.0.0.1:`port` succeeds (closed again at once). */
async function canConnect(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Waits until a TCP socket listens on 127.0.0.1:`port` (see {@linkcode isTcpListening}; where
 * /proc/net/tcp is missing, by connecting).
 *
 * @param port the TCP port
 * @param timeoutMs how long to wait
 * @param what a name for the error message
 * @param signal stops the wait early (the promise then rejects with the signal's reason)
 */
export async function waitForTcpListen(
  port: number,
  timeoutMs = 10_000,
  what = "process",
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(isTcpListening(port) ?? await canConnect(port))) {
    signal?.throwIfAborted();
    if (Date.now() > deadline) {
      throw new Error(`${what} does not listen on tcp 127.0.0.1:${port} after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Options for {@linkcode startSipp}. */
export interface SippOptions {
  /** SIPp's command-line arguments. `-nostdin` is added. */
  args: string[];
  /** The working directory; SIPp writes its log files there. */
  cwd: string;
  /** Kill SIPp (SIGKILL) after this many ms, as a last resort (default 120 s). */
  killAfterMs?: number;
}

/** A SIPp process started by {@linkcode startSipp}. */
export interface SippProcess extends AsyncDisposable {
  /** The process id. */
  readonly pid: number;
  /** The full command line, for messages. */
  readonly commandLine: string;
  /** Resolves when SIPp exits, with its exit code and output. */
  readonly done: Promise<SippResult>;
  /** SIPp's stdout and stderr so far. */
  output(): string;
  /** Kills SIPp (SIGTERM, then SIGKILL after 3 s) unless it has exited; returns its result. */
  stop(): Promise<SippResult>;
}

/** The outcome of a SIPp run. */
export interface SippResult {
  /** Exit code: 0 = all calls succeeded, 1 = some failed, 97/99/255 = other outcomes. */
  code: number;
  /** The signal that ended SIPp, if any. */
  signal: Deno.Signal | null;
  /** stdout and stderr, with terminal escape sequences removed. */
  output: string;
  /** True if {@linkcode SippOptions.killAfterMs} expired and SIPp was killed. */
  timedOut: boolean;
}

/** Output above this size keeps only its last part (SIPp redraws its screen every second). */
const MAX_SIPP_OUTPUT = 1024 * 1024;

/**
 * Strips terminal escape sequences from SIPp's screen output.
 *
 * @param text SIPp's output
 * @returns plain text
 */
export function stripAnsi(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]/g, "");
}

/**
 * Starts SIPp in the background. Await `done` for a UAC run to completion; call `stop()` (or use
 * `await using`) to end a UAS. Its output is drained continuously so SIPp never blocks on it.
 *
 * @param options arguments, working folder and kill deadline
 * @returns the running SIPp
 */
export function startSipp(options: SippOptions): SippProcess {
  const sipp = findOnPath("sipp");
  if (sipp === undefined) throw new Error("sipp is not on PATH (apt-get install -y sip-tester)");
  const args = [...options.args, "-nostdin"];
  const child = new Deno.Command(sipp, {
    args,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) {
        text += decoder.decode(chunk, { stream: true });
        if (text.length > MAX_SIPP_OUTPUT) text = text.slice(text.length - MAX_SIPP_OUTPUT / 2);
      }
    } catch {
      // The process is gone.
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);

  let timedOut = false;
  const killTimer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, options.killAfterMs ?? 120_000);

  let exited = false;
  const done = child.status.then(async (status) => {
    exited = true;
    clearTimeout(killTimer);
    await pumps;
    return {
      code: status.code,
      signal: status.signal,
      output: stripAnsi(text),
      timedOut,
    };
  });

  const stop = async () => {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        done,
        new Promise<void>((resolve) =>
          timer = setTimeout(() => {
            try {
              child.kill("SIGKILL");
            } catch {
              // Already gone.
            }
            resolve();
          }, 3_000)
        ),
      ]);
      clearTimeout(timer);
    }
    return await done;
  };

  return {
    pid: child.pid,
    commandLine: `${sipp} ${args.join(" ")}`,
    done,
    output: () => stripAnsi(text),
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/**
 * Splits a SIPp `-trace_msg` log into its messages.
 *
 * @param text the message log
 * @returns each logged message with its direction (`received` or `sent`) and its SIP text
 */
export function parseSippMessageLog(
  text: string,
): { direction: "received" | "sent"; message: string }[] {
  const out: { direction: "received" | "sent"; message: string }[] = [];
  for (const block of text.split(/^-{20,} .*$/m)) {
    const match = /^\s*\S+ message (received|sent)[^\n]*\n\n?([\s\S]*)$/.exec(block);
    if (match) {
      out.push({ direction: match[1] as "received" | "sent", message: match[2].trim() });
    }
  }
  return out;
}

/** Options of an OPTIONS load (tests/sipp/options_uac.xml) over one TCP connection. */
export interface OptionsUacOptions {
  /** The proxy's TCP port on 127.0.0.1. */
  proxyPort: number;
  /** The UAS's TCP port on 127.0.0.1 (the Request-URI). */
  uasPort: number;
  /** SIPp's own port (`-p`). */
  localPort: number;
  calls: number;
  /** Calls per second. */
  rate: number;
  /** Most calls in flight at once (`-l`). */
  limit: number;
  /** Overall timeout in seconds (`-timeout`, a failure when it expires). */
  timeoutSeconds: number;
  /** Where SIPp writes its statistics (`-stf`). */
  statFile: string;
}

/** SIPp arguments of an OPTIONS UAC: one connection (`-t t1`), 10 s answer timeout per call. */
export function optionsUacArgs(o: OptionsUacOptions): string[] {
  return [
    `127.0.0.1:${o.proxyPort}`,
    ...["-sf", `${SCENARIO_DIR}/options_uac.xml`, "-key", "uas_hostport", `127.0.0.1:${o.uasPort}`],
    ...["-t", "t1", "-i", "127.0.0.1", "-p", String(o.localPort)],
    ...["-m", String(o.calls), "-r", String(o.rate), "-l", String(o.limit)],
    ...["-timeout", `${o.timeoutSeconds}s`, "-timeout_error", "-recv_timeout", "10s"],
    ...["-trace_stat", "-stf", o.statFile],
  ];
}

/**
 * SIPp arguments of an OPTIONS UAS (tests/sipp/options_uas.xml) on 127.0.0.1:`port`; it ends
 * after `calls` calls when given, else when stopped.
 */
export function optionsUasArgs(port: number, calls?: number, statFile?: string): string[] {
  return [
    ...["-sf", `${SCENARIO_DIR}/options_uas.xml`, "-t", "t1", "-i", "127.0.0.1"],
    ...["-p", String(port)],
    ...(calls === undefined ? [] : ["-m", String(calls)]),
    ...(statFile === undefined ? [] : ["-trace_stat", "-stf", statFile]),
  ];
}
