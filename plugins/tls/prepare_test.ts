import assert from "node:assert/strict";
import { PluginConfigError } from "../../core/plugin/types.ts";
import { TestPki } from "../../tests/support/tls_certs.ts";
import { prepareTls } from "./prepare.ts";
import { tlsSettingsSchema } from "./settings.ts";
import plugin from "../tls.ts";

const LISTENER = { transport: "tls", hostname: "127.0.0.1", port: 45061 };

function prepare(table: unknown, dir: string, listeners = [LISTENER], reloading = false) {
  return prepareTls(tlsSettingsSchema.parse(table), { listeners, configDir: dir, reloading });
}

async function rejects(run: () => Promise<unknown>): Promise<PluginConfigError> {
  try {
    await run();
  } catch (error) {
    assert.ok(error instanceof PluginConfigError, String(error));
    return error;
  }
  assert.fail("expected a PluginConfigError");
}

Deno.test("tls prepare: loads domains (paths relative to the config), no generated certificate then", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Test CA");
  const a = await pki.issue(ca, "a", { dns: ["a.example"] });
  const config = await prepare({
    server_domains: [{
      name: "a",
      server_names: ["A.example"],
      certificate: "a.pem",
      private_key: "a.key",
      ca_list: "test_ca.pem",
      verify_client: "optional",
    }],
    client_domains: [{
      name: "trunk",
      match: ["10.0.0.5:5061"],
      certificate: a.cert,
      private_key: a.key,
    }],
  }, pki.dir);
  const p = config.prepared!;
  assert.equal(p.server.length, 1);
  assert.equal(p.server[0].certificate, a.certPem);
  assert.equal(p.server[0].caList, ca.certPem);
  assert.deepEqual(p.server[0].serverNames, ["a.example"]);
  assert.equal(p.server[0].info.subject, "CN=a");
  assert.deepEqual(p.server[0].info.sans, ["DNS:a.example"]);
  assert.match(p.server[0].info.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  assert.equal(p.client[0].privateKey, a.keyPem);
  assert.deepEqual(p.warnings, []);
  // Plain data: it goes to workers by structured clone.
  assert.deepEqual(structuredClone(config), config);
  const shown = JSON.stringify(plugin.inspect!(config));
  assert.ok(!shown.includes("PRIVATE KEY"), "inspect never shows keys");
  assert.ok(shown.includes('"subject":"CN=a"'), shown);
});

Deno.test("tls prepare: a listener no domain covers gets a generated certificate, kept over reloads", async () => {
  await using pki = await TestPki.create();
  const first = await prepare({}, pki.dir, [LISTENER]);
  const generated = first.prepared!.server;
  assert.equal(generated.length, 1);
  assert.equal(generated[0].generated, true);
  assert.deepEqual(generated[0].listener, { hostname: "127.0.0.1", port: 45061 });
  assert.ok(generated[0].info.sans.includes("IP Address:127.0.0.1"), generated[0].info.sans.join());
  assert.match(
    first.prepared!.warnings[0],
    /tls listener 127\.0\.0\.1:45061: no certificate configured/,
  );
  const again = await prepare({}, pki.dir, [LISTENER], true);
  assert.equal(again.prepared!.server[0].certificate, generated[0].certificate, "not regenerated");
  // A domain for another listener does not cover this one.
  const other = await prepare({
    server_domains: [{
      name: "x",
      listener: "127.0.0.1:1",
      certificate: "x.pem",
      private_key: "x.key",
    }],
  }, pki.dir).catch((e) => e);
  assert.ok(other instanceof PluginConfigError); // x.pem does not exist
});

Deno.test("tls prepare: unreadable file, key of another certificate, expired certificate, missing CA list — all named", async () => {
  await using pki = await TestPki.create();
  const ca = await pki.ca("Test CA");
  const a = await pki.issue(ca, "a", { dns: ["a.example"] });
  const b = await pki.issue(ca, "b", { dns: ["b.example"] });
  const { cert: oldCert, key: oldKey } = await pki.expired("old");

  const missing = await rejects(() =>
    prepare(
      { server_domains: [{ name: "m", certificate: "nope.pem", private_key: a.key }] },
      pki.dir,
    )
  );
  assert.deepEqual(missing.path, ["server_domains", 0, "certificate"]);
  assert.match(missing.message, new RegExp(`^cannot read ${pki.dir}/nope\\.pem: `));

  const mismatch = await rejects(() =>
    prepare({ server_domains: [{ name: "m", certificate: a.cert, private_key: b.key }] }, pki.dir)
  );
  assert.deepEqual(mismatch.path, ["server_domains", 0, "private_key"]);
  assert.equal(mismatch.message, `private key ${b.key} does not match certificate ${a.cert}`);

  const expired = await rejects(() =>
    prepare({ client_domains: [{ name: "e", certificate: oldCert, private_key: oldKey }] }, pki.dir)
  );
  assert.deepEqual(expired.path, ["client_domains", 0, "certificate"]);
  assert.match(expired.message, /certificate .*old\.pem \(O=sipedge, CN=old\) expired on \d{4}-/);

  const all = await rejects(() =>
    prepare({
      server_domains: [
        { name: "s", certificate: a.cert, private_key: a.key, verify_client: "required" },
        { name: "t", certificate: a.cert, private_key: a.key, ca_list: "nope.pem" },
      ],
      client_domains: [{ name: "c", certificate: a.cert }],
    }, pki.dir)
  );
  assert.deepEqual(all.path, ["server_domains", 0, "ca_list"]);
  assert.match(all.message, /needed when verify_client is "required"/);
  assert.match(all.message, /; and server_domains\[1\]\.ca_list: cannot read .*nope\.pem/);
  assert.match(
    all.message,
    /; client_domains\[0\]\.private_key: certificate and private_key go together/,
  );

  const garbage = await pki.write("garbage.pem", "not a certificate\n");
  const notPem = await rejects(() =>
    prepare({ server_domains: [{ name: "g", certificate: garbage, private_key: a.key }] }, pki.dir)
  );
  assert.equal(notPem.message, `${garbage}: no PEM certificate in it`);
});

Deno.test("tls config: unknown keys and bad values are refused by the schema", () => {
  const bad = tlsSettingsSchema.safeParse({
    server_domains: [{ name: "a", certificate: "a", private_key: "k", verify_client: "maybe" }],
    client_domains: [{ name: "c", match: ["bad host!"] }],
    prepared: {},
  });
  assert.equal(bad.success, false);
  const paths = bad.error!.issues.map((i) => i.path.join("."));
  assert.ok(paths.includes("server_domains.0.verify_client"), paths.join());
  assert.ok(paths.includes("client_domains.0.match.0"), paths.join());
  assert.ok(bad.error!.issues.some((i) => i.code === "unrecognized_keys"), "prepared is not a key");
});
