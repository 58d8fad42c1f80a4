/**
 * Operating sipedge, end to end: a real sipedge process (2 workers) with SIP traffic, then
 * `/metrics` (parsed strictly), `/counters`, `/plugins`, `/tls/domains`, `POST /reload`, and
 * `sipedge ctl` against it, in process and as `main.ts ctl`; JSON logs from every thread.
 *
 * @module
 */
import assert from "node:assert/strict";
import { REPO_ROOT, type SipedgeProcess, startSipedge } from "./support/sipedge_process.ts";
import { buildRequest, TestUac, TestUas, waitUntil } from "./support/sip_peer.ts";
import { parsePrometheus, sampleValue } from "./support/prometheus.ts";
import { type CtlIo, runCtl } from "../core/ctl.ts";

const TOKEN = "test-token";

/** A config file in a temp folder that tests rewrite for reloads. */
class ConfigFile {
  readonly dir = Deno.makeTempDirSync({ prefix: "sipedge_control_" });
  readonly path = `${this.dir}/config.toml`;
  write(text: string): void {
    Deno.writeTextFileSync(this.path, text);
  }
  [Symbol.dispose](): void {
    Deno.removeSync(this.dir, { recursive: true });
  }
}

function config(forward: string, extra = ""): string {
  return `[sipedge]
workers = 2
shutdown_timeout = "200ms"

[control]
address = "127.0.0.1:0"
token = "${TOKEN}"

[[listen]]
address = "tcp:127.0.0.1:0"

[plugins.static_router]
default_route = "${forward}"

[plugins.timeouts]
connect_timeout = "1s"

[plugins.blacklist]
expire = "30s"
${extra}
`;
}

function controlUrl(proxy: SipedgeProcess): string {
  const match = /sipedge control API: (http:\/\/127\.0\.0\.1:\d+)/.exec(proxy.output());
  assert.ok(match, "the control API address is printed");
  return match[1];
}

function sipPort(proxy: SipedgeProcess): number {
  return Number(proxy.listening[0].split(":").at(-1));
}

async function api(
  url: string,
  method: string,
  path: string,
  token: string | null = TOKEN,
): Promise<{ status: number; type: string; text: string }> {
  const headers: Record<string, string> = token === null
    ? {}
    : { authorization: `Bearer ${token}` };
  const response = await fetch(`${url}${path}`, { method, headers });
  return {
    status: response.status,
    type: response.headers.get("content-type") ?? "",
    text: await response.text(),
  };
}

/** An io for runCtl that captures stdout and stderr and uses the real network. */
function captureIo(env: Record<string, string> = {}): CtlIo & { stdout: string; stderr: string } {
  const io = {
    stdout: "",
    stderr: "",
    fetch: (input: RequestInfo | URL, init?: RequestInit) => fetch(input, init),
    out: (text: string) => void (io.stdout += text),
    err: (text: string) => void (io.stderr += text),
    env: (name: string) => env[name],
    readTextFile: (path: string) => Deno.readTextFile(path),
  };
  return io;
}

/** Runs `body`; a failure gets sipedge's output appended. */
async function withOutput(proxy: SipedgeProcess, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    if (error instanceof Error) error.message += `\n--- sipedge output ---\n${proxy.output()}`;
    throw error;
  }
}

Deno.test("control API: /metrics counts traffic by method, class, reason and worker", async () => {
  using file = new ConfigFile();
  await using uas = TestUas.listen({ status: 200 });
  file.write(config(uas.uri));
  await using proxy = await startSipedge({ args: ["--config", file.path] });
  const url = controlUrl(proxy);
  await withOutput(proxy, async () => {
    // Two clients (the kernel may give them to either worker): INVITEs and BYEs forwarded and
    // answered 200; a request to a refused port fails (connect_refused → 503).
    await using a = await TestUac.connect(sipPort(proxy));
    await using b = await TestUac.connect(sipPort(proxy));
    for (const [uac, method] of [[a, "INVITE"], [a, "BYE"], [b, "INVITE"]] as const) {
      await uac.send(buildRequest({ method }).bytes);
      assert.equal((await uac.nextMessage(5000)).status, 200);
    }
    const refused = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const deadPort = (refused.addr as Deno.NetAddr).port;
    refused.close();
    await b.send(
      buildRequest({
        method: "MESSAGE",
        headers: [`Route: <sip:127.0.0.1:${deadPort};transport=tcp;lr>`],
      }).bytes,
    );
    assert.equal((await b.nextMessage(5000)).status, 503);

    const page = await api(url, "GET", "/metrics");
    assert.equal(page.status, 200);
    assert.equal(page.type, "text/plain; version=0.0.4; charset=utf-8");
    const m = parsePrometheus(page.text);
    const v = (name: string, labels?: Record<string, string>) => sampleValue(m, name, labels);
    assert.equal(v("sipedge_requests_in_total", { method: "INVITE" }), 2);
    assert.equal(v("sipedge_requests_in_total", { method: "BYE" }), 1);
    assert.equal(v("sipedge_requests_in_total", { method: "MESSAGE" }), 1);
    assert.equal(v("sipedge_requests_forwarded_total", { method: "INVITE" }), 2);
    assert.equal(v("sipedge_responses_in_total", { class: "2xx" }), 3);
    assert.equal(v("sipedge_responses_forwarded_total", { class: "2xx" }), 3);
    assert.equal(v("sipedge_local_replies_total", { class: "5xx" }), 1);
    assert.equal(v("sipedge_send_failures_total", { reason: "connect_refused" }), 1);
    assert.equal(v("sipedge_blacklist_entries"), 1, "connect_refused blacklists");
    assert.equal(v("sipedge_workers"), 2);
    assert.equal(v("sipedge_reloads_total", { result: "success" }), 0);
    // Two client connections in, one to the UAS out (per worker that opened one), all open.
    const open = (direction: string) =>
      m.samples.filter((s) =>
        s.name === "sipedge_connections" && s.labels.direction === direction &&
        s.labels.state === "open"
      ).reduce((n, s) => n + s.value, 0);
    assert.equal(open("in"), 2);
    assert.ok(open("out") >= 1 && open("out") <= 2);
    // Per worker: the workers' figures add up to the totals.
    const perWorker = m.samples.filter((s) => s.name === "sipedge_worker_messages_in_total");
    assert.deepEqual(perWorker.map((s) => s.labels.worker).sort(), ["0", "1"]);
    assert.equal(perWorker.reduce((n, s) => n + s.value, 0), 4 + 3, "4 requests, 3 responses");
    const conns = m.samples.filter((s) => s.name === "sipedge_worker_connections");
    assert.equal(conns.reduce((n, s) => n + s.value, 0), open("in") + open("out"));
    assert.ok(v("sipedge_process_resident_memory_bytes") > 0);

    // /counters has the same tables, by name.
    const counters = JSON.parse((await api(url, "GET", "/counters")).text);
    assert.equal(counters.requests_in.INVITE, 2);
    assert.equal(counters.failures.connect_refused, 1);
    assert.equal(counters.local_replies["5xx"], 1);

    // The token is needed for /metrics too.
    assert.equal((await api(url, "GET", "/metrics", null)).status, 401);
  });
});

Deno.test("control API: /plugins, /plugins/NAME, /tls/domains, POST /reload", async () => {
  using file = new ConfigFile();
  await using uas = TestUas.listen();
  file.write(config(uas.uri));
  await using proxy = await startSipedge({ args: ["--config", file.path] });
  const url = controlUrl(proxy);
  await withOutput(proxy, async () => {
    const plugins = JSON.parse((await api(url, "GET", "/plugins")).text).plugins;
    assert.deepEqual(
      plugins.map((p: { name: string; kind: string }) => `${p.name}:${p.kind}`).sort(),
      [
        "blacklist:policy",
        "limits:policy",
        "static_router:router",
        "tcp:transport",
        "timeouts:policy",
      ],
    );
    assert.ok(plugins.every((p: { module: string }) => p.module === "built-in"));
    const router = await api(url, "GET", "/plugins/static_router");
    assert.equal(router.status, 200);
    assert.equal(JSON.parse(router.text).default_route, uas.uri);
    const missing = await api(url, "GET", "/plugins/nope");
    assert.equal(missing.status, 404);
    assert.match(JSON.parse(missing.text).error, /plugin nope is not enabled/);
    const tls = await api(url, "GET", "/tls/domains");
    assert.equal(tls.status, 404);
    assert.match(JSON.parse(tls.text).error, /TLS is not enabled/);

    // A reload that applies, then one that is refused: 200 / 422 and the counts in /metrics.
    file.write(config(uas.uri, "max_entries = 500"));
    const applied = await api(url, "POST", "/reload");
    assert.equal(applied.status, 200, applied.text);
    const report = JSON.parse(applied.text);
    assert.equal(report.ok, true);
    assert.ok(report.changes.some((c: string) => c.includes("plugins.blacklist")), applied.text);
    file.write(config(uas.uri, "bogus_key = 1"));
    const refused = await api(url, "POST", "/reload");
    assert.equal(refused.status, 422, refused.text);
    const errors = JSON.parse(refused.text);
    assert.equal(errors.ok, false);
    assert.match(errors.errors.join("\n"), /plugins\.blacklist\.bogus_key: unknown key/);
    const m = parsePrometheus((await api(url, "GET", "/metrics")).text);
    assert.equal(sampleValue(m, "sipedge_reloads_total", { result: "success" }), 1);
    assert.equal(sampleValue(m, "sipedge_reloads_total", { result: "failure" }), 1);
    assert.equal(sampleValue(m, "sipedge_config_last_reload_successful"), 0);
    const status = JSON.parse((await api(url, "GET", "/status")).text);
    assert.equal(status.reloads.failed, 1);
    assert.match(status.reloads.last_errors.join("\n"), /bogus_key/);
  });
});

Deno.test("sipedge ctl against a running sipedge: tables, exit statuses, main.ts ctl", async () => {
  using file = new ConfigFile();
  await using uas = TestUas.listen();
  file.write(config(uas.uri));
  await using proxy = await startSipedge({ args: ["--config", file.path] });
  const url = controlUrl(proxy);
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(sipPort(proxy));
    await uac.send(buildRequest({ method: "OPTIONS" }).bytes);
    await uac.nextMessage(5000);

    let io = captureIo({ SIPEDGE_CONTROL_TOKEN: TOKEN });
    assert.equal(await runCtl(["--url", url, "connections"], io), 0, io.stderr);
    assert.match(io.stdout, /^ +ID +WORKER +TRANSPORT +DIR +STATE/);
    assert.match(io.stdout, /\btcp +in +open +127\.0\.0\.1:\d+ +127\.0\.0\.1:\d+/);

    io = captureIo({ SIPEDGE_CONTROL_TOKEN: TOKEN });
    assert.equal(
      await runCtl(["--url", url, "blacklist", "add", "tcp:10.0.0.5:5060", "5m"], io),
      0,
    );
    assert.equal(await runCtl(["--url", url, "blacklist"], io), 0);
    assert.match(io.stdout, /\ntcp:10\.0\.0\.5:5060 +admin +4m5\ds/);
    assert.equal(await runCtl(["--url", url, "blacklist", "delete", "tcp:10.0.0.6:5060"], io), 1);
    assert.match(io.stderr, /tcp:10\.0\.0\.6:5060 is not in the blacklist/);

    // The token from the config file (--config), and a refused reload: exit 1 with the errors.
    file.write(
      config(uas.uri, "bogus_key = 1").replace(
        'address = "127.0.0.1:0"',
        `address = "${url.slice("http://".length)}"`,
      ),
    );
    io = captureIo();
    assert.equal(await runCtl(["--config", file.path, "reload"], io), 1);
    assert.match(
      io.stderr,
      /^reload of .*config\.toml refused; the running configuration is unchanged:\n {2}.*bogus_key: unknown key/,
    );

    // A wrong token: 2.
    io = captureIo();
    assert.equal(await runCtl(["--url", url, "--token", "wrong", "status"], io), 2);
    assert.match(io.stderr, /missing or wrong bearer token/);

    // The real command line: `main.ts ctl` (what `deno task ctl` runs).
    const run = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-net",
          "--allow-read",
          "--allow-env",
          `${REPO_ROOT}/main.ts`,
          "ctl",
          ...args,
        ],
        cwd: file.dir,
        env: { SIPEDGE_CONTROL_TOKEN: TOKEN, NO_COLOR: "1" },
        stdin: "null",
      }).output();
      const text = (b: Uint8Array) => new TextDecoder().decode(b);
      return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
    };
    const status = await run("--url", url, "status");
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^version: +sipedge \d+\.\d+\.\d+\n/);
    assert.match(status.stdout, /\nworkers: +2 up of 2\n/);
    const json = await run("--url", url, "--json", "stats");
    assert.equal(json.code, 0, json.stderr);
    assert.equal(JSON.parse(json.stdout).requests_in.OPTIONS, 1);
    const metrics = await run("--url", url, "metrics");
    assert.equal(metrics.code, 0, metrics.stderr);
    parsePrometheus(metrics.stdout);
    // Nothing listens there: 2, naming the URL (cwd has config.toml: its address is used).
    const dead = await run("--url", "http://127.0.0.1:9", "status");
    assert.equal(dead.code, 2);
    assert.match(dead.stderr, /cannot reach the control API at http:\/\/127\.0\.0\.1:9: /);
  });
});

Deno.test("log_format = json: every line of the supervisor and the workers is a JSON object", async () => {
  using file = new ConfigFile();
  await using uas = TestUas.listen();
  // A refused route makes a worker log a warning; start and reload make the supervisor log.
  file.write(config(uas.uri).replace("[sipedge]\n", '[sipedge]\nlog_format = "json"\n'));
  await using proxy = await startSipedge({ args: ["--config", file.path] });
  const url = controlUrl(proxy);
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(sipPort(proxy));
    await uac.send(
      buildRequest({ headers: ["Route: <sip:127.0.0.1:9;transport=tcp;lr>"] }).bytes,
    );
    assert.equal((await uac.nextMessage(5000)).status, 503);
    assert.equal((await api(url, "POST", "/reload")).status, 200);
    const lines = await waitUntil(() => {
      const all = proxy.output().split("\n").filter((l) => l.startsWith("{"));
      return all.some((l) => l.includes("send failure")) && all.some((l) => l.includes("reload"))
        ? all
        : undefined;
    }, 5000);
    const records = lines.map((l) => JSON.parse(l));
    const failure = records.find((r) => r.message.startsWith("send failure"));
    assert.equal(failure.level, "WARN");
    assert.equal(failure.logger, "sipedge.transport");
    assert.equal(failure.properties.reason, "connect_refused");
    assert.match(failure.message, /^send failure connect_refused to tcp:127\.0\.0\.1:9 /);
    assert.ok(records.some((r) => r.logger === "sipedge.supervisor"));
    // Only the start lines the CLI prints itself are plain text.
    const plain = proxy.output().split("\n").filter((l) => l !== "" && !l.startsWith("{"));
    assert.ok(plain.every((l) => l.startsWith("sipedge ")), plain.join("\n"));
  });
});

Deno.test("--log-format json on the command line", async () => {
  using file = new ConfigFile();
  await using uas = TestUas.listen();
  file.write(config(uas.uri));
  await using proxy = await startSipedge({
    args: ["--config", file.path, "--log-format", "json", "--log-level", "debug"],
  });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(sipPort(proxy));
    await uac.send(buildRequest().bytes);
    await uac.nextMessage(5000);
    await uac.close();
    const lines = await waitUntil(() => {
      const all = proxy.output().split("\n").filter((l) => l.startsWith("{"));
      return all.length > 0 ? all : undefined;
    }, 5000);
    for (const line of lines) assert.equal(typeof JSON.parse(line).message, "string");
  });
});
