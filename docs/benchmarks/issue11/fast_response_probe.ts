/**
 * Probe (issue 11): what a byte-level response forwarder would cost, beside today's path
 * (StreamFramer + parseHead + forwardResponse), on the same 200 OK as scripts/bench_hot_path.ts.
 * Not sipedge code: it handles only the common case (our Via alone on the first Via line,
 * Content-Length present) and says "fall back" for anything else; the point is the cost of the
 * work a stateless proxy cannot avoid. `deno bench -A docs/benchmarks/issue11/fast_response_probe.ts`
 * @module
 */
import { StreamFramer } from "../../../core/sip/stream_framer.ts";
import { forwardResponse } from "../../../core/proxy/forward_response.ts";
import type { ProxyHost } from "../../../core/proxy/proxy_host.ts";
import { allocBytes } from "../../../core/sip/bytes.ts";
import { OPTIONS_RESPONSE } from "../../../scripts/hot_path_messages.ts";

const encoder = new TextEncoder();
const response = OPTIONS_RESPONSE;

let sent = 0;
const host = {
  isLocal: (h: string, p: number) => h === "127.0.0.1" && (p === 5060 || p === 0),
  transportForVia: () => "tcp",
  sendTo: (_d: unknown, bytes: Uint8Array) => void (sent += bytes.length),
  sendOnConnection: (_id: number, bytes: Uint8Array) => void (sent += bytes.length),
  count: () => {},
} as unknown as ProxyHost;
const framer = new StreamFramer({ maxMessageSize: 65535 });

/** Our Via's value as we write it, up to the branch: what the first Via must start with. */
const OURS = encoder.encode("SIP/2.0/TCP 127.0.0.1:5060;branch=");
const LF = 10, CR = 13;

/** Lower-case letter test for a header name at `at`: "via:" / "v:" (spaces before ":" allowed). */
function isVia(b: Uint8Array, at: number, end: number): boolean {
  if ((b[at] | 0x20) !== 118) return false;
  let i = at + 1;
  if ((b[i] | 0x20) === 105 && (b[i + 1] | 0x20) === 97) i += 2;
  while (i < end && (b[i] === 32 || b[i] === 9)) i++;
  return b[i] === 58;
}

/**
 * The forwarded response and the connection id, or undefined to fall back to the full path.
 * One pass over the head: head end, Content-Length, the first Via line.
 */
function fastResponse(b: Uint8Array): { out: Uint8Array; id: number } | undefined {
  const n = b.length;
  if (n < 12 || b[0] !== 83 || b[3] !== 47) return undefined; // "SIP/"
  let lineStart = -1;
  let viaStart = -1, viaEnd = -1, viaValue = -1;
  let contentLength = -1;
  for (let i = 0; i < n; i++) {
    if (b[i] !== LF) continue;
    const next = i + 1;
    if (next >= n) return undefined;
    if (b[next] === CR || b[next] === LF) {
      // End of head (CRLF CRLF; a bare LF LF falls back).
      if (b[next] !== CR || b[next + 1] !== LF) return undefined;
      const headEnd = next + 2;
      if (viaStart < 0 || contentLength < 0 || headEnd + contentLength !== n) return undefined;
      // Our Via alone on its line, written as we write it.
      for (let k = 0; k < OURS.length; k++) if (b[viaValue + k] !== OURS[k]) return undefined;
      let id = -1;
      for (let k = viaValue + OURS.length; k + 2 < viaEnd; k++) {
        if (b[k] === 44) return undefined; // a second value on the line
        if (b[k] === 59 && b[k + 1] === 105 && b[k + 2] === 61) { // ";i="
          id = 0;
          for (k += 3; k < viaEnd && b[k] >= 48 && b[k] <= 57; k++) id = id * 10 + b[k] - 48;
          break;
        }
      }
      if (id <= 0) return undefined;
      const out = allocBytes(n - (viaEnd - viaStart));
      out.set(b.subarray(0, viaStart), 0);
      out.set(b.subarray(viaEnd), viaStart);
      return { out, id };
    }
    if (b[next] === 32 || b[next] === 9) return undefined; // folding: fall back
    lineStart = next;
    if (viaStart < 0 && isVia(b, lineStart, n)) {
      viaStart = lineStart;
      let v = lineStart;
      while (b[v] !== 58) v++;
      v++;
      while (b[v] === 32 || b[v] === 9) v++;
      viaValue = v;
      let e = v;
      while (e < n && b[e] !== LF) e++;
      viaEnd = e + 1;
    } else if (
      (b[lineStart] | 0x20) === 99 && (b[lineStart + 8] | 0x20) === 108 && b[lineStart + 14] === 58
    ) {
      // "Content-Length:" (the common spelling; anything else falls back via contentLength < 0)
      let v = lineStart + 15;
      while (b[v] === 32) v++;
      let value = 0, digits = 0;
      for (; b[v] >= 48 && b[v] <= 57; v++, digits++) value = value * 10 + b[v] - 48;
      if (digits === 0 || contentLength >= 0) return undefined;
      contentLength = value;
    }
  }
  return undefined;
}

const probe = fastResponse(response);
if (probe === undefined || probe.id !== 256) {
  throw new Error("the probe does not forward the sample");
}

Deno.bench("today: frame + parse + forward response", { group: "r", baseline: true }, () => {
  framer.feed(response, (frame) => {
    if (frame.type === "message") forwardResponse(host, frame);
  });
});

Deno.bench("probe: byte-level response forwarder", { group: "r" }, () => {
  const r = fastResponse(response)!;
  host.sendOnConnection(r.id, r.out, undefined);
});
