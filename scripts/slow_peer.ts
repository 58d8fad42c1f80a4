/**
 * A SIP peer that accepts TCP connections and never reads from them: the "slow upstream" of
 * the benchmarks (the kernel buffers fill, then sipedge's queue, then its limits act).
 * `deno run --allow-net scripts/slow_peer.ts PORT` — prints `listening` and runs until killed.
 * @module
 */
const port = Number(Deno.args[0] ?? 0);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log(`listening on 127.0.0.1:${(listener.addr as Deno.NetAddr).port}`);
const held: Deno.Conn[] = [];
for await (const conn of listener) held.push(conn); // held open, never read
