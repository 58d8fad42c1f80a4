/**
 * The bare runtime's cost of an idle SIP connection, for scripts/bench_cost.sh: a server that
 * answers every SIP request itself (200 OK, Via/From/To/Call-ID/CSeq copied) and keeps nothing
 * else per connection, so that its memory per connection is the runtime's socket alone.
 *
 * - `--mode tcp`: `Deno.listen`, one pending `conn.read()` into a `--buf`-byte buffer per
 *   connection (what plugins/tcp.ts does while a connection is idle, with its 2 KB buffer).
 * - `--mode tls`: a `node:tls` server, `data` events (what plugins/tls does).
 *
 * Usage: deno run -A scripts/bench_cost_bare.ts --mode tcp|tls --port PORT [--buf 2048]
 * [--cert FILE --key FILE] (tls). Prints `LISTENING` once it accepts connections.
 * @module
 */
import tls from "node:tls";

function option(name: string, fallback?: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  const value = at >= 0 ? Deno.args[at + 1] : fallback;
  if (value === undefined) throw new Error(`--${name} is required`);
  return value;
}

const mode = option("mode", "tcp");
const port = Number(option("port"));
const bufferSize = Number(option("buf", "2048"));
const encoder = new TextEncoder();
const decoder = new TextDecoder("latin1");
const KEEP = /^(via|v|from|f|to|t|call-id|i|cseq):/i;

/** Answers the complete requests at the start of `text`; returns the answers and the rest. */
function answer(text: string): { out: string; rest: string } {
  let out = "";
  let at = 0;
  while (true) {
    const end = text.indexOf("\r\n\r\n", at);
    if (end < 0) break;
    const lines = text.slice(at, end).split("\r\n");
    if (lines[0].startsWith("SIP/2.0")) { // a response: nothing to answer
      at = end + 4;
      continue;
    }
    const keep = lines.filter((line) => KEEP.test(line));
    out += `SIP/2.0 200 OK\r\n${keep.join("\r\n")}\r\nContent-Length: 0\r\n\r\n`;
    at = end + 4;
  }
  return { out, rest: text.slice(at) };
}

async function serveTcp(conn: Deno.TcpConn): Promise<void> {
  const buffer = new Uint8Array(bufferSize);
  let pending = "";
  try {
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      const { out, rest } = answer(pending + decoder.decode(buffer.subarray(0, n)));
      pending = rest;
      if (out !== "") {
        const bytes = encoder.encode(out);
        for (let sent = 0; sent < bytes.length;) sent += await conn.write(bytes.subarray(sent));
      }
    }
  } catch {
    // reset by the peer
  }
  try {
    conn.close();
  } catch {
    // already closed
  }
}

if (mode === "tcp") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  console.log("LISTENING");
  for await (const conn of listener) serveTcp(conn);
} else if (mode === "tls") {
  const server = tls.createServer({
    cert: Deno.readTextFileSync(option("cert")),
    key: Deno.readTextFileSync(option("key")),
  }, (socket) => {
    let pending = "";
    socket.on("data", (data: Uint8Array) => {
      const { out, rest } = answer(pending + decoder.decode(data));
      pending = rest;
      if (out !== "") socket.write(out, "latin1");
    });
    socket.on("error", () => {});
  });
  server.listen(port, "127.0.0.1", () => console.log("LISTENING"));
} else {
  throw new Error(`--mode ${mode}: expected tcp or tls`);
}
