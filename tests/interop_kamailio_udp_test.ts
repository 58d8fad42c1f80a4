/**
 * Kamailio 5.6 (stateless forward, listening on UDP) as sipedge's upstream over UDP:
 *
 * - a TCP client and a UDP phone → sipedge → Kamailio over UDP → a UDP UAS (test peer), and the
 *   200 back the same way: Via stack at the UAS (Kamailio's, sipedge's, the client's), the
 *   response at the client with only its own Via;
 * - SIPp's built-in uac (UDP) → sipedge → Kamailio → SIPp's built-in uas (UDP): INVITE, ACK,
 *   BYE calls, every one successful on both sides (when SIPp is installed).
 *
 * Skipped when Kamailio is not installed (apt-get install -y kamailio).
 * @module
 */
import assert from "node:assert/strict";
import { findKamailio, startKamailioUdp } from "./support/kamailio_udp.ts";
import type { KamailioProcess } from "./support/kamailio_process.ts";
import { ProxyEnv } from "./support/proxy_env.ts";
import {
  findOnPath,
  parseSippMessageLog,
  parseSippStats,
  type SippProcess,
  startSipp,
} from "./support/sipp.ts";
import { buildRequest, buildResponse, SipMessage, uniqueId } from "./support/sip_peer.ts";
import { freeTcpUdpPort, UdpPeer, waitForUdpBound } from "./support/udp_peer.ts";

const HAVE_KAMAILIO = findKamailio() !== undefined;
const HAVE_SIPP = findOnPath("sipp") !== undefined;
if (!HAVE_KAMAILIO) {
  console.warn(
    "interop_kamailio_udp_test.ts: kamailio is not installed, so these tests are ignored " +
      "(apt-get install -y kamailio)",
  );
}

/** The last `n` characters of `text`, for failure messages. */
function tail(text: string, n = 5000): string {
  return text.length <= n ? text : `[...]\n${text.slice(text.length - n)}`;
}

/** sipedge (2 workers; tcp and udp listeners) forwarding everything to Kamailio over UDP. */
async function startSipedgeTo(kamailioPort: number): Promise<ProxyEnv> {
  return await ProxyEnv.start(
    2,
    `[plugins.tcp]\n[plugins.udp]\n[plugins.static_router]\n` +
      `default_route = "sip:127.0.0.1:${kamailioPort};transport=udp"\n`,
    { sipedge: `log_level = "warning"`, listen: ["tcp:127.0.0.1:0", "udp:127.0.0.1:0"] },
  );
}

function listenerPort(env: ProxyEnv, transport: string): number {
  return Number(env.proxy.listening.find((a) => a.startsWith(`${transport}:`))!.split(":").at(-1));
}

/** Runs `body`; a failure gets sipedge's and Kamailio's output appended. */
async function withOutputs(
  env: ProxyEnv,
  kamailio: KamailioProcess,
  body: () => Promise<void>,
): Promise<void> {
  try {
    await body();
  } catch (error) {
    const counters = await env.counters().catch(() => ({}));
    (error as Error).message += `\nsipedge counters: ${JSON.stringify(counters)}` +
      `\n--- sipedge output ---\n${tail(env.proxy.output())}` +
      `\n--- kamailio output ---\n${tail(kamailio.output())}`;
    throw error;
  }
}

Deno.test({
  name: "interop kamailio udp: TCP client and UDP phone → sipedge → Kamailio (UDP) → UDP UAS",
  ignore: !HAVE_KAMAILIO,
  async fn() {
    // The UAS answers every request 200, to the top Via's sent-by (Kamailio's UDP port).
    await using uas = new UdpPeer(async ({ data }, peer) => {
      const message = SipMessage.parse(data);
      if (!message.isRequest || message.method === "ACK") return;
      const port = Number(/^SIP\/2\.0\/UDP [^:;]+:(\d+)/.exec(message.headers("via")[0])![1]);
      await peer.send(buildResponse(message, 200, { headers: ["X-Uas: udp-peer"] }), port);
    });
    const kamailioPort = freeTcpUdpPort();
    await using kamailio = await startKamailioUdp({
      port: kamailioPort,
      forward: `sip:127.0.0.1:${uas.port};transport=udp`,
    });
    await using env = await startSipedgeTo(kamailioPort);
    await withOutputs(env, kamailio, async () => {
      const seen = (callId: string) =>
        uas.log.map((d) => SipMessage.parse(d.data)).find((m) =>
          m.isRequest && m.callId === callId
        );
      const check = (request: { callId: string }, clientVia: RegExp, viaName: string) => {
        const atUas = seen(request.callId);
        assert.ok(atUas, `the request reached the UAS`);
        const vias = atUas.headers("via");
        assert.equal(vias.length, 3, `Kamailio's, sipedge's and the client's Via: ${vias}`);
        assert.match(vias[0], new RegExp(`^SIP/2\\.0/UDP 127\\.0\\.0\\.1:${kamailioPort};branch=`));
        assert.match(
          vias[1],
          new RegExp(`^SIP/2\\.0/UDP 127\\.0\\.0\\.1:${listenerPort(env, "udp")};branch=z9hG4bK`),
          `sipedge's Via names its UDP listener (${viaName} in)`,
        );
        assert.match(vias[2], clientVia);
        assert.equal(atUas.header("max-forwards"), "68", "decremented by sipedge and Kamailio");
      };

      // A TCP client (in each worker: worker 1's UDP send is handed to worker 0).
      for (const worker of [0, 1]) {
        await using client = await env.connectIn({ worker });
        for (const method of ["OPTIONS", "MESSAGE"]) {
          const request = buildRequest({
            method,
            uri: `sip:bob@127.0.0.1:${uas.port}`,
            body: method === "MESSAGE" ? "hello over udp" : undefined,
            headers: method === "MESSAGE" ? ["Content-Type: text/plain"] : [],
          });
          await client.send(request.bytes);
          const answer = await client.nextMessage(5000);
          assert.equal(answer.status, 200, `${method} from worker ${worker}: ${answer.startLine}`);
          assert.equal(answer.callId, request.callId);
          assert.equal(answer.header("x-uas"), "udp-peer");
          assert.equal(answer.headers("via").length, 1, "only the client's Via comes back");
          check(
            request,
            /^SIP\/2\.0\/TCP client\.invalid:5099;branch=.*;received=127\.0\.0\.1/,
            "TCP",
          );
          if (method === "MESSAGE") {
            assert.equal(
              new TextDecoder().decode(seen(request.callId)!.body),
              "hello over udp",
            );
          }
        }
      }

      // A UDP phone.
      await using phone = new UdpPeer();
      const request = buildRequest({
        method: "OPTIONS",
        uri: `sip:bob@127.0.0.1:${uas.port}`,
        via: `SIP/2.0/UDP 127.0.0.1:${phone.port};branch=z9hG4bK${uniqueId()};rport`,
      });
      await phone.send(request.bytes, listenerPort(env, "udp"));
      const { message, from } = await phone.nextMessage(5000);
      assert.equal(message.status, 200);
      assert.equal(message.callId, request.callId);
      assert.equal(from.port, listenerPort(env, "udp"), "answered from sipedge's SIP port");
      assert.equal(message.headers("via").length, 1);
      check(request, new RegExp(`^SIP/2\\.0/UDP 127\\.0\\.0\\.1:${phone.port};`), "UDP");
    });
  },
});

Deno.test({
  name: "interop kamailio udp: SIPp uac (UDP) → sipedge → Kamailio (UDP) → SIPp uas, 50 calls",
  ignore: !HAVE_KAMAILIO || !HAVE_SIPP,
  async fn() {
    const calls = 50;
    const dir = await Deno.makeTempDir({ prefix: "sipedge_kamailio_udp_" });
    let uas: SippProcess | undefined;
    let uac: SippProcess | undefined;
    let kamailio: KamailioProcess | undefined;
    let env: ProxyEnv | undefined;
    try {
      const uasPort = freeTcpUdpPort();
      uas = startSipp({
        cwd: dir,
        killAfterMs: 90_000,
        args: [
          ...["-sn", "uas", "-t", "u1", "-i", "127.0.0.1", "-p", String(uasPort)],
          ...["-m", String(calls), "-timeout", "60s", "-timeout_error"],
          ...["-trace_stat", "-stf", `${dir}/uas_stat.csv`],
          ...["-trace_msg", "-message_file", `${dir}/uas_messages.log`],
        ],
      });
      await waitForUdpBound(uasPort, 10_000, "SIPp UAS");
      const kamailioPort = freeTcpUdpPort();
      kamailio = await startKamailioUdp({
        port: kamailioPort,
        forward: `sip:127.0.0.1:${uasPort};transport=udp`,
      });
      env = await startSipedgeTo(kamailioPort);
      uac = startSipp({
        cwd: dir,
        killAfterMs: 60_000,
        args: [
          `127.0.0.1:${listenerPort(env, "udp")}`,
          ...["-sn", "uac", "-t", "u1", "-i", "127.0.0.1", "-p", String(freeTcpUdpPort())],
          ...["-m", String(calls), "-r", "25", "-l", "100"],
          ...["-timeout", "40s", "-timeout_error"],
          ...["-trace_stat", "-stf", `${dir}/uac_stat.csv`],
        ],
      });
      const uacResult = await uac.done;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const uasResult = await Promise.race([
        uas.done,
        new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), 20_000)),
      ]) ?? await uas.stop();
      clearTimeout(timer);
      const stats = async (side: string) => {
        try {
          return parseSippStats(await Deno.readTextFile(`${dir}/${side}_stat.csv`));
        } catch {
          return undefined;
        }
      };
      const uacStats = await stats("uac");
      const uasStats = await stats("uas");
      const summary = `UAC exit ${uacResult.code}: ${uacStats?.successful} successful / ` +
        `${uacStats?.failed} failed, ${uacStats?.columns["Retransmissions(C)"]} retransmissions; ` +
        `UAS exit ${uasResult.code}: ${uasStats?.successful} successful / ${uasStats?.failed} failed`;
      await withOutputs(env, kamailio, async () => {
        assert.ok(
          uacResult.code === 0 && uasResult.code === 0 && uacStats?.successful === calls &&
            uasStats?.successful === calls && uacStats.failed === 0 && uasStats.failed === 0,
          `${summary}\n--- UAC ---\n${tail(uacResult.output, 2500)}\n--- UAS ---\n` +
            tail(uasResult.output, 2500),
        );
        const received = parseSippMessageLog(await Deno.readTextFile(`${dir}/uas_messages.log`))
          .filter((m) => m.direction === "received");
        const invites = received.filter((m) => m.message.startsWith("INVITE "));
        assert.equal(invites.length, calls);
        for (const { message } of invites) {
          const vias = message.split(/\r?\n/).filter((l) => /^via\s*:/i.test(l));
          assert.equal(vias.length, 3, `three Vias:\n${message}`);
          assert.match(vias[0], new RegExp(`127\\.0\\.0\\.1:${kamailioPort};branch=`));
          assert.match(vias[1], new RegExp(`127\\.0\\.0\\.1:${listenerPort(env!, "udp")};branch=`));
        }
        const methods = new Set(received.map((m) => m.message.split(" ")[0]));
        assert.ok(methods.has("ACK") && methods.has("BYE"), `ACK and BYE: ${[...methods]}`);
      });
      console.log(`sipedge → kamailio (udp): ${summary}`);
    } finally {
      await uac?.stop();
      await uas?.stop();
      await env?.stop();
      await kamailio?.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
