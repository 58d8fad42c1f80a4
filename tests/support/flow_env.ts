/**
 * Test support for flows (RFC 5626) and hand-offs between workers: a running sipedge with its
 * control API, and connections placed in a chosen worker. The kernel spreads accepted
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

/** sipedge with its control API, for flow tests. */
export class FlowProxy implements AsyncDisposable {
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
   * Starts sipedge with `workers` workers, a tcp listener on a free port, the control API, and
   * `extra` config text (plugin tables, `[flows]`).
   */
  static async start(workers: number, extra = "", listen = ["tcp:127.0.0.1:0"]) {
    const config = `[sipedge]
workers = ${workers}
shutdown_timeout = "200ms"

[control]
address = "127.0.0.1:0"

${listen.map((a) => `[[listen]]\naddress = "${a}"\n`).join("\n")}
${extra}
`;
    return new FlowProxy(await startSipedge({ config }));
  }

  /** Every connection of every worker. */
  async connections(): Promise<ListedConnection[]> {
    const response = await fetch(`${this.controlUrl}/connections`);
    return (await response.json()).connections;
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
