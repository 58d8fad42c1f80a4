/**
 * The tls transport in one process: listeners, connects, the write path with a peer that stops
 * reading, and the plugin's two-phase reload (new handshakes get new certificates, open
 * connections keep working).
 */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import type { StreamSocket, StreamTransport } from "../../core/transport/types.ts";
import type { WorkerPlugin } from "../../core/plugin/types.ts";
import { TestPki } from "../../tests/support/tls_certs.ts";
import { TlsUac } from "../../tests/support/tls_peer.ts";
import plugin from "../tls.ts";
import { prepareTls } from "./prepare.ts";
import { type TlsConfig, tlsSettingsSchema } from "./settings.ts";

const log = getLogger(["sipedge", "plugin", "tls"]);

async function prepared(table: unknown, dir: string, port = 0): Promise<TlsConfig> {
  return await prepareTls(tlsSettingsSchema.parse(table), {
    listeners: port < 0 ? [] : [{ transport: "tls", hostname: "127.0.0.1", port }],
    configDir: dir,
    reloading: false,
  });
}

async function instance(
  config: TlsConfig,
): Promise<WorkerPlugin<TlsConfig> & { transport: StreamTransport }> {
  const made = await plugin.worker!(config, {
    workerId: 1,
    logger: log,
    transport: () => undefined,
  });
  return made as WorkerPlugin<TlsConfig> & { transport: StreamTransport };
}

/** Accepted sockets of a listener, collected; each echoes what it reads when `echo`. */
function collect(sockets: StreamSocket[], echo = true) {
  return (socket: StreamSocket) => {
    sockets.push(socket);
    socket.start((chunk) => {
      if (echo) void socket.write(chunk.slice()).catch(() => {});
    }, () => {});
  };
}

async function exchange(uac: TlsUac, text: string): Promise<string> {
  let got = "";
  const done = new Promise<void>((resolve) => {
    const onData = (chunk: Uint8Array) => {
      got += new TextDecoder().decode(chunk);
      if (got.length >= text.length) {
        uac.socket.off("data", onData);
        resolve();
      }
    };
    uac.socket.on("data", onData);
  });
  const closed = new Promise((_, no) => uac.socket.once("close", () => no(new Error("closed"))));
  await uac.send(text);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      done,
      closed,
      new Promise((_, no) => timer = setTimeout(() => no(new Error("no echo")), 3000)),
    ]);
  } finally {
    clearTimeout(timer);
  }
  return got;
}

Deno.test("tls transport: reload swaps certificates for new handshakes; open connections keep going", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Test CA");
  const v1 = await pki.issue(ca, "v1", { dns: ["sip.example"] });
  const v2 = await pki.issue(ca, "v2", { dns: ["sip.example"] });
  await Deno.copyFile(v1.cert, pki.path("live.pem"));
  await Deno.copyFile(v1.key, pki.path("live.key"));
  const table = {
    server_domains: [{ name: "live", certificate: "live.pem", private_key: "live.key" }],
  };
  const tlsPlugin = await instance(await prepared(table, pki.dir));
  const listener = await tlsPlugin.transport.listen({ hostname: "127.0.0.1", port: 0 });
  const sockets: StreamSocket[] = [];
  listener.start(collect(sockets));
  try {
    await using before = await TlsUac.connect(listener.addr.port, { servername: "sip.example" });
    assert.equal(before.peerSubject(), "CN=v1");
    assert.equal(await exchange(before, "one"), "one");

    // The certificate files are replaced; prepare reads them again (the supervisor's part).
    await Deno.copyFile(v2.cert, pki.path("live.pem"));
    await Deno.copyFile(v2.key, pki.path("live.key"));
    const commit = await tlsPlugin.reload!(await prepared(table, pki.dir));
    // Phase one changed nothing yet.
    await using between = await TlsUac.connect(listener.addr.port, { servername: "sip.example" });
    assert.equal(between.peerSubject(), "CN=v1");
    commit();
    await using after = await TlsUac.connect(listener.addr.port, { servername: "sip.example" });
    assert.equal(after.peerSubject(), "CN=v2", "new handshakes use the new certificate");
    await using noSni = await TlsUac.connect(listener.addr.port);
    assert.equal(noSni.peerSubject(), "CN=v2", "the default certificate too");
    assert.equal(await exchange(before, "two"), "two", "the open connection is untouched");
    assert.equal(before.peerSubject(), "CN=v1");
    assert.equal(before.isClosed, false);
    const details = sockets[0].details!();
    assert.equal(details.tls_version, "TLSv1.3");
    assert.equal(details.sni, "sip.example");
    assert.equal(details.domain, "live");
    assert.equal(typeof details.cipher, "string");

    // A reload whose key does not match its certificate is refused before any worker sees it.
    await Deno.copyFile(v1.key, pki.path("live.key"));
    await assert.rejects(() => prepared(table, pki.dir), /does not match certificate/);
    await using still = await TlsUac.connect(listener.addr.port, { servername: "sip.example" });
    assert.equal(still.peerSubject(), "CN=v2", "the old domains stay in force");
    // And a config that was not prepared fails in phase one, before anything is swapped.
    assert.throws(
      () => tlsPlugin.reload!(tlsSettingsSchema.parse(table) as TlsConfig),
      /not prepared/,
    );
  } finally {
    for (const s of sockets) s.close();
    listener.close();
  }
});

Deno.test("tls transport: verify_client per domain: required, optional, off on one listener", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Client CA");
  const otherCa = await pki.ca("Other CA");
  const server = await pki.issue(ca, "server", {
    dns: ["req.example", "opt.example", "off.example"],
  });
  const good = await pki.issue(ca, "good", { usage: "client" });
  const bad = await pki.issue(otherCa, "bad", { usage: "client" });
  const domain = (name: string, verify: string) => ({
    name,
    server_names: [`${name}.example`],
    certificate: server.cert,
    private_key: server.key,
    ca_list: ca.cert,
    verify_client: verify,
  });
  const tlsPlugin = await instance(
    await prepared({
      server_domains: [domain("req", "required"), domain("opt", "optional"), domain("off", "off")],
    }, pki.dir),
  );
  const listener = await tlsPlugin.transport.listen({ hostname: "127.0.0.1", port: 0 });
  const sockets: StreamSocket[] = [];
  listener.start(collect(sockets));
  const port = listener.addr.port;
  /** Whether a connection with this SNI and client certificate is served (echoes). */
  const served = async (sni: string, cert?: { certPem: string; keyPem: string }) => {
    let uac: TlsUac;
    try {
      uac = await TlsUac.connect(port, { servername: sni, cert: cert?.certPem, key: cert?.keyPem });
    } catch {
      return false; // refused in the handshake
    }
    try {
      return await exchange(uac, "ping") === "ping";
    } catch {
      return false; // closed after the handshake
    } finally {
      await uac.close();
    }
  };
  try {
    assert.equal(await served("req.example"), false, "required, no certificate");
    assert.equal(await served("req.example", bad), false, "required, untrusted certificate");
    assert.equal(await served("req.example", good), true, "required, trusted certificate");
    assert.equal(await served("opt.example"), true, "optional, no certificate");
    assert.equal(await served("opt.example", bad), false, "optional, untrusted certificate");
    assert.equal(await served("opt.example", good), true, "optional, trusted certificate");
    assert.equal(await served("off.example", bad), true, "off: not checked");
    const verified = sockets.map((s) => s.details!()).find((d) => d.domain === "req");
    assert.equal(verified?.peer_certificate, "CN=good");
    assert.equal(verified?.peer_verified, true);
  } finally {
    for (const s of sockets) s.close();
    listener.close();
  }
});

Deno.test("tls transport: a peer that stops reading: writes go congested and stay pending; close() rejects them", async () => {
  await using pki = await TestPki.create();
  const config = await prepared({}, pki.dir);
  const tlsPlugin = await instance(config);
  const listener = await tlsPlugin.transport.listen({ hostname: "127.0.0.1", port: 0 });
  const sockets: StreamSocket[] = [];
  listener.start(collect(sockets, false));
  // A client that completes the handshake and never reads. (A paused node:tls socket would not
  // do: the runtime keeps reading into its buffer.) The generated certificate names 127.0.0.1.
  const caCerts = [config.prepared!.server[0].certificate];
  const client = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: listener.addr.port,
    caCerts,
  });
  await client.handshake();
  try {
    const deadline = Date.now() + 3000;
    while (sockets.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const socket = sockets[0];
    assert.ok(socket, "accepted");
    const chunk = new Uint8Array(64 * 1024).fill(65);
    let written = 0;
    let pending: Promise<number> | undefined;
    // Write until a write does not complete within 200 ms (bounded: 64 MB).
    for (let i = 0; i < 1024 && pending === undefined; i++) {
      const write = socket.write(chunk);
      const result = await Promise.race([
        write,
        new Promise((r) => setTimeout(() => r("pending"), 200)),
      ]);
      if (result === "pending") pending = write;
      else written += result as number;
    }
    assert.ok(pending !== undefined, `a write stayed pending (after ${written} bytes)`);
    assert.equal(socket.congested, true);
    const outcome = pending.then(() => "resolved", (e: Error) => `rejected: ${e.message}`);
    socket.close();
    assert.equal(await outcome, "rejected: TLS connection closed");
    await assert.rejects(() => socket.write(chunk), /closed/);
  } finally {
    client.close();
    for (const s of sockets) s.close();
    listener.close();
  }
});

Deno.test("tls transport: connect honours the abort signal (a server that never answers the handshake)", async () => {
  await using pki = await TestPki.create();
  const tlsPlugin = await instance(await prepared({}, pki.dir, -1));
  // A TCP listener that accepts and says nothing: the TLS handshake never completes.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const acceptLoop = (async () => {
    try {
      for await (const conn of silent) accepted.push(conn);
    } catch {
      // closed
    }
  })();
  try {
    const started = Date.now();
    await assert.rejects(
      () =>
        tlsPlugin.transport.connect({
          hostname: "127.0.0.1",
          port: (silent.addr as Deno.NetAddr).port,
          signal: AbortSignal.timeout(300),
        }),
      (error: Error) => error.name === "TimeoutError" && /TLS handshake/.test(error.message),
    );
    assert.ok(Date.now() - started < 2000);
  } finally {
    silent.close();
    for (const c of accepted) c.close();
    await acceptLoop;
  }
});

Deno.test("tls transport: a domain's ciphers: a connection that negotiated another suite is closed", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Test CA");
  const a = await pki.issue(ca, "a", { dns: ["a.example"] });
  const tlsPlugin = await instance(
    await prepared({
      server_domains: [{
        name: "a",
        certificate: a.cert,
        private_key: a.key,
        ciphers: "TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256",
      }],
    }, pki.dir),
  );
  const listener = await tlsPlugin.transport.listen({ hostname: "127.0.0.1", port: 0 });
  const sockets: StreamSocket[] = [];
  listener.start(collect(sockets, false));
  const sClient = async (args: string[]) => {
    const out = await new Deno.Command("openssl", {
      args: ["s_client", "-connect", `127.0.0.1:${listener.addr.port}`, ...args],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return out.code;
  };
  try {
    await sClient(["-ciphersuites", "TLS_AES_256_GCM_SHA384"]);
    await sClient(["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"]);
    assert.equal(sockets.length, 0, "suites not listed are refused");
    await sClient(["-ciphersuites", "TLS_AES_128_GCM_SHA256"]);
    await sClient(["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]);
    assert.deepEqual(sockets.map((s) => s.details!().cipher), [
      "TLS_AES_128_GCM_SHA256",
      "ECDHE-ECDSA-AES128-GCM-SHA256",
    ]);
    assert.throws(
      () => tlsSettingsSchema.parse({ client_domains: [{ name: "c", ciphers: "RC4-MD5" }] }),
      /colon-separated cipher suites out of/,
    );
  } finally {
    for (const s of sockets) s.close();
    listener.close();
  }
});

Deno.test("tls transport: a client that does not complete the handshake is disconnected after handshake_timeout", async () => {
  await using pki = await TestPki.create();
  const tlsPlugin = await instance(await prepared({ handshake_timeout: "300ms" }, pki.dir));
  const listener = await tlsPlugin.transport.listen({ hostname: "127.0.0.1", port: 0 });
  listener.start((s) => s.close());
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  try {
    const started = Date.now();
    const read = await Promise.race([
      conn.read(new Uint8Array(16)).catch(() => null),
      new Promise((r) => setTimeout(() => r("still open"), 3000)),
    ]);
    assert.equal(read, null, "closed by sipedge");
    const ms = Date.now() - started;
    assert.ok(ms >= 250 && ms < 2000, `${ms} ms`);
  } finally {
    conn.close();
    listener.close();
  }
});
