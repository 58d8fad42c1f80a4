/**
 * End-to-end tests over TLS: sipedge runs as a real process with tls listeners; `openssl
 * s_client` checks which certificate each SNI name gets, test peers on node:tls send SIP
 * through it, a TLS upstream with a certificate for another name must be refused (and
 * blacklisted), and one that stops reading must be cut off by the queue limit and the send
 * timeout while other TLS clients are served. Certificates are made in a temporary folder.
 *
 * @module
 */
import assert from "node:assert/strict";
import { freePort, REPO_ROOT, startSipedge, withOutput } from "./support/sipedge_process.ts";
import { buildRequest, latin1, TestUac, uniqueId, waitUntil } from "./support/sip_peer.ts";
import { openssl, type TestCert, TestPki } from "./support/tls_certs.ts";
import { TlsUac, TlsUas } from "./support/tls_peer.ts";

// --- helpers ---------------------------------------------------------------------------------

/**
 * `openssl s_client` against 127.0.0.1:PORT; returns its output. Its stdin is empty, so it
 * closes after the handshake — unless `-ign_eof` is given: then it reads until sipedge closes
 * (killed after `timeoutMs`).
 */
async function sClient(port: number, args: string[], timeoutMs = 5000): Promise<string> {
  const child = new Deno.Command("openssl", {
    args: ["s_client", "-connect", `127.0.0.1:${port}`, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // exited
    }
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
}

/** The subject CN of the certificate s_client was given. */
function servedCn(output: string): string {
  const m = /^subject=.*CN ?= ?([^,\n]+)/m.exec(output);
  assert.ok(m !== null, `no subject in s_client output:\n${output}`);
  return m[1].trim();
}

/** TOML for a string. */
const q = (value: string) => JSON.stringify(value);

/** A server domain table. */
function serverDomain(
  name: string,
  cert: TestCert,
  extra: Record<string, string | string[]> = {},
): string {
  const lines = [
    "[[plugins.tls.server_domains]]",
    `name = ${q(name)}`,
    `certificate = ${q(cert.cert)}`,
    `private_key = ${q(cert.key)}`,
  ];
  for (const [key, value] of Object.entries(extra)) {
    lines.push(`${key} = ${Array.isArray(value) ? `[${value.map(q).join(", ")}]` : q(value)}`);
  }
  return lines.join("\n") + "\n";
}

/** An OPTIONS request to sipedge itself (answered 200 by sipedge). */
function optionsToEdge(port: number): { callId: string; bytes: Uint8Array } {
  return buildRequest({
    method: "OPTIONS",
    uri: `sip:127.0.0.1:${port};transport=tls`,
    via: `SIP/2.0/TLS client.invalid:5099;branch=z9hG4bK${uniqueId()};rport`,
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls an async check every 50 ms until it returns true; false after `timeoutMs`. */
async function pollUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await delay(50);
  }
  return false;
}

// --- server side: SNI, default, generated certificate, client certificates ------------------

Deno.test("tls e2e: s_client with -servername gets each domain's certificate; no SNI gets the default; a listener without a domain gets a generated one", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Test CA");
  const a = await pki.issue(ca, "a", { dns: ["a.example"] });
  const wild = await pki.issue(ca, "wild", { dns: ["*.b.example"] });
  const fallback = await pki.issue(ca, "fallback", { dns: ["default.example"] });
  const [p1, p2] = [freePort(), freePort()];
  const config = `[sipedge]
workers = 2
[[listen]]
address = "tls:127.0.0.1:${p1}"
[[listen]]
address = "tls:127.0.0.1:${p2}"
[plugins.tls]
${serverDomain("a", a, { listener: `127.0.0.1:${p1}`, server_names: ["a.example"] })}
${serverDomain("wild", wild, { listener: `127.0.0.1:${p1}`, server_names: ["*.b.example"] })}
${serverDomain("fallback", fallback, { listener: `127.0.0.1:${p1}` })}
`;
  const proxy = await startSipedge({ config });
  try {
    await withOutput(proxy, async () => {
      assert.deepEqual(proxy.listening, [`tls:127.0.0.1:${p1}`, `tls:127.0.0.1:${p2}`]);
      // Several connections each: with 2 workers (SO_REUSEPORT), both workers answer some.
      for (let i = 0; i < 3; i++) {
        assert.equal(servedCn(await sClient(p1, ["-servername", "a.example"])), "a");
        assert.equal(servedCn(await sClient(p1, ["-servername", "x.b.example"])), "wild");
      }
      assert.equal(servedCn(await sClient(p1, ["-servername", "A.EXAMPLE"])), "a");
      assert.equal(servedCn(await sClient(p1, ["-noservername"])), "fallback");
      assert.equal(servedCn(await sClient(p1, ["-servername", "unknown.example"])), "fallback");
      assert.equal(servedCn(await sClient(p1, ["-servername", "y.x.b.example"])), "fallback");
      const generated = await sClient(p2, ["-noservername"]);
      assert.equal(servedCn(generated), `sipedge 127.0.0.1:${p2}`);
      assert.match(generated, /self-signed certificate|self signed certificate/);
      // Verified against the CA, with the name checked by openssl too.
      const verified = await sClient(p1, [
        "-servername",
        "a.example",
        "-CAfile",
        ca.cert,
        "-verify_hostname",
        "a.example",
      ]);
      assert.match(verified, /Verify return code: 0 \(ok\)/);
      assert.match(
        proxy.output(),
        new RegExp(
          `tls listener 127\\.0\\.0\\.1:${p2}: no certificate configured, using a generated self-signed one`,
        ),
      );
      assert.doesNotMatch(
        proxy.output(),
        new RegExp(`tls listener 127\\.0\\.0\\.1:${p1}: no certificate`),
      );
      // TLS 1.2 is accepted (min_version default), SIP works on it.
      const tls12 = await sClient(p1, ["-servername", "a.example", "-tls1_2"]);
      assert.match(tls12, /Protocol *: TLSv1\.2|TLSv1\.2, Cipher/);
    });
  } finally {
    await proxy.stop();
  }
});

Deno.test("tls e2e: verify_client = required: s_client without a certificate is refused; a client with one is served", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Client CA");
  const server = await pki.issue(ca, "server", { dns: ["sip.example"] });
  const client = await pki.issue(ca, "client", { usage: "client" });
  const port = freePort();
  const config = `[sipedge]
workers = 1
[[listen]]
address = "tls:127.0.0.1:${port}"
[plugins.tls]
${
    serverDomain("mtls", server, {
      verify_client: "required",
      ca_list: ca.cert,
      min_version: "TLSv1.3",
    })
  }
`;
  const proxy = await startSipedge({ config });
  try {
    await withOutput(proxy, async () => {
      // TLS 1.3: the client finishes its side first; the alert comes when it reads (on a busy
      // machine s_client may read the close before the alert: refused all the same).
      const refused = await sClient(port, ["-servername", "sip.example", "-ign_eof"]);
      assert.match(
        refused,
        /alert certificate required|alert number 116|unexpected eof while reading/,
        refused,
      );
      const old = await sClient(port, ["-servername", "sip.example", "-tls1_2"]);
      assert.match(old, /alert protocol version|no protocols available|alert number 70/, old);

      // With the certificate: the handshake and SIP work.
      const ok = await sClient(port, [
        "-servername",
        "sip.example",
        "-cert",
        client.cert,
        "-key",
        client.key,
      ]);
      assert.match(ok, /TLSv1\.3/);
      assert.doesNotMatch(ok, /alert/);
      await using uac = await TlsUac.connect(port, {
        servername: "sip.example",
        cert: client.certPem,
        key: client.keyPem,
        ca: ca.certPem,
      });
      const request = optionsToEdge(port);
      await uac.send(request.bytes);
      const response = await uac.nextMessage();
      assert.equal(response.status, 200);
      assert.equal(response.callId, request.callId);

      // Without: no SIP gets through.
      let served = false;
      try {
        await using bare = await TlsUac.connect(port, { servername: "sip.example" });
        await bare.send(optionsToEdge(port).bytes);
        await bare.nextMessage(1000);
        served = true;
      } catch {
        // refused in the handshake, or closed right after it
      }
      assert.equal(served, false, "a client without a certificate was served");
    });
  } finally {
    await proxy.stop();
  }
});

// --- forwarding and the client side ------------------------------------------------------------

Deno.test("tls e2e: TLS in, TLS out: request and responses intact, Via TLS, connection details in the control API", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Upstream CA");
  const upstream = await pki.issue(ca, "upstream", { dns: ["localhost"], ips: ["127.0.0.1"] });
  await using uas = await TlsUas.listen({ cert: upstream.certPem, key: upstream.keyPem });
  const port = freePort();
  const config = `[sipedge]
workers = 1
[control]
address = "127.0.0.1:0"
[[listen]]
address = "tls:127.0.0.1:${port}"
[plugins.tls]
[[plugins.tls.client_domains]]
name = "upstream"
match = ["127.0.0.1:${uas.port}"]
ca_list = ${q(ca.cert)}
[plugins.static_router]
default_route = "sip:127.0.0.1:${uas.port};transport=tls"
`;
  const proxy = await startSipedge({ config });
  try {
    await withOutput(proxy, async () => {
      await using uac = await TlsUac.connect(port, { servername: "edge.example" });
      const body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
      const request = buildRequest({
        method: "INVITE",
        uri: "sip:bob@example.com",
        via: `SIP/2.0/TLS client.invalid:5099;branch=z9hG4bK${uniqueId()};rport`,
        headers: ["Content-Type: application/sdp", "X-Check: \xe9t\xe9"],
        body,
      });
      await uac.send(request.bytes);
      const response = await uac.nextMessage();
      assert.equal(response.status, 200, response.text);
      assert.equal(response.callId, request.callId);
      assert.equal(response.headers("via").length, 1, "our Via removed from the response");

      const [received] = uas.requests;
      assert.ok(received !== undefined);
      const forwarded = received.message;
      assert.match(
        forwarded.headerLines[0],
        new RegExp(`^Via: SIP/2\\.0/TLS 127\\.0\\.0\\.1:${port};branch=z9hG4bK\\w+;i=\\d+$`),
      );
      assert.equal(latin1(forwarded.body), body, "body intact");
      assert.equal(forwarded.header("x-check"), "\xe9t\xe9");
      // No SNI for an IP destination (RFC 6066 §3).
      assert.equal(received.servername, undefined);

      const url = /sipedge control API: (http:\/\/127\.0\.0\.1:\d+)/.exec(proxy.output())![1];
      const { connections } = await (await fetch(`${url}/connections`)).json();
      const inbound = connections.find((c: { direction: string }) => c.direction === "in");
      const outbound = connections.find((c: { direction: string }) => c.direction === "out");
      assert.equal(inbound.transport, "tls");
      assert.equal(inbound.details.tls_version, "TLSv1.3");
      assert.equal(inbound.details.sni, "edge.example");
      assert.equal(typeof inbound.details.cipher, "string");
      assert.equal(outbound.remote, `127.0.0.1:${uas.port}`);
      assert.equal(outbound.details.domain, "upstream");
      assert.equal(outbound.details.peer_certificate, "CN=upstream");
      assert.equal(outbound.details.peer_verified, true);
    });
  } finally {
    await proxy.stop();
  }
});

Deno.test("tls e2e: a client domain with a certificate: the mTLS trunk sees it; a domain without one is refused → 503", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Trunk CA");
  const server = await pki.issue(ca, "trunk", { ips: ["127.0.0.1"] });
  const edge = await pki.issue(ca, "edge", { cn: "edge.example", usage: "client" });
  // Two trunks that both require a client certificate from the Trunk CA.
  await using withCert = await TlsUas.listen({
    cert: server.certPem,
    key: server.keyPem,
    requireClientCa: ca.certPem,
  });
  await using withoutCert = await TlsUas.listen({
    cert: server.certPem,
    key: server.keyPem,
    requireClientCa: ca.certPem,
  });
  const port = freePort();
  const config = `[sipedge]
workers = 1
[[listen]]
address = "tcp:127.0.0.1:${port}"
[plugins.tls]
[[plugins.tls.client_domains]]
name = "trunk-mtls"
match = ["127.0.0.1:${withCert.port}"]
ca_list = ${q(ca.cert)}
certificate = ${q(edge.cert)}
private_key = ${q(edge.key)}
[[plugins.tls.client_domains]]
name = "trunk-plain"
match = ["127.0.0.1:${withoutCert.port}"]
ca_list = ${q(ca.cert)}
[[plugins.static_router.routes]]
user_prefix = "mtls"
destination = "sip:127.0.0.1:${withCert.port};transport=tls"
[[plugins.static_router.routes]]
user_prefix = "plain"
destination = "sip:127.0.0.1:${withoutCert.port};transport=tls"
`;
  await using proxy = await startSipedge({ config });
  await withOutput(proxy, async () => {
    await using uac = await TestUac.connect(port);
    await uac.send(buildRequest({ uri: "sip:mtls-1@example.com" }).bytes);
    assert.equal((await uac.nextMessage()).status, 200);
    assert.equal(withCert.requests[0]?.clientCn, "edge.example", "the trunk saw our certificate");

    await uac.send(buildRequest({ uri: "sip:plain-1@example.com" }).bytes);
    const refused = await uac.nextMessage();
    assert.equal(refused.status, 503, refused.text);
    assert.equal(withoutCert.requests.length, 0);
  });
});

Deno.test("tls e2e: an upstream whose certificate does not name it: 503, a clear reason, blacklisted; with verify_host_name = false it connects", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Upstream CA");
  const wrong = await pki.issue(ca, "wrong", { dns: ["other.example"] });
  await using uas = await TlsUas.listen({ cert: wrong.certPem, key: wrong.keyPem });
  const configFor = (port: number, verifyHostName: boolean) =>
    `[sipedge]
workers = 1
[[listen]]
address = "tls:127.0.0.1:${port}"
[plugins.tls]
[[plugins.tls.client_domains]]
name = "upstream"
ca_list = ${q(ca.cert)}
verify_host_name = ${verifyHostName}
[plugins.static_router]
default_route = "sip:127.0.0.1:${uas.port};transport=tls"
[plugins.blacklist]
expire = "30s"
`;
  const port = freePort();
  const strict = await startSipedge({ config: configFor(port, true) });
  try {
    await withOutput(strict, async () => {
      await using uac = await TlsUac.connect(port);
      const first = buildRequest({ method: "INVITE", uri: "sip:bob@example.com" });
      await uac.send(first.bytes);
      const refused = await uac.nextMessage();
      assert.equal(refused.status, 503, refused.text);
      assert.equal(refused.callId, first.callId);
      const key = `tls:127.0.0.1:${uas.port}`;
      const line = await waitUntil(
        () =>
          strict.output().split("\n").find((l) =>
            l.includes(`send failure connect_failed to ${key}`)
          ),
        3000,
        "the failure log line",
      );
      assert.match(line, /certificate does not match host name 127\.0\.0\.1/);
      assert.match(line, /blacklisted: true/);
      assert.equal(uas.requests.length, 0, "nothing was sent to it");

      // Blacklisted: the next request fails at once, without a connect.
      const connections = uas.connectionCount + uas.handshakeErrors.length;
      const second = buildRequest({ method: "INVITE", uri: "sip:bob@example.com" });
      await uac.send(second.bytes);
      const again = await uac.nextMessage();
      assert.equal(again.status, 503);
      assert.match(again.header("reason") ?? "", /blacklist/i);
      await delay(100);
      assert.equal(uas.connectionCount + uas.handshakeErrors.length, connections, "no new connect");
    });
  } finally {
    await strict.stop();
  }

  const port2 = freePort();
  const relaxed = await startSipedge({ config: configFor(port2, false) });
  try {
    await withOutput(relaxed, async () => {
      await using uac = await TlsUac.connect(port2);
      const request = buildRequest({ method: "INVITE", uri: "sip:bob@example.com" });
      await uac.send(request.bytes);
      const response = await uac.nextMessage();
      assert.equal(response.status, 200, response.text);
      assert.equal(uas.requests.at(-1)?.message.callId, request.callId);
    });
  } finally {
    await relaxed.stop();
  }
});

// --- a TLS upstream that stops reading -------------------------------------------------------

Deno.test("tls e2e: a TLS upstream that stops reading: queue limit and send timeout fire; other TLS clients keep being served", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Upstream CA");
  const upstream = await pki.issue(ca, "stalled", { ips: ["127.0.0.1"] });
  // Deno's own TLS server: after the handshake nothing reads, so the kernel buffers fill.
  const stalled = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: upstream.certPem,
    key: upstream.keyPem,
  });
  const held: Deno.TlsConn[] = [];
  const acceptLoop = (async () => {
    try {
      for await (const conn of stalled) {
        held.push(conn);
        conn.handshake().catch(() => {});
      }
    } catch {
      // closed
    }
  })();
  const stalledPort = (stalled.addr as Deno.NetAddr).port;
  const port = freePort();
  const config = `[sipedge]
workers = 1
shutdown_timeout = "200ms"
[[listen]]
address = "tls:127.0.0.1:${port}"
[plugins.tls]
[[plugins.tls.client_domains]]
name = "upstream"
ca_list = ${q(ca.cert)}
[plugins.static_router]
default_route = "sip:127.0.0.1:${stalledPort};transport=tls"
[plugins.timeouts]
send_timeout = "1s"
keepalive_interval = "0s"
[plugins.limits]
conn_wq_max = 65536
on_queue_full = "drop"
[plugins.blacklist]
expire = "5s"
`;
  const proxy = await startSipedge({ config });
  try {
    await withOutput(proxy, async () => {
      await using sender = await TlsUac.connect(port);
      const body = "x".repeat(30_000);
      const statuses = new Map<string, number>();
      // Send big requests until sipedge refuses one (queue full), bounded.
      let refused = 0;
      for (let i = 0; i < 400 && refused === 0; i++) {
        const r = buildRequest({ method: "MESSAGE", uri: "sip:bob@example.com", body });
        await sender.send(r.bytes);
        try {
          const m = await sender.nextMessage(i < 5 ? 50 : 20);
          statuses.set(m.callId, m.status);
          if (m.status === 503) refused++;
        } catch {
          // no answer yet: the upstream took it, or it waits in the queue
        }
      }
      assert.ok(refused > 0, `no queue_full after ${statuses.size} answers`);
      const refusedAt = Date.now();

      // Meanwhile another TLS client is served at once.
      await using other = await TlsUac.connect(port);
      const started = Date.now();
      const ping = optionsToEdge(port);
      await other.send(ping.bytes);
      const pong = await other.nextMessage(2000);
      assert.equal(pong.status, 200);
      assert.ok(Date.now() - started < 1000, `served in ${Date.now() - started} ms`);

      // Then the send timeout closes the stalled connection: the queued requests get 408.
      const key = `tls:127.0.0.1:${stalledPort}`;
      await waitUntil(
        () => proxy.output().includes(`send failure send_timeout to ${key}`) || undefined,
        5000,
        "the send_timeout log line",
      );
      assert.ok(Date.now() - refusedAt < 5000);
      assert.match(proxy.output(), new RegExp(`send failure queue_full to ${key}`));
      assert.match(
        proxy.output(),
        new RegExp(`send failure send_timeout to ${key} on connection \\d+: .*blacklisted: true`),
      );
      const timedOut = await pollUntil(async () => {
        try {
          const m = await sender.nextMessage(100);
          statuses.set(m.callId, m.status);
        } catch {
          // none
        }
        return [...statuses.values()].includes(408);
      }, 3000);
      assert.equal(timedOut, true, `statuses: ${[...statuses.values()].join(",")}`);

      // And the client side is still fine: a new request to sipedge itself is answered.
      const again = optionsToEdge(port);
      await other.send(again.bytes);
      assert.equal((await other.nextMessage(2000)).status, 200);
    });
  } finally {
    await proxy.stop();
    stalled.close();
    for (const c of held) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    await acceptLoop;
  }
});

// --- configuration -----------------------------------------------------------------------------

/** Runs `main.ts --check-config --config FILE` and returns exit code and output. */
async function checkConfig(path: string): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--unstable-net",
      "-A",
      `${REPO_ROOT}/main.ts`,
      "--check-config",
      "--config",
      path,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    output: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
  };
}

Deno.test("tls e2e: --check-config names the file, line, key and reason of every bad certificate", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Test CA");
  const a = await pki.issue(ca, "a", { dns: ["a.example"] });
  const b = await pki.issue(ca, "b", { dns: ["b.example"] });
  const { cert: oldCert, key: oldKey } = await pki.expired("old");
  const path = await pki.write(
    "sipedge.toml",
    `[[listen]]
address = "tls:127.0.0.1:5061"

[plugins.tls]

[[plugins.tls.server_domains]]
name = "missing"
certificate = "missing.pem"
private_key = "a.key"

[[plugins.tls.server_domains]]
name = "mismatch"
certificate = "a.pem"
private_key = "b.key"

[[plugins.tls.server_domains]]
name = "expired"
certificate = ${q(oldCert)}
private_key = ${q(oldKey)}
`,
  );
  const result = await checkConfig(path);
  assert.equal(result.code, 1, result.output);
  assert.match(
    result.output,
    new RegExp(
      `sipedge\\.toml:8: plugins\\.tls\\.server_domains\\[0\\]\\.certificate: cannot read ${pki.dir}/missing\\.pem: `,
    ),
  );
  assert.match(
    result.output,
    /server_domains\[1\]\.private_key: private key .*b\.key does not match certificate .*a\.pem/,
  );
  assert.match(
    result.output,
    /server_domains\[2\]\.certificate: certificate .*old\.pem \(O=sipedge, CN=old\) expired on/,
  );

  // Fixed: valid. (b is not used; a is.)
  const good = await pki.write(
    "good.toml",
    `[[listen]]
address = "tls:127.0.0.1:5061"
[plugins.tls]
${serverDomain("a", a)}
${serverDomain("b", b, { server_names: ["b.example"] })}
`,
  );
  const ok = await checkConfig(good);
  assert.equal(ok.code, 0, ok.output);
});

Deno.test("tls e2e: --listen tls:HOST:PORT uses the config's domain for that listener", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Test CA");
  const a = await pki.issue(ca, "cli", { dns: ["sip.example"] });
  const port = freePort();
  const proxy = await startSipedge({
    args: ["--listen", `tls:127.0.0.1:${port}`, "--workers", "1"],
    config: `[[listen]]
address = "tcp:127.0.0.1:1"
[plugins.tls]
${serverDomain("cli", a, { listener: `127.0.0.1:${port}` })}
`,
  });
  try {
    await withOutput(proxy, async () => {
      assert.deepEqual(proxy.listening, [`tls:127.0.0.1:${port}`]);
      assert.equal(servedCn(await sClient(port, ["-noservername"])), "cli");
      assert.doesNotMatch(proxy.output(), /generated self-signed/);
    });
  } finally {
    await proxy.stop();
  }
});

Deno.test("tls e2e: the generated certificate is accepted by openssl and carries SIP", async () => {
  const port = freePort();
  const proxy = await startSipedge({
    args: ["--listen", `tls:127.0.0.1:${port}`, "--workers", "1"],
  });
  try {
    await withOutput(proxy, async () => {
      const out = await sClient(port, ["-noservername"]);
      assert.match(out, /Cipher is TLS_/);
      await using uac = await TlsUac.connect(port);
      const request = optionsToEdge(port);
      await uac.send(request.bytes);
      assert.equal((await uac.nextMessage()).status, 200);
      // openssl parses the certificate and its names.
      const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(
        await sClient(port, ["-noservername", "-showcerts"]),
      )![0];
      const text = await openssl(["x509", "-noout", "-text"], undefined, pem);
      assert.match(text, /IP Address:127\.0\.0\.1/);
      assert.match(text, /DNS:localhost/);
    });
  } finally {
    await proxy.stop();
  }
});

Deno.test("tls e2e: SIGHUP reload adds a domain; a reload with an expired certificate is refused and changes nothing", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Test CA");
  const a = await pki.issue(ca, "a", { dns: ["a.example"] });
  const b = await pki.issue(ca, "b", { dns: ["b.example"] });
  const { cert: oldCert, key: oldKey } = await pki.expired("old");
  const port = freePort();
  const head = `[sipedge]
workers = 2
[[listen]]
address = "tls:127.0.0.1:${port}"
[plugins.tls]
${serverDomain("a", a)}
`;
  const path = await pki.write("sipedge.toml", head);
  const proxy = await startSipedge({ args: ["--config", path, "--control", "off"] });
  try {
    await withOutput(proxy, async () => {
      await using open = await TlsUac.connect(port, { servername: "a.example" });
      assert.equal(servedCn(await sClient(port, ["-servername", "b.example"])), "a");

      await Deno.writeTextFile(path, head + serverDomain("b", b, { server_names: ["b.example"] }));
      Deno.kill(proxy.pid, "SIGHUP");
      const reloaded = await pollUntil(
        async () => servedCn(await sClient(port, ["-servername", "b.example"])) === "b",
        5000,
      );
      assert.ok(reloaded, "b.example not served after the reload");
      for (let i = 0; i < 3; i++) {
        assert.equal(servedCn(await sClient(port, ["-servername", "b.example"])), "b");
      }

      await Deno.writeTextFile(
        path,
        head +
          serverDomain("b", { ...b, cert: oldCert, key: oldKey }, { server_names: ["b.example"] }),
      );
      Deno.kill(proxy.pid, "SIGHUP");
      await waitUntil(
        () =>
          /plugins\.tls\.server_domains\[1\]\.certificate: certificate .*old\.pem .*expired on/
            .test(proxy.output()) || undefined,
        5000,
        "the refused reload's error",
      );
      assert.equal(servedCn(await sClient(port, ["-servername", "b.example"])), "b", "unchanged");

      // The connection opened before both reloads still carries SIP.
      const request = optionsToEdge(port);
      await open.send(request.bytes);
      assert.equal((await open.nextMessage()).status, 200);
    });
  } finally {
    await proxy.stop();
  }
});
