/**
 * The tls plugin's build step in the supervisor (`prepare`): reads and checks every certificate,
 * key and CA list of the table, generates a self-signed certificate for each tls listener no
 * server domain covers, and returns the config workers get, with PEM text instead of paths.
 * At start, on `--check-config` and on every reload: a problem rejects the whole config (or
 * reload) and names the key at fault; nothing half-loaded is ever used.
 * @module
 */
import { isIP } from "node:net";
import { PluginConfigError, type PrepareContext } from "../../core/plugin/types.ts";
import { KeyPairError, loadCaList, loadKeyPair, pemInfo, resolvePath } from "./certificates.ts";
import { domainsForListener, formatListener, normalizeHost, sameListener } from "./domains.ts";
import { generateSelfSigned } from "./self_signed.ts";
import type {
  ListenerId,
  PreparedClientDomain,
  PreparedServerDomain,
  PreparedTls,
  TlsConfig,
  TlsSettings,
} from "./settings.ts";

/** Generated certificates by listener (`host:port`), kept so a reload does not regenerate them. */
const generated = new Map<string, { certificate: string; privateKey: string }>();

/** A generated certificate is replaced when it has less than this left (long-running process). */
const RENEW_BEFORE_MS = 86_400_000;

/** Parses a domain's `listener` (`HOST:PORT`, `[v6]:PORT`, or `*` -> undefined). */
export function parseListener(text: string): ListenerId | undefined {
  if (text === "*") return undefined;
  const colon = text.lastIndexOf(":");
  return { hostname: normalizeHost(text.slice(0, colon)), port: Number(text.slice(colon + 1)) };
}

/** Builds the prepared config; throws {@link PluginConfigError} naming the first bad key. */
export async function prepareTls(
  settings: TlsSettings,
  context: Pick<PrepareContext, "listeners" | "configDir" | "reloading"> & {
    logger?: PrepareContext["logger"];
  },
  now = new Date(),
): Promise<TlsConfig> {
  const problems: { path: (string | number)[]; message: string }[] = [];
  const warnings: string[] = [];
  const attempt = async <T>(path: (string | number)[], run: () => Promise<T>) => {
    try {
      return await run();
    } catch (error) {
      // A key pair problem is reported under the key of the file at fault.
      const key = error instanceof KeyPairError ? [...path.slice(0, -1), error.part] : path;
      problems.push({ path: key, message: (error as Error).message });
      return undefined;
    }
  };
  const file = (path: string) => resolvePath(path, context.configDir);
  const listeners: ListenerId[] = context.listeners.map((l) => ({
    hostname: normalizeHost(l.hostname),
    port: l.port,
  }));

  const names = new Set<string>();
  const server: PreparedServerDomain[] = [];
  for (const [i, d] of settings.server_domains.entries()) {
    const at = ["server_domains", i];
    if (names.has(`server ${d.name}`)) {
      problems.push({ path: [...at, "name"], message: `duplicate server domain name "${d.name}"` });
    }
    names.add(`server ${d.name}`);
    const listener = parseListener(d.listener);
    if (listener !== undefined && !listeners.some((l) => sameListener(l, listener))) {
      warnings.push(
        `server domain ${d.name} is for listener ${d.listener}, which is not a tls or wss listen address; it is not used`,
      );
    }
    if (d.verify_client !== "off" && d.ca_list === undefined) {
      problems.push({
        path: [...at, "ca_list"],
        message:
          `needed when verify_client is "${d.verify_client}" (the CAs client certificates must chain to)`,
      });
    }
    const pair = await attempt(
      [...at, "certificate"],
      () => loadKeyPair(file(d.certificate), file(d.private_key), now),
    );
    const caList = d.ca_list === undefined
      ? undefined
      : await attempt([...at, "ca_list"], () => loadCaList(file(d.ca_list!), now));
    if (pair === undefined) continue;
    server.push({
      name: d.name,
      listener,
      serverNames: d.server_names.map(normalizeHost),
      certificate: pair.certificate,
      privateKey: pair.privateKey,
      caList,
      verifyClient: d.verify_client,
      minVersion: d.min_version,
      ciphers: d.ciphers,
      generated: false,
      info: pair.info,
    });
  }

  const client: PreparedClientDomain[] = [];
  for (const [i, d] of settings.client_domains.entries()) {
    const at = ["client_domains", i];
    if (names.has(`client ${d.name}`)) {
      problems.push({ path: [...at, "name"], message: `duplicate client domain name "${d.name}"` });
    }
    names.add(`client ${d.name}`);
    if ((d.certificate === undefined) !== (d.private_key === undefined)) {
      problems.push({
        path: [...at, d.certificate === undefined ? "certificate" : "private_key"],
        message: "certificate and private_key go together (mutual TLS needs both)",
      });
      continue;
    }
    const pair = d.certificate === undefined ? undefined : await attempt(
      [...at, "certificate"],
      () => loadKeyPair(file(d.certificate!), file(d.private_key!), now),
    );
    const caList = d.ca_list === undefined
      ? undefined
      : await attempt([...at, "ca_list"], () => loadCaList(file(d.ca_list!), now));
    client.push({
      name: d.name,
      match: d.match.map((m) => m.trim().toLowerCase()),
      caList,
      verifyServer: d.verify_server,
      verifyHostName: d.verify_host_name,
      certificate: pair?.certificate,
      privateKey: pair?.privateKey,
      minVersion: d.min_version,
      ciphers: d.ciphers,
      info: pair?.info,
    });
  }

  if (problems.length > 0) {
    const [first, ...rest] = problems;
    const more = rest.map((p) => `${formatPath(p.path)}: ${p.message}`);
    throw new PluginConfigError(
      first.path,
      more.length === 0 ? first.message : `${first.message}; and ${more.join("; ")}`,
    );
  }

  // Listeners no domain covers: a generated certificate, like Caddy's for local use.
  for (const [i, listener] of listeners.entries()) {
    if (domainsForListener(server, listener).length > 0) continue;
    const material = generatedFor(listener, now);
    const info = pemInfo(material.certificate);
    server.push({
      name: `self-signed ${formatListener(listener)}`,
      listener,
      serverNames: [],
      certificate: material.certificate,
      privateKey: material.privateKey,
      caList: undefined,
      verifyClient: "off",
      minVersion: "TLSv1.2",
      ciphers: undefined,
      generated: true,
      info,
    });
    warnings.push(
      `${context.listeners[i].transport} listener ${
        formatListener(listener)
      }: no certificate configured, using a generated ` +
        `self-signed one (${info.sans.join(", ")}; SHA-256 ${info.fingerprint}); ` +
        "configure [[plugins.tls.server_domains]] for real use",
    );
  }
  if (context.reloading) { for (const w of warnings) context.logger?.warn(w); }

  const prepared: PreparedTls = { listeners, server, client, warnings };
  return { ...settings, prepared };
}

/** The generated certificate of a listener: the same one for the life of the process. */
function generatedFor(listener: ListenerId, now: Date) {
  const key = formatListener(listener);
  const existing = generated.get(key);
  if (existing !== undefined) {
    const notAfter = Date.parse(pemInfo(existing.certificate).notAfter);
    if (notAfter - now.getTime() > RENEW_BEFORE_MS) return existing;
  }
  const host = listener.hostname;
  const unspecified = host === "0.0.0.0" || host === "::";
  const ips = new Set(["127.0.0.1", "::1"]);
  const dns = new Set(["localhost"]);
  if (!unspecified) (isIP(host) !== 0 ? ips : dns).add(host);
  const material = generateSelfSigned({
    commonName: `sipedge ${key}`,
    dnsNames: [...dns],
    ipAddresses: [...ips],
    notBefore: new Date(now.getTime() - 3_600_000),
  });
  generated.set(key, material);
  return material;
}

function formatPath(path: (string | number)[]): string {
  return path.map((p, i) => typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`).join("");
}
