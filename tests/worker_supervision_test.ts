/**
 * The supervisor replaces reader workers that exit or hang (issue: the edge stays up): full
 * service comes back, the control API answers meanwhile, what the dead worker held is
 * reclaimed, a crash loop backs off, a stuck thread makes sipedge exit for its service manager,
 * and SIGTERM during a restart still stops cleanly. Faults come from tests/plugins/fault.ts.
 */
import assert from "node:assert/strict";
import { ProxyEnv } from "./support/proxy_env.ts";
import { buildRequest, TestUac, TestUas } from "./support/sip_peer.ts";
import { freePort, REPO_ROOT, startSipedge, withOutput } from "./support/sipedge_process.ts";

const FAULT = `${REPO_ROOT}/tests/plugins/fault.ts`;

function config(uas: TestUas, extra = "", marker = ""): string {
  return `[plugins.fault]
module = "${FAULT}"
upstream = "${uas.uri}"
marker = "${marker}"
${extra}`;
}

const HANG_1S = `worker_hang_timeout = "1s"`;

/**
 * A whole config file for the reload tests: 2 workers (plus `sipedge` lines), the control API on
 * a free port, one tcp listener, then `extra` sections and the fault plugin toward `uas`.
 */
function configFile(port: number, uas: TestUas, sipedge = "", extra = ""): string {
  return `[sipedge]\nworkers = 2\n${sipedge}\n[control]\naddress = "127.0.0.1:0"\n` +
    `[[listen]]\naddress = "tcp:127.0.0.1:${port}"\n${extra}` + config(uas);
}

/** Polls `check` every 50 ms for up to 10 s. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Sends `uri` as an OPTIONS on `uac` and returns the answer's status. */
async function ask(uac: TestUac, uri: string, timeoutMs = 3000): Promise<number> {
  await uac.send(buildRequest({ uri }).bytes);
  return (await uac.nextMessage(timeoutMs)).status;
}

/** `count` new connections, each asking the UAS once; how many got their 200. */
async function served(env: ProxyEnv, count: number): Promise<number> {
  let ok = 0;
  for (let i = 0; i < count; i++) {
    await using uac = await TestUac.connect(env.port);
    if (await ask(uac, "sip:uas@example.com", 2000).catch(() => 0) === 200) ok++;
  }
  return ok;
}

Deno.test("supervision: a worker that exits is replaced; service, counters and the per-IP limit come back", async () => {
  await using uas = TestUas.listen();
  // Three connections per IP at most: the dead worker's must be given back, or the new ones
  // below would be refused.
  await using env = await ProxyEnv.start(
    2,
    config(uas, `[plugins.limits]\nmax_connections_per_ip = 3\n`),
  );
  await withOutput(env.proxy, async () => {
    const inZero = await env.connectIn({ worker: 0 });
    const inOne = await env.connectIn({ worker: 1 });
    const alsoOne = await env.connectIn({ worker: 1 });
    assert.equal(await ask(inZero, "sip:uas@example.com"), 200);
    // Worker 1 closes itself.
    assert.equal(await ask(inOne, "sip:exit@example.com"), 200);
    await inOne.waitClosed(5000);
    await alsoOne.waitClosed(5000);
    const status = await env.until(
      async () => {
        const s = await env.status();
        return s.workers.up === 2 && s.workers.restarts.exit === 1 ? s : undefined;
      },
      10_000,
      "worker 1 replaced and up",
    );
    assert.equal(status.workers.connections_lost, 2);
    assert.match(
      env.proxy.output(),
      /reader worker 1 replaced \(exit: close\(\) called\); 2 connections lost/,
    );
    // The surviving connection kept working; two new ones fit under the per-IP limit again.
    assert.equal(await ask(inZero, "sip:uas@example.com"), 200);
    assert.equal(await served(env, 2), 2);
    await inZero.close();
    assert.equal(await served(env, 20), 20, "every new connection served");
  });
});

Deno.test("supervision: a hung worker is replaced; the control API answers meanwhile; every new connection is served after", async () => {
  await using uas = TestUas.listen();
  await using env = await ProxyEnv.start(
    2,
    config(uas),
    { sipedge: HANG_1S },
  );
  await withOutput(env.proxy, async () => {
    const victim = await env.connectIn({ worker: 1 });
    // Blocks worker 1's event loop for 4 s: past the hang timeout, but it does end, so the
    // terminated thread goes away with its listening sockets.
    await victim.send(buildRequest({ uri: "sip:spin@example.com;ms=4000" }).bytes);
    const started = Date.now();
    const during = await env.until(
      async () => {
        const s = await env.status();
        return s.workers.unresponsive.includes(1) || s.workers.restarting.includes(1)
          ? s
          : undefined;
      },
      3000,
      "the hung worker named in /status",
    );
    assert.ok(Date.now() - started < 3000, "/status answered while a worker hung");
    assert.ok(during.workers.up >= 1);
    await env.until(
      async () => {
        const s = await env.status();
        return s.workers.up === 2 && s.workers.restarts.hang === 1 ? true : undefined;
      },
      10_000,
      "worker 1 replaced",
    );
    await victim.waitClosed(10_000);
    // The spin ends at 4 s; then the old thread is gone and only live workers listen.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + 5000 - Date.now())));
    assert.equal(await served(env, 40), 40, "every new connection served");
    assert.equal((await env.status()).workers.stuck, 0);
  });
});

Deno.test("supervision: a thread that never yields cannot be stopped: on_stuck_worker = exit ends sipedge with status 70", async () => {
  await using uas = TestUas.listen();
  const env = await ProxyEnv.start(
    2,
    config(uas),
    { sipedge: HANG_1S },
  );
  try {
    await withOutput(env.proxy, async () => {
      const victim = await env.connectIn({ worker: 0 });
      await victim.send(buildRequest({ uri: "sip:spin-forever@example.com" }).bytes);
      const status = await Promise.race([
        env.proxy.status,
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 25_000)),
      ]);
      assert.ok(status !== undefined, "sipedge exited");
      assert.equal(status.code, 70);
      assert.match(env.proxy.output(), /thread \d+ cannot be stopped/);
      await victim.close();
    });
  } finally {
    await env.stop();
  }
});

Deno.test("supervision: with on_stuck_worker = keep, sipedge goes on with the replacement and reports the stuck thread", async () => {
  await using uas = TestUas.listen();
  await using env = await ProxyEnv.start(
    2,
    config(uas),
    { sipedge: `${HANG_1S}\non_stuck_worker = "keep"` },
  );
  await withOutput(env.proxy, async () => {
    const victim = await env.connectIn({ worker: 0 });
    await victim.send(buildRequest({ uri: "sip:spin-forever@example.com" }).bytes);
    const status = await env.until(
      async () => {
        const s = await env.status();
        return s.workers.stuck === 1 && s.workers.up === 2 ? s : undefined;
      },
      20_000,
      "the stuck thread reported, two workers up",
    );
    assert.equal(status.workers.restarts.hang, 1);
    const metrics = await (await fetch(`${env.controlUrl}/metrics`)).text();
    assert.match(metrics, /\nsipedge_workers_stuck 1\n/);
    assert.match(metrics, /\nsipedge_worker_restarts_total\{reason="hang"\} 1\n/);
    assert.match(metrics, /\nsipedge_worker_up\{worker="0"\} 1\n/);
    await victim.close();
  });
});

Deno.test("supervision: a worker that cannot start backs off (1 s, 2 s, …); SIGTERM during the wait stops cleanly", async () => {
  await using uas = TestUas.listen();
  const marker = await Deno.makeTempFile({ prefix: "sipedge_fault_marker_" });
  await Deno.remove(marker);
  const env = await ProxyEnv.start(2, config(uas, "", marker));
  try {
    await withOutput(env.proxy, async () => {
      const victim = await env.connectIn({ worker: 1 });
      await Deno.writeTextFile(marker, "fail");
      assert.equal(await ask(victim, "sip:exit@example.com"), 200);
      await env.until(
        async () => {
          const s = await env.status();
          return s.workers.restarts.start_failed >= 2 ? s : undefined;
        },
        10_000,
        "two failed starts",
      );
      const delays = [...env.proxy.output().matchAll(/restarting in (\d+) ms/g)].map((m) =>
        Number(m[1])
      );
      assert.deepEqual(delays.slice(0, 3), [1000, 2000, 4000].slice(0, delays.length));
      // The other worker kept serving.
      assert.equal(await served(env, 5), 5);
      // Let it start again; then stop in the middle of the next back-off.
      await Deno.remove(marker);
      await env.until(
        async () => {
          const s = await env.status();
          return s.workers.up === 2 ? s : undefined;
        },
        10_000,
        "worker 1 up again",
      );
      await Deno.writeTextFile(marker, "fail");
      const again = await env.connectIn({ worker: 1 });
      assert.equal(await ask(again, "sip:exit@example.com"), 200);
      await env.until(
        async () => {
          const s = await env.status();
          return s.workers.restarting.includes(1) ? s : undefined;
        },
        5000,
        "worker 1 restarting",
      );
      const stopped = await env.proxy.stop("SIGTERM");
      assert.equal(stopped.code, 0);
    });
  } finally {
    await env.stop();
    await Deno.remove(marker).catch(() => {});
  }
});

Deno.test("supervision: a restart during a reload leaves every worker on the new config", async () => {
  await using first = TestUas.listen();
  await using second = TestUas.listen();
  const marker = await Deno.makeTempFile({ prefix: "sipedge_fault_marker_" });
  await Deno.remove(marker);
  const dir = await Deno.makeTempDir({ prefix: "sipedge_supervision_" });
  try {
    const port = freePort();
    const path = `${dir}/config.toml`;
    const write = (uas: TestUas) => Deno.writeTextFile(path, configFile(port, uas));
    await write(first);
    await using proxy = await startSipedge({ args: ["--config", path] });
    await withOutput(proxy, async () => {
      const controlUrl = /sipedge control API: (http:\/\/[^\s]+)/.exec(proxy.output())![1];
      // A worker exits; while its replacement is due (a young worker waits 1 s), the config
      // changes and is reloaded.
      await using uac = await TestUac.connect(port);
      await uac.send(buildRequest({ uri: "sip:exit@example.com" }).bytes);
      await uac.nextMessage();
      const status = async () => await (await fetch(`${controlUrl}/status`)).json();
      await until(async () => (await status()).workers.restarting.length === 1, "a restart due");
      await write(second);
      const reload = await (await fetch(`${controlUrl}/reload`, { method: "POST" })).json();
      assert.equal(reload.ok, true, JSON.stringify(reload));
      await until(async () => (await status()).workers.up === 2, "both workers up");
      // Every worker routes by the new config: 20 new connections, spread over both.
      for (let i = 0; i < 20; i++) {
        await using c = await TestUac.connect(port);
        assert.equal(await ask(c, "sip:uas@example.com"), 200);
      }
      assert.equal(second.requests.length, 20, "all on the new upstream");
      assert.equal(first.requests.filter((r) => r.message.method === "OPTIONS").length, 0);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervision: reloads closer together than the heartbeat do not make a worker look hung", async () => {
  // With worker_hang_timeout = 1 s a worker beats every 200 ms. A reload used to restart the
  // worker's timer, so reloads in a tight loop kept it from ever firing and the supervisor
  // replaced a healthy worker after 1 s.
  await using uas = TestUas.listen();
  const dir = await Deno.makeTempDir({ prefix: "sipedge_supervision_" });
  try {
    const port = freePort();
    const path = `${dir}/config.toml`;
    // Two configs that differ in a policy every worker applies: each reload reaches the workers.
    const write = (sendTimeout: string) =>
      Deno.writeTextFile(
        path,
        configFile(port, uas, HANG_1S, `[plugins.timeouts]\nsend_timeout = "${sendTimeout}"\n`),
      );
    await write("10s");
    await using proxy = await startSipedge({ args: ["--config", path] });
    await withOutput(proxy, async () => {
      const controlUrl = /sipedge control API: (http:\/\/[^\s]+)/.exec(proxy.output())![1];
      let reloads = 0;
      // 2.5 s of reloads 20 ms apart: more than twice the hang timeout without a 200 ms gap.
      for (const end = Date.now() + 2500; Date.now() < end;) {
        await write(reloads % 2 === 0 ? "11s" : "10s");
        const reload = await (await fetch(`${controlUrl}/reload`, { method: "POST" })).json();
        assert.equal(reload.ok, true, JSON.stringify(reload));
        assert.match(reload.changes.join("\n"), /send_timeout/);
        reloads++;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(reloads >= 15, `only ${reloads} reloads in 2.5 s: not closer than a beat`);
      const status = await (await fetch(`${controlUrl}/status`)).json();
      assert.deepEqual(
        { up: status.workers.up, hang: status.workers.restarts.hang },
        { up: 2, hang: 0 },
      );
      await using uac = await TestUac.connect(port);
      assert.equal(await ask(uac, "sip:uas@example.com"), 200);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
