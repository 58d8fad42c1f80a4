/**
 * Test helper (core/policy/source_table_test.ts): a worker that takes from one source's bucket
 * in the shared table as fast as it can, at a fixed time (no refill), and reports how many
 * takes were allowed and how many started the ban.
 * @module
 */
/// <reference lib="deno.worker" />
import { ALLOWED, BANNED_NOW, SourceTable } from "../source_table.ts";
import { parseIp } from "../ip_prefix.ts";

self.onmessage = (event: MessageEvent) => {
  const { buffer, workerId, takes, cost, window, now } = event.data;
  const table = new SourceTable(buffer, workerId);
  const key = table.key(parseIp("192.0.2.77")!);
  let allowed = 0, bannedNow = 0;
  for (let i = 0; i < takes; i++) {
    const verdict = table.take(key, cost, window, 60_000, now);
    if (verdict === ALLOWED) allowed++;
    else if (verdict === BANNED_NOW) bannedNow++;
  }
  self.postMessage({ allowed, bannedNow });
  self.close();
};
