/**
 * Certificates swapped under a TLS load: TLS clients keep sending OPTIONS through sipedge on
 * their open connections while the certificate files behind config.toml are replaced and
 * reloaded 10 times (`POST /reload`). Every transaction must succeed, the connections open
 * before must still be open (same connection ids), each new handshake must see the newest
 * certificate, and a reload with a key that does not match its certificate must be refused and
 * change nothing.
 *
 * @module
 */
import assert from "node:assert/strict";
import { freePort, startSipedge } from "./support/sipedge_process.ts";
import { buildRequest, TestUas } from "./support/sip_peer.ts";
import { hasOpenssl, type TestCert, TestPki } from "./support/tls_certs.ts";
import { TlsUac } from "./support/tls_peer.ts";

const SWAPS = 10;
const CLIENTS = 4;

interface ConnectionRow {
  id: number;
  transport: string;
  direction: string;
}

Deno.test({
  name: "tls reload: 10 certificate swaps under load, no failed transaction, connections kept",
  ignore: !hasOpenssl(),
  async fn() {
    await using pki = await TestPki.create();
    const ca = await pki.ca("Reload Test CA");
    const certs: TestCert[] = [];
    for (let i = 0; i <= SWAPS; i++) {
      certs.push(await pki.issue(ca, `v${i}`, { cn: `sip.test v${i}`, dns: ["sip.test"] }));
    }
    const dir = await Deno.makeTempDir({ prefix: "sipedge_tls_reload_" });
    const install = async (cert: TestCert, key: TestCert = cert) => {
      // Written next to the final name and renamed: a reader never sees half a file.
      await Deno.writeTextFile(`${dir}/server.pem.tmp`, cert.certPem);
      await Deno.writeTextFile(`${dir}/server.key.tmp`, key.keyPem);
      await Deno.rename(`${dir}/server.pem.tmp`, `${dir}/server.pem`);
      await Deno.rename(`${dir}/server.key.tmp`, `${dir}/server.key`);
    };
    await install(certs[0]);
    await using uas = TestUas.listen();
    const port = freePort();
    const control = freePort();
    await Deno.writeTextFile(
      `${dir}/config.toml`,
      `[sipedge]
workers = 2

[control]
address = "127.0.0.1:${control}"

[[listen]]
address = "tls:127.0.0.1:${port}"

[plugins.tcp]

[plugins.static_router]
default_route = "${uas.uri}"

[[plugins.tls.server_domains]]
name = "main"
certificate = "server.pem"
private_key = "server.key"
`,
    );
    await using proxy = await startSipedge({ args: ["--config", `${dir}/config.toml`] });
    const api = `http://127.0.0.1:${control}`;
    const reload = async () => await (await fetch(`${api}/reload`, { method: "POST" })).json();
    const connections = async (): Promise<ConnectionRow[]> =>
      (await (await fetch(`${api}/connections`)).json()).connections;

    const clients: TlsUac[] = [];
    let stop = false;
    let transactions = 0;
    const failures: string[] = [];
    try {
      for (let i = 0; i < CLIENTS; i++) {
        clients.push(await TlsUac.connect(port, { ca: ca.certPem }));
      }
      assert.match(clients[0].peerSubject(), /CN=sip\.test v0/);
      // Each client: one OPTIONS at a time, back to back, until told to stop.
      const load = clients.map(async (client, c) => {
        while (!stop) {
          const request = buildRequest({ method: "OPTIONS" });
          try {
            await client.send(request.bytes);
            const answer = await client.nextMessage(5000);
            if (answer.status !== 200 || answer.callId !== request.callId) {
              failures.push(
                `client ${c}: ${answer.status} for ${answer.callId}: ${
                  new TextDecoder().decode(answer.bytes ?? new Uint8Array()).slice(0, 400)
                }`,
              );
            }
            transactions++;
          } catch (error) {
            failures.push(`client ${c}: ${(error as Error).message}`);
            return;
          }
        }
      });
      await new Promise((r) => setTimeout(r, 300));
      const before = (await connections()).filter((c) => c.transport === "tls");
      assert.equal(before.length, CLIENTS);

      for (let i = 1; i <= SWAPS; i++) {
        await install(certs[i]);
        const report = await reload();
        assert.equal(report.ok, true, JSON.stringify(report));
        assert.match(report.changes.join("\n"), /plugins\.tls/);
        await using fresh = await TlsUac.connect(port, { ca: ca.certPem });
        assert.match(fresh.peerSubject(), new RegExp(`CN=sip\\.test v${i}\\b`));
        await new Promise((r) => setTimeout(r, 100));
      }

      // A key that does not belong to the certificate: refused, and v10 stays in force.
      await install(certs[0], certs[1]);
      const refused = await reload();
      assert.equal(refused.ok, false, JSON.stringify(refused));
      assert.match(refused.errors.join("\n"), /plugins\.tls\.server_domains\[0\]/);
      assert.doesNotMatch(refused.errors.join("\n"), /not enabled/, "no follow-on errors");
      await using after = await TlsUac.connect(port, { ca: ca.certPem });
      assert.match(after.peerSubject(), new RegExp(`CN=sip\\.test v${SWAPS}\\b`));

      stop = true;
      await Promise.all(load);
      assert.deepEqual(failures, []);
      assert.ok(transactions > CLIENTS * SWAPS, `only ${transactions} transactions`);
      const ids = new Set((await connections()).map((c) => c.id));
      for (const c of before) assert.ok(ids.has(c.id), `connection ${c.id} was closed`);
      assert.ok(clients.every((c) => !c.isClosed));
    } catch (error) {
      if (error instanceof Error) {
        error.message += `\n--- sipedge output ---\n${proxy.output().slice(-5000)}`;
      }
      throw error;
    } finally {
      stop = true;
      await Promise.all(clients.map((c) => c.close()));
      await Deno.remove(dir, { recursive: true });
    }
  },
});
