/**
 * Test certificates made with the `openssl` command line in a temporary folder: a CA, and
 * server or client certificates it signs (X.509 v3 with subjectAltName and extended key usage,
 * as rustls and Kamailio want them). Nothing is committed; `await using` removes the folder.
 *
 * ```ts
 * await using pki = await TestPki.create();
 * const ca = await pki.ca("Test CA");
 * const a = await pki.issue(ca, "a", { dns: ["a.example"] });
 * // a.cert, a.key: file paths; a.certPem, a.keyPem: contents
 * ```
 * @module
 */
import { generateSelfSigned } from "../../plugins/tls/self_signed.ts";

/** A key pair on disk. */
export interface TestCert {
  /** Short name; the files are NAME.pem and NAME.key. */
  name: string;
  /** Path of the certificate (PEM). */
  cert: string;
  /** Path of the private key (PEM). */
  key: string;
  certPem: string;
  keyPem: string;
}

/** What to put in an issued certificate. */
export interface IssueOptions {
  /** Subject CN (default: the name). */
  cn?: string;
  /** DNS subjectAltNames. */
  dns?: string[];
  /** IP subjectAltNames. */
  ips?: string[];
  /** "server" (default), "client" or "both": the extended key usage. */
  usage?: "server" | "client" | "both";
  /** Validity in days (default 30). */
  days?: number;
}

/** Runs openssl (with `input` on its stdin); throws with its output on failure. */
export async function openssl(args: string[], cwd?: string, input?: string): Promise<string> {
  const child = new Deno.Command("openssl", {
    args,
    cwd,
    stdin: input === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
  }
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`openssl ${args.join(" ")} failed:\n${text}`);
  return text;
}

/** Whether the openssl command is installed. */
export function hasOpenssl(): boolean {
  try {
    new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    return false;
  }
}

/** A folder of test certificates. */
export class TestPki implements AsyncDisposable {
  /** The temporary folder. */
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Creates the temporary folder. */
  static async create(): Promise<TestPki> {
    return new TestPki(await Deno.makeTempDir({ prefix: "sipedge_tls_" }));
  }

  /** A path in the folder. */
  path(name: string): string {
    return `${this.dir}/${name}`;
  }

  /** A self-signed CA (P-256). */
  async ca(cn: string, name = cn.replace(/\W+/g, "_").toLowerCase()): Promise<TestCert> {
    await openssl([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.pem`,
      "-days",
      "30",
      "-subj",
      `/CN=${cn}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ], this.dir);
    return await this.#read(name);
  }

  /** A certificate signed by `ca`. */
  async issue(ca: TestCert, name: string, options: IssueOptions = {}): Promise<TestCert> {
    await openssl([
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${options.cn ?? name}`,
    ], this.dir);
    const sans = [
      ...(options.dns ?? []).map((d) => `DNS:${d}`),
      ...(options.ips ?? []).map((ip) => `IP:${ip}`),
    ];
    const usage = options.usage ?? "server";
    const eku = usage === "both" ? "serverAuth,clientAuth" : `${usage}Auth`;
    const ext = [
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature",
      `extendedKeyUsage=${eku}`,
      ...(sans.length > 0 ? [`subjectAltName=${sans.join(",")}`] : []),
    ];
    await Deno.writeTextFile(this.path(`${name}.ext`), ext.join("\n") + "\n");
    await openssl([
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      ca.cert,
      "-CAkey",
      ca.key,
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      String(options.days ?? 30),
      "-extfile",
      `${name}.ext`,
    ], this.dir);
    return await this.#read(name);
  }

  /** A self-signed certificate that expired `daysAgo` days ago, written as NAME.pem/NAME.key. */
  async expired(name: string, daysAgo = 60): Promise<TestCert> {
    const made = generateSelfSigned({
      commonName: name,
      notBefore: new Date(Date.now() - (daysAgo + 30) * 86_400_000),
      days: 30,
    });
    await this.write(`${name}.pem`, made.certificate);
    await this.write(`${name}.key`, made.privateKey);
    return await this.#read(name);
  }

  /** Writes a file in the folder (returns its path). */
  async write(name: string, text: string): Promise<string> {
    await Deno.writeTextFile(this.path(name), text);
    return this.path(name);
  }

  async #read(name: string): Promise<TestCert> {
    const cert = this.path(`${name}.pem`);
    const key = this.path(`${name}.key`);
    return {
      name,
      cert,
      key,
      certPem: await Deno.readTextFile(cert),
      keyPem: await Deno.readTextFile(key),
    };
  }

  /** Removes the folder. */
  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
