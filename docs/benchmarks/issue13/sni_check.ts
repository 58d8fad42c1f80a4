/**
 * Does Deno (this version) let a WebSocket/HTTPS server pick its certificate by SNI name?
 * Checks, with two self-signed certificates (a.test, b.test) made by openssl:
 *
 *  1. Deno.serve({ cert, key }): the documented options take one certificate: the name the
 *     client asks for makes no difference.
 *  2. Deno.listenTls / Deno.serve with the undocumented `Symbol.for("unstableSniResolver")`
 *     option (ext/net/02_tls.js, "temporary symbol"): a callback from SNI name to
 *     { cert, key }.
 *  3. node:tls createServer({ SNICallback }) — what plugins/tls uses for per-domain
 *     certificates.
 *
 * For each, a node:tls client connects with servername a.test and b.test and prints the
 * subject CN of the certificate it got.
 *
 *   deno run -A --no-lock docs/benchmarks/issue13/sni_check.ts
 * @module
 */
import tls from "node:tls";

const dir = Deno.makeTempDirSync({ prefix: "issue13_sni_" });
function makeCert(name: string): { cert: string; key: string } {
  const out = new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      `${dir}/${name}.key`,
      "-out",
      `${dir}/${name}.crt`,
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-addext",
      `subjectAltName=DNS:${name}`,
    ],
    stderr: "null",
    stdout: "null",
  }).outputSync();
  if (!out.success) throw new Error("openssl failed");
  return {
    cert: Deno.readTextFileSync(`${dir}/${name}.crt`),
    key: Deno.readTextFileSync(`${dir}/${name}.key`),
  };
}
const certs: Record<string, { cert: string; key: string }> = {
  "a.test": makeCert("a.test"),
  "b.test": makeCert("b.test"),
};

function peerCN(port: number, servername: string): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername, rejectUnauthorized: false });
    s.once("secureConnect", () => {
      const cn = s.getPeerCertificate()?.subject?.CN ?? "?";
      s.destroy();
      resolve(String(cn));
    });
    s.once("error", (e) => resolve(`error: ${e.message}`));
  });
}

async function report(label: string, port: number): Promise<void> {
  const a = await peerCN(port, "a.test");
  const b = await peerCN(port, "b.test");
  const ok = a === "a.test" && b === "b.test";
  console.log(
    `${label}: SNI a.test → CN ${a}; SNI b.test → CN ${b} → ${ok ? "per-SNI: yes" : "per-SNI: no"}`,
  );
}

const resolverSymbol = Symbol.for("unstableSniResolver");
const resolver = (sni: string) => certs[sni] ?? certs["a.test"];
const handler = () => new Response("ok");

// 1. Deno.serve with one cert/key.
{
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
    ...certs["a.test"],
  }, handler);
  await report("Deno.serve({cert, key})", server.addr.port);
  await server.shutdown();
}

// 2a. Deno.listenTls with the unstable resolver symbol.
try {
  const listener = Deno.listenTls(
    { hostname: "127.0.0.1", port: 0, [resolverSymbol]: resolver } as unknown as
      & Deno.ListenTlsOptions
      & Deno.TlsCertifiedKeyPem,
  );
  (async () => {
    for await (const conn of listener) {
      conn.handshake().then(() => conn.close(), () => conn.close());
    }
  })();
  await report('Deno.listenTls({[Symbol.for("unstableSniResolver")]: fn})', listener.addr.port);
  listener.close();
} catch (e) {
  console.log(`Deno.listenTls with the resolver symbol: throws ${(e as Error).message}`);
}

// 2b. Deno.serve with the unstable resolver symbol (and no cert/key).
try {
  const server = Deno.serve(
    {
      hostname: "127.0.0.1",
      port: 0,
      onListen: () => {},
      [resolverSymbol]: resolver,
    } as unknown as Deno.ServeTcpOptions,
    handler,
  );
  await report('Deno.serve({[Symbol.for("unstableSniResolver")]: fn})', server.addr.port);
  await server.shutdown();
} catch (e) {
  console.log(`Deno.serve with the resolver symbol: throws ${(e as Error).message}`);
}

// 2c. Deno.serve with cert/key and the resolver symbol.
try {
  const server = Deno.serve(
    {
      hostname: "127.0.0.1",
      port: 0,
      onListen: () => {},
      ...certs["a.test"],
      [resolverSymbol]: resolver,
    } as unknown as Deno.ServeTcpOptions,
    handler,
  );
  await report(
    'Deno.serve({cert, key, [Symbol.for("unstableSniResolver")]: fn})',
    server.addr.port,
  );
  await server.shutdown();
} catch (e) {
  console.log(`Deno.serve with cert/key and the resolver symbol: throws ${(e as Error).message}`);
}

// 3. node:tls with SNICallback.
{
  const server = tls.createServer({
    ...certs["a.test"],
    SNICallback: (name, cb) => cb(null, tls.createSecureContext(certs[name] ?? certs["a.test"])),
  }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  await report("node:tls createServer({SNICallback})", (server.address() as { port: number }).port);
  server.close();
}

Deno.removeSync(dir, { recursive: true });
Deno.exit(0);
