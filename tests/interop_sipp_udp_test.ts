/**
 * Interop tests with SIPp over UDP: SIPp UAC → sipedge (2 workers) → SIPp UAS, with UDP on one
 * or both sides: SIPp's built-in uac/uas calls (INVITE/ACK/BYE) UDP to UDP with one socket
 * (`-t u1`) and a socket per call (`-t un`), UDP to TCP, TCP to UDP, TLS to UDP (node:tls peers:
 * Debian's SIPp has no TLS), OPTIONS at a few hundred per second, and INVITE retransmissions
 * forwarded with the same Via branch (stateless proxy, RFC 3261 §16.11).
 *
 * Each test is ignored when `sipp` is not on PATH (`apt-get install -y sip-tester`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { ProxyEnv } from "./support/proxy_env.ts";
import {
  findOnPath,
  parseSippMessageLog,
  parseSippStats,
  SCENARIO_DIR,
  type SippProcess,
  type SippResult,
  type SippStats,
  startSipp,
} from "./support/sipp.ts";
import { buildRequest, buildResponse, SipMessage, uniqueId } from "./support/sip_peer.ts";
import { TlsUac } from "./support/tls_peer.ts";
import { freeTcpUdpPort, UdpPeer, waitForBound } from "./support/udp_peer.ts";

const HAVE_SIPP = findOnPath("sipp") !== undefined;
if (!HAVE_SIPP) {
  console.warn(
    "interop_sipp_udp_test.ts: sipp is not on PATH, so the SIPp UDP interop tests are ignored " +
      "(install it with: apt-get install -y sip-tester)",
  );
}

/** SIPp transport modes used here: UDP one socket / socket per call, TCP one connection. */
type SippMode = "u1" | "un" | "t1";

const transportOf = (mode: SippMode): "udp" | "tcp" => mode.startsWith("u") ? "udp" : "tcp";

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

/** SIPp's `-trace_stat` statistics in `file`, or undefined when it wrote none. */
async function statsOf(file: string): Promise<SippStats | undefined> {
  try {
    return parseSippStats(await readIfExists(file));
  } catch {
    return undefined;
  }
}

/** `Retransmissions(C)` of a SIPp statistics row (0 when absent). */
function retransmissions(stats: SippStats | undefined): number {
  return Number(stats?.columns["Retransmissions(C)"] ?? 0);
}

/** The port of sipedge's listener for `transport` (`udp`, `tcp`, `tls`). */
function listenerPort(env: ProxyEnv, transport: string): number {
  const address = env.proxy.listening.find((a) => a.startsWith(`${transport}:`));
  assert.ok(address, `sipedge listens on ${transport}: ${env.proxy.listening.join(", ")}`);
  return Number(address.split(":").at(-1));
}

/**
 * sipedge with 2 workers, listening on tcp, udp (and tls when asked) on free ports, every request
 * to `defaultRoute`.
 */
async function startProxy(defaultRoute: string, tls = false): Promise<ProxyEnv> {
  return await ProxyEnv.start(
    2,
    `[plugins.tcp]\n[plugins.udp]\n${tls ? "[plugins.tls]\n" : ""}` +
      `[plugins.static_router]\ndefault_route = "${defaultRoute}"\n`,
    {
      sipedge: `log_level = "warning"`,
      listen: [
        "tcp:127.0.0.1:0",
        "udp:127.0.0.1:0",
        ...(tls ? ["tls:127.0.0.1:0"] : []),
      ],
    },
  );
}

/** A SIPp UAS on a free port, running until `calls` calls ended (or stopped). */
async function startSippUas(
  dir: string,
  mode: SippMode,
  scenario: string[],
  calls: number,
  traceMessages: boolean,
): Promise<{ uas: SippProcess; port: number }> {
  const port = freeTcpUdpPort();
  const uas = startSipp({
    cwd: dir,
    killAfterMs: 150_000,
    args: [
      ...scenario,
      ...["-t", mode, "-max_socket", "2000", "-i", "127.0.0.1", "-p", String(port)],
      ...["-m", String(calls), "-timeout", "90s", "-timeout_error"],
      ...["-trace_stat", "-stf", `${dir}/uas_stat.csv`],
      ...["-trace_err", "-error_file", `${dir}/uas_errors.log`],
      ...(traceMessages ? ["-trace_msg", "-message_file", `${dir}/uas_messages.log`] : []),
    ],
  });
  const started = await within(
    Promise.race([
      waitForBound(transportOf(mode), port, 10_000, "SIPp UAS").then(() => true),
      uas.done.then(() => false),
    ]),
    11_000,
  );
  if (!started) {
    const result = await uas.stop();
    throw new Error(`SIPp UAS did not start (exit code ${result.code}):\n${tail(result.output)}`);
  }
  return { uas, port };
}

/** Options of one SIPp UAC → sipedge → SIPp UAS run. */
interface InteropRun {
  calls: number;
  rate: number;
  /** Most calls in flight (`-l`, default 200). */
  limit?: number;
  uacMode: SippMode;
  uasMode: SippMode;
  uacScenario: string[];
  uasScenario: string[];
  /** Log the messages the UAS receives (`-trace_msg`) and return them. */
  traceUasMessages?: boolean;
}

/** What one run returns, for further checks. */
interface InteropOutcome {
  uasMessages: string;
  uacStats: SippStats;
  uasStats: SippStats;
  counters: Record<string, number>;
}

/**
 * Runs a SIPp UAS, sipedge and a SIPp UAC, and asserts that every call succeeded on both sides:
 * exit code 0 and, from `-trace_stat`, `calls` successful and 0 failed calls.
 */
async function runInterop(run: InteropRun): Promise<InteropOutcome> {
  const dir = await Deno.makeTempDir({ prefix: "sipedge_interop_udp_" });
  let uas: SippProcess | undefined;
  let uac: SippProcess | undefined;
  let env: ProxyEnv | undefined;
  try {
    const started = await startSippUas(
      dir,
      run.uasMode,
      run.uasScenario,
      run.calls,
      run.traceUasMessages ?? false,
    );
    uas = started.uas;
    const uasPort = started.port;
    env = await startProxy(`sip:127.0.0.1:${uasPort};transport=${transportOf(run.uasMode)}`);
    const proxyPort = listenerPort(env, transportOf(run.uacMode));

    uac = startSipp({
      cwd: dir,
      killAfterMs: 120_000,
      args: [
        `127.0.0.1:${proxyPort}`,
        ...run.uacScenario,
        ...["-key", "uas_hostport", `127.0.0.1:${uasPort}`],
        ...["-t", run.uacMode, "-max_socket", "2000", "-i", "127.0.0.1"],
        ...["-p", String(freeTcpUdpPort())],
        ...["-m", String(run.calls), "-r", String(run.rate), "-l", String(run.limit ?? 200)],
        ...["-timeout", "60s", "-timeout_error", "-recv_timeout", "10s"],
        ...["-trace_stat", "-stf", `${dir}/uac_stat.csv`],
        ...["-trace_err", "-error_file", `${dir}/uac_errors.log`],
      ],
    });
    const uacResult = await uac.done;
    const uasResult: SippResult = (await within(uas.done, 20_000)) ?? await uas.stop();
    const counters = await env.counters().catch(() => ({} as Record<string, number>));

    const uacStats = await statsOf(`${dir}/uac_stat.csv`);
    const uasStats = await statsOf(`${dir}/uas_stat.csv`);
    const describe = (name: string, s: SippStats | undefined) =>
      s === undefined
        ? `${name}: no statistics`
        : `${name}: ${s.successful} successful / ${s.failed} failed calls, ` +
          `${retransmissions(s)} retransmissions`;
    const summary = `${describe("UAC", uacStats)}; ${describe("UAS", uasStats)}`;
    const ok = uacResult.code === 0 && uasResult.code === 0 &&
      uacStats?.failed === 0 && uasStats?.failed === 0 &&
      uacStats.successful === run.calls && uasStats.successful === run.calls;
    if (!ok) {
      const where = `sipedge on ${env.proxy.listening.join(", ")}, UAS on ` +
        `${transportOf(run.uasMode)}:127.0.0.1:${uasPort}`;
      assert.fail(
        [
          `expected ${run.calls} successful calls and none failed; ${summary}`,
          where,
          `UAC: ${uac.commandLine}\n  exit code ${uacResult.code}` +
          (uacResult.timedOut ? " (killed: timeout)" : ""),
          `UAS: ${uas.commandLine}\n  exit code ${uasResult.code}` +
          (uasResult.timedOut ? " (killed: timeout)" : ""),
          `sipedge counters: ${JSON.stringify(counters)}`,
          `--- UAC errors ---\n${tail(await readIfExists(`${dir}/uac_errors.log`), 3000)}`,
          `--- UAS errors ---\n${tail(await readIfExists(`${dir}/uas_errors.log`), 3000)}`,
          `--- UAC screen ---\n${tail(uacResult.output, 3000)}`,
          `--- UAS screen ---\n${tail(uasResult.output, 3000)}`,
          `--- sipedge output ---\n${tail(env.proxy.output())}`,
        ].join("\n"),
      );
    }
    console.log(`sipedge ${run.uacMode} → ${run.uasMode}: ${summary}`);
    return {
      uasMessages: run.traceUasMessages ? await readIfExists(`${dir}/uas_messages.log`) : "",
      uacStats,
      uasStats,
      counters,
    };
  } finally {
    await uac?.stop();
    await uas?.stop();
    await env?.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Header lines of a message's head (text from a SIPp message log). */
function headerLines(message: string): string[] {
  return message.split(/\r?\n\r?\n/)[0].split(/\r?\n/).slice(1);
}

/** The values of header `name` (full name; one per line as SIPp writes them). */
function headerValues(message: string, name: string): string[] {
  const re = new RegExp(`^${name}\\s*:\\s*`, "i");
  return headerLines(message).filter((h) => re.test(h)).map((h) => h.replace(re, "").trim());
}

/**
 * Checks the INVITEs a SIPp UAS logged: `calls` of them, each with sipedge's Via on top over
 * `viaTransport` and Max-Forwards decremented; ACK and BYE arrived too.
 */
function checkUasInvites(uasMessages: string, calls: number, viaTransport: string): void {
  const received = parseSippMessageLog(uasMessages).filter((m) => m.direction === "received");
  const invites = received.filter((m) => m.message.startsWith("INVITE "));
  assert.equal(invites.length, calls, "INVITEs received by the UAS (no retransmission expected)");
  for (const { message } of invites) {
    const vias = headerValues(message, "via");
    assert.match(
      vias[0] ?? "",
      new RegExp(`^SIP/2\\.0/${viaTransport} 127\\.0\\.0\\.1:\\d+;branch=z9hG4bK`),
      `sipedge's Via on top:\n${message}`,
    );
    assert.equal(vias.length, 2, `two Vias (sipedge's and SIPp's):\n${message}`);
    assert.equal(headerValues(message, "max-forwards")[0], "69", `Max-Forwards:\n${message}`);
  }
  const methods = new Set(received.map((m) => m.message.split(" ")[0]));
  assert.ok(methods.has("ACK") && methods.has("BYE"), `ACK and BYE reach the UAS: ${[...methods]}`);
}

const OPTIONS_UAC = ["-sf", `${SCENARIO_DIR}/options_uac.xml`];
const OPTIONS_UAS = ["-sf", `${SCENARIO_DIR}/options_uas.xml`];
const CALLS = 100;

Deno.test({
  name: "interop sipp udp: 100 INVITE/ACK/BYE calls UDP → UDP, one socket (-t u1)",
  ignore: !HAVE_SIPP,
  async fn() {
    const { uasMessages } = await runInterop({
      calls: CALLS,
      rate: 50,
      uacMode: "u1",
      uasMode: "u1",
      uacScenario: ["-sn", "uac"],
      uasScenario: ["-sn", "uas"],
      traceUasMessages: true,
    });
    checkUasInvites(uasMessages, CALLS, "UDP");
  },
});

Deno.test({
  name: "interop sipp udp: 100 INVITE/ACK/BYE calls UDP → UDP, a socket per call (-t un)",
  ignore: !HAVE_SIPP,
  async fn() {
    const { uasMessages } = await runInterop({
      calls: CALLS,
      rate: 50,
      uacMode: "un",
      uasMode: "u1",
      uacScenario: ["-sn", "uac"],
      uasScenario: ["-sn", "uas"],
      traceUasMessages: true,
    });
    checkUasInvites(uasMessages, CALLS, "UDP");
    // Each call came from its own UAC socket: the UAS sees each INVITE's second Via with a port
    // of its own.
    const ports = new Set(
      parseSippMessageLog(uasMessages)
        .filter((m) => m.direction === "received" && m.message.startsWith("INVITE "))
        .map((m) => /:(\d+)/.exec(headerValues(m.message, "via")[1] ?? "")?.[1]),
    );
    assert.ok(ports.size > 1, `the UAC used a socket per call: Via ports ${[...ports]}`);
  },
});

Deno.test({
  name: "interop sipp udp: 100 INVITE/ACK/BYE calls UDP → TCP (-t u1 → -t t1)",
  ignore: !HAVE_SIPP,
  async fn() {
    const { uasMessages } = await runInterop({
      calls: CALLS,
      rate: 50,
      uacMode: "u1",
      uasMode: "t1",
      uacScenario: ["-sn", "uac"],
      uasScenario: ["-sn", "uas"],
      traceUasMessages: true,
    });
    checkUasInvites(uasMessages, CALLS, "TCP");
  },
});

Deno.test({
  name: "interop sipp udp: 100 INVITE/ACK/BYE calls TCP → UDP (-t t1 → -t u1)",
  ignore: !HAVE_SIPP,
  async fn() {
    const { uasMessages } = await runInterop({
      calls: CALLS,
      rate: 50,
      uacMode: "t1",
      uasMode: "u1",
      uacScenario: ["-sn", "uac"],
      uasScenario: ["-sn", "uas"],
      traceUasMessages: true,
    });
    checkUasInvites(uasMessages, CALLS, "UDP");
  },
});

Deno.test({
  name: "interop sipp udp: 2,000 OPTIONS at 400/s UDP → UDP, none failed",
  ignore: !HAVE_SIPP,
  async fn() {
    const calls = 2000;
    const { uacStats, uasStats, counters } = await runInterop({
      calls,
      rate: 400,
      uacMode: "u1",
      uasMode: "u1",
      uacScenario: OPTIONS_UAC,
      uasScenario: OPTIONS_UAS,
    });
    console.log(
      `  retransmissions: UAC ${retransmissions(uacStats)}, UAS ${retransmissions(uasStats)}; ` +
        `sipedge udp_datagrams_in ${counters.udp_datagrams_in}, udp_dropped ` +
        `${counters.udp_dropped ?? 0}`,
    );
    assert.ok(
      counters.udp_datagrams_in >= 2 * calls,
      `every OPTIONS and every 200 came in over UDP: ${JSON.stringify(counters)}`,
    );
  },
});

Deno.test({
  name: "interop sipp udp: TLS clients in both workers → SIPp UAS over UDP, responses back",
  ignore: !HAVE_SIPP,
  async fn() {
    const perConnection = 3;
    const dir = await Deno.makeTempDir({ prefix: "sipedge_interop_udp_" });
    const clients: TlsUac[] = [];
    let uas: SippProcess | undefined;
    let env: ProxyEnv | undefined;
    try {
      // Connections until one is owned by each worker (the kernel picks; at most 40 tries).
      const tries: number[] = [];
      const started = await startSippUas(dir, "u1", OPTIONS_UAS, 2 * perConnection, false);
      uas = started.uas;
      env = await startProxy(`sip:127.0.0.1:${started.port};transport=udp`, true);
      const tlsPort = listenerPort(env, "tls");
      const byWorker = new Map<number, TlsUac>();
      for (let i = 0; i < 40 && byWorker.size < 2; i++) {
        const client = await TlsUac.connect(tlsPort);
        clients.push(client);
        const worker = (await env.inbound(client.localPort)).worker;
        tries.push(worker);
        if (!byWorker.has(worker)) byWorker.set(worker, client);
      }
      assert.equal(byWorker.size, 2, `TLS connections in both workers (owners: ${tries})`);
      for (const [worker, client] of byWorker) {
        for (let i = 0; i < perConnection; i++) {
          const request = buildRequest({
            method: "OPTIONS",
            uri: `sip:uas@127.0.0.1:${started.port}`,
            via: `SIP/2.0/TLS 127.0.0.1:${client.localPort};branch=z9hG4bK${uniqueId()};rport`,
            headers: [`Contact: <sip:tls@127.0.0.1:${client.localPort};transport=tls>`],
          });
          await client.send(request.bytes);
          let answer: SipMessage;
          try {
            answer = await client.nextMessage(5000);
          } catch (error) {
            throw new Error(
              `no answer over TLS (connection in worker ${worker}, request ${i + 1}): ` +
                `${(error as Error).message}\n--- UAS ---\n${tail(uas.output(), 2000)}\n` +
                `--- sipedge ---\n${tail(env.proxy.output())}`,
            );
          }
          assert.equal(answer.status, 200, `worker ${worker}: ${answer.startLine}`);
          assert.equal(answer.callId, request.callId);
          const vias = answer.headers("via");
          assert.equal(vias.length, 1, `only the client's Via comes back: ${vias}`);
        }
      }
      const uasResult = (await within(uas.done, 20_000)) ?? await uas.stop();
      const uasStats = await statsOf(`${dir}/uas_stat.csv`);
      assert.equal(uasResult.code, 0, `SIPp UAS exit code:\n${tail(uasResult.output, 3000)}`);
      assert.equal(uasStats?.successful, 2 * perConnection, "calls the UAS answered");
      assert.equal(uasStats?.failed, 0);
      const counters = await env.counters();
      console.log(
        `TLS → UDP: ${2 * perConnection} OPTIONS answered; connection owners tried: ${tries}; ` +
          `handoffs_out ${counters.handoffs_out}`,
      );
    } finally {
      for (const client of clients) await client.close();
      await uas?.stop();
      await env?.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "interop sipp udp: INVITE retransmissions pass through with the same Via branch",
  ignore: !HAVE_SIPP,
  async fn() {
    const calls = 3;
    const dir = await Deno.makeTempDir({ prefix: "sipedge_interop_udp_" });
    /** Every INVITE copy the UAS got, by Call-ID. */
    const invites = new Map<string, { message: SipMessage; from: Deno.NetAddr; at: number }[]>();
    const acks: string[] = [];
    const byes: string[] = [];
    const errors: string[] = [];
    // A UAS that ignores the first copy of each INVITE and answers the next one (180, 200),
    // then answers BYE. Responses go to the top Via's sent-by (sipedge's UDP port).
    await using uas = new UdpPeer(async ({ data, from, at }, peer) => {
      let message: SipMessage;
      try {
        message = SipMessage.parse(data);
      } catch (error) {
        errors.push(`unparsable datagram: ${(error as Error).message}`);
        return;
      }
      const via = message.headers("via")[0] ?? "";
      const sentBy = /^SIP\/2\.0\/UDP [^:;]+:(\d+)/.exec(via);
      if (sentBy === null || Number(sentBy[1]) !== from.port) {
        errors.push(`top Via ${via} does not name the sender port ${from.port}`);
        return;
      }
      const port = Number(sentBy[1]);
      const contact = `Contact: <sip:uas@127.0.0.1:${peer.port};transport=udp>`;
      if (message.method === "INVITE") {
        const copies = invites.get(message.callId) ?? [];
        copies.push({ message, from, at });
        invites.set(message.callId, copies);
        if (copies.length === 1) return; // dropped: the UAC must retransmit
        await peer.send(buildResponse(message, 180, { toTag: "uas1" }), port);
        await peer.send(buildResponse(message, 200, { toTag: "uas1", headers: [contact] }), port);
      } else if (message.method === "ACK") {
        acks.push(message.callId);
      } else if (message.method === "BYE") {
        byes.push(message.callId);
        await peer.send(buildResponse(message, 200), port);
      } else if (message.isRequest) {
        await peer.send(buildResponse(message, 200), port);
      }
    });
    let uac: SippProcess | undefined;
    let env: ProxyEnv | undefined;
    try {
      env = await startProxy(`sip:127.0.0.1:${uas.port};transport=udp`);
      const udpPort = listenerPort(env, "udp");
      uac = startSipp({
        cwd: dir,
        killAfterMs: 60_000,
        args: [
          `127.0.0.1:${udpPort}`,
          ...["-sn", "uac", "-t", "u1", "-i", "127.0.0.1", "-p", String(freeTcpUdpPort())],
          ...["-m", String(calls), "-r", String(calls), "-l", String(calls)],
          ...["-timeout", "40s", "-timeout_error"],
          ...["-trace_stat", "-stf", `${dir}/uac_stat.csv`],
          ...["-trace_err", "-error_file", `${dir}/uac_errors.log`],
        ],
      });
      const result = await uac.done;
      const stats = await statsOf(`${dir}/uac_stat.csv`);
      const context = async () =>
        `UAC exit code ${result.code}; ${stats?.successful} successful / ${stats?.failed} ` +
        `failed; errors at the UAS: ${errors.join("; ")}\n--- UAC errors ---\n` +
        `${tail(await readIfExists(`${dir}/uac_errors.log`), 3000)}\n--- UAC screen ---\n` +
        `${tail(result.output, 3000)}\n--- sipedge ---\n${tail(env!.proxy.output())}`;
      if (result.code !== 0 || stats?.successful !== calls || stats.failed !== 0) {
        assert.fail(`expected ${calls} successful calls: ${await context()}`);
      }
      assert.deepEqual(errors, [], await context());
      assert.equal(invites.size, calls, "INVITEs of every call reached the UAS");
      for (const [callId, copies] of invites) {
        assert.ok(copies.length >= 2, `call ${callId}: the retransmission reached the UAS`);
        const [first, second] = copies;
        const firstVias = first.message.headers("via");
        const secondVias = second.message.headers("via");
        const branch = (via: string) => /;branch=([^;,\s]+)/.exec(via)?.[1];
        assert.ok(branch(firstVias[0])?.startsWith("z9hG4bK"), `sipedge's branch: ${firstVias[0]}`);
        assert.equal(
          branch(secondVias[0]),
          branch(firstVias[0]),
          `call ${callId}: the retransmission got the same top Via branch`,
        );
        assert.deepEqual(secondVias, firstVias, `call ${callId}: the same Via headers`);
        assert.equal(
          second.message.header("max-forwards"),
          first.message.header("max-forwards"),
        );
        assert.ok(
          second.at - first.at >= 300,
          `retransmitted after T1: ${second.at - first.at} ms`,
        );
        console.log(
          `call ${callId}: ${copies.length} INVITE copies ${second.at - first.at} ms apart, ` +
            `top Via ${firstVias[0]}`,
        );
      }
      assert.ok(retransmissions(stats) >= calls, `SIPp counted its retransmissions`);
      // ACK and BYE arrive too (the ACK before the BYE answer; both within the call).
      for (const callId of invites.keys()) {
        assert.ok(acks.includes(callId), `ACK of ${callId}`);
        assert.ok(byes.includes(callId), `BYE of ${callId}`);
      }
    } finally {
      await uac?.stop();
      await env?.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
