/**
 * Runs Kamailio 5.6 as a stateless TCP proxy (`forward()` to a fixed destination), the
 * reference peer the interop tests can run against instead of sipedge
 * (`SIPEDGE_INTEROP_PROXY=kamailio`) to prove that a scenario itself is sound.
 *
 * @module
 */

import { findOnPath, waitForTcpListen } from "./sipp.ts";

/** Options for {@linkcode startKamailio}. */
export interface StartKamailioOptions {
  /** The TCP port to listen on, on 127.0.0.1. */
  port: number;
  /** The destination for every request, e.g. `sip:127.0.0.1:5070;transport=tcp`. */
  forward: string;
  /** Add a Record-Route header (`record_route()`) to INVITEs. */
  recordRoute?: boolean;
  /** Processes for each of UDP receivers and TCP workers (default 2, as sipedge's workers). */
  children?: number;
}

/** A running Kamailio, as returned by {@linkcode startKamailio}. */
export interface KamailioProcess extends AsyncDisposable {
  /** The main process id (it forks the workers). */
  readonly pid: number;
  /** Kamailio's log so far (stderr). */
  output(): string;
  /** Sends SIGTERM (SIGKILL after 10 s), waits for the exit, removes the temp folder. */
  stop(): Promise<Deno.CommandStatus>;
}

/** Folder of Kamailio's modules on Debian (amd64). */
const KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/";

/**
 * Builds a minimal stateless-forwarding kamailio.cfg.
 *
 * @param options port, destination, record-route and process counts
 * @returns the configuration text
 */
export function kamailioConfig(options: StartKamailioOptions): string {
  const children = options.children ?? 2;
  return `#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=${children}
tcp_children=${children}
disable_tcp=no
auto_aliases=no
listen=tcp:127.0.0.1:${options.port}
mpath="${KAMAILIO_MODULES}"
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "rr.so"
loadmodule "pv.so"
request_route {
  if (!mf_process_maxfwd_header("10")) {
    sl_send_reply("483", "Too Many Hops");
    exit;
  }
${
    options.recordRoute
      ? '  if (method == "INVITE") { record_route(); }\n'
      : ""
  }  $du = "${options.forward}";
  forward();
  exit;
}
`;
}

/**
 * Starts Kamailio in the foreground (`-DD -E`) with a generated config and waits until it
 * listens.
 *
 * @param options port, destination, record-route and process counts
 * @returns the running Kamailio
 */
export async function startKamailio(options: StartKamailioOptions): Promise<KamailioProcess> {
  const kamailio = findOnPath("kamailio") ?? "/usr/sbin/kamailio";
  const dir = await Deno.makeTempDir({ prefix: "sipedge_kamailio_" });
  await Deno.writeTextFile(`${dir}/kamailio.cfg`, kamailioConfig(options));
  const child = new Deno.Command(kamailio, {
    args: ["-f", `${dir}/kamailio.cfg`, "-DD", "-E", "-Y", dir, "-m", "64", "-M", "8"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let exited = false;
  const status = child.status.then(async (s) => {
    exited = true;
    await pumps;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    return s;
  });
  const stop = async () => {
    if (!exited) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
      }, 10_000);
      await status;
      clearTimeout(timer);
    }
    return await status;
  };
  try {
    const abort = new AbortController();
    const outcome = await Promise.race([
      waitForTcpListen(options.port, 10_000, "kamailio", abort.signal).then(
        () => "listening",
        (err: Error) => err.message,
      ),
      status.then((s) => `exited (code ${s.code})`),
    ]);
    abort.abort();
    if (outcome !== "listening") throw new Error(`kamailio did not start: ${outcome}`);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n--- kamailio output ---\n${text}`);
  }
  return {
    pid: child.pid,
    output: () => text,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}
