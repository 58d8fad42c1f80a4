/**
 * Test support: a running sipedge with its control API, for tests that look at workers (flows
 * and hand-offs, worker supervision), and connections placed in a chosen worker. The kernel spreads accepted
 * connections over the workers' SO_REUSEPORT sockets; a test that must cross workers opens
 * connections until one lands in the worker it wants (the control API names the owner), so
 * the cross-worker path is forced, not left to chance.
 * @module
 */
import assert from "node:assert/strict";
import { type SipedgeProcess, startSipedge } from "./sipedge_process.ts";
import { TestUac } from "./sip_peer.ts";

/** A connection as the control API lists it. */
export interface ListedConnection {
  id: number;
  worker: number;
  transport: string;
  direction: "in" | "out";
  remote: string;
  flow: boolean;
}

/** The workers part of GET /status. */
export interface WorkerStatus {
  configured: number;
  up: number;
  restarting: number[];
  unresponsive: number[];
  restarts: Record<string, number>;
  connections_lost: number;
  stuck: number;
}

/** sipedge with its control API. */
export class ProxyEnv implements AsyncDisposable {
  readonly proxy: SipedgeProcess;
  readonly controlUrl: string;
  readonly port: number;

  private constructor(proxy: SipedgeProcess) {
    this.proxy = proxy;
    const match = /sipedge control API: (http:\/\/127\.0\.0\.1:\d+)/.exec(proxy.output());
    assert.ok(match, "the control API address is printed");
    this.controlUrl = match[1];
    this.port = Number(proxy.listening[0].split(":").at(-1));
  }

  /**
   * Starts sipedge with `workers` workers, the control API, `listen` (default a tcp listener on
   * a free port), `sipedge` lines added to `[sipedge]`, and `extra` config text (plugin tables,
   * `[flows]`).
   */
  static async start(
    workers: number,
    extra = "",
    options: { sipedge?: string; listen?: string[] } = {},
  ): Promise<ProxyEnv> {
    const listen = options.listen ?? ["tcp:127.0.0.1:0"];
    const config = `[sipedge]
workers = ${workers}
shutdown_timeout = "200ms"
${options.sipedge ?? ""}

[control]
address = "127.0.0.1:0"

${listen.map((a) => `[[listen]]\naddress = "${a}"\n`).join("\n")}
${extra}
`;
    return new ProxyEnv(await startSipedge({ config }));
  }

  /** Every connection of every worker. */
  async connections(): Promise<ListedConnection[]> {
    const response = await fetch(`${this.controlUrl}/connections`);
    return (await response.json()).connections;
  }

  /** GET /status. */
  async status(): Promise<Record<string, unknown> & { workers: WorkerStatus }> {
    return await (await fetch(`${this.controlUrl}/status`)).json();
  }

  /** Polls `check` every 50 ms until it returns a value (not undefined) or `timeoutMs` ends. */
  async until<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
      const value = await check().catch(() => undefined);
      if (value !== undefined) return value;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  }

  /** Summed counters of all workers. */
  async counters(): Promise<Record<string, number>> {
    const response = await fetch(`${this.controlUrl}/counters`);
    const body = await response.json();
    return body.counters ?? body;
  }

  /** The worker that owns the inbound connection from 127.0.0.1:`localPort`. */
  async ownerOf(localPort: number): Promise<number> {
    return (await this.inbound(localPort)).worker;
  }

  /** The inbound connection from 127.0.0.1:`localPort` (waits up to 3 s for it to be listed). */
  async inbound(localPort: number): Promise<ListedConnection> {
    const remote = `127.0.0.1:${localPort}`;
    for (const deadline = Date.now() + 3000; Date.now() < deadline;) {
      const c = (await this.connections()).find((c) => c.direction === "in" && c.remote === remote);
      if (c !== undefined) return c;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`the connection from ${remote} is not in the control API`);
  }

  /**
   * A client connection owned by worker `worker` (or, with `not`, by any other worker). Up to
   * 40 connections are tried; the ones in the wrong worker are closed.
   */
  async connectIn(want: { worker: number } | { not: number }): Promise<TestUac> {
    for (let i = 0; i < 40; i++) {
      const uac = await TestUac.connect(this.port);
      const owner = await this.ownerOf(uac.localPort);
      if ("worker" in want ? owner === want.worker : owner !== want.not) return uac;
      await uac.close();
      // Gone from sipedge's list too (it no longer counts against the per-IP limit).
      const remote = `127.0.0.1:${uac.localPort}`;
      await this.until(
        async () => (await this.connections()).some((c) => c.remote === remote) ? undefined : true,
        3000,
        `${remote} closed`,
      );
    }
    throw new Error(`no connection landed in the wanted worker (${JSON.stringify(want)})`);
  }

  /** Stops sipedge. */
  async stop(): Promise<void> {
    await this.proxy.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
