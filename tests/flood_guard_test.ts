/**
 * Flood protection end to end (plugins/flood_guard.ts): sipedge with two workers and real
 * sockets from several loopback source addresses (127.0.0.2 … 127.0.0.7; Linux routes all of
 * 127/8 to lo). A flooder is banned within a second while a normal client and a trusted trunk
 * are served completely; banned sources' new connections are closed at accept (TCP, and TLS
 * before the handshake), their datagrams dropped; the ban ends on time; a reload lowering
 * `rate` applies to an open connection; a flooder spread over connections in both workers is
 * one source; the control API and `sipedge ctl` manage bans.
 */
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { type SipedgeProcess, startSipedge } from "./support/sipedge_process.ts";
import { buildRequest, latin1, TestUas } from "./support/sip_peer.ts";
import { type CtlIo, DENO_IO, runCtl } from "../core/ctl.ts";

/** sipedge from a config file the test can rewrite, with its control API. */
class Env implements AsyncDisposable {
  readonly dir = Deno.makeTempDirSync({ prefix: "sipedge_flood_" });
  readonly path = `${this.dir}/config.toml`;
  proxy!: SipedgeProcess;
  controlUrl = "";
  tcpPort = 0;
  udpPort = 0;
  tlsPort = 0;

  static async start(flood: string, uas: TestUas): Promise<Env> {
    const env = new Env();
    env.write(flood, uas);
    env.proxy = await startSipedge({ args: ["--config", env.path] });
    env.controlUrl =
      /sipedge control API: (http:\/\/127\.0\.0\.1:\d+)/.exec(env.proxy.output())![1];
    const port = (t: string) =>
      Number(env.proxy.listening.find((a) => a.startsWith(`${t}:`))?.split(":").at(-1) ?? 0);
    [env.tcpPort, env.udpPort, env.tlsPort] = [port("tcp"), port("udp"), port("tls")];
    return env;
  }

  write(flood: string, uas: TestUas): void {
    Deno.writeTextFileSync(
      this.path,
      `[sipedge]
workers = 2
shutdown_timeout = "200ms"

[control]
address = "127.0.0.1:0"

[[listen]]
address = "tcp:127.0.0.1:0"

[[listen]]
address = "udp:127.0.0.1:0"

[[listen]]
address = "tls:127.0.0.1:0"

[plugins.tls]

[plugins.static_router]
default_route = "${uas.uri}"

[plugins.flood_guard]
${flood}
`,
    );
  }

  // deno-lint-ignore no-explicit-any -- JSON of several shapes, checked by the asserts
  async api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const response = await fetch(`${this.controlUrl}${path}`, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text.startsWith("{") ? JSON.parse(text) : text };
  }

  async counters(): Promise<Record<string, number>> {
    return (await this.api("GET", "/counters")).body.counters;
  }

  async connectionsFrom(ip: string): Promise<{ worker: number; remote: string }[]> {
    const list = (await this.api("GET", "/connections")).body.connections as {
      worker: number;
      remote: string;
      direction: string;
    }[];
    return list.filter((c) => c.direction === "in" && c.remote.startsWith(`${ip}:`));
  }

  /** Log lines matching `pattern`. */
  lines(pattern: RegExp): string[] {
    return this.proxy.output().split("\n").filter((l) => pattern.test(l));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.proxy?.stop();
    Deno.removeSync(this.dir, { recursive: true });
  }
}

/** A TCP client with a chosen source address (node:net: Deno.connect has no local address). */
class NetUac {
  text = "";
  closed = false;
  /** When the connection closed (ms since epoch; 0 while open). */
  closedAt = 0;
  readonly socket: net.Socket;
  readonly done: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Uint8Array) => this.text += latin1(chunk));
    socket.on("error", () => {});
    this.done = new Promise((resolve) =>
      socket.on("close", () => {
        this.closed = true;
        this.closedAt = Date.now();
        resolve();
      })
    );
  }

  static connect(port: number, localAddress: string): Promise<NetUac> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port, localAddress });
      socket.once("connect", () => resolve(new NetUac(socket)));
      socket.once("error", reject);
    });
  }

  get localPort(): number {
    return this.socket.localPort!;
  }

  /** 200 answers read so far. */
  get answered(): number {
    return this.text.match(/SIP\/2\.0 200 OK\r\n/g)?.length ?? 0;
  }

  send(count: number): void {
    if (this.closed) return;
    const requests = Array.from({ length: count }, () => buildRequest().bytes);
    const all = new Uint8Array(requests.reduce((n, r) => n + r.length, 0));
    let at = 0;
    for (const r of requests) all.set(r, (at += r.length) - r.length);
    this.socket.write(all);
  }

  async close(): Promise<void> {
    this.socket.destroy();
    await this.done;
  }
}

/** A UDP client bound to `hostname`. */
class UdpUac implements AsyncDisposable {
  readonly socket: Deno.DatagramConn;
  answered = 0;
  #reading: Promise<void>;

  constructor(hostname: string) {
    const socket = Deno.listenDatagram({ hostname, port: 0, transport: "udp" });
    this.socket = socket;
    this.#reading = (async () => {
      try {
        for await (const [data] of socket) {
          if (latin1(data).startsWith("SIP/2.0 200")) this.answered++;
        }
      } catch {
        // closed
      }
    })();
  }

  async send(port: number): Promise<void> {
    const request = buildRequest({
      via: `SIP/2.0/UDP client.invalid:5099;branch=z9hG4bK${crypto.randomUUID()};rport`,
    });
    await this.socket.send(request.bytes, { transport: "udp", hostname: "127.0.0.1", port });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.socket.close();
    await this.#reading;
  }
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 20 ms until it returns a value (not undefined) or `timeoutMs` ends. */
async function waitUntil<T>(
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
    const value = await check();
    if (value !== undefined) return value;
    await delay(20);
  }
  throw new Error(`timed out after ${timeoutMs} ms: ${check.toString().slice(0, 200)}`);
}

/** A TLS connect from `localAddress`: "secure" when the handshake completed, else "closed". */
function tlsAttempt(port: number, localAddress: string): Promise<"secure" | "closed"> {
  return new Promise((resolve) => {
    const raw = net.connect({ host: "127.0.0.1", port, localAddress });
    raw.on("error", () => {});
    const socket = tls.connect({ socket: raw, rejectUnauthorized: false });
    socket.once("secureConnect", () => {
      socket.destroy();
      resolve("secure");
    });
    socket.once("error", () => resolve("closed"));
    socket.once("close", () => resolve("closed"));
  });
}

Deno.test("flood guard: a flooder is banned within a second; normal and trusted sources are served; the ban ends", async () => {
  await using uas = TestUas.listen();
  await using env = await Env.start(
    `rate = 20\nburst = 40\nban = "2s"\ntrusted = ["127.0.0.4", "10.0.0.0/8"]`,
    uas,
  );
  await using normal = new UdpUac("127.0.0.3");
  const flooder = await NetUac.connect(env.tcpPort, "127.0.0.2");
  const trunk = await NetUac.connect(env.tcpPort, "127.0.0.4");

  const started = Date.now();
  flooder.send(300);
  trunk.send(500); // far over rate and burst, but trusted
  for (let i = 0; i < 10; i++) {
    await normal.send(env.udpPort); // 10 requests at 10/s: under rate 20
    await delay(100);
  }
  await flooder.done;
  const bannedAfter = flooder.closedAt - started;
  assert.ok(bannedAfter < 1000, `banned and closed after ${bannedAfter} ms`);
  assert.ok(flooder.answered <= 40, `the flooder got ${flooder.answered} answers`);
  await waitUntil(() => trunk.answered === 500 ? true : undefined, 5000);
  await waitUntil(() => normal.answered === 10 ? true : undefined, 3000);
  assert.ok(!trunk.closed);

  // One line when the ban starts; the rate seen is in it and in GET /bans.
  const bans = (await env.api("GET", "/bans")).body;
  assert.equal(bans.bans.length, 1);
  assert.equal(bans.bans[0].key, "127.0.0.2");
  assert.equal(bans.bans[0].reason, "flood");
  assert.ok(bans.bans[0].rate > 20, `rate seen ${bans.bans[0].rate}`);
  assert.ok(bans.bans[0].remainingMs <= 2000);
  assert.equal(env.lines(/flood: source 127\.0\.0\.2 banned for 2s/).length, 1);
  // The flooder's requests that got past the bucket are the only ones the UAS saw from it.
  const counters = await env.counters();
  assert.ok(counters.flood_dropped >= 1);

  // While banned: a new TCP connection is closed at once, unanswered; datagrams are dropped.
  const again = await NetUac.connect(env.tcpPort, "127.0.0.2");
  again.send(1);
  await again.done;
  assert.equal(again.answered, 0);
  {
    await using banned = new UdpUac("127.0.0.2");
    await banned.send(env.udpPort);
    await delay(300);
    assert.equal(banned.answered, 0);
  }
  assert.ok((await env.counters()).flood_refused >= 1);

  // The ban ends on time: one line, and the source is served again.
  await waitUntil(
    () => env.lines(/ban of 127\.0\.0\.2 \(flood\) ended/).length > 0 ? true : undefined,
    4000,
  );
  assert.ok(Date.now() - started < bannedAfter + 2000 + 1500, "the ban ended on time");
  const back = await NetUac.connect(env.tcpPort, "127.0.0.2");
  back.send(5);
  await waitUntil(() => back.answered === 5 ? true : undefined, 3000);
  await back.close();
  await trunk.close();
  assert.equal(env.lines(/flood: source 127\.0\.0\.2 banned/).length, 1);
  assert.equal(env.lines(/ban of 127\.0\.0\.2 \(flood\) ended/).length, 1);
  assert.equal((await env.api("GET", "/bans")).body.bans.length, 0);
  const metrics = (await env.api("GET", "/metrics")).body as string;
  assert.match(metrics, /\nsipedge_bans_total\{reason="flood"\} 1\n/);
  assert.match(metrics, /\nsipedge_bans 0\n/);
  assert.match(metrics, /\nsipedge_flood_dropped_total [1-9][0-9]*\n/);
});

Deno.test("flood guard: a reload lowering rate applies to an open connection", async () => {
  await using uas = TestUas.listen();
  await using env = await Env.start(`rate = 1000\nburst = 1000\nban = "10s"`, uas);
  const client = await NetUac.connect(env.tcpPort, "127.0.0.5");
  client.send(100);
  await waitUntil(() => client.answered === 100 ? true : undefined, 5000);
  env.write(`rate = 5\nburst = 10\nban = "10s"`, uas);
  const reload = await env.api("POST", "/reload");
  assert.equal(reload.status, 200, JSON.stringify(reload.body));
  assert.match(reload.body.changes.join("; "), /plugins\.flood_guard/);
  client.send(30);
  await client.done; // banned on the same connection, and closed
  assert.ok(client.answered <= 100 + 10, `answered ${client.answered}`);
  const bans = await waitUntil(async () => {
    const list = (await env.api("GET", "/bans")).body.bans;
    return list.length > 0 ? list : undefined;
  }, 2000);
  assert.equal(bans[0].key, "127.0.0.5");
});

Deno.test("flood guard: a flooder over connections in both workers is one source; all are closed", async () => {
  await using uas = TestUas.listen();
  await using env = await Env.start(`rate = 5\nburst = 60\nban = "30s"`, uas);
  // Four connections in each worker (the kernel spreads them; extras are closed).
  const kept: NetUac[] = [];
  const perWorker = [0, 0];
  for (let i = 0; i < 60 && kept.length < 8; i++) {
    const uac = await NetUac.connect(env.tcpPort, "127.0.0.2");
    const remote = `127.0.0.2:${uac.localPort}`;
    const owner = await waitUntil(
      async () => (await env.connectionsFrom("127.0.0.2")).find((c) => c.remote === remote)?.worker,
      3000,
    );
    if (perWorker[owner] < 4) {
      perWorker[owner]++;
      kept.push(uac);
    } else {
      await uac.close();
    }
  }
  assert.deepEqual(perWorker, [4, 4], "connections landed in both workers");
  // 10 requests on each: 40 per worker (under the burst of 60), 80 in all (over it).
  for (const uac of kept) uac.send(10);
  await Promise.all(kept.map((u) => u.done));
  const answered = kept.reduce((n, u) => n + u.answered, 0);
  assert.ok(answered <= 60 + 10, `answered ${answered}`);
  assert.equal(env.lines(/flood: source 127\.0\.0\.2 banned/).length, 1);
  await waitUntil(
    async () => (await env.connectionsFrom("127.0.0.2")).length === 0 ? true : undefined,
    2000,
  );
  const counters = await env.counters();
  assert.ok(counters.flood_closed + counters.flood_dropped >= 1);
});

Deno.test("flood guard: bans by the control API and sipedge ctl (TCP and TLS closed at accept)", async () => {
  await using uas = TestUas.listen();
  await using env = await Env.start(`trusted = ["127.0.0.4"]`, uas);
  assert.equal((await env.api("POST", "/bans", { address: "127.0.0.4" })).status, 400);
  assert.equal((await env.api("POST", "/bans", { address: "nope" })).status, 400);
  assert.equal(
    (await env.api("POST", "/bans", { address: "127.0.0.6", expire: "soon" })).status,
    400,
  );
  const open = await NetUac.connect(env.tcpPort, "127.0.0.6");
  const added = await env.api("POST", "/bans", { address: "127.0.0.6", expire: "10m" });
  assert.equal(added.status, 201);
  assert.equal(added.body.added.reason, "admin");
  await open.done; // its open connection is closed
  const listed = (await env.api("GET", "/bans")).body.bans;
  assert.equal(listed.length, 1);
  assert.ok(listed[0].remainingMs > 590_000);
  assert.equal(env.lines(/ban of 127\.0\.0\.6 added by an operator for 10m/).length, 1);

  // Closed at accept: TCP at once, TLS before any handshake (in every worker, once the ban's
  // message has reached it).
  const tcpAttempt = async () => {
    const tcp = await NetUac.connect(env.tcpPort, "127.0.0.6");
    tcp.send(1);
    // A worker that has not seen the ban yet answers and keeps the connection: give up on it.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([tcp.done, new Promise((resolve) => timer = setTimeout(resolve, 1000))]);
    clearTimeout(timer);
    const outcome = tcp.closed && tcp.answered === 0 ? "closed" : "answered";
    tcp.socket.destroy();
    await tcp.done;
    return outcome;
  };
  assert.equal(await eventually(tcpAttempt, "closed"), "closed");
  assert.equal(await eventually(() => tlsAttempt(env.tlsPort, "127.0.0.6"), "closed"), "closed");
  assert.equal(await tlsAttempt(env.tlsPort, "127.0.0.7"), "secure");
  assert.ok((await env.counters()).flood_refused >= 2);

  // sipedge ctl against the running process.
  let out = "", err = "";
  const io: CtlIo = { ...DENO_IO, out: (t) => void (out += t), err: (t) => void (err += t) };
  const ctl = (...args: string[]) => runCtl(["--url", env.controlUrl, ...args], io);
  assert.equal(await ctl("bans"), 0);
  assert.match(
    out,
    /^SOURCE +REASON +RATE SEEN +EXPIRES IN +UNTIL +ADDED\n127\.0\.0\.6 +admin +- +9m5[0-9]s/,
  );
  assert.equal(await ctl("ban", "add", "127.0.0.7", "1h"), 0);
  assert.match(out, /banned 127\.0\.0\.7 until .* \(1h00m\)\n/);
  assert.equal(await eventually(() => tlsAttempt(env.tlsPort, "127.0.0.7"), "closed"), "closed");
  assert.equal(await ctl("ban", "delete", "127.0.0.6"), 0);
  assert.equal(await ctl("ban", "delete", "127.0.0.6"), 1);
  assert.equal(err, "127.0.0.6 is not banned\n");
  assert.equal(env.lines(/ban of 127\.0\.0\.6 \(admin\) lifted by an operator/).length, 1);
  const back = await NetUac.connect(env.tcpPort, "127.0.0.6");
  back.send(1);
  await waitUntil(() => back.answered === 1 ? true : undefined, 3000);
  await back.close();
  assert.equal(await ctl("ban", "clear"), 0);
  assert.equal((await env.api("GET", "/bans")).body.bans.length, 0);
  assert.equal(await eventually(() => tlsAttempt(env.tlsPort, "127.0.0.7"), "secure"), "secure");
  const metrics = (await env.api("GET", "/metrics")).body as string;
  assert.match(metrics, /\nsipedge_bans_total\{reason="admin"\} 2\n/);
  const status = (await env.api("GET", "/status")).body;
  assert.equal(status.bans, 0);
});

/**
 * `attempt()` until it gives `want` (a ban or its end reaches each worker by message, a moment
 * after the control API answered), at most 20 times 50 ms apart; returns the last outcome.
 */
async function eventually<T>(attempt: () => Promise<T>, want: T): Promise<T> {
  let outcome = await attempt();
  for (let i = 0; i < 20 && outcome !== want; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    outcome = await attempt();
  }
  return outcome;
}
