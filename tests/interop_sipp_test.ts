/**
 * Interop tests with SIPp: SIPp UAC → proxy (sipedge, TCP, 2 workers) → SIPp UAS.
 *
 * Each test is ignored when `sipp` is not on PATH (`apt-get install -y sip-tester`; .ci/run
 * installs it). Set `SIPEDGE_INTEROP_PROXY=kamailio` to run the same scenarios through Kamailio
 * 5.6 as a stateless proxy instead, which proves the scenarios themselves.
 *
 * @module
 */

import assert from "node:assert/strict";
import { freePort, startSipedge } from "./support/sipedge_process.ts";
import {
  findOnPath,
  parseSippMessageLog,
  parseSippStats,
  SCENARIO_DIR,
  type SippProcess,
  type SippResult,
  startSipp,
  waitForTcpListen,
} from "./support/sipp.ts";
import { startKamailio } from "./support/kamailio_process.ts";

const HAVE_SIPP = findOnPath("sipp") !== undefined;
const PROXY = Deno.env.get("SIPEDGE_INTEROP_PROXY") ?? "sipedge";
if (!HAVE_SIPP) {
  console.warn(
    "interop_sipp_test.ts: sipp is not on PATH, so the SIPp interop tests are ignored " +
      "(install it with: apt-get install -y sip-tester)",
  );
}
if (PROXY !== "sipedge" && PROXY !== "kamailio") {
  throw new Error(`SIPEDGE_INTEROP_PROXY must be "sipedge" or "kamailio", not "${PROXY}"`);
}

/** The proxy under test, started between the two SIPp peers. */
interface ProxyUnderTest {
  name: string;
  port: number;
  output(): string;
  stop(): Promise<unknown>;
}

/** Starts the proxy under test on a free port, forwarding everything to the UAS over TCP. */
async function startProxy(uasPort: number, recordRoute: boolean): Promise<ProxyUnderTest> {
  const port = freePort();
  const forward = `sip:127.0.0.1:${uasPort};transport=tcp`;
  if (PROXY === "kamailio") {
    const kamailio = await startKamailio({ port, forward, recordRoute });
    return { name: "kamailio", port, output: kamailio.output, stop: kamailio.stop };
  }
  const sipedge = recordRoute
    ? await startSipedge({
      config: `[sipedge]
workers = 2
log_level = "warning"

[[listen]]
address = "tcp:127.0.0.1:${port}"

[plugins.tcp]

[plugins.static_router]
record_route = true
default_route = "${forward}"
`,
    })
    : await startSipedge({
      // --control off: the repo's config.toml (read from the working folder) opens the control
      // API on 127.0.0.1:8060, which a second sipedge on this machine would already hold.
      args: [
        "--listen",
        `tcp:127.0.0.1:${port}`,
        "--forward",
        forward,
        "--workers",
        "2",
        "--control",
        "off",
      ],
    });
  return { name: "sipedge", port, output: sipedge.output, stop: sipedge.stop };
}

/** The last `n` characters of `text`, for failure messages. */
function tail(text: string, n = 6000): string {
  return text.length <= n ? text : `[...]\n${text.slice(text.length - n)}`;
}

/** Waits for `promise` at most `ms`; resolves `undefined` on timeout. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads a file if it exists (SIPp's error logs exist only when something went wrong). */
async function readIfExists(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "";
  }
}

/** Options of one SIPp UAC → proxy → SIPp UAS run. */
interface InteropRun {
  /** Number of calls (`-m`) for the UAC and the UAS. */
  calls: number;
  /** Call rate per second (`-r`). */
  rate: number;
  /** SIPp transport mode of the UAC: `t1` (one connection) or `tn` (one per call). */
  uacTransport: "t1" | "tn";
  /** UAC scenario: `-sf <file>` or `-sn <name>` arguments. */
  uacScenario: string[];
  /** UAS scenario arguments. */
  uasScenario: string[];
  /** Let the proxy insert Record-Route (config file instead of --forward for sipedge). */
  recordRoute: boolean;
  /** Log the messages the UAS receives (`-trace_msg`) and return the log. */
  traceUasMessages?: boolean;
}

/** What one interop run returns, for further checks. */
interface InteropOutcome {
  uasMessages: string;
}

/**
 * Runs SIPp UAS, the proxy and SIPp UAC, and asserts that every call succeeded on both sides:
 * exit code 0 and, from `-trace_stat`, `calls` successful and 0 failed calls.
 */
async function runInterop(run: InteropRun): Promise<InteropOutcome> {
  const dir = await Deno.makeTempDir({ prefix: "sipedge_interop_" });
  let uas: SippProcess | undefined;
  let uac: SippProcess | undefined;
  let proxy: ProxyUnderTest | undefined;
  try {
    const uasPort = freePort();
    uas = startSipp({
      cwd: dir,
      killAfterMs: 150_000,
      args: [
        ...run.uasScenario,
        "-t",
        "t1",
        "-max_socket",
        "2000",
        "-i",
        "127.0.0.1",
        "-p",
        String(uasPort),
        "-m",
        String(run.calls),
        "-timeout",
        "90s",
        "-timeout_error",
        "-trace_stat",
        "-stf",
        `${dir}/uas_stat.csv`,
        "-trace_err",
        "-error_file",
        `${dir}/uas_errors.log`,
        ...(run.traceUasMessages ? ["-trace_msg", "-message_file", `${dir}/uas_messages.log`] : []),
      ],
    });
    const uasStarted = await within(
      Promise.race([
        waitForTcpListen(uasPort, 10_000, "SIPp UAS").then(() => true),
        uas.done.then(() => false),
      ]),
      11_000,
    );
    if (!uasStarted) {
      const result = await uas.stop();
      throw new Error(`SIPp UAS did not start (exit code ${result.code}):\n${tail(result.output)}`);
    }

    proxy = await startProxy(uasPort, run.recordRoute);

    uac = startSipp({
      cwd: dir,
      killAfterMs: 120_000,
      args: [
        `127.0.0.1:${proxy.port}`,
        ...run.uacScenario,
        "-key",
        "uas_hostport",
        `127.0.0.1:${uasPort}`,
        "-t",
        run.uacTransport,
        "-max_socket",
        "2000",
        "-i",
        "127.0.0.1",
        "-p",
        String(freePort()),
        "-m",
        String(run.calls),
        "-r",
        String(run.rate),
        "-l",
        "200",
        "-timeout",
        "60s",
        "-timeout_error",
        "-recv_timeout",
        "10s",
        "-trace_stat",
        "-stf",
        `${dir}/uac_stat.csv`,
        "-trace_err",
        "-error_file",
        `${dir}/uac_errors.log`,
      ],
    });
    const uacResult = await uac.done;
    // The UAS ends by itself after `calls` calls (the built-in uas scenario pauses 4 s per call).
    const uasResult: SippResult = (await within(uas.done, 20_000)) ?? await uas.stop();

    const context = async () =>
      [
        `proxy: ${proxy!.name} on tcp:127.0.0.1:${proxy!.port}, UAS on tcp:127.0.0.1:${uasPort}`,
        `UAC: ${uac!.commandLine}\n  exit code ${uacResult.code}` +
        (uacResult.timedOut ? " (killed: timeout)" : ""),
        `UAS: ${uas!.commandLine}\n  exit code ${uasResult.code}` +
        (uasResult.timedOut ? " (killed: timeout)" : ""),
        `--- UAC errors ---\n${tail(await readIfExists(`${dir}/uac_errors.log`), 3000)}`,
        `--- UAS errors ---\n${tail(await readIfExists(`${dir}/uas_errors.log`), 3000)}`,
        `--- UAC screen ---\n${tail(uacResult.output, 3000)}`,
        `--- UAS screen ---\n${tail(uasResult.output, 3000)}`,
        `--- ${proxy!.name} output ---\n${tail(proxy!.output())}`,
      ].join("\n");

    const stats = async (side: string) => {
      try {
        return parseSippStats(await readIfExists(`${dir}/${side}_stat.csv`));
      } catch {
        return undefined; // SIPp ended before writing its statistics: reported below.
      }
    };
    const uacStats = await stats("uac");
    const uasStats = await stats("uas");
    const describe = (name: string, s: typeof uacStats) =>
      s === undefined
        ? `${name}: no statistics`
        : `${name}: ${s.successful} successful / ${s.failed} failed calls`;
    const summary = `${describe("UAC", uacStats)}; ${describe("UAS", uasStats)}`;
    const ok = uacResult.code === 0 && uasResult.code === 0 &&
      uacStats?.failed === 0 && uasStats?.failed === 0 &&
      uacStats.successful === run.calls && uasStats.successful === run.calls;
    if (!ok) {
      assert.fail(
        `expected ${run.calls} successful calls and none failed; ${summary}\n` +
          (await context()),
      );
    }
    console.log(`${proxy.name}: ${summary}`);
    return {
      uasMessages: run.traceUasMessages ? await readIfExists(`${dir}/uas_messages.log`) : "",
    };
  } finally {
    await uac?.stop();
    await uas?.stop();
    await proxy?.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

const OPTIONS_UAC = ["-sf", `${SCENARIO_DIR}/options_uac.xml`];
const OPTIONS_UAS = ["-sf", `${SCENARIO_DIR}/options_uas.xml`];

Deno.test({
  name: `interop sipp: 1,000 OPTIONS over one TCP connection (${PROXY})`,
  ignore: !HAVE_SIPP,
  async fn() {
    await runInterop({
      calls: 1000,
      rate: 500,
      uacTransport: "t1",
      uacScenario: OPTIONS_UAC,
      uasScenario: OPTIONS_UAS,
      recordRoute: false,
    });
  },
});

Deno.test({
  name: `interop sipp: 1,000 OPTIONS, one TCP connection per request (${PROXY})`,
  ignore: !HAVE_SIPP,
  async fn() {
    await runInterop({
      calls: 1000,
      rate: 500,
      uacTransport: "tn",
      uacScenario: OPTIONS_UAC,
      uasScenario: OPTIONS_UAS,
      recordRoute: false,
    });
  },
});

Deno.test({
  name: `interop sipp: 200 INVITE/ACK/BYE calls with Record-Route (${PROXY})`,
  ignore: !HAVE_SIPP,
  async fn() {
    const calls = 200;
    const { uasMessages } = await runInterop({
      calls,
      rate: 100,
      uacTransport: "t1",
      uacScenario: ["-sn", "uac"],
      uasScenario: ["-sn", "uas"],
      recordRoute: true,
      traceUasMessages: true,
    });
    const received = parseSippMessageLog(uasMessages).filter((m) => m.direction === "received");
    const invites = received.filter((m) => m.message.startsWith("INVITE "));
    assert.equal(invites.length, calls, "INVITEs received by the UAS");
    for (const { message } of invites) {
      const headers = message.split(/\r?\n\r?\n/)[0].split(/\r?\n/);
      const recordRoute = headers.filter((h) => /^record-route\s*:/i.test(h));
      assert.ok(
        recordRoute.some((h) => /<sip:[^>]*;lr[;>]/i.test(h)),
        `INVITE without a loose-routing Record-Route (;lr):\n${message}`,
      );
      const maxForwards = headers.find((h) => /^max-forwards\s*:/i.test(h));
      assert.equal(
        maxForwards?.replace(/^[^:]*:\s*/, "").trim(),
        "69",
        `the proxy must decrement Max-Forwards (70 from the UAC):\n${message}`,
      );
    }
    const methods = new Set(received.map((m) => m.message.split(" ")[0]));
    assert.ok(
      methods.has("ACK") && methods.has("BYE"),
      `ACK and BYE reach the UAS: ${[...methods]}`,
    );
  },
});
