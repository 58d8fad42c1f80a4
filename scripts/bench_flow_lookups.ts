/**
 * Micro-benchmark of what the flows add per message, without sockets: a directory lookup (hit
 * and miss) as a send to an address that has no local connection does, the owner of an id, and
 * minting and checking a flow token. `deno bench scripts/bench_flow_lookups.ts`.
 * @module
 */
import {
  ConnectionDirectory,
  createDirectoryBuffer,
  ownerOf,
} from "../core/transport/connection_directory.ts";
import { FlowTokens, randomKeyHex } from "../core/proxy/flow_token.ts";

// A directory sized for 2 × 2048 connections, filled with 2,000 client addresses.
const directory = new ConnectionDirectory(createDirectoryBuffer(4096));
const keys: string[] = [];
for (let i = 0; i < 2000; i++) {
  const key = `tcp:10.0.${i >> 8}.${i & 255}:${40000 + i}`;
  directory.publish(key, directory.nextId(i & 1));
  keys.push(key);
}
const tokens = new FlowTokens(12345, [{ hex: randomKeyHex(), validUntil: 0 }]);
const token = tokens.mint(2 ** 20 * 256 + 1, 0);
let sink = 0;
let i = 0;

Deno.bench("directory lookup, hit", () => {
  sink += directory.lookup(keys[i++ % keys.length]) ?? 0;
});
Deno.bench("directory lookup, miss", () => {
  sink += directory.lookup(`tcp:192.0.2.${i++ & 255}:5060`) ?? 0;
});
Deno.bench("owner of a connection id", () => {
  sink += ownerOf(2 ** 20 * 256 + (i++ & 255));
});
Deno.bench("flow token: mint", () => {
  sink += tokens.mint(2 ** 20 * 256 + (i++ & 255), 0).length;
});
Deno.bench("flow token: check", () => {
  const check = tokens.check(token);
  if (check.ok && check.datagram === undefined) sink += check.connectionId;
});
globalThis.addEventListener("unload", () => {
  if (sink === 0.5) console.log(sink);
});
