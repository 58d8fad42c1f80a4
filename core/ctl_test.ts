/** Tests of `sipedge ctl` against a fake control API (no network). */

import assert from "node:assert/strict";
import { CTL_USAGE, type CtlIo, duration, renderGeneric, runCtl, table } from "./ctl.ts";

interface Seen {
  method: string;
  url: string;
  authorization: string | null;
  body: string | null;
}

interface Fake {
  io: CtlIo;
  seen: Seen[];
  out: () => string;
  err: () => string;
}

type Handler = (method: string, path: string, body: unknown) => Response | Promise<Response>;

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** An io whose fetch is `handler` (or refuses to connect), with `files` and `env`. */
function fake(
  handler: Handler | "refused",
  files: Record<string, string> = {},
  env: Record<string, string> = {},
): Fake {
  let out = "", err = "";
  const seen: Seen[] = [];
  const io: CtlIo = {
    fetch: async (input, init) => {
      const url = String(input);
      const headers = new Headers(init?.headers);
      const body = (init?.body as string | undefined) ?? null;
      seen.push({
        method: init?.method ?? "GET",
        url,
        authorization: headers.get("authorization"),
        body,
      });
      if (handler === "refused") {
        throw new TypeError("fetch failed", {
          cause: new Error(
            `error sending request for url (${url}): client error (Connect): tcp connect error: ` +
              "Connection refused (os error 111)",
          ),
        });
      }
      return await handler(
        init?.method ?? "GET",
        new URL(url).pathname,
        body === null ? undefined : JSON.parse(body),
      );
    },
    out: (text) => void (out += text),
    err: (text) => void (err += text),
    env: (name) => env[name],
    readTextFile: (path) => {
      if (path in files) return Promise.resolve(files[path]);
      return Promise.reject(new Deno.errors.NotFound(`No such file: ${path}`));
    },
  };
  return { io, seen, out: () => out, err: () => err };
}

const STATUS = {
  version: "0.1.0",
  config: "/etc/sipedge/config.toml",
  workers: {
    configured: 2,
    up: 1,
    restarting: [1],
    unresponsive: [],
    restarts: { hang: 1, exit: 0, crash: 0, start_failed: 0 },
    connections_lost: 3,
    stuck: 0,
  },
  listeners: [{ transport: "tcp", hostname: "::1", port: 5060 }],
  uptime_ms: 7_380_000,
  connections: 3,
  queued_bytes: 0,
  blacklist_entries: 1,
  reloads: { succeeded: 1, failed: 0, last_at: null, last_errors: [] },
};

Deno.test("ctl: where it connects — --url, the config's [control], or the default", async (t) => {
  const ok = () => json(STATUS);
  await t.step("default 127.0.0.1:8060 without a config.toml", async () => {
    const f = fake(ok);
    assert.equal(await runCtl(["status"], f.io), 0);
    assert.equal(f.seen[0].url, "http://127.0.0.1:8060/status");
    assert.equal(f.seen[0].authorization, null);
  });
  await t.step(
    "./config.toml: address and token; a wildcard address goes to loopback",
    async () => {
      const f = fake(ok, {
        "config.toml": '[control]\naddress = "0.0.0.0:9000"\ntoken = "s3cret"\n',
      });
      assert.equal(await runCtl(["status"], f.io), 0);
      assert.equal(f.seen[0].url, "http://127.0.0.1:9000/status");
      assert.equal(f.seen[0].authorization, "Bearer s3cret");
    },
  );
  await t.step("--config FILE; the environment's token wins over the file's", async () => {
    const f = fake(
      ok,
      { "/etc/s.toml": '[control]\naddress = "[::1]:8061"\ntoken = "file"\n' },
      { SIPEDGE_CONTROL_TOKEN: "env" },
    );
    assert.equal(await runCtl(["--config", "/etc/s.toml", "status"], f.io), 0);
    assert.equal(f.seen[0].url, "http://[::1]:8061/status");
    assert.equal(f.seen[0].authorization, "Bearer env");
  });
  await t.step("--url and --token win; options go anywhere on the line", async () => {
    const f = fake(ok, { "config.toml": '[control]\naddress = "127.0.0.1:9000"\n' });
    assert.equal(await runCtl(["status", "--url=127.0.0.2:7000", "--token", "t"], f.io), 0);
    assert.equal(f.seen[0].url, "http://127.0.0.2:7000/status");
    assert.equal(f.seen[0].authorization, "Bearer t");
  });
  await t.step("a control API that is off, port 0, a --config that is not there: 2", async () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [["status"], { "config.toml": '[control]\naddress = ""\n' }, /control API is off/],
      [["status"], { "config.toml": '[control]\naddress = "127.0.0.1:0"\n' }, /any free port/],
      [["--config", "nope.toml", "status"], {}, /cannot read nope\.toml/],
      [["status"], { "config.toml": "[control\n" }, /config\.toml: /],
      [["--url", "ftp://x", "status"], {}, /--url ftp:\/\/x: expected http/],
    ];
    for (const [args, files, message] of cases) {
      const f = fake(ok, files);
      assert.equal(await runCtl(args, f.io), 2, args.join(" "));
      assert.match(f.err(), message);
      assert.equal(f.seen.length, 0);
    }
  });
});

Deno.test("ctl: no answer, a wrong token, not sipedge: exit 2 naming the URL", async () => {
  let f = fake("refused");
  assert.equal(await runCtl(["--url", "127.0.0.1:8999", "status"], f.io), 2);
  assert.match(
    f.err(),
    /^sipedge ctl: cannot reach the control API at http:\/\/127\.0\.0\.1:8999: Connection refused\n/,
  );
  f = fake(() => json({ error: "missing or wrong bearer token" }, 401));
  assert.equal(await runCtl(["status"], f.io), 2);
  assert.match(f.err(), /missing or wrong bearer token \(--token, \$SIPEDGE_CONTROL_TOKEN/);
  f = fake(() => new Response("<html>", { headers: { "content-type": "text/html" } }));
  assert.equal(await runCtl(["status"], f.io), 2);
  assert.match(f.err(), /not JSON \(is it sipedge's control API\?\)/);
});

Deno.test("ctl: usage errors are 2, help is 0", async () => {
  const f = fake(() => json({}));
  assert.equal(await runCtl([], f.io), 0);
  assert.equal(f.out(), CTL_USAGE);
  for (
    const args of [
      ["frobnicate"],
      ["--nope", "status"],
      ["status", "extra"],
      ["blacklist", "add"],
      ["blacklist", "delete"],
      ["blacklist", "wipe"],
      ["ban", "add"],
      ["ban", "delete"],
      ["ban", "add", "192.0.2.9", "1m", "extra"],
      ["bans", "extra"],
      ["tls"],
      ["--timeout", "0", "status"],
      ["--url"],
    ]
  ) {
    const g = fake(() => json({}));
    assert.equal(await runCtl(args, g.io), 2, args.join(" "));
    assert.match(g.err(), /^sipedge ctl: /, args.join(" "));
    assert.equal(g.seen.length, 0, args.join(" "));
  }
});

Deno.test("ctl status: aligned key/value lines", async () => {
  const f = fake(() => json(STATUS));
  assert.equal(await runCtl(["status"], f.io), 0);
  assert.equal(
    f.out(),
    [
      "version:       sipedge 0.1.0",
      "uptime:        2h03m",
      "config:        /etc/sipedge/config.toml",
      "workers:       1 up of 2; restarting: 1; restarts: 1 hang; 3 connections lost",
      "listening:     tcp:[::1]:5060",
      "connections:   3",
      "queued bytes:  0",
      "blacklisted:   1",
      "reloads:       1 applied, 0 refused",
      "",
    ].join("\n"),
  );
});

Deno.test("ctl connections: a table sorted by worker and id, numbers right-aligned", async () => {
  const c = (id: number, worker: number, queuedBytes: number) => ({
    id,
    worker,
    transport: "tcp",
    direction: "in",
    state: "open",
    local: "127.0.0.1:5060",
    remote: "127.0.0.1:40000",
    asyncMode: queuedBytes > 0,
    flow: queuedBytes === 0,
    queuedBytes,
    ageMs: 65_000,
    idleMs: 500,
  });
  const f = fake(() => json({ connections: [c(1025, 1, 0), c(512, 0, 123456)] }));
  assert.equal(await runCtl(["connections"], f.io), 0);
  const lines = f.out().split("\n");
  assert.match(
    lines[0],
    /^ +ID +WORKER +TRANSPORT +DIR +STATE +LOCAL +REMOTE +MODE +FLOW +QUEUED +AGE +IDLE$/,
  );
  assert.match(
    lines[1],
    /^ 512 +0 +tcp +in +open +127\.0\.0\.1:5060 +127\.0\.0\.1:40000 +async +- +123456 +1m05s +500ms$/,
  );
  assert.match(lines[2], /^1025 +1 .* - +flow +0 +1m05s +500ms$/);
  assert.equal(lines[3], "2 connections");
  const empty = fake(() => json({ connections: [] }));
  await runCtl(["connections"], empty.io);
  assert.equal(empty.out(), "no connections\n");
});

Deno.test("ctl connections: TLS columns (version, cipher, SNI, peer) when a TLS one is listed", async () => {
  const base = {
    worker: 0,
    direction: "in",
    state: "open",
    local: "127.0.0.1:5061",
    remote: "127.0.0.1:40000",
    asyncMode: false,
    queuedBytes: 0,
    ageMs: 1000,
    idleMs: 1000,
  };
  const f = fake(() =>
    json({
      connections: [
        { ...base, id: 1, transport: "tcp" },
        {
          ...base,
          id: 2,
          transport: "tls",
          details: {
            tls_version: "TLSv1.3",
            cipher: "TLS_AES_256_GCM_SHA384",
            sni: "sip.example.com",
            peer_certificate: "CN=trunk",
          },
        },
      ],
    })
  );
  assert.equal(await runCtl(["connections"], f.io), 0);
  const lines = f.out().split("\n");
  assert.match(lines[0], / IDLE +TLS +SNI +PEER CERTIFICATE$/);
  assert.match(lines[1], /^ *1 .* tcp .* 1\.0s +- +- +-$/);
  assert.match(lines[2], /^ *2 .* TLSv1\.3 TLS_AES_256_GCM_SHA384 +sip\.example\.com +CN=trunk$/);
});

Deno.test("ctl stats: gauges, counters with their meaning, non-zero tables", async () => {
  const zeros = (names: string[]) => Object.fromEntries(names.map((n) => [n, 0]));
  const methods = ["INVITE", "ACK", "BYE", "other"];
  const classes = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];
  const f = fake(() =>
    json({
      counters: { requests_in: 7, send_timeouts: 1 },
      gauges: { connections: 2, queued_bytes: 0, blacklist_entries: 1 },
      requests_in: { ...zeros(methods), INVITE: 5, BYE: 2 },
      requests_forwarded: { ...zeros(methods), INVITE: 4, BYE: 2 },
      responses_in: { ...zeros(classes), "2xx": 6 },
      responses_forwarded: { ...zeros(classes), "2xx": 6 },
      local_replies: { ...zeros(classes), "5xx": 1 },
      failures: { send_timeout: 1, closed: 0 },
    })
  );
  assert.equal(await runCtl(["stats"], f.io), 0);
  const out = f.out();
  assert.match(out, /^GAUGE +VALUE\nconnections +2\n/);
  assert.match(out, /\nrequests_in +7 +requests read\n/);
  assert.match(out, /\nsend_timeouts +1 +connections closed for no write progress/);
  assert.match(out, /\nMETHOD +IN +FORWARDED\nINVITE +5 +4\nBYE +2 +2\n\n/);
  assert.match(out, /\nSTATUS +IN +FORWARDED +LOCAL\n2xx +6 +6 +0\n5xx +0 +0 +1\n/);
  assert.match(out, /\nFAILURE +COUNT\nsend_timeout +1\n$/);
  assert.ok(!out.includes("ACK"), "zero rows are left out");
});

Deno.test("ctl blacklist: list, add, delete, clear", async () => {
  const now = Date.now();
  const calls: string[] = [];
  const f = fake((method, path, body) => {
    calls.push(`${method} ${decodeURIComponent(path)} ${JSON.stringify(body ?? null)}`);
    if (method === "GET") {
      return json({
        entries: [
          {
            key: "tcp:10.0.0.5:5060",
            reason: "send_timeout",
            addedAt: now - 5000,
            expiresAt: now + 55_500,
          },
        ],
      });
    }
    if (method === "POST") {
      return json({
        added: {
          key: "tcp:10.0.0.9:5060",
          reason: "admin",
          addedAt: now,
          expiresAt: now + 300_000,
        },
      }, 201);
    }
    if (path === "/blacklist") return json({ cleared: true });
    return path.endsWith("5061")
      ? json({ deleted: false, key: "tcp:10.0.0.5:5061" }, 404)
      : json({ deleted: true, key: "tcp:10.0.0.5:5060" });
  });
  assert.equal(await runCtl(["blacklist"], f.io), 0);
  assert.equal(await runCtl(["blacklist", "add", "sip:10.0.0.9;transport=tcp", "5m"], f.io), 0);
  assert.equal(await runCtl(["blacklist", "add", "tcp:10.0.0.9:5060"], f.io), 0);
  assert.equal(await runCtl(["blacklist", "delete", "tcp:10.0.0.5:5060"], f.io), 0);
  assert.equal(await runCtl(["blacklist", "delete", "tcp:10.0.0.5:5061"], f.io), 1);
  assert.equal(await runCtl(["blacklist", "clear"], f.io), 0);
  assert.deepEqual(calls, [
    "GET /blacklist null",
    'POST /blacklist {"destination":"sip:10.0.0.9;transport=tcp","expire":"5m"}',
    'POST /blacklist {"destination":"tcp:10.0.0.9:5060"}',
    "DELETE /blacklist/tcp:10.0.0.5:5060 null",
    "DELETE /blacklist/tcp:10.0.0.5:5061 null",
    "DELETE /blacklist null",
  ]);
  // The key is sent URL-encoded (a sip: URI has ; and =).
  assert.ok(f.seen[3].url.endsWith("/blacklist/tcp%3A10.0.0.5%3A5060"));
  const lines = f.out().split("\n");
  assert.match(lines[0], /^DESTINATION +REASON +EXPIRES IN +UNTIL +ADDED$/);
  assert.match(
    lines[1],
    /^tcp:10\.0\.0\.5:5060 +send_timeout +5[45]s +[0-9:-]+( [0-9:]+)? +5\.[0-9]s ago$/,
  );
  assert.equal(lines[2], "1 entry");
  assert.match(lines[3], /^added tcp:10\.0\.0\.9:5060 until .* \(5m00s\)$/);
  assert.match(lines[5], /^deleted tcp:10\.0\.0\.5:5060$/);
  assert.equal(lines[6], "blacklist cleared");
  assert.equal(f.err(), "tcp:10.0.0.5:5061 is not in the blacklist\n");
});

Deno.test("ctl blacklist add: a destination the server refuses is a usage error (400 → 2)", async () => {
  const f = fake(() =>
    json({ error: "destination: expected TRANSPORT:HOST:PORT or a sip: URI" }, 400)
  );
  assert.equal(await runCtl(["blacklist", "add", "10.0.0.5"], f.io), 2);
  assert.equal(f.err(), "sipedge ctl: destination: expected TRANSPORT:HOST:PORT or a sip: URI\n");
});

Deno.test("ctl bans: list, add, delete, clear", async () => {
  const now = Date.now();
  const calls: string[] = [];
  const f = fake((method, path, body) => {
    calls.push(`${method} ${decodeURIComponent(path)} ${JSON.stringify(body ?? null)}`);
    if (method === "GET") {
      return json({
        bans: [
          {
            key: "2001:db8:1:2::/64",
            address: "2001:db8:1:2::9",
            reason: "flood",
            rate: 812,
            addedAt: now - 5000,
            expiresAt: now + 55_500,
          },
        ],
        tracked_sources: 17,
      });
    }
    if (method === "POST") {
      return json({
        added: {
          key: "192.0.2.9",
          address: "192.0.2.9",
          reason: "admin",
          rate: 0,
          addedAt: now,
          expiresAt: now + 600_000,
        },
      }, 201);
    }
    if (path === "/bans") return json({ cleared: true });
    return path.endsWith(".10")
      ? json({ deleted: false, key: "192.0.2.10" }, 404)
      : json({ deleted: true, key: "2001:db8:1:2::/64" });
  });
  assert.equal(await runCtl(["bans"], f.io), 0);
  assert.equal(await runCtl(["ban", "add", "192.0.2.9", "10m"], f.io), 0);
  assert.equal(await runCtl(["ban", "add", "192.0.2.9"], f.io), 0);
  assert.equal(await runCtl(["ban", "delete", "2001:db8:1:2::/64"], f.io), 0);
  assert.equal(await runCtl(["ban", "delete", "192.0.2.10"], f.io), 1);
  assert.equal(await runCtl(["ban", "clear"], f.io), 0);
  assert.equal(await runCtl(["ban", "list"], f.io), 0);
  assert.deepEqual(calls, [
    "GET /bans null",
    'POST /bans {"address":"192.0.2.9","expire":"10m"}',
    'POST /bans {"address":"192.0.2.9"}',
    "DELETE /bans/2001:db8:1:2::/64 null",
    "DELETE /bans/192.0.2.10 null",
    "DELETE /bans null",
    "GET /bans null",
  ]);
  // The prefix is sent URL-encoded (it has a slash).
  assert.ok(f.seen[3].url.endsWith("/bans/2001%3Adb8%3A1%3A2%3A%3A%2F64"));
  const lines = f.out().split("\n");
  assert.match(lines[0], /^SOURCE +REASON +RATE SEEN +EXPIRES IN +UNTIL +ADDED$/);
  assert.match(
    lines[1],
    /^2001:db8:1:2::\/64 +flood +812\/s +5[45]s +[0-9:-]+( [0-9:]+)? +5\.[0-9]s ago$/,
  );
  assert.equal(lines[2], "1 ban; 17 sources tracked");
  assert.match(lines[3], /^banned 192\.0\.2\.9 until .* \(10m00s\)$/);
  assert.match(lines[5], /^lifted the ban of 2001:db8:1:2::\/64$/);
  assert.equal(lines[6], "bans cleared");
  assert.equal(f.err(), "192.0.2.10 is not banned\n");
});

Deno.test("ctl ban add: an address the server refuses is a usage error (400 → 2)", async () => {
  const f = fake(() =>
    json({ error: "address: expected an IPv4 or IPv6 address like 192.0.2.9" }, 400)
  );
  assert.equal(await runCtl(["ban", "add", "example.com"], f.io), 2);
  assert.equal(
    f.err(),
    "sipedge ctl: address: expected an IPv4 or IPv6 address like 192.0.2.9\n",
  );
});

Deno.test("ctl reload: applied (0) with the changes, refused (1) with every error", async () => {
  let f = fake(() =>
    json({
      ok: true,
      source: "config.toml",
      changes: ["plugins.limits: changed", "log_level: info -> debug"],
    })
  );
  assert.equal(await runCtl(["reload"], f.io), 0);
  assert.equal(f.seen[0].method, "POST");
  assert.equal(
    f.out(),
    "reloaded config.toml: 2 change(s)\n  plugins.limits: changed\n  log_level: info -> debug\n",
  );
  f = fake(() => json({ ok: true, source: "config.toml", changes: [] }));
  assert.equal(await runCtl(["reload"], f.io), 0);
  assert.equal(f.out(), "reloaded config.toml: no changes\n");
  const refused = {
    ok: false,
    source: "config.toml",
    errors: ["config.toml:3: sipedge.workers: expected number", "plugins.tls: cannot read key.pem"],
  };
  f = fake(() => json(refused, 422));
  assert.equal(await runCtl(["reload"], f.io), 1);
  assert.equal(f.out(), "");
  assert.equal(
    f.err(),
    "reload of config.toml refused; the running configuration is unchanged:\n" +
      "  config.toml:3: sipedge.workers: expected number\n  plugins.tls: cannot read key.pem\n",
  );
  // --json: the report on stdout, the same exit status.
  f = fake(() => json(refused, 422));
  assert.equal(await runCtl(["reload", "--json"], f.io), 1);
  assert.deepEqual(JSON.parse(f.out()), refused);
});

Deno.test("ctl --json prints the API's JSON as is", async () => {
  const f = fake(() => json(STATUS));
  assert.equal(await runCtl(["--json", "status"], f.io), 0);
  assert.deepEqual(JSON.parse(f.out()), STATUS);
});

Deno.test("ctl tls domains / plugins: tables for arrays of objects; 404 → 1", async () => {
  const view = {
    server_domains: [
      {
        name: "main",
        listener: "*",
        server_names: ["sip.example.com", "*.example.com"],
        expires: "2027-01-01",
      },
      { name: "other", listener: "10.0.0.1:5061", server_names: [], expires: "2026-12-01" },
    ],
    client_domains: [],
    handshake_timeout: 10000,
  };
  let f = fake((_m, path) =>
    path === "/tls/domains" ? json(view) : json({ error: "TLS is not enabled" }, 404)
  );
  assert.equal(await runCtl(["tls", "domains"], f.io), 0);
  assert.equal(
    f.out(),
    [
      "server_domains:",
      "  NAME   LISTENER       SERVER_NAMES                    EXPIRES",
      "  main   *              sip.example.com, *.example.com  2027-01-01",
      "  other  10.0.0.1:5061                                  2026-12-01",
      "client_domains:     (none)",
      "handshake_timeout:  10000",
      "",
    ].join("\n"),
  );
  f = fake(() => json({ error: "TLS is not enabled (no [plugins.tls] table in the config)" }, 404));
  assert.equal(await runCtl(["tls", "domains"], f.io), 1);
  assert.match(f.err(), /TLS is not enabled/);
  f = fake((_m, path) =>
    path === "/plugins"
      ? json({
        plugins: [{ name: "tcp", kind: "transport", module: "built-in" }, {
          name: "mine",
          kind: "router",
          module: "file:///etc/r.ts",
        }],
      })
      : json({
        routes: [{ domain: "a.example", destination: "sip:10.0.0.1" }],
        record_route: false,
      })
  );
  assert.equal(await runCtl(["plugins"], f.io), 0);
  assert.equal(await runCtl(["plugins", "static_router"], f.io), 0);
  assert.equal(
    f.out(),
    "NAME  KIND       MODULE\ntcp   transport  built-in\nmine  router     file:///etc/r.ts\n" +
      "routes:\n  DOMAIN     DESTINATION\n  a.example  sip:10.0.0.1\nrecord_route:  no\n",
  );
  assert.ok(f.seen[1].url.endsWith("/plugins/static_router"));
});

Deno.test("ctl metrics: the page as is", async () => {
  const page =
    "# HELP sipedge_workers reader workers\n# TYPE sipedge_workers gauge\nsipedge_workers 2\n";
  const f = fake(() =>
    new Response(page, { headers: { "content-type": "text/plain; version=0.0.4" } })
  );
  assert.equal(await runCtl(["metrics"], f.io), 0);
  assert.equal(f.out(), page);
});

Deno.test("ctl helpers: durations, tables, generic rendering", () => {
  assert.deepEqual(
    [0, 999, 1500, 59_000, 61_000, 3_600_000, 90_000_000, -2000].map(duration),
    ["0ms", "999ms", "1.5s", "59s", "1m01s", "1h00m", "1d01h", "-2.0s"],
  );
  assert.equal(table(["A", "NUM"], [["x", 1], ["yyy", 100]]), "A    NUM\nx      1\nyyy  100\n");
  assert.equal(table(["A"], []), "A\n");
  assert.equal(renderGeneric({}), "(empty)\n");
  assert.equal(renderGeneric({ a: { b: 1, c: [1, 2] } }), "a:\n  b:  1\n  c:  1, 2\n");
  assert.equal(renderGeneric([{ k: null, v: true }]), "K  V\n-  yes\n");
});

Deno.test("ctl: rows with nested objects render as one block per row, headed by its name", () => {
  const text = renderGeneric({
    server_domains: [
      { name: "main", listener: "*", certificate: { subject: "CN=sip.example.com" } },
      { name: "other", listener: "127.0.0.1:5061", certificate: { subject: "CN=b" } },
    ],
  });
  assert.equal(
    text,
    "server_domains:\n" +
      "  main\n    listener:  *\n    certificate:\n      subject:  CN=sip.example.com\n" +
      "  other\n    listener:  127.0.0.1:5061\n    certificate:\n      subject:  CN=b\n",
  );
});
