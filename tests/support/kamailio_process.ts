/**
 * Runs Kamailio 5.6 as a stateless TCP proxy (`forward()` to a fixed destination), the
 * reference peer the interop tests can run against instead of sipedge
 * (`SIPEDGE_INTEROP_PROXY=kamailio`) to prove that a scenario itself is sound. With `tls` it
 * also listens for SIP over TLS (Kamailio's tls module) and can forward over TLS
 * (`forward: "sip:HOST:PORT;transport=tls"`): the TLS interop tests use it both ways.
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
  /** Listen for TLS too, and use TLS for `transport=tls` destinations. */
  tls?: KamailioTlsOptions;
}

/** Kamailio's TLS settings (its tls module, one server and one client profile). */
export interface KamailioTlsOptions {
  /** The TLS port to listen on, on 127.0.0.1. */
  port: number;
  /** Server certificate and key (PEM file paths). */
  certificate: string;
  privateKey: string;
  /** CA list (PEM file) for verifying peers; without it nothing is verified. */
  caList?: string;
  /** As a TLS client, verify the server's certificate against `caList` (default false). */
  verifyServer?: boolean;
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
export const KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/";

/**
 * Builds a minimal stateless-forwarding kamailio.cfg.
 *
 * @param options port, destination, record-route and process counts
 * @returns the configuration text
 */
export function kamailioConfig(options: StartKamailioOptions, dir = "."): string {
  const children = options.children ?? 2;
  const { globals: tls, modules: tlsModule } = kamailioTlsParts(options.tls, dir);
  return `#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=${children}
tcp_children=${children}
disable_tcp=no
auto_aliases=no
listen=tcp:127.0.0.1:${options.port}
${tls}mpath="${KAMAILIO_MODULES}"
${tlsModule}loadmodule "sl.so"
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
 * The kamailio.cfg lines for TLS: the global part (`enable_tls`, the TLS `listen`) and the
 * module part (load tls.so, point it at `DIR/tls.cfg`, which {@linkcode runKamailio} writes).
 * Both are empty without `tls`.
 *
 * @param tls TLS settings, or undefined for none
 * @param dir the folder kamailio.cfg and tls.cfg are written to
 * @returns the two parts, each ending with a newline when not empty
 */
export function kamailioTlsParts(
  tls: KamailioTlsOptions | undefined,
  dir: string,
): { globals: string; modules: string } {
  if (tls === undefined) return { globals: "", modules: "" };
  return {
    globals: `enable_tls=yes\nlisten=tls:127.0.0.1:${tls.port}\n`,
    modules: `loadmodule "tls.so"\nmodparam("tls", "config", "${dir}/tls.cfg")\n`,
  };
}

/**
 * Builds the tls module's profiles (tls.cfg): the server certificate, no client certificate
 * asked for; as a client, server verification only when asked.
 *
 * @param tls certificate, key, CA list and verification
 * @returns the tls.cfg text
 */
export function kamailioTlsConfig(tls: KamailioTlsOptions): string {
  const verify = tls.verifyServer === true ? "yes" : "no";
  const ca = tls.caList === undefined ? "" : `ca_list = ${tls.caList}\n`;
  return `[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = ${tls.certificate}
private_key = ${tls.privateKey}
${ca}
[client:default]
method = TLSv1.2+
verify_certificate = ${verify}
require_certificate = ${verify}
${ca}`;
}

/**
 * Starts Kamailio in the foreground (`-DD -E`) with a generated config and waits until it
 * listens.
 *
 * @param options port, destination, record-route and process counts
 * @returns the running Kamailio
 */
export function startKamailio(options: StartKamailioOptions): Promise<KamailioProcess> {
  return runKamailio({
    config: (dir) => kamailioConfig(options, dir),
    tls: options.tls,
    ports: [
      { port: options.port, name: "kamailio" },
      ...(options.tls === undefined ? [] : [{ port: options.tls.port, name: "kamailio (tls)" }]),
    ],
  });
}

/** Options for {@linkcode runKamailio}. */
export interface RunKamailioOptions {
  /** The kamailio.cfg text, given the temp folder it is written to (for files it names). */
  config: (dir: string) => string;
  /** Also write `DIR/tls.cfg` ({@linkcode kamailioTlsConfig}) from these settings. */
  tls?: KamailioTlsOptions;
  /** TCP ports on 127.0.0.1 to wait for (with a name for errors): started once all listen. */
  ports: { port: number; name: string }[];
}

/**
 * SIGKILLs every process whose command line has the argument `configPath` (Linux /proc):
 * the workers of one Kamailio, since each test run has its own config folder. Retries until
 * none is left (1 s at most).
 *
 * @param configPath the `-f` argument of that Kamailio
 */
async function killLeftovers(configPath: string): Promise<void> {
  const deadline = Date.now() + 1000;
  while (true) {
    const pids: number[] = [];
    try {
      for (const entry of Deno.readDirSync("/proc")) {
        if (!/^[0-9]+$/.test(entry.name)) continue;
        try {
          const args = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
          if (args.includes(configPath)) pids.push(Number(entry.name));
        } catch {
          // Gone, or not readable.
        }
      }
    } catch {
      return; // No /proc: nothing to do.
    }
    const alive = pids.filter((pid) => {
      try {
        return !/^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
      } catch {
        return false;
      }
    });
    if (alive.length === 0 || Date.now() > deadline) return;
    for (const pid of alive) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Runs Kamailio in the foreground (`-DD -E`, 64 MB shared and 8 MB private memory) with the
 * given config in a fresh temp folder (removed when it exits), collects its output, and waits
 * (10 s at most) until every port listens. On failure it is stopped and the error carries its
 * output. Shared by every generated Kamailio configuration of the tests.
 *
 * @param options the config, TLS profiles and the ports to wait for
 * @returns the running Kamailio
 */
export async function runKamailio(options: RunKamailioOptions): Promise<KamailioProcess> {
  const kamailio = findOnPath("kamailio") ?? "/usr/sbin/kamailio";
  const dir = await Deno.makeTempDir({ prefix: "sipedge_kamailio_" });
  await Deno.writeTextFile(`${dir}/kamailio.cfg`, options.config(dir));
  if (options.tls !== undefined) {
    await Deno.writeTextFile(`${dir}/tls.cfg`, kamailioTlsConfig(options.tls));
  }
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
    // Workers that outlive the main process (seen once: SIGTERM left three behind) would
    // hold the output pipes open forever: kill them, found by their own config path.
    await killLeftovers(`${dir}/kamailio.cfg`);
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
      Promise.all(
        options.ports.map((p) => waitForTcpListen(p.port, 10_000, p.name, abort.signal)),
      ).then(
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
