/**
 * A real browser softphone through sipedge (RFC 7118, SIP over WebSocket): JsSIP (npm `jssip`,
 * bundled for the browser) in Debian's headless Chromium, driven by npm `playwright-core`.
 *
 * ```
 * Chromium (JsSIP) ──wss──▶ sipedge ──tcp──▶ Kamailio registrar (use_path, domain example.com)
 *                              │ ◀──tcp── MESSAGE for alice (looked up, Route = sipedge's Path)
 *                              └──tcp──▶ SIPp UAS (INVITE sip:uas@127.0.0.1:PORT;transport=tcp)
 * ```
 *
 * 1. The browser registers `sip:alice@example.com` over `wss://` (JsSIP's Contact and Via name
 *    an `.invalid` host: only the WebSocket reaches it). sipedge routes example.com to the
 *    registrar and adds its Path with a flow token; the registrar's 200 reaches the browser.
 * 2. A raw TCP SIP peer sends a MESSAGE for alice to the registrar, which looks her up and sends
 *    it with the Path as Route to sipedge's tcp listener; sipedge delivers it over the browser's
 *    wss connection (from whichever worker it arrived in). The browser shows the body, and its
 *    200 goes back the same way to the peer.
 * 3. The browser calls the SIPp UAS directly by Request-URI (sipedge routes it over tcp). SIPp
 *    answers 180 and 200 with a WebRTC-plausible SDP answer (tests/sipp/invite_uas_webrtc.xml),
 *    so JsSIP accepts it and sends its ACK (to a plain RTP/AVP answer, whose setRemoteDescription
 *    fails, JsSIP sends ACK and then BYE with Reason cause=488). The browser hangs up: BYE, 200.
 *    No media flows (the page's RTCPeerConnection gathers no ICE candidates: relay only, no TURN
 *    server, so Chromium binds no UDP socket): the test asserts the SIP signalling only.
 * 4. The browser unregisters (a REGISTER with Expires 0 over the same flow) and stops.
 *
 * Skipped, with a line saying why, when Chromium, Kamailio's registrar or SIPp is not installed
 * (.ci/run installs all three).
 */
import assert from "node:assert/strict";
import type { ConsoleMessage, Page } from "npm:playwright-core@1.65.1";
import {
  BROWSER_DIR,
  chromiumUnavailableReason,
  jssipBundle,
  launchChromium,
  servePage,
} from "./support/browser.ts";
import {
  kamailioRegistrarAvailable,
  startKamailioRegistrar,
} from "./support/kamailio_registrar.ts";
import { ProxyEnv } from "./support/proxy_env.ts";
import { freePort, withOutput } from "./support/sipedge_process.ts";
import { buildRequest, type SipMessage, TestUac, uniqueId } from "./support/sip_peer.ts";
import {
  findOnPath,
  parseSippMessageLog,
  SCENARIO_DIR,
  startSipp,
  waitForTcpListen,
} from "./support/sipp.ts";

/** Why the test cannot run here (undefined: it can). */
function skipReason(): string | undefined {
  const chromium = chromiumUnavailableReason();
  if (chromium !== undefined) return chromium;
  if (!kamailioRegistrarAvailable()) return "Kamailio (with registrar and usrloc) is not installed";
  if (findOnPath("sipp") === undefined) return "SIPp is not installed (apt-get install sip-tester)";
  return undefined;
}

const skip = skipReason();
if (skip !== undefined) {
  console.log(`interop browser ws: SKIPPED: ${skip}`);
}

/** The domain the registrar serves and the browser registers in. */
const DOMAIN = "example.com";

/** One JsSIP event as the page records it (tests/browser/page.html). */
interface PageEvent {
  type: string;
  at: number;
  status?: number;
  reason?: string;
  cause?: string;
  originator?: string;
  body?: string;
  from?: string;
  [key: string]: unknown;
}

/** The page's events so far. */
function events(page: Page): Promise<PageEvent[]> {
  return page.evaluate(() =>
    (globalThis as unknown as { sipTest: { events: PageEvent[] } }).sipTest.events
  );
}

/**
 * Waits until the page has recorded an event of type `want` (returned); an event of a type in
 * `fail` first, or the timeout, throws with every event so far.
 */
async function waitForEvent(
  page: Page,
  want: string,
  fail: string[],
  timeoutMs: number,
): Promise<PageEvent> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const seen = await events(page);
    const bad = seen.find((e) => fail.includes(e.type));
    if (bad !== undefined) {
      throw new Error(`the browser reported ${bad.type} while waiting for ${want}: ${show(seen)}`);
    }
    const good = seen.find((e) => e.type === want);
    if (good !== undefined) return good;
    if (Date.now() > deadline) {
      throw new Error(`no ${want} in the browser within ${timeoutMs} ms: ${show(seen)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Events for a message (SDP bodies left out). */
function show(seen: PageEvent[]): string {
  return JSON.stringify(seen.map(({ sdp: _sdp, ...rest }) => rest), null, 1);
}

/** Calls a function of the page's `window.sipTest`. */
async function pageCall(page: Page, name: string, ...args: unknown[]): Promise<void> {
  await page.evaluate(
    ([name, args]) => {
      const api = (globalThis as unknown as {
        sipTest: Record<string, (...a: unknown[]) => void>;
      }).sipTest;
      api[name as string](...(args as unknown[]));
    },
    [name, args] as const,
  );
}

/** The next final response on `peer` (1xx skipped). */
async function finalResponse(peer: TestUac, timeoutMs: number): Promise<SipMessage> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const message = await peer.nextMessage(Math.max(1, deadline - Date.now()));
    if (!message.isRequest && message.status >= 200) return message;
  }
}

Deno.test({
  name:
    "interop browser ws: JsSIP in headless Chromium registers over wss through sipedge with Kamailio's registrar, receives a MESSAGE over its flow, calls a SIPp UAS and hangs up",
  ignore: skip !== undefined,
  async fn() {
    await using kamailio = await startKamailioRegistrar({ port: freePort(), domain: DOMAIN });
    await using env = await ProxyEnv.start(
      2,
      `[[plugins.static_router.routes]]\ndomain = "${DOMAIN}"\ndestination = "${kamailio.uri}"\n`,
      { listen: ["wss:127.0.0.1:0", "tcp:127.0.0.1:0"] },
    );
    const portOf = (transport: string) => {
      const address = env.proxy.listening.find((a) => a.startsWith(`${transport}:`));
      assert.ok(address, `sipedge listens on ${transport}: ${env.proxy.readyLine}`);
      return Number(address.split(":").at(-1));
    };
    const wssPort = portOf("wss");
    const tcpPort = portOf("tcp");

    const sippDir = await Deno.makeTempDir({ prefix: "sipedge_browser_sipp_" });
    await using _sippDir = {
      [Symbol.asyncDispose]: () => Deno.remove(sippDir, { recursive: true }).catch(() => {}),
    };
    const sippPort = freePort();
    const messageLog = `${sippDir}/messages.log`;
    await using sipp = startSipp({
      args: [
        ...["-sf", `${SCENARIO_DIR}/invite_uas_webrtc.xml`, "-t", "t1", "-i", "127.0.0.1"],
        ...["-p", String(sippPort), "-m", "1"],
        ...["-trace_msg", "-message_file", messageLog],
      ],
      cwd: sippDir,
      killAfterMs: 60_000,
    });
    const pageHtml = await Deno.readTextFile(`${BROWSER_DIR}/page.html`);
    await using site = servePage({
      "/": pageHtml,
      "/jssip.js": await jssipBundle(),
      "/favicon.ico": { body: "", type: "image/x-icon" },
    });
    await using browser = await launchChromium();
    const browserLog: string[] = [];
    const keep = (line: string) => {
      browserLog.push(line);
      if (browserLog.length > 2000) browserLog.splice(0, 1000);
    };

    try {
      await withOutput(env.proxy, async () => {
        await waitForTcpListen(sippPort, 10_000, "sipp");
        const page = await browser.newPage();
        page.on("console", (m: ConsoleMessage) => keep(`[console.${m.type()}] ${m.text()}`));
        page.on("pageerror", (e: Error) => keep(`[pageerror] ${e.message}`));
        page.on("websocket", (ws) => {
          keep(`[websocket] open ${ws.url()}`);
          ws.on("framesent", (f) => keep(`[ws ->] ${String(f.payload)}`));
          ws.on("framereceived", (f) => keep(`[ws <-] ${String(f.payload)}`));
          ws.on("close", () => keep(`[websocket] closed ${ws.url()}`));
        });
        await page.goto(site.url, { timeout: 15_000 });
        await waitForEvent(page, "loaded", [], 5_000);
        const loaded = (await events(page)).find((e) => e.type === "loaded");
        assert.equal(loaded?.jssip, true, "JsSIP loaded in the page");

        // 1. Register over wss.
        await pageCall(page, "start", {
          wsUrl: `wss://127.0.0.1:${wssPort}`,
          uri: `sip:alice@${DOMAIN}`,
        });
        // Connected: the upgrade succeeded with the "sip" subprotocol JsSIP asks for (a browser
        // fails the WebSocket when the server does not choose one of the requested protocols).
        await waitForEvent(page, "connected", ["disconnected"], 10_000);
        const registered = await waitForEvent(
          page,
          "registered",
          ["registrationFailed", "disconnected"],
          10_000,
        );
        assert.equal(registered.status, 200);
        // Kamailio logs the save after sending its 200: wait for the line.
        const saved = await env.until(
          () =>
            Promise.resolve(
              /registrar: saved sip:alice@example\.com \(Path: <([^>]*)>\)/.exec(
                kamailio.output(),
              ) ?? undefined,
            ),
          5_000,
          "the registrar's log of alice's contact with a Path",
        );
        assert.match(
          saved[1],
          new RegExp(`^sip:[A-Za-z0-9_-]{32}@127\\.0\\.0\\.1:${tcpPort};transport=tcp;lr;ob$`),
          "sipedge's Path: a flow token at its tcp listener",
        );
        const connections = await env.connections();
        const flows = connections.filter((c) => c.flow);
        assert.equal(flows.length, 1, `one flow: ${JSON.stringify(connections)}`);
        assert.equal(flows[0].transport, "wss", "the flow is the browser's wss connection");

        // 2. A MESSAGE for alice, sent to the registrar, reaches the browser over its flow.
        await using peer = await TestUac.connect(kamailio.port);
        const text = `hello alice ${uniqueId()}`;
        const message = buildRequest({
          method: "MESSAGE",
          uri: `sip:alice@${DOMAIN}`,
          via: `SIP/2.0/TCP 127.0.0.1:${peer.localPort};branch=z9hG4bK${uniqueId()};rport`,
          from: `<sip:bob@${DOMAIN}>;tag=${uniqueId()}`,
          to: `<sip:alice@${DOMAIN}>`,
          headers: ["Content-Type: text/plain"],
          body: text,
        });
        await peer.send(message.bytes);
        const delivered = await waitForEvent(page, "message", [], 10_000);
        assert.equal(delivered.body, text);
        assert.equal(delivered.from, `sip:bob@${DOMAIN}`);
        const messageOk = await finalResponse(peer, 10_000);
        assert.equal(messageOk.status, 200, `the browser's answer: ${messageOk.startLine}`);
        assert.equal(messageOk.callId, message.callId);

        // 3. A call to the SIPp UAS, answered, then hung up by the browser.
        await pageCall(page, "call", `sip:uas@127.0.0.1:${sippPort};transport=tcp`);
        const progress = await waitForEvent(page, "progress", ["failed", "ended"], 15_000);
        assert.equal(progress.status, 180);
        const sending = await waitForEvent(page, "sending", ["failed", "ended"], 15_000);
        assert.doesNotMatch(String(sending.sdp), /^a=candidate:/m, "no ICE candidate offered");
        const accepted = await waitForEvent(page, "accepted", ["failed", "ended"], 10_000);
        assert.equal(accepted.status, 200);
        await waitForEvent(page, "confirmed", ["failed", "ended"], 10_000);
        await pageCall(page, "hangup");
        const ended = await waitForEvent(page, "ended", ["failed"], 10_000);
        assert.equal(ended.originator, "local");
        assert.equal(ended.cause, "Terminated");

        // SIPp saw the whole dialog, over sipedge.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const done = await Promise.race([
          sipp.done,
          new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), 10_000)),
        ]);
        clearTimeout(timer);
        assert.ok(done, "SIPp ended its one call within 10 s of the BYE");
        const log = parseSippMessageLog(await Deno.readTextFile(messageLog));
        const got = log.filter((m) => m.direction === "received").map((m) => m.message);
        assert.deepEqual(
          got.map((m) => m.split("\r\n", 1)[0].split(" ")[0]),
          ["INVITE", "ACK", "BYE"],
          `SIPp received: ${got.map((m) => m.split("\n", 1)[0]).join(" | ")}`,
        );
        const invite = got[0];
        assert.match(invite, /^Via: SIP\/2\.0\/TCP 127\.0\.0\.1:\d+;branch=/im, "sipedge's Via");
        assert.match(invite, /^Via: SIP\/2\.0\/WSS [^\s;]+\.invalid;/im, "JsSIP's Via");
        // Dialog-forming from a flow: Record-Routed with the flow's token, twice (wss in, tcp out).
        const token = /^sip:([^@]+)@/.exec(saved[1])![1];
        const recordRoutes = [...invite.matchAll(/^Record-Route: *<([^>]+)>/gim)].map((m) => m[1]);
        assert.deepEqual(
          recordRoutes,
          [
            `sip:${token}@127.0.0.1:${tcpPort};transport=tcp;lr`,
            `sip:${token}@127.0.0.1:${wssPort};transport=wss;lr`,
          ],
          "sipedge's Record-Routes",
        );
        assert.match(invite, /^Content-Type: application\/sdp/im);
        assert.match(invite, /^a=fingerprint:sha-256 /m, "a WebRTC offer");
        assert.equal(done.code, 0, `SIPp: ${done.output.slice(-3000)}`);

        const counters = await env.counters();
        assert.equal(counters.flows_registered, 1, JSON.stringify(counters));
        assert.equal(counters.flow_failed ?? 0, 0);
        assert.equal(counters.flow_token_invalid ?? 0, 0);

        // 4. Unregister over the same flow; JsSIP then closes the WebSocket.
        await pageCall(page, "stop");
        const unregistered = await waitForEvent(page, "unregistered", [], 10_000);
        assert.equal(unregistered.status, 200);
        await waitForEvent(page, "disconnected", [], 10_000);
        await env.until(
          async () => (await env.connections()).some((c) => c.flow) ? undefined : true,
          5_000,
          "the browser's connection to close in sipedge",
        );
      });
    } catch (error) {
      const sippLog = await Deno.readTextFile(messageLog).catch(() => "(none)");
      (error as Error).message +=
        `\n--- browser (last 200 lines) ---\n${
          browserLog.slice(-200).join("\n")
        }\n--- kamailio ---\n${kamailio.output()}\n--- sipp messages ---\n${sippLog}\n` +
        `--- sipp output ---\n${sipp.output().slice(-3000)}`;
      throw error;
    }
    // Everything started here is stopped by `await using`, in reverse order (browser first),
    // whether the test passed or not.
  },
});
